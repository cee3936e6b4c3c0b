"""One sandbox per kernel: a run's neighbours are the same kernel's earlier runs.

Each hostile run below is followed by an ordinary probe run on the same sandbox
(the same container, when the hostile run left it fit for another run), under
every isolation level: gVisor, plain containers (runc) and the local
bubblewrap backend. Whatever the hostile run did, the probe's output, files and
``--check`` verdict must be what they are on a fresh sandbox.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sandbox_fixtures import LEVELS, sandbox_at

from llmscript_magic._sandbox import Limits

FAST = Limits(timeout=10)
pytestmark = pytest.mark.docker

#: What a run sees of its neighbours: processes of other uids but root (the
#: supervisor), files in the scratch folders, its uid, rlimits, environment,
#: builtins and modules, and a check's verdict over its values.
PROBE = r'''
import builtins, json, math, os, resource, signal, socket, sys
others = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            st = os.stat(f"/proc/{pid}")
        except OSError:
            continue
        if st.st_uid not in (0, os.getuid(), os.getuid() + 1):  # its own check evaluator
            others.append(int(pid))
def listing(folder):
    try:
        ours = (".llmscript", ".config", ".mpl-", "llmscript-local-")  # harness, this run's
        return sorted(n for n in os.listdir(folder) if not n.startswith(ours))
    except OSError:
        return []
rl = {n: resource.getrlimit(getattr(resource, n))
      for n in ("RLIMIT_NOFILE", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_NPROC")}
print(json.dumps({
    "host": socket.gethostname(), "uid": os.getuid(), "others": others,
    "work": listing("."), "tmp": listing("/tmp"), "shm": listing("/dev/shm"),
    "env": sorted(k for k in os.environ if k.startswith("EVIL")),
    "rlimits": {k: list(v) for k, v in rl.items()},
    "print": builtins.print.__module__, "sqrt": math.sqrt(16.0), "sum": sum([1, 2]),
    "json": json.dumps([1]), "mods": sorted(m for m in sys.modules if m.startswith("evil")),
    "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
}))
x = 41
'''


@pytest.fixture(scope="module", params=LEVELS)
def sandbox(request: pytest.FixtureRequest) -> Any:
    """The sandbox at one isolation level, as a kernel holds it for all its runs."""
    return sandbox_at(request)


def probe(sandbox: Any, **kwargs: Any) -> dict[str, Any]:
    """An ordinary run: what it sees, and its check's verdict (x == 41 passes)."""
    r = sandbox.run(PROBE, limits=FAST, outputs=["x"], check="x == 41", **kwargs)
    assert r.status == "ok", (r.reason, r.stderr[-2000:])
    assert r.check == (True, ""), r.check
    assert [v.name for v in r.values] == ["x"]
    seen = json.loads(r.stdout)
    assert seen["others"] == [], f"processes of other runs are still there: {seen['others']}"
    assert seen["work"] == [] and seen["tmp"] == [] and seen["shm"] == [], seen
    assert seen["env"] == [] and seen["mods"] == [], seen
    assert (seen["print"], seen["sqrt"], seen["sum"], seen["json"]) == ("builtins", 4.0, 3, "[1]")
    assert seen["sigterm"] is True, seen
    return seen


@pytest.fixture(scope="module")
def baseline(sandbox: Any) -> dict[str, Any]:
    """What the probe sees on this sandbox before any hostile run."""
    return probe(sandbox)


def after(sandbox: Any, baseline: dict[str, Any], hostile: str,
          limits: Limits = FAST) -> tuple[Any, dict[str, Any]]:
    """Run hostile code, then the probe; the probe sees what the baseline saw."""
    attack = sandbox.run(hostile, limits=limits)
    seen = probe(sandbox)
    if sandbox.backend == "local":  # its process cap counts this host's processes at the start
        seen["rlimits"].pop("RLIMIT_NPROC")
        baseline = {**baseline, "rlimits": {k: v for k, v in baseline["rlimits"].items()
                                            if k != "RLIMIT_NPROC"}}
    assert seen["rlimits"] == baseline["rlimits"], (seen["rlimits"], baseline["rlimits"])
    if sandbox.backend == "docker":
        assert seen["uid"] != baseline["uid"] and seen["uid"] not in (0, 65534)
    return attack, seen


