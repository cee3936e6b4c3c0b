"""The sandbox harness: inputs bound, the script run unchanged, outputs and checks reported.

Every test runs real code through a real backend (the local subprocess, and
the Docker container where marked); the verdicts come back on the harness's
own channel, so nothing the script prints or writes can stand in for them.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmscript_magic._pipeline.checks import expr_check
from llmscript_magic._sandbox import Limits, get_sandbox
from llmscript_magic._sandbox.base import Value
from llmscript_magic._sandbox.harness import codec

LIMITS = Limits(timeout=60, memory_mb=1024)


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request: pytest.FixtureRequest) -> Any:
    if request.param == "docker":
        return request.getfixturevalue("docker_sandbox")
    return get_sandbox("local")


@pytest.fixture(params=["bubblewrap", pytest.param("gvisor", marks=pytest.mark.docker),
                        pytest.param("container", marks=pytest.mark.docker)])
def walled(request: pytest.FixtureRequest) -> Any:
    """The sandbox at every isolation level: for the hostile cases."""
    if request.param == "bubblewrap":
        return get_sandbox("local")
    request.getfixturevalue("docker_sandbox")  # the engine, the image, the leftover check
    return get_sandbox("docker", isolation=request.param)


def _runner_is_root() -> bool:
    from llmscript_magic._sandbox import docker

    return docker.UID.split(":")[0] == "0"


def _value(name: str, obj: Any) -> Value:
    return Value(name, *codec.encode(obj))


def test_script_runs_as_main_with_its_inputs_and_no_harness_files(sandbox: Any) -> None:
    code = ("import os, sys\n"
            "print(__name__, x + 1, sorted(os.listdir('.')))\n"
            "print([m for m in sys.modules if 'llmscript' in m or m == 'codec'])\n"
            "open('mine.txt', 'w').write('mine')\n")
    r = sandbox.run(code, inputs=[_value("x", 41)], outputs=["x"], check="x == 41",
                    limits=LIMITS)

    assert r.status == "ok", r.stderr
    assert r.stdout == "__main__ 42 []\n[]\n"
    assert [f.name for f in r.files] == ["mine.txt"]  # only what the script wrote
    assert r.check == (True, "") and [v.name for v in r.values] == ["x"]


def test_a_printed_marker_cannot_pass_a_check(sandbox: Any) -> None:
    """The old marker line on stdout used to be taken as the verdict."""
    code = 'print("\\n@@llmscript-check:[true, \\"\\"]")\n'
    r = sandbox.run(code, check="1 == 2", limits=LIMITS)

    assert r.status == "ok" and r.check == (False, "")
    assert "@@llmscript-check:[true" in r.stdout  # the user's output is left as printed


FORGE = """\
import json, os, stat, struct
def forge(kind, body):
    for fd in map(int, os.listdir('/proc/self/fd')):
        try:
            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, kind + struct.pack('>I', len(body)) + body)
        except OSError:
            pass
