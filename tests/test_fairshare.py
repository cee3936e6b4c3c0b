"""The engine-wide sandbox budget's queue (``_sandbox/fairshare.py``), without Docker.

Real processes contend for real lock files: first come, first served, a dead
or interrupted waiter leaves nothing that blocks the others, a pool filler never
takes a slot a waiter is owed.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmscript_magic._errors import ConfigurationError
from llmscript_magic._sandbox.fairshare import (
    BUDGET_ENV,
    Budget,
    configured_size,
    default_size,
    queue_folder,
)

# A kernel-like process: waits for a slot of the budget in FOLDER, says "n ahead" on each
# change, then "got" with its name, holds the slot HOLD seconds and leaves.
WAITER = r"""
import json, sys, time
from llmscript_magic._sandbox.fairshare import Budget, reporting
folder, size, name, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
say = lambda **kw: print(json.dumps({"name": name, **kw}), flush=True)
with reporting(lambda n: say(ahead=n)):
    lease = Budget(folder, size).take()
say(got=lease.index, at=time.monotonic())
time.sleep(hold)
lease.release()
say(left=True)
"""


def _start(folder: Path, name: str, hold: float = 0.3, size: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WAITER, str(folder), str(size), name,
                             str(hold)], stdout=subprocess.PIPE, text=True)


def _tickets(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("t-"))


def _until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _lines(proc: subprocess.Popen[str]) -> list[dict[str, object]]:
    out, _ = proc.communicate(timeout=60)
    return [json.loads(line) for line in out.splitlines()]


def test_waiters_get_their_turn_in_arrival_order(tmp_path: Path) -> None:
    """Five processes queue behind a held slot; they get it in the order they came."""
    folder = tmp_path / "q"
    held = Budget(str(folder), 1).take()
    procs = []
    for n in range(5):
        procs.append(_start(folder, f"k{n}"))
        _until(lambda n=n: len(_tickets(folder)) == n + 1)  # queued before the next comes
    held.release()
    reports = {f"k{n}": _lines(p) for n, p in enumerate(procs)}
    got = sorted((next(r["at"] for r in lines if "got" in r), name)
                 for name, lines in reports.items())
    assert [name for _, name in got] == ["k0", "k1", "k2", "k3", "k4"]
    for n in range(5):  # each said how many were ahead when it came, and counted down
        told = [r["ahead"] for r in reports[f"k{n}"] if "ahead" in r]
        assert told[0] == n and told[-1] is None
        assert [t for t in told if t is not None] == sorted(
            {t for t in told if t is not None}, reverse=True)
    assert _tickets(folder) == []


def test_slot_checks_and_reserves_in_one_step(tmp_path: Path) -> None:
    """Twelve processes, two slots: never more than two hold one at a time."""
    folder = tmp_path / "q"
    procs = [_start(folder, f"k{n}", hold=0.2, size=2) for n in range(12)]
    events = []
    for proc in procs:
        for r in _lines(proc):
            if "got" in r:
                events.append((r["at"], 1))
                events.append((r["at"] + 0.2, -1))  # held at least until then
            assert proc.returncode == 0
    assert len(events) == 24
    held = most = 0
    for _, step in sorted(events):
        held += step
        most = max(most, held)
    assert most <= 2


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_waiter_that_dies_or_is_interrupted_blocks_no_one(tmp_path: Path, sig: int) -> None:
    folder = tmp_path / "q"
    held = Budget(str(folder), 1).take()
    first = _start(folder, "first")
    _until(lambda: len(_tickets(folder)) == 1)
    second = _start(folder, "second")
    _until(lambda: len(_tickets(folder)) == 2)
    assert first.stdout is not None
    assert json.loads(first.stdout.readline())["ahead"] == 0
    first.send_signal(sig)  # Ctrl-C while waiting: KeyboardInterrupt in the wait
    first.communicate(timeout=20)
    if sig == signal.SIGINT:
        _until(lambda: len(_tickets(folder)) == 1)  # its own ticket went with it
    held.release()
    lines = _lines(second)
    assert any("got" in r for r in lines)
    assert [r["ahead"] for r in lines if "ahead" in r][-1] is None
    assert _tickets(folder) == []  # the killed one's ticket was swept


def test_a_dead_holder_frees_its_slot(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    holder = _start(folder, "holder", hold=600)
    assert holder.stdout is not None
    assert "got" in json.loads(holder.stdout.readline())
    assert Budget(str(folder), 1).try_take() is None
    holder.kill()
    holder.communicate(timeout=20)
    lease = Budget(str(folder), 1).try_take()
    assert lease is not None
    lease.release()


def test_a_filler_never_takes_a_slot_a_waiter_is_owed(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    budget = Budget(str(folder), 1)
    held = budget.take()
    waiter = _start(folder, "waiter")
    _until(lambda: len(_tickets(folder)) == 1)
    held.release()
    assert budget.try_take() is None  # free or not, the waiter came first
    assert any("got" in r for r in _lines(waiter))
    ahead = budget.try_take()
    assert ahead is not None  # nobody waits now
    ahead.release()


def test_the_queue_folder_is_shared_by_every_user(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    old = os.umask(0o077)
    try:
        lease = Budget(str(folder), 2).take()
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o1777
    slots = [p for p in folder.iterdir() if p.name.startswith("slot-")]
    assert slots and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in slots)
    lease.release()


def test_a_path_that_is_not_a_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "q").write_text("")
    with pytest.raises(ConfigurationError, match="LLMSCRIPT_SANDBOX_QUEUE"):
        Budget(str(tmp_path / "q"), 1)


def test_queue_folders_are_per_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSCRIPT_SANDBOX_QUEUE", str(tmp_path))
    one, two = queue_folder("unix:///var/run/docker.sock"), queue_folder("tcp://h:2376")
    assert one != two and os.path.dirname(one) == str(tmp_path)


def test_the_default_size_follows_cores_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert default_size(2, 24000, 416) == 8  # cores bound it: 4 per core
    assert default_size(64, 4096, 416) == 4  # memory bounds it: half of 4 GB / 480 MB
    assert default_size(1, 512, 416) == 2  # never below two
    assert configured_size(8) == 8
    monkeypatch.setenv(BUDGET_ENV, "3")
    assert configured_size(8) == 3
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(ConfigurationError, match=BUDGET_ENV):
        configured_size(8)


def test_a_queue_folder_that_cannot_be_made_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="set LLMSCRIPT_SANDBOX_QUEUE to a folder"):
        Budget(str(tmp_path / "file" / "q"), 1)
