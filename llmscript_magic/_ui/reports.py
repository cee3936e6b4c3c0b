"""Text for ``%llmscript models`` and ``%llmscript usage``."""

from __future__ import annotations

from typing import Any

from .._store.cost import estimate, format_cost
from ..providers import ModelGroup, Usage, load_failures, one_line, providers


def list_models_text() -> str:
    """Every provider with its key state and models, then plugins that failed to load."""
    lines = []
    for name, cls in sorted(providers().items()):
        key = (cls.key_source or "no key needed") if cls.key_env_var is None else (
            f"{cls.key_env_var} is set" if cls.key_is_set() else f"{cls.key_env_var} is NOT set")
        lines.append(f"{name}  ({key})  default: {cls.default_model}")
        try:
            groups = cls.model_groups()
        except Exception as err:  # a plugin's lister must not hide the rest of the list
            lines.append(f"    (could not list models: {one_line(f'{type(err).__name__}: {err}')})")
            continue
        for group in groups:
            lines.extend(_group_lines(name, group))
    for failure in load_failures():
        state = "optional, not installed" if failure.optional else \
            f"FAILED to load: {failure.reason}"
        lines.append(f"{failure.name}  ({state}): {failure.fix}")
    return "\n".join(lines)


def _group_lines(provider: str, group: ModelGroup) -> list[str]:
    """One group's models; a named group (an llm plugin) gets a heading, or its failure."""
    if not group.name:
        return [f"    {provider}:{m}" for m in group.models]
    if group.error is not None:
        return [f"    {group.name}  (FAILED to load: {group.error}): {group.fix}"]
    return [f"    {group.name}:", *(f"        {provider}:{m}" for m in group.models)]


def usage_text(session: Any) -> str:
    """Tokens and estimated cost per generation, named by cell, and for the session."""
    rows = getattr(session, "log", None)
    if not rows:
        return "No generations yet in this session."
    lines = [f"{'cell':14} {'model':36} {'in':>7} {'out':>7} {'cost':>9}  status"]
    for row in rows:
        u = row.usage
        status = row.status if row.source == "model" else f"{row.status} ({row.source})"
        lines.append(f"{row.cell[:14]:14} {row.model[:36]:36} {u.input_tokens:>7} "
                     f"{u.output_tokens:>7} {format_cost(row.cost):>9}  {status}")
    total = session.usage
    lines.append(f"Session: {total.input_tokens} in / {total.output_tokens} out tokens, "
                 f"{format_cost(session.cost)} (model requests only; cache and replay "
                 f"are free)")
    read = sum(r.usage.cache_read_input_tokens for r in rows if r.source == "model")
    if read:
        saved = sum(_cache_saving(r.model, r.usage.cache_read_input_tokens, session.prices)
                    for r in rows if r.source == "model")
        lines.append(f"Prompt cache: {read} input tokens read back at the cached rate, "
                     f"saving {format_cost(saved)}")
    return "\n".join(lines)


def _cache_saving(model: str, read: int, prices: Any) -> float:
    """What ``read`` cached input tokens would have cost more at the full input rate."""
    full = estimate(model, Usage(input_tokens=read), prices)
    cached = estimate(model, Usage(cache_read_input_tokens=read), prices)
    return (full - cached) if full is not None and cached is not None else 0.0