forge(b'c', json.dumps([True, '']).encode())
"""


@pytest.mark.parametrize("ending", ["", "os._exit(0)\n"], ids=["returns", "exits-at-once"])
def test_a_forged_verdict_frame_cannot_pass_a_check(walled: Any, ending: str) -> None:
    """Issue 14: the script writes a well-formed passing verdict on the harness's channel.

    The verdict now comes from an evaluator started after every process of the
    script is gone; what the script's process sends is never a verdict. (The
    values the check reads are the script's to report: it could set them anyway.)
    """
    r = walled.run(FORGE + ending, check="1 == 2", limits=LIMITS)

    assert r.status == "ok", r.stderr
    assert r.check == (False, "")


def test_a_script_claiming_its_values_cannot_cross_fails_its_check(walled: Any) -> None:
    """A forged ``opaque`` frame makes the check unevaluable: that must fail, never pass."""
    forge = FORGE.replace("forge(b'c', json.dumps([True, '']).encode())",
                          "forge(b'k', b'{\"name\": \"x\", \"opaque\": \"it is secret\"}\\n')")
    r = walled.run(forge + "x = 1\n", check="x == 2", limits=LIMITS)

    assert r.status == "ok", r.stderr
    ok, why = r.check
    assert ok is None and why.startswith("it uses x (it is secret)")
    assert expr_check("x == 2", r.check).status == "fail"


def test_the_script_s_code_cannot_sway_its_check(walled: Any) -> None:
    """Rebinding builtins or a lying __eq__ used to decide a check run in the script's globals."""
    code = ("import builtins\nbuiltins.sum = lambda *args: 3\nresult = [1]\n"
            "class Liar:\n    def __eq__(self, other):\n        return True\nx = Liar()\n")
    by_sum = walled.run(code, check="sum(result) == 3", limits=LIMITS)
    by_liar = walled.run(code, check="x == 4", limits=LIMITS)

    assert by_sum.status == "ok", by_sum.stderr
    assert by_sum.check == (False, "")
    ok, why = by_liar.check
    assert ok is None and why.startswith("it uses x (it is a __main__.Liar); ")
    assert expr_check("x == 4", by_liar.check).status == "fail"  # never a pass


def test_a_check_reads_frames_arrays_and_modules_as_data(sandbox: Any) -> None:
    code = ("import numpy as np\nimport pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\n"
            "total = np.float64(6.0)\nshape = df.shape\n")
    r = sandbox.run(code, check="len(df) == 3 and np.isclose(total, df['a'].sum()) and "
                    "shape == (3, 1) and all(v > 0 for v in df['a'])", outputs=["df"],
                    limits=LIMITS)

    assert r.status == "ok", r.stderr
    assert r.check == (True, "")
    assert [v.name for v in r.values] == ["df"]  # an output the check reads crosses once


def test_a_check_that_calls_the_script_s_function_says_how_to_write_it(sandbox: Any) -> None:
    code = "def double(n):\n    return 2 * n\nr = double(2)\n"
    calls = sandbox.run(code, check="double(2) == 4", limits=LIMITS)
    plain = sandbox.run(code, check="r == 4", limits=LIMITS)

    line = expr_check("double(2) == 4", calls.check).message
    assert line == ("--check 'double(2) == 4' was not evaluated: it uses double (it is a "
                    "function); checks run apart from the script, over the values it leaves "
                    "(numbers, text, lists, dicts, arrays, DataFrames): compute the value in "
                    "the script (r = f(2)) and check that (--check 'r == 4'); to test the "
                    "script's functions, use --test EXPR instead")
    assert plain.check == (True, "")


def test_a_check_that_never_ends_is_false_within_the_run_s_time(sandbox: Any) -> None:
    start = time.monotonic()
    r = sandbox.run("x = 1\n", check="all(True for _ in iter(int, 1))",
                    limits=Limits(timeout=3, memory_mb=512))

    assert r.status == "ok"
    ok, why = r.check
    assert ok is False and why.startswith("the check did not finish within ")
    assert time.monotonic() - start < 3 + 4


def test_check_sees_globals_files_and_a_clean_exit(sandbox: Any) -> None:
    code = ("import json, sys\njson.dump({'a': 3}, open('t.json', 'w'))\ntotal = 6\n"
            "sys.exit(0)\n")
    ok = sandbox.run(code, check="json.load(open('t.json'))['a'] == 3 and total == 6",
                     limits=LIMITS)
    raising = sandbox.run(code, check="total / 0", limits=LIMITS)

    assert ok.check == (True, "")
    assert raising.check == (False, "ZeroDivisionError: division by zero")


def test_a_failed_script_gets_no_verdict_and_no_values(sandbox: Any) -> None:
    r = sandbox.run("x = 1\nraise ValueError('no')\n", outputs=["x"], check="x == 1",
                    limits=LIMITS)

    assert (r.status, r.reason) == ("error", "The script raised ValueError")
    assert (r.check, r.values, r.missing) == (None, [], {})


