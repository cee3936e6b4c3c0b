"""``--session``: one sandbox namespace per kernel that outlives its cells.

By default every run is a fresh process: nothing of one cell reaches the
next. A ``--session`` run instead goes to this kernel's session, one long-lived
process (per backend and isolation level) whose globals, files and processes
stay between its cells, so a large file is read once. It is walled off like a
run (its own uid, its own container under Docker, its own bubblewrap
namespaces locally), and stateless runs of the same kernel never meet it.

This module is the kernel's side: which sessions are alive (``Live``), how
many cells each ran and since when, ending them (``reset``), and the one
line a run's result carries about its session (``RunResult.session``). A
session that ended on its own (a timeout, the output cap, out of memory, a
crash) is remembered until the next ``--session`` run says its state was lost.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .base import RunResult

#: Why a session ended, in words (keys: ``why_ended``'s codes).
ENDED = {
    "timeout": "a cell ran past its time limit",
    "output_capped": "a cell printed more than the output cap",
    "memory": "it ran out of memory",
    "crashed": "its process ended",
    "start": "its process could not start",
    "lost": "its sandbox was lost",
    "limits": "this cell asked for other limits (--memory, --cpus) or large --input files "
              "it was not started with",
    "unfit": "its sandbox was not fit for another cell",
    "yielded": "it was idle while other kernels waited for a sandbox",
}

#: Seconds a session may sit idle while other kernels wait for the engine's budget
#: (LLMSCRIPT_SESSION_YIELD) before it gives its container back. A stateless kernel gives
#: its container back after 2 s; a session holds data the analyst would have to load
#: again, so it keeps it longer, but never for good: no kernel waits forever.
YIELD_SECONDS = 120.0


class SessionLost(Exception):
    """Raised by a backend's cell when the session's sandbox is gone before the cell ran."""


@dataclass
class Live:
    """One alive session: where it runs, its handle, and what it has done."""

    label: str  # "docker/gvisor", "docker/container", "local/bubblewrap"
    handle: Any  # the backend's: a pool Slot (docker) or a LocalSession
    close: Callable[[], None]  # kills its processes and removes its files
    #: what the handle was made for: (its container's limits, the large files bound in)
    fit: tuple[Any, frozenset[Any]] = ((), frozenset())
    started: float = 0.0
    cells: int = 0
    last: float = 0.0  # when its last cell ended (or it started)
    #: True when others wait for what this session holds (the engine's budget)
    others_wait: Callable[[], bool] | None = None
    #: one cell at a time (a widget's Run button may fire while a cell runs)
    busy: threading.Lock = field(default_factory=threading.Lock)


_live: dict[tuple[Any, ...], Live] = {}
_lost: dict[tuple[Any, ...], str] = {}  # key -> why the last session there ended
_lock = threading.Lock()


def acquire(key: tuple[Any, ...], label: str, fit: tuple[Any, frozenset[Any]],
            start: Callable[[], tuple[Any, Callable[[], None]]],
            others_wait: Callable[[], bool] | None = None) -> tuple[Live, str]:
    """The alive session for key (started when there is none), and a line when it is new.

    fit: (the limits fixed when a session's sandbox starts, the large host
    files bound into it). A session made for other limits, or without a large
    file this cell brings, is ended first (neither can change in a running
    sandbox): the new one says so. A cell without large files fits any.
    """
    with _lock:
        live = _live.get(key)
        if live is not None and (live.fit[0] != fit[0] or not fit[1] <= live.fit[1]):
            _end_locked(key, "limits")
            live = None
        if live is not None:
            return live, ""
        handle, close = start()
        now = time.monotonic()
        live = _live[key] = Live(label, handle, close, fit, now, last=now,
                                 others_wait=others_wait)
        why = _lost.pop(key, "")
        if others_wait is not None:
            _watch()
    if why:
        return live, (f"a fresh session: the previous one ended ({ENDED.get(why, why)}), so "
                      "its variables and files are gone: run the cells that made them again")
    return live, "a new session: its variables and files stay for the next --session cells"


def end(key: tuple[Any, ...], why: str) -> str:
    """End the session at key because of why (a key of ``ENDED``); the line that says so."""
    with _lock:
        _end_locked(key, why)
    return (f"the session ended ({ENDED.get(why, why)}): its variables and files are gone; "
            "the next --session run starts a fresh one")


def _end_locked(key: tuple[Any, ...], why: str) -> None:
    live = _live.pop(key, None)
    if live is not None:
        with contextlib.suppress(Exception):
            live.close()
        _lost[key] = why


def why_ended(result: RunResult) -> str:
    """The code (``ENDED``) for a cell after which the backend did not keep its session."""
    if result.status in ("timeout", "output_capped", "memory"):
        return result.status
    if result.exit_code is None or result.exit_code > 128:
        return "crashed"
    return "unfit"


def kept_line(live: Live) -> str:
    return f"session cell {live.cells}: variables and files of earlier --session cells kept"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def status() -> str:
    """One line: the alive sessions (where, cells, age), or that there is none."""
    with _lock:
        rows = list(_live.values())
    if not rows:
        return "no session: `%%generate --run --session` starts one (runs are stateless without it)"
    now = time.monotonic()
    parts = [f"{live.label}: {live.cells} cell{'s' if live.cells != 1 else ''}, "
             f"{_age(now - live.started)} old" for live in rows]
    return "session alive (" + "; ".join(parts) + "); `%llmscript session reset` ends it"


def reset() -> str:
    """End every session of this kernel: its processes killed, its files removed; one line."""
    with _lock:
        rows = list(_live.items())
        _live.clear()
        _lost.clear()  # asked for: the next session is fresh, not "lost"
    if not rows:
        return "no session to reset: runs are stateless until `%%generate --run --session`"
    for _, live in rows:
        with contextlib.suppress(Exception):
            live.close()
    cells = sum(live.cells for _, live in rows)
    where = ", ".join(live.label for _, live in rows)
    return (f"session reset ({where}): ended after {cells} cell{'s' if cells != 1 else ''}; "
            "its variables, files and processes are gone")


def close_all() -> None:
    """End every session quietly (the interpreter exits, or the sandbox closes)."""
    with _lock:
        rows = list(_live.values())
        _live.clear()
    for live in rows:
        with contextlib.suppress(Exception):
            live.close()


def run_cell(key: tuple[Any, ...], label: str, fit: tuple[Any, frozenset[Any]],
             start: Callable[[], tuple[Any, Callable[[], None]]],
             cell: Callable[[Any], tuple[RunResult, bool]],
             others_wait: Callable[[], bool] | None = None) -> RunResult:
    """One ``--session`` run: the session (new or kept), the cell in it, its line.

    ``cell(handle)`` runs the cell and says whether the session lives on; a
    session that does not is ended here, and the result says why in one line.
    ``others_wait``: see ``_watch``.
    """
    live, note = acquire(key, label, fit, start, others_wait)
    try:
        try:
            with live.busy:
                result, alive = cell(live.handle)
                live.last = time.monotonic()
        except SessionLost:  # gone while idle (an engine restart): a fresh one, said so
            end(key, "lost")
            live, note = acquire(key, label, fit, start)
            with live.busy:
                result, alive = cell(live.handle)
    except BaseException:
        end(key, "lost")
        raise
    live.cells += 1
    if alive:
        result.session = note or kept_line(live)
    else:
        why = why_ended(result)
        if why == "crashed" and result.status == "error":  # its exit code is the session's
            result.reason = "The session's process ended during the cell (a crash, a signal " \
                            "or os._exit)"
        gone = end(key, why)
        result.session = f"{note}; {gone}" if note else gone
    return result


_watcher: threading.Thread | None = None


def _watch() -> None:
    """Start (once) the thread that ends sessions idle while other kernels wait.

    Called with ``_lock`` held. Every few seconds it looks at the sessions whose
    backend said how to tell that others wait (``Live.others_wait``: the engine's
    budget has a queue); one idle for ``YIELD_SECONDS`` or more then ends, and the
    next ``--session`` run says why its state is gone.
    """
    global _watcher
    if _watcher is None:
        _watcher = threading.Thread(target=_yield_idle, name="llmscript-session-yield",
                                    daemon=True)
        _watcher.start()


def _yield_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("LLMSCRIPT_SESSION_YIELD", YIELD_SECONDS)))
    except ValueError:
        return YIELD_SECONDS


def _yield_idle() -> None:
    while True:
        time.sleep(min(5.0, max(0.5, _yield_seconds() / 2)))
        now, idle = time.monotonic(), _yield_seconds()
        with _lock:
            rows = [(k, live) for k, live in _live.items() if live.others_wait is not None]
        for key, live in rows:
            if now - live.last < idle or not live.busy.acquire(blocking=False):
                continue
            try:
                with contextlib.suppress(Exception):
                    if live.others_wait and live.others_wait() and _live.get(key) is live:
                        end(key, "yielded")
            finally:
                live.busy.release()
