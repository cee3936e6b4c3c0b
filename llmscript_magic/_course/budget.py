"""Budgets checked before a request is sent: a cell's ``--max-cost``, the kernel's
session budget and the user's daily budget.

A request's worst case is priced before it goes out: its input (estimated high, about
three bytes a token where English text averages four, at the prompt-cache write rate)
plus ``max_tokens`` and the thinking budget, for this attempt and every repair round
still allowed, each round's input grown by the previous reply. When that could exceed
what a limit has left, the request is refused with one line saying what is left and how
to raise it; nothing is sent. Replay and cache answers never reach the guard: they cost nothing.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import BudgetError
from .._store.cost import estimate, price_for
from ..providers.base import Request, Usage

#: bytes of prompt text counted as one token: a high estimate on purpose (English ~4)
BYTES_PER_TOKEN = 3
#: what each message, and the repair report, adds around its text
MESSAGE_OVERHEAD = 8
REPAIR_REPORT_TOKENS = 1200  # the report is capped at 3000 characters (generate.py)

Prices = Mapping[str, tuple[float, float]]


def priced_model(label: str) -> str:
    """The model a price is looked up for: ``course:anthropic:claude-x`` is anthropic's."""
    provider, _, model = label.partition(":")
    return model if provider == "course" and ":" in model else label


def input_tokens(request: Request) -> int:
    """A high estimate of the request's input tokens, with no tokenizer and no request."""
    texts = [request.system, *(m.content for m in request.messages)]
    total = sum(len(t.encode("utf-8")) for t in texts)
    return math.ceil(total / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD * len(texts)


def worst_case(label: str, request: Request, rounds: int,
               prices: Prices | None = None) -> float | None:
    """Dollars the next ``rounds`` requests could cost at most; None when the price is unknown."""
    model = priced_model(label)
    if price_for(model, prices) is None:
        return None
    out = request.max_tokens + (request.thinking_tokens or 0)
    tokens_in = input_tokens(request)
    total = 0.0
    for _ in range(max(1, rounds)):
        # every input token at the prompt-cache write rate (125%), the dearest one
        usage = Usage(cache_creation_input_tokens=tokens_in, output_tokens=out)
        total += estimate(model, usage, prices) or 0.0
        tokens_in += out + REPAIR_REPORT_TOKENS  # the reply and the report go back
    return total


def usd(dollars: float) -> str:
    """$0.0105, $0.001, $0.50, $5.00: as many decimals as a small amount needs (up to 4)."""
    text = f"{dollars:.4f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def usage_cost(label: str, usage: Usage, prices: Prices | None = None) -> float:
    """What a reply cost (0 when the price is unknown: the guard refused that case earlier)."""
    return estimate(priced_model(label), usage, prices) or 0.0


@dataclass
class Limit:
    """One budget: what it is called, what is left now, and how to raise it."""

    name: str  # "--max-cost", "session budget", "daily budget"
    total: float
    spent: Callable[[], float]
    how_to_raise: str
    by_course: bool = False

    @property
    def left(self) -> float:
        return max(0.0, self.total - self.spent())


class Ledger:
    """The user's spending per day, in a JSON-lines file shared by every kernel.

    One line per model reply (appends of a short line are atomic), so kernels running
    side by side add up; ``spent_today`` sums today's lines (local date).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_ledger_path()

    def add(self, cost: float, model: str = "") -> None:
        if cost <= 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"day": _today(), "t": round(time.time(), 3), "cost": cost,
                           "model": model}) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def spent_today(self) -> float:
        day, total = _today(), 0.0
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("day") == day:
                        total += float(entry.get("cost", 0.0))
        except FileNotFoundError:
            pass
        return total


def default_ledger_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmscript-magic" / "spending.jsonl"


def _today() -> str:
    return time.strftime("%Y-%m-%d")


@dataclass
class Guard:
    """The limits one generation runs under; asked before, told after, each model request."""

    limits: Sequence[Limit] = ()
    prices: Prices | None = None
    #: called with (cost, model) after each model reply: the session and the ledger count it
    on_spend: Callable[[float, str], None] | None = None
    spent: float = 0.0  # by this generation

    def with_max_cost(self, max_cost: float | None) -> Guard:
        """This guard plus the cell's own ``--max-cost`` (spent by this generation only)."""
        guard = Guard(list(self.limits), self.prices, self.on_spend)
        if max_cost is not None:
            guard.limits = [Limit("--max-cost", max_cost, lambda: guard.spent,
                                  "raise --max-cost on the %%generate line"), *guard.limits]
        return guard

    def before(self, label: str, request: Request, rounds: int) -> float | None:
        """Raise BudgetError when the next ``rounds`` requests could overrun a limit."""
        if not self.limits:
            return None
        worst = worst_case(label, request, rounds, self.prices)
        if worst is None:
            raise BudgetError(
                f"No price is known for {priced_model(label)}, so the budget cannot be "
                "checked before sending: set %config GenerateMagics.prices = "
                f"{{'{priced_model(label)}': [IN, OUT]}} (USD per million tokens).")
        for limit in self.limits:
            if worst > limit.left + 1e-12:
                rounds_text = f" ({rounds} rounds with repairs)" if rounds > 1 else ""
                course = " (set by the course)" if limit.by_course else ""
                raise BudgetError(
                    f"Not sent: this request could cost up to {usd(worst)}{rounds_text}, but "
                    f"the {limit.name}{course} leaves {usd(limit.left)} of {usd(limit.total)}; "
                    f"{limit.how_to_raise}, or lower --max-tokens or --retries.")
        return worst

    def after(self, label: str, usage: Usage) -> None:
        cost = usage_cost(label, usage, self.prices)
        self.spent += cost
        if self.on_spend is not None:
            self.on_spend(cost, label)


__all__ = ["Guard", "Ledger", "Limit", "input_tokens", "priced_model", "usage_cost", "usd",
           "worst_case"]