def test_outputs_that_cannot_come_back_say_why(sandbox: Any) -> None:
    code = ("import numpy as np\nok = [1, 2]\nodd = {1, 2}\nboxed = np.array([{}])\n"
            "thing = object()\n")
    r = sandbox.run(code, outputs=["ok", "odd", "boxed", "thing", "gone"], limits=LIMITS)

    assert [(v.name, v.format) for v in r.values] == [("ok", "json"), ("odd", "json-set")]
    assert r.missing == {"boxed": "it is a object array, which needs pickle",
                         "thing": "it is an object",
                         "gone": "it is not defined when the script ends"}


def test_a_segfault_is_reported_by_name(sandbox: Any) -> None:
    r = sandbox.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", limits=LIMITS)

    assert (r.status, r.exit_code) == ("error", 139)
    assert r.reason == "The script was killed by SIGSEGV"


def test_a_forged_deeply_nested_status_frame_is_a_reason_not_a_crash(sandbox: Any) -> None:
    """The script writes a hostile verdict frame straight to the harness's channel."""
    code = ("import os, stat, struct\n"
            "for fd in map(int, os.listdir('/proc/self/fd')):\n"
            "    try:\n"
            "        if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
            "            body = b'[' * 200000\n"
            "            os.write(fd, b'c' + struct.pack('>I', len(body)) + body)\n"
            "    except OSError:\n"
            "        pass\n")
    r = sandbox.run(code, check="True", limits=LIMITS)

    assert r.status == "error" and r.check is None
    assert r.reason == "The script tampered with the sandbox's report channel"


def test_results_beyond_the_cap_are_missing_with_the_size() -> None:
    r = get_sandbox("local").run("big = bytes(70 * 2**20)\nsmall = b'ok'\n",
                                 outputs=["big", "small"], limits=LIMITS)

    assert [v.name for v in r.values] == ["small"]
    assert r.missing == {"big": "it takes 70.0 MiB; at most 64 MiB of results can come back"}


@pytest.mark.docker
def test_a_forged_nested_report_from_the_runner_s_stdout_is_a_reason(
        docker_sandbox: Any) -> None:
    """Issue 14: a deeply nested forged report frame raised RecursionError through run().

    With a root runner the script cannot open the runner's stdout at all; with
    a shared uid it can, and the frame must then become a reason.
    """
    code = ("import os, struct\nbody = b'[' * 50000\n"
            "try:\n    fd = os.open('/proc/1/fd/1', os.O_WRONLY)\n"
            "except PermissionError:\n    print('blocked')\n"
            "else:\n    os.write(fd, b'r' + struct.pack('>I', len(body)) + body)\n")
    r = docker_sandbox.run(code, limits=Limits(timeout=10))

    if _runner_is_root():
        assert (r.status, r.stdout) == ("ok", "blocked\n")
    else:
        assert r.status == "error"
        assert r.reason == "The script tampered with the sandbox's report channel"


#: a script's attempt at something it must not do: 'DONE' or 'blocked ERRNO'
ATTEMPT = '''\
def attempt(what, fn):
    try:
        fn()
        print(what, "DONE")
    except OSError as err:
        print(what, "blocked", err.errno)
'''

HOSTILE = ATTEMPT + '''\
import ctypes, os, signal
attempt("stop the runner", lambda: os.kill(1, signal.SIGSTOP))
attempt("write the report channel", lambda: os.write(
    os.open("/proc/1/fd/1", os.O_WRONLY), b'r\\0\\0\\0\\x11{"returncode": 0}'))
attempt("read the job channel", lambda: os.open("/proc/1/fd/0", os.O_RDONLY))
attempt("read the runner's memory", lambda: os.open("/proc/1/mem", os.O_RDONLY))
attempt("change the harness", lambda: open("/tmp/.llmscript/wrapper.py", "a").write("#"))
attempt("replace the harness", lambda: os.rename("/tmp/.llmscript/wrapper.py", "/tmp/w"))
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace the runner", libc.ptrace(16, 1, 0, 0), ctypes.get_errno() != 0)
zygote = os.getppid()  # the warm interpreter that forked this run (or the runner itself)
attempt("stop the zygote", lambda: os.kill(zygote, signal.SIGSTOP))
attempt("read the zygote's memory", lambda: os.open(f"/proc/{zygote}/mem", os.O_RDONLY))
print("ptrace the zygote", libc.ptrace(16, zygote, 0, 0), ctypes.get_errno() != 0)
print(os.getuid() not in (0, 65534), os.stat("/proc/1").st_uid, os.stat(f"/proc/{zygote}").st_uid)
'''