def test_runs_reuse_one_container_under_uids_of_their_own(sandbox: Any,
                                                          baseline: dict[str, Any]) -> None:
    first, second = probe(sandbox), probe(sandbox)
    if sandbox.backend == "docker":
        assert first["host"] == second["host"], "two quiet runs should share the container"
        assert len({baseline["uid"], first["uid"], second["uid"]}) == 3
        r = sandbox.run("print(1)", limits=FAST)
        assert r.limit_scope["timeout"] == "run" and r.limit_scope["disk_mb"] == "container"


RANDOM = """
import random
try:
    import numpy
    drawn = numpy.random.random()
except ImportError:
    drawn = None
print(random.random(), drawn)
"""


def test_each_run_draws_random_numbers_of_its_own(sandbox: Any,
                                                  baseline: dict[str, Any]) -> None:
    """Runs forked from one warm interpreter must not repeat each other's random numbers."""
    runs = [sandbox.run(RANDOM, limits=FAST) for _ in range(3)]
    assert all(r.status == "ok" for r in runs), [r.stderr for r in runs]
    drawn = [r.stdout.split() for r in runs]
    for column in zip(*drawn, strict=True):
        if "None" not in column:
            assert len(set(column)) == len(column), drawn


DAEMON = r'''
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.2)  # its own run ends first: the next run is the target
        for _ in range(200):
            for path in ("/work/late.txt", "/tmp/late.txt", "/dev/shm/late.txt"):
                try:
                    open(path, "w").write("still here")
                except OSError:
                    pass
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) != os.getpid():
                    try:
                        os.kill(int(pid), 9)
                    except OSError:
                        pass
            time.sleep(0.02)
    os._exit(0)
print("left a daemon")
'''


def test_a_daemon_does_not_reach_the_next_run(sandbox: Any, baseline: dict[str, Any]) -> None:
    attack, _ = after(sandbox, baseline, DAEMON)
    # Under bubblewrap its kills reach its own supervisor (its uid's), so its own run fails
    assert attack.status == "ok" or sandbox.backend == "local"
    time.sleep(0.5)  # the daemon, were it alive, would have written and killed by now
    probe(sandbox)


SCRATCH = r'''
import os
for folder in ("/tmp", "/dev/shm", "/work"):
    open(os.path.join(folder, "planted.txt"), "w").write("from an earlier run")
    deep = os.path.join(folder, "deep", "er")
    os.makedirs(deep)
    open(os.path.join(deep, "x"), "w").write("x")
    os.chmod(deep, 0o500)
    os.chmod(os.path.join(folder, "deep"), 0o000)
os.symlink("/etc/passwd", "/tmp/link")
os.mkfifo("/tmp/fifo")
print("planted")
'''


def test_scratch_files_do_not_reach_the_next_run(sandbox: Any, baseline: dict[str, Any]) -> None:
    attack, seen = after(sandbox, baseline, SCRATCH)
    assert attack.status == "ok", attack.stderr
    assert "planted.txt" in {f.name for f in attack.files}
    if sandbox.backend == "docker":  # cleaned, not replaced: the same container goes on
        assert seen["host"] == probe(sandbox)["host"]


PATCH = r'''
import builtins, json, math, os, resource, signal, sys, types
builtins.print = lambda *a, **k: None
builtins.sum = lambda *a, **k: 99
math.sqrt = lambda v: -1
json.dumps = lambda *a, **k: "forged"
sys.modules["evil"] = types.ModuleType("evil")
os.environ["EVIL"] = "1"
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for name, value in (("RLIMIT_NOFILE", 16), ("RLIMIT_STACK", 2**20), ("RLIMIT_NPROC", 3)):
    which = getattr(resource, name)
    resource.setrlimit(which, (value, value))
try:
    import pandas
    pandas.DataFrame.sum = lambda *a, **k: 99
except ImportError:
    pass
'''


