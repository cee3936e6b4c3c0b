"""What the course's hub service decides for each student's request, and what it keeps.

The kernel belongs to the student, who can run anything in it, so the checks that
matter are made here, next to the key: the model must be one the course allows, the
student must be under the rate limit, and the request's worst case (``budget.py``)
must fit what the student has left today and over the course. Every request, answered
or refused, is a line in the usage record (JSON lines, readable by the service's user
only), which ``llmscript course usage`` and the teacher's page summarize.

``[service]`` in the course file:

```toml
[service]
models = ["anthropic:claude-haiku-5"]   # allowed upstream models; the first is the default
daily_budget = 1.00                     # USD per student per day
total_budget = 5.00                     # USD per student for the whole course
rate = 10                               # requests per student per minute
teachers = ["teacher"]                  # hub users who may read the usage report
usage_file = "/var/lib/llmscript/usage.jsonl"
keys = { anthropic = "/etc/llmscript/anthropic.key" }   # readable by the service only
# students' runs (--sandbox course) in the shared engine, labelled llmscript.student=NAME
isolation = "auto"                      # auto, gvisor or container
run_timeout = 60                        # the most seconds a student's run may take
run_memory_mb = 512                     # the most memory a student's run may have
runs = 10                               # runs per student per minute, one at a time
```
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._errors import BudgetError, ConfigurationError, RateLimitError
from .._store.cost import price_for
from ..providers.base import Request, Usage
from .budget import usage_cost, usd, worst_case
from .settings import TUTOR_SYSTEM, CourseSettings


@dataclass
class ServiceSettings:
    """The ``[service]`` table, checked when the service starts."""

    models: tuple[str, ...] = ()
    daily_budget: float | None = None
    total_budget: float | None = None
    rate: int = 10
    teachers: frozenset[str] = frozenset()
    usage_file: str = "/var/lib/llmscript/usage.jsonl"
    keys: Mapping[str, str] = field(default_factory=dict)
    isolation: str = "auto"
    run_timeout: float = 60.0
    run_memory_mb: int = 512
    runs: int = 10

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> ServiceSettings:
        service = dict(table.get("service", {}))
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(service) - known)
        if unknown:
            raise ConfigurationError(f"Unknown key(s) {', '.join(unknown)} in [service]: use "
                                     f"{', '.join(sorted(known))}.")
        if not service.get("models"):
            raise ConfigurationError("[service] models is empty: list the provider:model "
                                     "names students may use.")
        service["models"] = tuple(service["models"])
        unpriced = [m for m in service["models"] if price_for(m) is None]
        if unpriced:
            raise ConfigurationError(f"No price is known for {', '.join(unpriced)}, so budgets "
                                     "cannot be checked: allow models listed in "
                                     "llmscript_magic/_store/cost.py.")
        service["teachers"] = frozenset(service.get("teachers", ()))
        if service.get("isolation", "auto") not in ("auto", "gvisor", "container"):
            raise ConfigurationError(f"[service] isolation = {service['isolation']!r}: use "
                                     "auto, gvisor or container.")
        for key in ("daily_budget", "total_budget"):
            if service.get(key) is not None:
                service[key] = float(service[key])
        return cls(**service)


@dataclass
class StudentUsage:
    """One student's row of the teacher's report."""

    requests: int = 0
    refused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_today: float = 0.0
    cost_total: float = 0.0
    last: str = ""
    runs: int = 0  # sandbox runs in the shared engine (--sandbox course)
    run_seconds: float = 0.0


class Gate:
    """Admits or refuses each request and records what it cost, per student."""

    def __init__(self, settings: ServiceSettings, course: CourseSettings | None = None) -> None:
        self.settings = settings
        self.course = course
        self.path = Path(settings.usage_file)
        self.lock = threading.Lock()
        self.usage: dict[str, StudentUsage] = defaultdict(StudentUsage)
        self.recent: dict[str, deque[float]] = defaultdict(deque)
        self.recent_runs: dict[str, deque[float]] = defaultdict(deque)
        self.running: set[str] = set()  # students with a run under way
        self._load()

    def _load(self) -> None:
        """Today's and all-time spending from the record, so a restart forgets nothing."""
        if not self.path.is_file():
            return
        today = time.strftime("%Y-%m-%d")
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                self._count(json.loads(line), today)
            except (ValueError, TypeError, KeyError):
                continue

    def _count(self, entry: Mapping[str, Any], today: str) -> None:
        row = self.usage[entry["user"]]
        if entry.get("run") and not entry.get("refused"):
            row.runs += 1
            row.run_seconds += float(entry.get("seconds", 0.0))
        elif entry.get("refused"):
            row.refused += 1
        else:
            row.requests += 1
            row.input_tokens += int(entry.get("input_tokens", 0))
            row.output_tokens += int(entry.get("output_tokens", 0))
            row.cost_total += float(entry.get("cost", 0.0))
            if entry.get("day") == today:
                row.cost_today += float(entry.get("cost", 0.0))
        row.last = str(entry.get("time", ""))

    def _write(self, entry: dict[str, Any]) -> None:
        entry = {"day": time.strftime("%Y-%m-%d"),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self._count(entry, entry["day"])

    def model(self, asked: str) -> str:
        """The upstream ``provider:model`` for what the kernel asked (``default`` = the first)."""
        if asked in ("", "default"):
            return self.settings.models[0]
        if asked not in self.settings.models:
            raise ConfigurationError(f"{asked} is not allowed in this course: use one of "
                                     f"{', '.join(self.settings.models)} (course:MODEL).")
        return asked

    def admit(self, user: str, model: str, request: Request) -> None:
        """Raise (and record the refusal) unless the rate and the budgets allow ``request``."""
        with self.lock:
            try:
                self._admit(user, model, request)
            except (BudgetError, RateLimitError) as err:
                self._write({"user": user, "model": model, "refused": str(err)})
                raise

    def _admit(self, user: str, model: str, request: Request) -> None:
        now = time.monotonic()
        recent = self.recent[user]
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.settings.rate:
            raise RateLimitError(f"Rate limit: at most {self.settings.rate} requests a minute "
                                 "per student in this course; wait a minute and run it again.")
        worst = worst_case(model, request, 1) or 0.0
        row = self.usage[user]
        for name, limit, spent in (("daily budget", self.settings.daily_budget, row.cost_today),
                                   ("course budget", self.settings.total_budget,
                                    row.cost_total)):
            if limit is not None and spent + worst > limit:
                raise BudgetError(
                    f"Not sent: this request could cost up to {usd(worst)}, but your {name} "
                    f"in this course leaves {usd(max(0.0, limit - spent))} of {usd(limit)}; "
                    "ask your teacher to raise it, or lower --max-tokens.")
        recent.append(now)

    def start_run(self, user: str) -> None:
        """Admit one run in the shared engine, or raise (recorded): one at a time, a rate."""
        with self.lock:
            now = time.monotonic()
            recent = self.recent_runs[user]
            while recent and now - recent[0] > 60:
                recent.popleft()
            try:
                if user in self.running:
                    raise RateLimitError("Your previous run in the course's sandbox is still "
                                         "going: wait for it, then run this again.")
                if len(recent) >= self.settings.runs:
                    raise RateLimitError(f"Rate limit: at most {self.settings.runs} sandbox runs "
                                         "a minute per student in this course; wait a minute.")
            except RateLimitError as err:
                self._write({"user": user, "run": True, "refused": str(err)})
                raise
            recent.append(now)
            self.running.add(user)

    def end_run(self, user: str, seconds: float, status: str) -> None:
        """The run is over: the student's row counts it and its time."""
        with self.lock:
            self.running.discard(user)
            self._write({"user": user, "run": True, "seconds": round(seconds, 3),
                         "status": status})

    def record(self, user: str, model: str, usage: Usage) -> float:
        cost = usage_cost(model, usage)
        with self.lock:
            self._write({"user": user, "model": model, "cost": cost,
                         **{k: v for k, v in asdict(usage).items() if v}})
        return cost

    def system(self, system: str) -> str:
        """The course's rules and tutor mode, added here too: a kernel could leave them out."""
        extra = []
        course = self.course
        if course is not None and course.rules and course.rules not in system:
            extra.append(f"Course rules: {course.rules}")
        if course is not None and course.tutor and TUTOR_SYSTEM not in system:
            extra.append(TUTOR_SYSTEM)
        return "\n\n".join([system, *extra]).strip()

    def status(self, user: str) -> dict[str, Any]:
        """One student's own row and the course's budgets: what ``%llmscript usage`` shows."""
        with self.lock:
            row = asdict(self.usage[user]) if user in self.usage else asdict(StudentUsage())
        return {**row, "daily_budget": self.settings.daily_budget,
                "total_budget": self.settings.total_budget, "rate": self.settings.rate}

    def report(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {user: asdict(row) for user, row in sorted(self.usage.items())}


def report_text(report: Mapping[str, Mapping[str, Any]]) -> str:
    """The teacher's table: one row per student."""
    if not report:
        return "No requests yet."
    lines = [f"{'student':16} {'requests':>8} {'refused':>7} {'in':>8} {'out':>8} "
             f"{'today':>9} {'total':>9} {'runs':>5} {'run s':>7}  last"]
    for user, row in report.items():
        lines.append(f"{user[:16]:16} {row['requests']:>8} {row['refused']:>7} "
                     f"{row['input_tokens']:>8} {row['output_tokens']:>8} "
                     f"{usd(row['cost_today']):>9} {usd(row['cost_total']):>9} "
                     f"{row.get('runs', 0):>5} {row.get('run_seconds', 0.0):>7.1f}  {row['last']}")
    return "\n".join(lines)


__all__ = ["Gate", "ServiceSettings", "StudentUsage", "report_text"]
