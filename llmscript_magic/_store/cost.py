"""Estimated cost of a generation from a price table the user can override.

Prices are US dollars per million tokens; unknown models cost ``None``
(shown as "n/a") rather than a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..providers.base import Usage


class Costed(Protocol):
    """What a cost needs of a generation (the pipeline's ``Generation`` is one)."""

    @property
    def model(self) -> str: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def source(self) -> str: ...

# input, output per million tokens; cache reads at 10% and writes at 125% of input
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "anthropic:claude-opus-5": (15.0, 75.0),
    "anthropic:claude-sonnet-5": (3.0, 15.0),
    "anthropic:claude-haiku-5": (1.0, 5.0),
    "anthropic:claude-opus-4": (15.0, 75.0),
    "anthropic:claude-sonnet-4": (3.0, 15.0),
    "anthropic:claude-haiku-4": (1.0, 5.0),
    "fake:": (0.0, 0.0),
}


def price_for(model: str, prices: Mapping[str, tuple[float, float]] | None = None
              ) -> tuple[float, float] | None:
    """Longest matching prefix wins, so 'anthropic:claude-sonnet-5' covers 'claude-sonnet-5-5'."""
    table = {**DEFAULT_PRICES, **(prices or {})}
    best = max((k for k in table if model.startswith(k)), key=len, default=None)
    return table[best] if best is not None else None


def estimate(model: str, usage: Usage,
             prices: Mapping[str, tuple[float, float]] | None = None) -> float | None:
    price = price_for(model, prices)
    if price is None:
        return None
    p_in, p_out = price
    dollars = (usage.input_tokens * p_in + usage.output_tokens * p_out
               + usage.cache_read_input_tokens * p_in * 0.1
               + usage.cache_creation_input_tokens * p_in * 1.25)
    return dollars / 1_000_000


def generation_cost(gen: Costed,
                    prices: Mapping[str, tuple[float, float]] | None = None) -> float | None:
    """What a generation cost: nothing when it came from the cache or a recording."""
    return estimate(gen.model, gen.usage, prices) if gen.source == "model" else 0.0


def format_cost(cost: float | None) -> str:
    return "n/a" if cost is None else f"${cost:.4f}"