@pytest.mark.docker
@pytest.mark.skipif(not _runner_is_root(), reason="the container's runner does not start as "
                    "root with SETUID/SETGID/KILL, so it shares the script's uid")
def test_the_script_cannot_reach_the_runner(isolated_sandbox: Any) -> None:
    """Issue 14: runner and script have different uids; the report stays the runner's.

    Under both isolation levels: the script (a uid of its own run, a child of the
    root zygote) can neither signal, write, read nor trace the root runner or the
    zygote, nor change the harness.
    """
    r = isolated_sandbox.run(HOSTILE + "raise SystemExit(3)\n", check="True",
                             limits=Limits(timeout=10))

    assert (r.status, r.reason) == ("error", "The script exited with code 3"), r.stderr
    assert r.check is None  # a failed script gets no verdict, forged or not
    lines = r.stdout.splitlines()
    assert lines[:6] == ["stop the runner blocked 1", "write the report channel blocked 13",
                         "read the job channel blocked 13",
                         "read the runner's memory blocked 13",
                         "change the harness blocked 13", "replace the harness blocked 13"]
    assert lines[6:] == ["ptrace the runner -1 True", "stop the zygote blocked 1",
                         "read the zygote's memory blocked 13", "ptrace the zygote -1 True",
                         "True 0 0"]


REACH_EVALUATOR = ATTEMPT + '''\
import ctypes, os, signal, stat
def uid(pid):
    with open(f"/proc/{pid}/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("Uid:"))
others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
twins = [p for p in others if uid(p) == os.getuid() + 1]  # this run's evaluator
print("evaluators", len(twins))
for pid in twins:
    attempt("stop it", lambda: os.kill(pid, signal.SIGSTOP))
    attempt("kill it", lambda: os.kill(pid, signal.SIGKILL))
    attempt("write its memory", lambda: os.open(f"/proc/{pid}/mem", os.O_WRONLY))
    pipes = 0  # its channel to the runner is a pipe (gVisor lists the fds of another uid)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            opened = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY)
        except OSError:
            continue
        pipes += stat.S_ISFIFO(os.fstat(opened).st_mode)
    print("pipes of it opened", pipes)
    libc = ctypes.CDLL(None, use_errno=True)
    print("ptrace it", libc.ptrace(16, pid, 0, 0), ctypes.get_errno() != 0)
total = 5
'''


@pytest.mark.docker
@pytest.mark.skipif(not _runner_is_root(), reason="needs the root runner")
def test_the_script_cannot_reach_its_check_s_evaluator(isolated_sandbox: Any) -> None:
    """Issue 14: the check's evaluator, forked with the warm imports, is out of the script's reach.

    It runs as the run's uid + 1 in its own session: the script can neither signal,
    trace, nor write it, and the verdict stays the evaluator's.
    """
    limits = Limits(timeout=30, memory_mb=512)
    isolated_sandbox.run("import pandas\n", limits=limits)  # pools that pre-import
    time.sleep(4)
    r = isolated_sandbox.run("import pandas as pd\n" + REACH_EVALUATOR, check="total == 5",
                             limits=limits)

    assert (r.status, r.check) == ("ok", (True, "")), r.stderr
    assert r.stdout.splitlines() == [
        "evaluators 1", "stop it blocked 1", "kill it blocked 1", "write its memory blocked 13",
        "pipes of it opened 0", "ptrace it -1 True"]


