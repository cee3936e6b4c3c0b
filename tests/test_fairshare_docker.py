"""The engine-wide sandbox budget with real kernels-like processes on the real engine.

Each "kernel" is its own Python process with its own warm pool, as a Jupyter
kernel is; a thread samples the engine's list of sandbox containers (the
project's label) while they run, and only the containers those kernels made
count, since other work shares the engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_widgets import wv  # noqa: F401  (the widget view's fixture)

from llmscript_magic._sandbox.image import LABEL, OWNER_LABEL

pytestmark = pytest.mark.docker

# One kernel: says who it is, runs RUNS small scripts (saying "n ahead" while it waits; each
# takes SLOW seconds), reports, then stays idle HOLD seconds with its warm container.
KERNEL = r"""
import json, sys, time
from llmscript_magic._sandbox import run
from llmscript_magic._sandbox.fairshare import reporting
from llmscript_magic._sandbox.image import owner_id
runs, hold, slow = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
say = lambda **kw: print(json.dumps(kw), flush=True)
say(owner=owner_id())
results = []
with reporting(lambda n: say(ahead=n)):
    for n in range(runs):
        say(running=n)
        r = run(f"import time; time.sleep({slow}); print({n} * 7)", isolation="container")
        results.append(r.status == "ok" and r.stdout == f"{n * 7}\n")
        say(ran=n, ok=results[-1], at=time.monotonic())
say(done=all(results))
time.sleep(hold)
"""


@pytest.fixture
def budget_of(tmp_path: Path, docker_client: Any) -> Iterator[dict[str, str]]:
    """The environment of kernels sharing a budget in a queue folder of this test's own."""
    yield {**os.environ, "LLMSCRIPT_SANDBOX_QUEUE": str(tmp_path),
           "LLMSCRIPT_SANDBOX_BUDGET": "2", "LLMSCRIPT_POOL_IDLE": "30"}


