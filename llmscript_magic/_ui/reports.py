"""Text for ``%llmscript models`` and ``%llmscript usage``."""

from __future__ import annotations

from typing import Any

from .._store.cost import format_cost, generation_cost
from ..providers.base import providers


def list_models_text() -> str:
    lines = []
    for name, cls in sorted(providers().items()):
        key = "no key needed" if cls.key_env_var is None else (
            f"{cls.key_env_var} is set" if cls.key_is_set() else f"{cls.key_env_var} is NOT set")
        lister = getattr(cls, "list_models", None)
        models = list(lister()) if callable(lister) else list(cls.models)
        lines.append(f"{name}  ({key})  default: {cls.default_model}")
        lines.extend(f"    {name}:{m}" for m in models)
    return "\n".join(lines)


def usage_text(magics: Any) -> str:
    if magics is None or not magics.history:
        return "No generations yet in this session."
    lines = [f"{'#':>3}  {'model':38} {'in':>7} {'out':>7} {'cost':>9}  source"]
    for n, gen in enumerate(magics.history, 1):
        u = gen.usage
        cost = generation_cost(gen, magics._prices())
        lines.append(f"{n:>3}  {gen.model:38} {u.input_tokens:>7} {u.output_tokens:>7} "
                     f"{format_cost(cost):>9}  {gen.source}")
    total = magics.session_usage
    lines.append(f"Session: {total.input_tokens} in / {total.output_tokens} out tokens, "
                 f"{format_cost(magics.session_cost)} (model requests only; cache and replay "
                 f"are free)")
    return "\n".join(lines)