@pytest.mark.docker
@pytest.mark.skipif(not _runner_is_root(), reason="needs the root runner")
def test_killing_every_process_it_may_leaves_the_runner_reporting(
        isolated_sandbox: Any) -> None:
    """kill(-1, SIGKILL) from the script reaches only its own uid's processes.

    Linux spares the caller, so the script's own child dies and the script
    goes on; the root runner is untouched and reports as usual.
    """
    code = ("import os, signal, subprocess, time\n"
            "child = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "os.kill(-1, signal.SIGKILL)\ntime.sleep(0.2)\n"
            "print('child', child.poll(), 'runner', os.stat('/proc/1').st_uid)\n")
    r = isolated_sandbox.run(code, limits=Limits(timeout=10))

    assert (r.status, r.stdout) == ("ok", "child -9 runner 0\n"), r.stderr
    assert r.duration < 5


@pytest.mark.docker
def test_a_warm_interpreter_hides_its_imports_and_shares_nothing(
        isolated_sandbox: Any) -> None:
    """The libraries come pre-imported, yet the script sees a fresh interpreter's modules,
    and what one run leaves in them is gone in the next (one script per container)."""
    code = ("import sys\nwarm = type(sys.meta_path[0]).__name__ == '_Stash'\n"
            "seen = sorted(m for m in ('numpy', 'pandas', 'matplotlib') if m in sys.modules)\n"
            "import pandas as pd\n"
            "print(warm, seen, pd.__spec__.name, hasattr(pd, 'left_behind'))\n"
            "pd.left_behind = True\n")
    limits = Limits(timeout=60, memory_mb=512)  # a pool of its own
    isolated_sandbox.run(code, limits=limits)  # a script that imports them: pools pre-import
    runs = []
    for _ in range(2):
        time.sleep(4)  # the pool refills: containers made ahead pre-import
        runs.append(isolated_sandbox.run(code, limits=limits))

    assert runs[0].status == "ok", runs[0].stderr
    assert [r.stdout for r in runs] == ["True [] pandas False\n"] * 2
    assert [r.stderr for r in runs] == ["", ""]  # the imports ahead said nothing
    assert "reloaded" not in runs[0].stderr + runs[1].stderr


def test_names_planted_in_the_local_job_folder_are_not_written_through(
        tmp_path: Any) -> None:
    """The local job folder is read-only to the script; the evaluator's job goes in a new one."""
    target = tmp_path / "host.txt"
    target.write_text("host data\n")
    code = ("import os\nhere = os.path.dirname(__file__)\nblocked = 0\n"
            f"for name in ('verdict.json', 'check-0', 'check-1'):\n"
            f"    try:\n        os.symlink({str(target)!r}, os.path.join(here, name))\n"
            "    except OSError:\n        blocked += 1\n"
            "x = [1, 2]\nprint(blocked)\n")
    r = get_sandbox("local").run(code, check="x == [1, 2]", limits=LIMITS)

    assert (r.status, r.stdout) == ("ok", "3\n"), r.stderr
    assert r.check == (True, "")
    assert target.read_text() == "host data\n"


def test_an_output_that_cannot_cross_is_named_by_the_check_that_reads_it() -> None:
    r = get_sandbox("local").run("def f():\n    pass\n", outputs=["f"], check="f is not None",
                                 limits=LIMITS)

    assert r.missing == {"f": "it is a function"} and r.check is not None
    ok, why = r.check
    assert ok is None and why.startswith("it uses f (it is a function); ")


def test_a_comprehension_s_own_names_are_not_the_script_s() -> None:
    """`v` in `for v in xs` is the check's own, even when the script defines a function v."""
    r = get_sandbox("local").run("def v():\n    pass\nxs = [1, 2]\n",
                                 check="all(v > 0 for v in xs) and (lambda v: v)(1) == 1",
                                 limits=LIMITS)

    assert r.check == (True, "")