def test_patched_modules_builtins_rlimits_and_env_stay_in_their_run(
        sandbox: Any, baseline: dict[str, Any]) -> None:
    attack, _ = after(sandbox, baseline, PATCH)
    assert attack.status == "ok", attack.stderr
    r = sandbox.run("import pandas\nprint(int(pandas.DataFrame({'a': [1, 2]}).sum()['a']))",
                    limits=FAST)
    assert (r.status, r.stdout) == ("ok", "3\n"), r.stderr


def test_a_check_cannot_be_forged_for_the_next_run(sandbox: Any,
                                                   baseline: dict[str, Any]) -> None:
    forger = ("import builtins\nbuiltins.eval = lambda *a, **k: True\n"
              "builtins.bool = lambda *a: True\nx = 1\n")
    sandbox.run(forger, limits=FAST, outputs=["x"], check="x == 2")
    r = sandbox.run("x = 1", limits=FAST, outputs=["x"], check="x == 2")
    assert r.status == "ok" and r.check is not None and r.check[0] is False, r.check


def test_exhausting_memory_leaves_the_next_run_whole(sandbox: Any,
                                                     baseline: dict[str, Any]) -> None:
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(2**24))\n"
    attack, _ = after(sandbox, baseline, hog)
    assert attack.status == "memory", (attack.status, attack.reason)
    r = sandbox.run("b = bytearray(100 * 2**20)\nprint(len(b) // 2**20)",
                    limits=FAST)
    assert (r.status, r.stdout) == ("ok", "100\n"), (r.reason, r.stderr[-500:])


def test_signals_and_traces_do_not_reach_the_next_run(sandbox: Any,
                                                      baseline: dict[str, Any]) -> None:
    tracer = r'''
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
denied = 0
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), signal.SIGSTOP)
        except OSError:
            denied += 1
        if libc.ptrace(16, int(pid), 0, 0) != 0:  # PTRACE_ATTACH
            denied += 1
print("denied", denied)
'''
    attack, _ = after(sandbox, baseline, tracer)
    # Under bubblewrap it can stop the namespace's own init (its uid's) and so its own run
    assert attack.status == "ok" or sandbox.backend == "local", attack.stderr


KERNEL = r'''
import os, signal, sys, threading, time
from llmscript_magic._sandbox import Limits, get_sandbox
from llmscript_magic._sandbox.image import owner_id
sandbox = get_sandbox("docker", isolation=sys.argv[1])
code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
        "print('running', flush=True)\ntime.sleep(600)\n")
threading.Thread(target=sandbox.run, args=(code,), kwargs={"limits": Limits(timeout=300)},
                 daemon=True).start()
print(owner_id(), flush=True)
time.sleep(4)  # the run is under way
os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("isolation", ["gvisor", "container"])
def test_a_kernel_killed_mid_run_leaves_nothing_running(isolation: str, docker_client: Any,
                                                        tmp_path: Any) -> None:
    """Issue 22: the container's life is its owner's; nothing waits for the run's 300 s."""
    import subprocess
    import sys

    from llmscript_magic._sandbox.engine import gvisor_problem
    from llmscript_magic._sandbox.image import LABEL, OWNER_LABEL

    if isolation == "gvisor" and gvisor_problem(docker_client) is not None:
        pytest.skip("no gVisor")
    script = tmp_path / "kernel.py"
    script.write_text(KERNEL)
    proc = subprocess.run([sys.executable, str(script), isolation], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    owner = proc.stdout.split()[0]

    def theirs() -> list[Any]:
        rows = docker_client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
        return [row for row in rows if (row.get("Labels") or {}).get(OWNER_LABEL) == owner]

    deadline = time.monotonic() + 8
    while theirs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert theirs() == [], "a killed kernel's sandbox kept running"