class Sampler(threading.Thread):
    """The engine's sandbox containers, by owner, every tenth of a second."""

    def __init__(self, client: Any) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.samples: list[list[str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rows = self.client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
            self.samples.append([(r.get("Labels") or {}).get(OWNER_LABEL, "") for r in rows])
            time.sleep(0.1)

    def most(self, owners: set[str]) -> int:
        return max((sum(1 for o in s if o in owners) for s in self.samples), default=0)

    def left(self, owners: set[str]) -> int:
        rows = self.client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
        return sum(1 for r in rows if (r.get("Labels") or {}).get(OWNER_LABEL) in owners)


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_kernel_left() -> Iterator[None]:
    """A failed test's kernels are killed, not left holding the engine."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _kernel(env: dict[str, str], runs: int, hold: float = 0.0,
            slow: float = 0.0) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", KERNEL, str(runs), str(hold), str(slow)],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started.append(proc)
    return proc


def _report(proc: subprocess.Popen[str], timeout: float = 240) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode in (0, -signal.SIGKILL, -signal.SIGINT), err[-2000:]
    return [json.loads(line) for line in out.splitlines()]


def _read_until(proc: subprocess.Popen[str], key: str,
                lines: list[dict[str, Any]]) -> dict[str, Any]:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, f"the kernel ended before it said {key}"
        lines.append(json.loads(line))
        if key in lines[-1]:
            return lines[-1]


def _gone(sampler: Sampler, owners: set[str], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while sampler.left(owners) and time.monotonic() < deadline:
        time.sleep(0.3)
    return sampler.left(owners) == 0


def test_six_kernels_share_a_budget_of_two(docker_client: Any,
                                           budget_of: dict[str, str]) -> None:
    """Every run ok, never more than two containers, kernels told how many are ahead."""
    sampler = Sampler(docker_client)
    sampler.start()
    try:
        # each run takes a second, so kernels queue however fast their starts are
        procs = [_kernel(budget_of, 3, slow=1.0) for _ in range(6)]
        reports = [_report(p) for p in procs]
    finally:
        sampler.stop.set()
        sampler.join()
    owners = {r["owner"] for lines in reports for r in lines if "owner" in r}
    assert len(owners) == 6
    assert all(any(r.get("done") is True for r in lines) for lines in reports), reports
    assert sum(1 for lines in reports for r in lines if r.get("ok")) == 18
    assert 1 <= sampler.most(owners) <= 2
    told = [r["ahead"] for lines in reports for r in lines if "ahead" in r]
    assert any(n is not None and n >= 1 for n in told)  # someone waited behind another
    assert _gone(sampler, owners)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_waiter_does_not_block_the_others(docker_client: Any,
                                                   budget_of: dict[str, str], sig: int) -> None:
    env = {**budget_of, "LLMSCRIPT_SANDBOX_BUDGET": "1"}
    sampler = Sampler(docker_client)
    sampler.start()
    holder = _kernel(env, 1, slow=12)  # busy: the others must wait for it
    held: list[dict[str, Any]] = []
    _read_until(holder, "running", held)
    deadline = time.monotonic() + 60
    while not sampler.left({held[0]["owner"]}):  # it has its container (and the slot)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    waiter = _kernel(env, 1)
    lines: list[dict[str, Any]] = []
    assert _read_until(waiter, "ahead", lines)["ahead"] == 0
    behind = _kernel(env, 1)
    behind_lines: list[dict[str, Any]] = []
    assert _read_until(behind, "ahead", behind_lines)["ahead"] == 1
    waiter.send_signal(sig)
    waiter_lines = lines + _report(waiter)
    assert not any("ran" in r for r in waiter_lines)  # it never got a sandbox
    after = behind_lines + _report(behind)
    holder_lines = held + _report(holder)
    sampler.stop.set()
    sampler.join()
    assert any(r.get("done") is True for r in after), after
    owners = {r["owner"] for r in waiter_lines + after + holder_lines if "owner" in r}
    assert sampler.most(owners) <= 1
    assert _gone(sampler, owners)
    assert not list(Path(env["LLMSCRIPT_SANDBOX_QUEUE"]).glob("*/t-*"))  # no ticket left


def test_an_idle_kernel_gives_its_container_to_a_waiter(docker_client: Any,
                                                        budget_of: dict[str, str]) -> None:
    """An idle holder keeps its container while nobody waits, and gives it up in seconds
    once someone does, long before the idle release (and while it still runs)."""
    env = {**budget_of, "LLMSCRIPT_SANDBOX_BUDGET": "1"}
    sampler = Sampler(docker_client)
    sampler.start()
    holder = _kernel(env, 1, hold=120)
    held: list[dict[str, Any]] = []
    _read_until(holder, "done", held)
    owner = held[0]["owner"]
    time.sleep(4)  # idle, nobody waiting: its container stays warm
    assert sampler.left({owner}) == 1
    start = time.monotonic()
    waiter = _kernel(env, 1)
    lines: list[dict[str, Any]] = []
    ran = _read_until(waiter, "ran", lines)
    waited = ran["at"] - start
    assert ran["ok"] and holder.poll() is None  # the holder is still there, idle
    assert waited < 15, f"the waiter got its sandbox after {waited:.1f} s"
    assert any(r.get("ahead") == 0 for r in lines)
    lines += _report(waiter)
    holder.kill()
    _report(holder)
    sampler.stop.set()
    sampler.join()
    owners = {owner} | {r["owner"] for r in lines if "owner" in r}
    assert sampler.most(owners) <= 1
    assert _gone(sampler, owners)


# A kernel with a --session: its first cell keeps a variable, then it idles until told to
# run a second cell, and says what that cell found and the session's line.
SESSION_KERNEL = r"""
import json, sys
from llmscript_magic._sandbox import get_sandbox
from llmscript_magic._sandbox.image import owner_id
box = get_sandbox("docker", isolation="container")
say = lambda **kw: print(json.dumps(kw), flush=True)
say(owner=owner_id())
r = box.run("rows = list(range(5))", session=True)
say(first=r.status, session=r.session)
sys.stdin.readline()
r = box.run("print(len(globals().get('rows', [])))", session=True)
say(second=r.status, out=r.stdout, session=r.session)
"""


def test_an_idle_session_gives_its_container_to_a_waiter_and_says_so(
        docker_client: Any, budget_of: dict[str, str]) -> None:
    """A session holds a slot like any container; idle while another kernel waits, it
    ends (its data is lost, and its next cell says why) rather than make anyone wait
    forever."""
    env = {**budget_of, "LLMSCRIPT_SANDBOX_BUDGET": "1", "LLMSCRIPT_SESSION_YIELD": "2"}
    holder = subprocess.Popen([sys.executable, "-c", SESSION_KERNEL], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _started.append(holder)
    held: list[dict[str, Any]] = []
    first = _read_until(holder, "first", held)
    assert first["first"] == "ok" and first["session"].startswith("a new session")
    start = time.monotonic()
    waiter = _kernel(env, 1)
    watchdog = threading.Timer(60, waiter.kill)  # a waiter left waiting fails, never hangs
    watchdog.start()
    lines: list[dict[str, Any]] = []
    ran = _read_until(waiter, "ran", lines)
    watchdog.cancel()
    assert ran["ok"] and ran["at"] - start < 30, ran
    lines += _report(waiter)
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    second = _read_until(holder, "second", held)
    assert second["second"] == "ok" and second["out"] == "0\n"  # a fresh session
    assert second["session"].startswith(
        "a fresh session: the previous one ended (it was idle while other kernels waited "
        "for a sandbox)")
    _report(holder)


@pytest.fixture
def held_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                docker_client: Any) -> Iterator[Any]:
    """A budget of one whose slot another kernel holds; it gives it back a second after
    someone queues for it (however long the run takes to get there under load)."""
    from llmscript_magic._sandbox.engine import engine_id
    from llmscript_magic._sandbox.fairshare import Budget, queue_folder
    from llmscript_magic._sandbox.pool import close_pools

    monkeypatch.setenv("LLMSCRIPT_SANDBOX_BUDGET", "1")
    monkeypatch.setenv("LLMSCRIPT_SANDBOX_QUEUE", str(tmp_path))
    close_pools(engine_id(docker_client))  # pools made before took no budget
    budget = Budget(queue_folder(engine_id(docker_client)), 1)
    lease = budget.take()
    done = threading.Event()

    def give_back() -> None:
        deadline = time.monotonic() + 120
        while not budget.waiting() and not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        done.wait(1.0)  # the waiter has said "0 ahead" by now
        lease.release()

    giver = threading.Thread(target=give_back, daemon=True)
    giver.start()
    yield lease
    done.set()
    giver.join()
    lease.release()
    close_pools(engine_id(docker_client))


SPEC_REPLY = "Here you go:\n\n```python\nprint(6 * 7)\n```\n"


def test_the_text_output_says_how_many_are_ahead(ip: Any, fake: Any, held_budget: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake.enqueue(SPEC_REPLY)
    res = ip.run_cell("%%generate --model fake:fake --no-insert --run --isolation container\n"
                      "Print six times seven.")
    assert res.success, res.error_in_exec
    out = capsys.readouterr().out
    assert "waiting for a sandbox (0 ahead)" in out
    assert "42" in out


def test_the_widget_says_how_many_are_ahead(ip: Any, wv: dict[str, Any], fake: Any,  # noqa: F811
                                            held_budget: Any) -> None:
    from test_widgets import updates

    fake.enqueue(SPEC_REPLY)
    res = ip.run_cell("%%generate --model fake:fake --no-insert --run --isolation container\n"
                      "Print six times seven.")
    assert res.success, res.error_in_exec
    statuses = updates(wv["view"].status, "value")
    assert any("waiting for a sandbox (0 ahead)" in s for s in statuses)
    assert "waiting for a sandbox" not in statuses[-1]  # its turn came; the result shows


def test_doctor_shows_the_budget_in_use(budget_of: dict[str, str], docker_client: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from llmscript_magic._sandbox.engine import engine_id
    from llmscript_magic._sandbox.fairshare import Budget, queue_folder

    env = {**budget_of, "LLMSCRIPT_SANDBOX_BUDGET": "3"}
    monkeypatch.setenv("LLMSCRIPT_SANDBOX_QUEUE", env["LLMSCRIPT_SANDBOX_QUEUE"])
    lease = Budget(queue_folder(engine_id(docker_client)), 3).take()  # another kernel's
    try:
        proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "doctor"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        lease.release()
    assert "✓ sandbox budget: 3 containers on this engine (LLMSCRIPT_SANDBOX_BUDGET), " \
           "1 in use, 0 kernels waiting" in proc.stdout, proc.stdout + proc.stderr
