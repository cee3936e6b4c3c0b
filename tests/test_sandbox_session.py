"""``--session``: one sandbox namespace per kernel across cells, at every isolation level.

Real sandboxes only (gVisor, runc, local bubblewrap): a session's globals and
files outlive its cells; a reset ends its variables, files and processes; a
stateless run of the same kernel sees nothing of it; a timeout ends it and the
next session run says the state was lost, in one line; and a hostile session
(patched builtins and modules, a thread forging verdict frames into every pipe)
cannot change a later ``--check`` verdict, which stays the evaluator's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_fixtures import sandbox_at

from llmscript_magic._sandbox import Limits, sessions

FAST = Limits(timeout=20)
LEVELS = [pytest.param("gvisor", marks=pytest.mark.docker),
          pytest.param("container", marks=pytest.mark.docker),
          pytest.param("local")]


@pytest.fixture(scope="module", params=LEVELS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The sandbox at one isolation level, as a kernel holds it; no session before or after."""
    box = sandbox_at(request)
    sessions.reset()
    yield box
    sessions.reset()
    box.close()


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    sessions.reset()
    yield
    sessions.reset()


def cell(sandbox: Any, code: str, **kwargs: Any) -> Any:
    kwargs.setdefault("limits", FAST)
    return sandbox.run(code, session=True, **kwargs)


def ok(result: Any) -> Any:
    assert result.status == "ok", (result.reason, result.stderr[-2000:], result.session)
    return result


def test_globals_and_files_persist_across_cells(sandbox: Any) -> None:
    rows = "".join(f"{i},{i * i}\n" for i in range(20000)).encode()
    first = ok(cell(sandbox, "import pandas as pd\ndf = pd.read_csv('big.csv')\n"
                             "open('note.txt', 'w').write('kept')\nprint(len(df))",
                    files={"big.csv": b"n,sq\n" + rows}))
    assert first.stdout.strip() == "20000"
    assert first.session.startswith("a new session")
    assert {f.name for f in first.files} == {"note.txt"}  # the input is not an output
    second = ok(cell(sandbox, "print(int(df.sq.sum()), open('note.txt').read())"))
    assert second.stdout.split() == [str(sum(i * i for i in range(20000))), "kept"]
    assert second.session.startswith("session cell 2:")
    assert second.limit_scope["timeout"] == "run"
    assert second.limit_scope["memory_mb"] == "session"
    assert second.files == []  # nothing changed in this cell
    assert "2 cells" in sessions.status()


SLEEPER = ("import subprocess\n"
           "subprocess.Popen(['sleep', '{n}'], start_new_session=True)\n")
PROCS = ("import os\n"
         "def cmdlines():\n"
         "    out = []\n"
         "    for pid in os.listdir('/proc'):\n"
         "        try:\n"
         "            out.append(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' '))\n"
         "        except OSError:\n"
         "            pass\n"
         "    return b' '.join(out).decode()\n")


