"""Runs that import only the standard library fork from the container's lean interpreter.

The warm interpreter holds numpy and pandas, and matplotlib once a run plots (about 150 MB
of address space in all); under gVisor a fork pays for what it shares, so a function-sized
script (HumanEval, a class exercise) is forked from a second interpreter without them.
What decides is the host's reading of the code (``stdlib_only``); either interpreter runs
any script.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmscript_magic._sandbox import Limits, get_sandbox
from llmscript_magic._sandbox.docker import stdlib_only

ADDRESS_SPACE = ("for line in open('/proc/self/status'):\n"
                 "    if line.startswith('VmSize'):\n"
                 "        print(int(line.split()[1]) // 1024)\n")


@pytest.mark.parametrize(("code", "check", "lean"), [
    ("def add(a, b):\n    return a + b\nprint(add(2, 3))", None, True),
    ("import json, os.path\nfrom collections import Counter\nprint(Counter('aab'))", None, True),
    ("import json\nprint(1)", "json.dumps(1) == '1'", True),
    ("import pandas as pd\nprint(pd.__version__)", None, False),
    ("from numpy import array", None, False),
    ("print(1)", "__import__('numpy').zeros(1).size == 1", False),
    ("mod = __import__('pandas')", None, False),
    ("import importlib\nm = importlib.import_module('pandas')", None, False),
    ("exec('import pandas')", None, False),
    ("from . import sibling", None, False),
    ("import seaborn", None, False),
    ("def broken(:\n    pass", None, False),
])
def test_what_counts_as_the_standard_library_only(code: str, check: str | None,
                                                  lean: bool) -> None:
    assert stdlib_only(code, check) is lean


@pytest.mark.docker
def test_a_standard_library_run_is_forked_from_the_lean_interpreter(
        isolated_sandbox: Any) -> None:
    limits = Limits(timeout=20)
    isolated_sandbox.run("print(1)", limits=limits)
    time.sleep(3)  # both interpreters of the kernel's container are ready
    lean = isolated_sandbox.run(ADDRESS_SPACE, limits=limits, check="True")
    warm = isolated_sandbox.run(ADDRESS_SPACE + "_ = eval\n", limits=limits, check="True")
    assert lean.status == warm.status == "ok" and lean.check == warm.check == (True, "")
    assert int(lean.stdout) < 64 and int(warm.stdout) > 100, (lean.stdout, warm.stdout)
    # the warm one still serves what needs its libraries, in the same container
    df = isolated_sandbox.run("import pandas as pd\nprint(pd.DataFrame({'a': [1, 2]}).a.sum())",
                              limits=limits)
    assert df.status == "ok" and df.stdout == "3\n"


#: Whether matplotlib's code is in the run's address space, and whether the script sees it.
#: (Its name is split: a script that names it is read as one that plots.)
MAPPED = ("import sys\nname = 'matplot' + 'lib'\n"
          "print(any(name in line for line in open('/proc/self/maps')), name in sys.modules)\n"
          "_ = eval\n")  # eval: the warm interpreter, not the lean


@pytest.mark.docker
def test_the_warm_interpreter_takes_matplotlib_only_once_a_kernel_plots(
        isolated_sandbox: Any) -> None:
    """Until a run plots, forks of the warm interpreter do without matplotlib (cheaper under
    gVisor); the first plotting run has it imported there, later runs inherit it, still
    hidden from the script until it imports it, and the kernel's later containers start
    with it (their first plot does not wait for the import)."""
    sandbox = get_sandbox("docker", isolation=isolated_sandbox.isolation)  # nothing plotted
    try:
        def warm(limits: Limits) -> None:
            sandbox.run("print(1)", limits=limits)
            time.sleep(3)  # the container's warm interpreter is ready

        limits = Limits(timeout=30, pids=93)  # pools of their own
        warm(limits)
        before = sandbox.run(MAPPED, limits=limits)
        plot = sandbox.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n"
                           "print('drawn')", limits=limits)
        after = sandbox.run(MAPPED, limits=limits)
        later = Limits(timeout=30, pids=94)
        warm(later)
        fresh = sandbox.run(MAPPED, limits=later)
    finally:
        sandbox.close()
    assert before.stdout == "False False\n", before.stderr
    assert plot.status == "ok" and plot.stdout == "drawn\n" and len(plot.figures) == 1
    assert after.stdout == "True False\n", after.stderr
    assert fresh.stdout == "True False\n", fresh.stderr


@pytest.mark.docker
def test_a_used_up_container_is_replaced_by_one_started_while_it_served(
        isolated_sandbox: Any, docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container serves MAX_RUNS runs, then goes; its successor is started RENEW_AHEAD
    runs before that, so the run after the last one does not wait for a container to boot
    (about 1.2 s under gVisor)."""
    from datetime import datetime

    from llmscript_magic._sandbox import docker

    monkeypatch.setattr(docker, "MAX_RUNS", 8)  # as with 50, in fewer runs
    limits = Limits(timeout=30, pids=92)  # a pool of its own
    hosts, ended = [], []
    for _ in range(10):
        result = isolated_sandbox.run("import socket\nprint(socket.gethostname())",
                                      limits=limits)
        assert result.status == "ok", result.stderr
        hosts.append(result.stdout.strip())
        ended.append(time.time())
        time.sleep(0.5)  # between two cells
    first, successor = hosts[0], hosts[8]
    assert hosts[:8] == [first] * 8 and hosts[8:] == [successor] * 2 and successor != first
    started = docker_client.api.inspect_container(successor)["State"]["StartedAt"]
    started_at = datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00").timestamp()
    assert started_at < ended[7], "the successor was started only once the first had gone"
