"""Model aliases and provider policy: ``GenerateMagics.aliases``, ``allowed_providers``,
``blocked_providers``.

An alias is a short name a class or a team agrees on (``--model fast``); the
policy lets a teacher or an admin pin a notebook server to one provider or a
local OpenAI-compatible server in ``ipython_config.py``. Both are resolved
once, when a cell's options are prepared, so the pipeline, the cache key and
the record only ever see the real ``provider:model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeVar

from .._errors import ConfigurationError

OptionsT = TypeVar("OptionsT")
MAX_DEPTH = 5  # aliases may name aliases; a loop is a user mistake


def unalias(name: str, aliases: Mapping[str, Any]) -> str:
    """``fast`` -> ``anthropic:claude-haiku-5`` (through chains; a loop is one line)."""
    seen = [name]
    while name in aliases:
        name = str(aliases[name]).strip()
        if name in seen or len(seen) > MAX_DEPTH:
            raise ConfigurationError(f"GenerateMagics.aliases loops ({' -> '.join(seen)} -> "
                                     f"{name}): make each alias name a provider:model")
        seen.append(name)
    return name


def check_provider(provider: str, allowed: frozenset[str] | None,
                   blocked: frozenset[str] | None) -> None:
    """ConfigurationError naming the policy when ``provider`` may not be used."""
    if blocked and provider in blocked:
        raise ConfigurationError(
            f"Provider {provider!r} is blocked here (GenerateMagics.blocked_providers = "
            f"{', '.join(sorted(blocked))}): pick a model of another provider with --model"
            + (f" ({', '.join(sorted(allowed))} allowed)" if allowed else ""))
    if allowed is not None and provider not in allowed:
        raise ConfigurationError(
            f"Provider {provider!r} is not allowed here (GenerateMagics.allowed_providers = "
            f"{', '.join(sorted(allowed)) or 'none'}): use --model with one of those")


def apply_policy(opts: OptionsT) -> OptionsT:
    """``opts`` with its model alias resolved, after checking the provider policy."""
    from ..providers import resolve_model

    aliases = getattr(opts, "aliases", {}) or {}
    name = unalias(getattr(opts, "model", ""), aliases)
    cls, model = resolve_model(name)
    check_provider(cls.name, getattr(opts, "allowed_providers", None),
                   getattr(opts, "blocked_providers", None))
    if name == getattr(opts, "model", ""):
        return opts
    return replace(opts, model=f"{cls.name}:{model}")  # type: ignore[type-var]


def policy_text(configured: Any) -> str:
    """The lines ``%llmscript models`` adds: aliases and the provider policy in force."""
    from .._pipeline.options import name_set

    lines = []
    aliases = dict(getattr(configured, "aliases", {}) or {})
    if aliases:
        lines.append("Aliases (GenerateMagics.aliases):")
        lines += [f"    {alias} -> {target}" for alias, target in sorted(aliases.items())]
    allowed = name_set(getattr(configured, "allowed_providers", "") or "")
    blocked = name_set(getattr(configured, "blocked_providers", "") or "")
    if allowed is not None:
        lines.append("Policy: only these providers may be used (GenerateMagics."
                     f"allowed_providers): {', '.join(sorted(allowed)) or 'none'}")
    if blocked:
        lines.append("Policy: blocked providers (GenerateMagics.blocked_providers): "
                     + ", ".join(sorted(blocked)))
    if not lines:
        lines.append("No aliases and no provider policy (see %config GenerateMagics.aliases, "
                     "allowed_providers, blocked_providers).")
    return "\n".join(lines)


__all__ = ["apply_policy", "check_provider", "policy_text", "unalias"]