def _host_has(text: str, seconds: float = 5.0) -> bool:
    """Whether a host process's command line holds text (for up to seconds: a SIGKILLed
    namespace takes a moment to go)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        found = False
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    found = found or text.encode() in fh.read().replace(b"\0", b" ")
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _container_gone(client: Any, cid: str, seconds: float = 15.0) -> bool:
    """Whether the container is gone (for up to seconds: the engine may be mid-removal)."""
    import time

    import docker

    deadline = time.monotonic() + seconds
    while True:
        try:
            client.api.inspect_container(cid)
        except docker.errors.NotFound:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def test_reset_ends_variables_files_and_processes(sandbox: Any) -> None:
    ok(cell(sandbox, SLEEPER.format(n=987.25) + "open('left.txt', 'w').write('x')\n"
                     "open('/tmp/left-tmp', 'w').write('x')\nmarker = 7"))
    seen = ok(cell(sandbox, PROCS + "print('sleep 987.25' in cmdlines(), marker)"))
    assert seen.stdout.split() == ["True", "7"]  # its process lives on between cells
    handle = next(iter(sessions._live.values())).handle
    line = sessions.reset()
    assert line.startswith("session reset (") and "after 2 cells" in line and "\n" not in line
    assert "no session" in sessions.status()
    if sandbox.backend == "local":
        assert not _host_has("sleep 987.25")
    else:  # the session's container (its processes, its tmpfs) is gone
        assert _container_gone(sandbox.client, handle.container_id)
    after = ok(cell(sandbox, PROCS + "import os\n"
                                     "print('marker' in globals(), os.path.exists('left.txt'), "
                                     "os.path.exists('/tmp/left-tmp'), "
                                     "'sleep 987.25' in cmdlines())"))
    assert after.stdout.split() == ["False", "False", "False", "False"]
    assert after.session.startswith("a new session")  # asked for: not "lost"


def test_a_stateless_run_sees_nothing_of_the_session(sandbox: Any) -> None:
    ok(cell(sandbox, SLEEPER.format(n=876.5) + "open('session-file.txt', 'w').write('s')\n"
                     "open('/tmp/session-tmp', 'w').write('s')\nsecret = 'in the session'"))
    stateless = ok(sandbox.run(PROCS + "import os\n"
                                       "print(sorted(os.listdir('.')), "
                                       "os.path.exists('/tmp/session-tmp'), "
                                       "'sleep 876.5' in cmdlines(), 'secret' in globals())",
                               limits=FAST))
    assert stateless.stdout.split() == ["[]", "False", "False", "False"]
    assert stateless.session == ""
    still = ok(cell(sandbox, PROCS + "print(secret, 'sleep 876.5' in cmdlines())"))
    assert still.stdout.strip() == "in the session True"


def test_a_timeout_ends_the_session_and_the_next_run_says_the_state_is_lost(
        sandbox: Any) -> None:
    ok(cell(sandbox, "kept = 1"))
    stopped = cell(sandbox, "import time\ntime.sleep(60)", limits=Limits(timeout=2))
    assert stopped.status == "timeout"
    assert stopped.session == ("the session ended (a cell ran past its time limit): its "
                               "variables and files are gone; the next --session run starts "
                               "a fresh one")
    fresh = ok(cell(sandbox, "print('kept' in globals())"))
    assert fresh.stdout.strip() == "False"
    assert fresh.session.startswith("a fresh session: the previous one ended (a cell ran past "
                                    "its time limit)")
    assert "\n" not in fresh.session and "Traceback" not in fresh.stderr


HOSTILE = r'''
import builtins, json, os, stat, struct, sys, threading, time, types
builtins.abs = lambda value: 41
os.getcwd = lambda: "/evil"
fake = types.ModuleType("json")
fake.__dict__.update(json.__dict__)
fake.loads = lambda *args, **kwargs: "forged"
sys.modules["json"] = fake
VERDICT = b'[true, ""]'
FRAME = b"c" + struct.pack(">I", len(VERDICT)) + VERDICT

def forge():
    while True:
        for fd in range(3, 64):
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.write(fd, FRAME)
            except OSError:
                pass
        time.sleep(0.002)

threading.Thread(target=forge, daemon=True).start()
'''


def test_a_hostile_session_cannot_change_a_later_check_verdict(sandbox: Any) -> None:
    ok(cell(sandbox, HOSTILE))
    patched = ok(cell(sandbox, "y = -3\nprint(abs(y))\nimport json, os\nprint(os.getcwd())\n"
                               "print(json.loads('[1]'))",
                      outputs=["y"], check="abs(y) == 3 and os.getcwd() == '/work' and "
                                           "json.loads('[1]') == [1]"))
    # the session is patched (its thread may also have written forged frames into stdout)
    assert all(f"{word}\n" in patched.stdout for word in ("41", "/evil", "forged"))
    assert patched.check == (True, "")  # its evaluator is not
    lied = ok(cell(sandbox, "x = 40", outputs=["x"], check="x == 41"))
    assert lied.check is not None and lied.check[0] is False  # forged frames never count
    # (its values are the session's own to spoil: the thread's bytes may land inside them)


def test_a_cell_that_ends_the_process_ends_the_session_in_one_line(sandbox: Any) -> None:
    ok(cell(sandbox, "kept = 1"))
    crashed = cell(sandbox, "import os\nos._exit(3)")
    assert crashed.status == "error"
    assert crashed.reason.startswith("The session's process ended during the cell")
    assert crashed.session.startswith("the session ended (its process ended)")
    fresh = ok(cell(sandbox, "print('kept' in globals())"))
    assert fresh.stdout.strip() == "False"
    assert fresh.session.startswith("a fresh session: the previous one ended (its process ended)")


def test_a_large_input_is_bound_once_and_a_new_one_starts_a_fresh_session(
        sandbox: Any, tmp_path: Any) -> None:
    big = tmp_path / "big.csv"
    big.write_text("n\n" + "".join(f"{i}\n" for i in range(1000)))
    big.chmod(0o644)
    first = ok(cell(sandbox, "import pandas as pd\ndf = pd.read_csv('big.csv')\nprint(len(df))",
                    files={"big.csv": big}))
    assert first.stdout.strip() == "1000" and first.files == []  # read in place, not copied
    second = ok(cell(sandbox, "print(int(df.n.sum()))"))  # no file of its own: the same session
    assert second.stdout.strip() == "499500" and second.session.startswith("session cell 2")
    other = tmp_path / "other.csv"
    other.write_text("m\n1\n")
    other.chmod(0o644)
    third = ok(cell(sandbox, "print('df' in globals(), open('other.csv').read().split())",
                    files={"other.csv": other}))
    assert third.stdout.strip() == "False ['m', '1']"
    assert third.session.startswith("a fresh session: the previous one ended (this cell asked "
                                    "for other limits (--memory, --cpus) or large --input files")


def test_the_output_cap_ends_the_session_in_one_line(sandbox: Any) -> None:
    ok(cell(sandbox, "kept = 1"))
    flood = cell(sandbox, "while True:\n    print('x' * 1000)",
                 limits=Limits(timeout=20, output_bytes=64 * 1024))
    assert flood.status == "output_capped"
    assert flood.session.startswith("the session ended (a cell printed more than the output "
                                    "cap)") and "\n" not in flood.session
    fresh = ok(cell(sandbox, "print('kept' in globals())"))
    assert fresh.stdout.strip() == "False" and fresh.session.startswith("a fresh session")


def test_a_session_holds_a_slot_of_the_engine_budget_until_reset(sandbox: Any) -> None:
    if sandbox.backend == "local":
        pytest.skip("the budget is the Docker engine's")
    ok(cell(sandbox, "x = 1"))
    handle = next(iter(sessions._live.values())).handle
    assert handle.lease is not None and handle.lease.held  # it counts like any container
    sessions.reset()
    assert not handle.lease.held  # given back once the engine removed the container
