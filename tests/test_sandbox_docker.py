"""The Docker sandbox against the real engine: normal runs and hostile code.

Every hostile script is actually run; each test checks both that the host was
not touched and that the user is told what happened (status + reason).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._errors import (
    ConfigurationError,
    ImageNotFoundError,
    SandboxUnavailableError,
)
from llmscript_magic._sandbox import Limits, get_sandbox

GRACE = 1.0 + 3.0 + 1.5  # inner SIGTERM->SIGKILL, host slack, scheduling noise
FAST = Limits(timeout=5)
pytestmark = pytest.mark.docker


def test_stdout_stderr_and_exit_code(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n"
                           "sys.exit(3)")
    assert (r.status, r.exit_code) == ("error", 3)
    assert r.stdout == "to out\n" and r.stderr == "to err\n"
    assert r.reason == "The script exited with code 3"
    assert r.backend == "docker" and r.image == "llmscript-sandbox:1"


def test_exception_shows_only_user_traceback(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("x = 1\nraise ValueError('bad value')\n")
    assert r.status == "error" and r.reason == "The script raised ValueError"
    assert "ValueError: bad value" in r.stderr and "runpy" not in r.stderr


def test_input_files_in_and_output_files_out(isolated_sandbox: Any) -> None:
    code = ("import pandas as pd, os\n"
            "df = pd.read_csv('sales.csv')\n"
            "os.makedirs('out', exist_ok=True)\n"
            "df.groupby('region').amount.sum().to_csv('out/summary.csv')\n"
            "print(len(df))\n")
    csv = b"region,amount\nnorth,10\nsouth,5\nnorth,7\n"
    r = isolated_sandbox.run(code, files={"sales.csv": csv, "notes/readme.txt": b"keep"})
    assert r.status == "ok", r.stderr
    assert r.stdout == "3\n"
    assert [f.name for f in r.files] == ["out/summary.csv"]  # unchanged inputs are not returned
    assert r.files[0].data == b"region,amount\nnorth,17\nsouth,5\n"
    assert r.files[0].size == len(r.files[0].data)


def test_changed_input_is_returned(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("open('a.txt', 'a').write('more')", files={"a.txt": b"some"})
    assert [(f.name, f.data) for f in r.files] == [("a.txt", b"somemore")]


def test_matplotlib_figure_comes_back_as_png(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n"
                           "plt.title('t')\nplt.show()\nplt.figure()\nplt.bar([1], [2])\n")
    assert r.status == "ok", r.stderr
    assert len(r.figures) == 2
    for png in r.figures:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (640, 480)
    assert "non-interactive" not in r.stderr


def test_no_matplotlib_import_means_no_figures(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import sys\nprint('matplotlib' in sys.modules)")
    assert r.stdout == "False\n" and r.figures == []


def test_numpy_and_pandas_are_available(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import numpy as np, pandas as pd\n"
                           "print(int(np.arange(5).sum()), pd.DataFrame({'a': [1, 2]}).a.sum())")
    assert (r.status, r.stdout) == ("ok", "10 3\n")


def test_runs_as_a_uid_of_its_own_without_capabilities(isolated_sandbox: Any) -> None:
    code = (  # NoNewPrivs through prctl: gVisor's status file lacks the line
        "import ctypes, os\nst = dict(l.split(':\\t') for l in open('/proc/self/status').read()"
        ".splitlines() if ':\\t' in l)\nprint(os.getuid(), os.getgid(), st['CapEff'].strip(),"
        " ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))")
    first, second = (isolated_sandbox.run(code).stdout.split() for _ in range(2))
    assert first[2:] == second[2:] == ["0000000000000000", "1"]
    assert first[0] == first[1] and second[0] == second[1]  # gid = uid
    assert len({first[0], second[0], "0", "65534"}) == 4  # never root, nobody, or the last run's


def test_environment_holds_no_host_secret(isolated_sandbox: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    r = isolated_sandbox.run(
        "import os\nprint(dict(os.environ))\n"
        "for p in ('/proc/1/environ', '/proc/self/environ'):\n"
        "    try: print(open(p, 'rb').read())\n"
        "    except OSError as e: print('denied', e)\n")
    assert r.status == "ok"
    assert "sk-test-secret" not in r.stdout and "HTTPS_PROXY" not in r.stdout
    assert "'HOME': '/tmp'" in r.stdout and "'MPLBACKEND': 'Agg'" in r.stdout


def test_fork_bomb_is_capped_by_pids_limit(isolated_sandbox: Any) -> None:
    code = ("import os, time\nn = 0\n"
            "for _ in range(100000):\n"
            "    try:\n        pid = os.fork()\n"
            "    except OSError as e:\n        print('fork refused after', n, flush=True)\n"
            "        break\n"
            "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
            "    n += 1\n")
    r = isolated_sandbox.run(code, limits=Limits(timeout=20, pids=64))
    assert r.duration < 15  # the sleeping children did not hold the run open
    if r.isolation == "gvisor" and r.status == "memory":
        return  # gVisor's processes cost more memory: the 256 MB cap stops the bomb first
    assert r.status == "ok", r.stderr
    refused_after = int(r.stdout.split()[-1])
    # the limit stopped it, not our loop bound (gVisor may let the 64th child start)
    assert 0 < refused_after <= 64


def test_exponential_fork_bomb_ends_on_time(isolated_sandbox: Any) -> None:
    code = ("import os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass\n")
    start = time.monotonic()
    r = isolated_sandbox.run(code, limits=Limits(timeout=4))
    assert time.monotonic() - start < 4 + GRACE
    # Each forked copy of the interpreter (with the image's libraries pre-imported, and
    # under gVisor its processes cost more) takes memory, so the memory cap may stop it first
    assert r.status in ("timeout", "memory"), r.reason
    assert isolated_sandbox.run("print('still fine')").stdout == "still fine\n"


def test_memory_hog_reports_memory(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("data = b'x' * (2 * 2**30)\nprint('allocated')",
                           limits=Limits(timeout=30, memory_mb=256))
    assert r.status == "memory", (r.status, r.stderr)
    assert "allocated" not in r.stdout
    assert "Ran out of memory (limit 256 MB)" in r.reason and "[sandbox]" in r.stderr


def test_cpu_spin_times_out_on_time(isolated_sandbox: Any) -> None:
    start = time.monotonic()
    r = isolated_sandbox.run("print('spinning', flush=True)\nwhile True:\n    pass\n",
                           limits=Limits(timeout=3))
    elapsed = time.monotonic() - start
    assert r.status == "timeout" and r.reason == "Stopped at the 3 s time limit"
    assert r.stdout == "spinning\n"  # output before the kill is kept
    assert 3 <= elapsed < 3 + GRACE


def test_sigterm_ignoring_sleeper_still_ends(isolated_sandbox: Any) -> None:
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ignoring', flush=True)\ntime.sleep(600)\n")
    start = time.monotonic()
    r = isolated_sandbox.run(code, limits=Limits(timeout=3))
    assert r.status == "timeout" and r.stdout == "ignoring\n"
    assert time.monotonic() - start < 3 + GRACE


def test_endless_stdout_is_capped_with_marker(isolated_sandbox: Any) -> None:
    cap = 2**20
    tracemalloc.start()
    r = isolated_sandbox.run("while True:\n    print('y' * 999)\n",
                           limits=Limits(timeout=20, output_bytes=cap))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.status == "output_capped" and r.truncated
    assert r.stdout.endswith(f"[... output truncated at {cap} bytes ...]\n")
    assert cap <= len(r.stdout) + len(r.stderr) < cap + 200
    # the host read a stream, never the whole flood (which runs to hundreds of MiB); the
    # bound leaves room for what the pool's other threads allocate meanwhile
    assert peak < 16 * cap
    assert r.duration < 10


def test_tcp_to_host_loopback_is_blocked(isolated_sandbox: Any) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), "
            "timeout=3)\n    print('connected')\nexcept OSError as e:\n"
            "    print('blocked', type(e).__name__)\n"
            "print(sorted(n for _, n in socket.if_nameindex()))\n")
    r = isolated_sandbox.run(code, limits=FAST)
    server.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing reached the listen queue
        server.accept()
    server.close()
    assert r.stdout.startswith("blocked ConnectionRefusedError"), r.stdout
    assert "['lo']" in r.stdout  # no interface but loopback


def test_dns_lookup_fails(isolated_sandbox: Any) -> None:
    code = ("import socket\ntry:\n    print(socket.getaddrinfo('example.com', 443))\n"
            "except OSError as e:\n    print('no dns', type(e).__name__)\n")
    r = isolated_sandbox.run(code, limits=FAST)
    assert r.stdout.startswith("no dns gaierror"), r.stdout


def test_writing_etc_fails(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("open('/etc/hacked', 'w').write('x')", limits=FAST)
    assert r.status == "error"
    # runc checks the read-only mount first, gVisor the owner (root) first
    assert ("Read-only file system" in r.stderr if r.isolation == "container"
            else "Permission denied" in r.stderr), r.stderr


def test_host_file_is_not_readable(isolated_sandbox: Any, host_canary: Path) -> None:
    secret = host_canary / "secret.txt"
    code = (f"import os\nfor p in ({str(secret)!r}, '/proc/1/root{secret}'):\n"
            "    try:\n        print(open(p).read())\n"
            "    except OSError as e:\n        print('unreadable', type(e).__name__)\n")
    r = isolated_sandbox.run(code, limits=FAST)
    assert "canary-secret" not in r.stdout
    assert r.stdout.count("unreadable ") == 2  # gVisor: /proc/1/root is PermissionError


def test_background_process_does_not_outlive_the_run(isolated_sandbox: Any, docker_client: Any,
                                                     wait_gone: Any) -> None:
    mark = str(random.randrange(10**7, 10**8))  # ours alone among the machine's processes
    code = ("import socket, subprocess\n"
            f"subprocess.Popen(['sleep', '{mark}1'], start_new_session=True)\n"
            f"subprocess.Popen(['sh', '-c', 'sleep {mark}2 &'], start_new_session=True)\n"
            "print(socket.gethostname())\n")
    r = isolated_sandbox.run(code, limits=FAST)
    assert r.status == "ok" and r.duration < 3
    assert wait_gone(docker_client, r.stdout.strip())
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"sleep {mark}" not in ps


def test_filling_the_disk_is_bounded(isolated_sandbox: Any) -> None:
    code = ("chunk = b'0' * 2**20\nwith open('big.bin', 'wb') as f:\n"
            "    for i in range(1000):\n        f.write(chunk)\n        f.flush()\n")
    r = isolated_sandbox.run(code, limits=Limits(timeout=20, disk_mb=16, memory_mb=256))
    assert r.status == "error" and r.reason == "The script raised OSError"
    assert "No space left on device" in r.stderr
    assert all(f.size <= 16 * 2**20 for f in r.files)


def test_single_file_size_limit(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("open('f', 'wb').write(b'0' * 3 * 2**20)",
                           limits=Limits(timeout=10, file_bytes=2**20))
    assert r.status == "error" and "File too large" in r.stderr
    assert all(f.size <= 2**20 for f in r.files)


def test_symlinks_in_output_are_not_followed(isolated_sandbox: Any) -> None:
    code = ("import os\nos.makedirs('out')\nos.symlink('/etc/passwd', 'out/passwd')\n"
            "os.symlink('/etc', 'out/etcdir')\n"
            "os.symlink('/proc/1/root/etc/shadow', 'shadow')\n"
            "try:\n    os.link('/etc/passwd', 'out/hard')\nexcept OSError as e:\n"
            "    print('no hardlink', type(e).__name__)\n"
            "open('out/real.txt', 'w').write('fine')\n")
    r = isolated_sandbox.run(code, limits=FAST)
    assert r.status == "ok", r.stderr
    assert [(f.name, f.data) for f in r.files] == [("out/real.txt", b"fine")]
    assert "no hardlink" in r.stdout


def test_setuid_root_fails(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import os\nos.setuid(0)", limits=FAST)
    assert r.status == "error" and "PermissionError" in r.stderr


def test_proc_kcore_gives_nothing(isolated_sandbox: Any) -> None:
    code = ("try:\n    data = open('/proc/kcore', 'rb').read(4096)\n"
            "    print('bytes', len(data))\n"
            "except OSError as e:\n    print('denied', type(e).__name__)\n")
    r = isolated_sandbox.run(code, limits=FAST)
    # Docker masks it (empty) or the kernel has none / refuses: never kernel memory.
    assert r.stdout == "bytes 0\n" or r.stdout.startswith("denied "), r.stdout


def test_keyboard_interrupt_removes_the_container(docker_client: Any) -> None:
    sandbox = get_sandbox("docker", pool_size=0)
    limits = Limits(timeout=30, pids=97)  # its own pool key: nothing pre-started

    _interrupted_run(sandbox, limits, 1.5)
    assert _with_pids(docker_client, 97) == []  # removed before run() let the interrupt through


def _interrupted_run(sandbox: Any, limits: Limits, after: float) -> None:
    """A long run that the user stops (KeyboardInterrupt) after seconds."""
    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        with pytest.raises(KeyboardInterrupt):
            sandbox.run("import time\ntime.sleep(60)", limits=limits)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_bad_input_name_is_a_configuration_error(isolated_sandbox: Any) -> None:
    with pytest.raises(ConfigurationError, match="plain relative path"):
        isolated_sandbox.run("print(1)", files={"../escape.txt": b"x"})


def test_an_input_over_the_file_size_limit_is_refused_in_one_line(isolated_sandbox: Any) -> None:
    """A file sent in the job is written in the sandbox under its file size limit: a larger
    one is refused before any run, in one line, not by a run that died mid-write (which said
    "engine not reachable"). On disk and on this machine, it is mounted at any size."""
    from llmscript_magic._sandbox.engine import engine_id

    limits = Limits(timeout=20, file_bytes=2**20)
    with pytest.raises(ConfigurationError) as err:
        isolated_sandbox.run("print(1)", files={"big.bin": b"x" * (2 * 2**20)}, limits=limits)
    assert str(err.value).startswith("--input big.bin is 2.0 MiB, over the sandbox's 1 MiB "
                                     "file size limit; ") and "\n" not in str(err.value)
    shared = Path(tempfile.mkdtemp(prefix="llmscript-big-"))  # a rootless engine's user
    shared.chmod(0o755)  # must reach it too (pytest's tmp_path is closed to others)
    big = shared / "big.bin"
    big.write_bytes(b"x" * (2 * 2**20))
    big.chmod(0o644)
    code = "import os\nprint(os.path.getsize('big.bin'))"
    if engine_id(isolated_sandbox.client).startswith("unix://"):
        assert isolated_sandbox.run(code, files={"big.bin": big}, limits=limits
                                    ).stdout == f"{2 * 2**20}\n"
    else:  # an engine on another machine cannot mount it, and says so
        with pytest.raises(ConfigurationError, match="on another machine"):
            isolated_sandbox.run(code, files={"big.bin": big}, limits=limits)
    shutil.rmtree(shared)


def test_missing_image_is_reported(docker_client: Any) -> None:
    with pytest.raises(ImageNotFoundError) as err:
        get_sandbox("docker", image="llmscript-sandbox:does-not-exist")
    assert str(err.value) == ("Sandbox image llmscript-sandbox:does-not-exist is not built: "
                              "run `llmscript sandbox build`")


def test_available_modules_lists_the_image(docker_client: Any) -> None:
    from llmscript_magic._sandbox import available_modules

    mods = available_modules()
    assert {"numpy", "pandas", "matplotlib", "json", "sys"} <= mods
    assert "docker" not in mods and "anthropic" not in mods


@pytest.mark.docker
def test_unreachable_engine_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    monkeypatch.setenv("LLMSCRIPT_ALLOW_PLAIN_TCP", "1")  # past the plain-TCP refusal
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    msg = str(err.value)
    assert msg.startswith("Docker engine not reachable (")
    assert msg.endswith(", or use --sandbox local") and "scripts/" not in msg
    assert "\n" not in msg


def test_a_socket_left_by_a_stopped_engine_is_one_line_and_leaks_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The engine stopped but its socket file is still there: every connection is refused.
    Said in one line, and no socket is left to the garbage collector (docker-py leaks the
    socket of a refused connection; pytest turns that ResourceWarning into an error)."""
    import gc
    import warnings

    with warnings.catch_warnings():  # what earlier tests left is not this test's to judge
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        gone.bind(str(path))  # the file stays, nobody listens
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    for _ in range(2):  # a second attempt (the run after the warm-up) is no different
        with pytest.raises(SandboxUnavailableError) as err:
            get_sandbox("docker")
        msg = str(err.value)
        assert msg.startswith(f"Docker engine not reachable (unix://{path}: ")
        assert "refused" in msg.lower() and "\n" not in msg
    gc.collect()


def test_unknown_backend_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Unknown sandbox 'vm'"):
        get_sandbox("vm")


def test_import_does_not_load_docker() -> None:
    code = ("import sys, llmscript_magic, llmscript_magic._sandbox\n"
            "print(json.dumps('docker' in sys.modules))" ).replace("import sys", "import sys, json")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}).stdout
    assert json.loads(out) is False


@pytest.mark.parametrize("after", [0.03, 0.08, 0.15, 0.3, 0.6])
def test_an_early_interrupt_leaves_no_container(docker_client: Any, after: float) -> None:
    """Stop pressed while the container is still being created, attached or started: the
    engine may finish making it after our request was cut, and it is removed all the same."""
    sandbox = get_sandbox("docker", pool_size=0)
    limits = Limits(timeout=30, pids=96)  # its own pool key: nothing pre-started
    _interrupted_run(sandbox, limits, after)
    assert _with_pids(docker_client, 96) == []


def _with_pids(client: Any, pids: int) -> list[Any]:
    """Containers with this pids limit; ones removed while we look are skipped.

    Rootless Podman on cgroups v1 drops the limit (PidsLimit reads 0): there the
    runner's stand-in for it, RLIMIT_NPROC, is in the container's command.
    """
    import json

    import docker

    found = []
    for c in client.containers.list(all=True, sparse=True,
                                    filters={"label": "llmscript.sandbox=1"}):
        try:
            c.reload()
        except docker.errors.APIError:  # gone meanwhile (Podman may say 500 for it)
            continue
        try:  # the runner's config, the command's last argument
            nproc = json.loads((c.attrs["Config"]["Cmd"] or [""])[-1])["rlimits"].get("nproc")
        except (ValueError, TypeError, KeyError, AttributeError):
            nproc = None
        if c.attrs["HostConfig"]["PidsLimit"] in (pids + 16, pids * 10 + 256) or nproc == pids:
            found.append(c)  # runc, runsc, or the rlimit
    return found


@pytest.mark.parametrize(("ending", "pids"), [("exit", 91), ("sigkill", 92)])
def test_pool_does_not_outlive_the_interpreter(docker_client: Any, ending: str,
                                               pids: int) -> None:
    code = (
        "import os, signal, sys, time\n"
        "from llmscript_magic._sandbox import Limits, get_sandbox\n"
        "from llmscript_magic._sandbox.engine import connect\n"
        f"r = get_sandbox('docker').run('print(1)', limits=Limits(pids={pids}))\n"
        "assert r.stdout == '1\\n', r\n"
        "time.sleep(3)\n"
        "from typing import Any\n"
        + inspect.getsource(_with_pids) +
        f"warm = _with_pids(connect(), {pids})\n"  # the sandbox's client: TLS, ssh alike
        "print('warm', len(warm), flush=True)\n"
        "if sys.argv[1] == 'sigkill':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, ending], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "LLMSCRIPT_MAX_WARM": "64"})  # see below
    assert "warm 1" in proc.stdout, proc.stdout + proc.stderr  # the kernel's one container
    deadline = time.monotonic() + 15
    while _with_pids(docker_client, pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _with_pids(docker_client, pids) == []


def test_forged_runner_frames_are_bounded(isolated_sandbox: Any) -> None:
    from llmscript_magic._sandbox.docker import UID

    if UID.startswith("0:"):  # a root runner: the script cannot open its stdout at all
        r = isolated_sandbox.run("import os\nos.open('/proc/1/fd/1', os.O_WRONLY)\n",
                                 limits=FAST)
        assert (r.status, r.reason) == ("error", "The script raised PermissionError")
        return
    # The script writes straight to the runner's stdout, claiming a 2 GB figure.
    flood = ("import os, struct\nfd = os.open('/proc/1/fd/1', os.O_WRONLY)\n"
             "os.write(fd, b'f' + struct.pack('>I', 2**31))\n"
             "for _ in range(400):\n    os.write(fd, bytes(2**20))\n")
    tracemalloc.start()
    r = isolated_sandbox.run(flood, limits=Limits(timeout=20))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # gVisor relays the runner's stdout slower, so the time limit may come first there
    assert r.status == "output_capped" or (r.isolation, r.status) == ("gvisor", "timeout")
    assert r.figures == []
    assert peak < 160 * 2**20  # bounded well below the 400 MB sent
    forged = ("import os\nos.write(os.open('/proc/1/fd/1', os.O_WRONLY), "
              "b'r\\0\\0\\0\\x05hello')\n")
    r = isolated_sandbox.run(forged, limits=FAST)
    assert r.status == "error"
    assert r.reason == "The script tampered with the sandbox's report channel"


# --- isolation levels and our seccomp profile -----------------------------------------------

#: x86_64 numbers of every call our profile denies (the test checks the list is complete).
_SYSCALL_NR = {
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semget": 64, "semop": 65,
    "semtimedop": 220, "semctl": 66, "shmget": 29, "shmat": 30, "shmdt": 67, "shmctl": 31,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "mq_notify": 244, "mq_getsetattr": 245,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "add_key": 248,
    "keyctl": 250, "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_getfd": 438, "mount": 165, "umount2": 166, "mount_setattr": 442, "pivot_root": 155,
    "move_mount": 429, "fsopen": 430, "fsmount": 432, "fspick": 433, "fsconfig": 431,
    "open_tree": 428, "unshare": 272, "setns": 308, "chroot": 161, "kexec_load": 246,
    "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300,
    "fanotify_mark": 301, "quotactl": 179, "swapon": 167, "swapoff": 168, "reboot": 169,
    "acct": 163, "syslog": 103, "iopl": 172, "ioperm": 173, "lookup_dcookie": 212,
    "vhangup": 153, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305,
    "adjtimex": 159,
}


def test_result_says_which_isolation_ran(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import os\nprint(os.uname().release)", limits=FAST)
    assert r.status == "ok", r.reason
    assert r.isolation == isolated_sandbox.isolation
    assert r.summary()["isolation"] == r.isolation
    host_kernel = os.uname().release
    if r.isolation == "gvisor":
        assert r.stdout.strip() != host_kernel  # gVisor's own kernel answers, not the host's
    else:
        assert r.stdout.strip() == host_kernel


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
def test_every_denied_syscall_fails_inside(isolated_sandbox: Any) -> None:
    from llmscript_magic._sandbox.docker import DENIED_SYSCALLS

    assert set(_SYSCALL_NR) == set(DENIED_SYSCALLS)
    code = ("import ctypes, errno, json\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"out = {{}}\nfor name, nr in {sorted(_SYSCALL_NR.items())!r} + [('getpid', 39)]:\n"
            "    ctypes.set_errno(0)\n    rc = libc.syscall(nr, 0, 0, 0, 0, 0, 0)\n"
            "    out[name] = [rc, errno.errorcode.get(ctypes.get_errno(), '')]\n"
            "print(json.dumps(out))\n")
    r = isolated_sandbox.run(code, limits=FAST)
    assert r.status == "ok", r.stderr
    seen = json.loads(r.stdout)
    assert seen.pop("getpid")[0] > 0  # the probe itself works: allowed calls go through
    allowed = {name: v for name, v in seen.items() if v[0] != -1 or v[1] not in ("EPERM",
                                                                                "ENOSYS")}
    assert allowed == {}, f"reached the kernel under {r.isolation}: {allowed}"


def test_ordinary_scripts_still_work(isolated_sandbox: Any) -> None:
    code = ("import concurrent.futures, multiprocessing, select, subprocess, threading\n"
            "import numpy as np, pandas as pd\nimport matplotlib.pyplot as plt\n"
            "df = pd.DataFrame({'a': np.arange(10)})\nplt.plot(df.a)\n"
            "with concurrent.futures.ThreadPoolExecutor(4) as ex:\n"
            "    print(sum(ex.map(lambda x: x * x, range(10))))\n"
            "print(subprocess.run(['echo', 'child'], capture_output=True, text=True)"
            ".stdout.strip())\n"
            "with multiprocessing.Pool(2) as pool:\n    print(sum(pool.map(abs, [-1, -2])))\n"
            "print(select.select([], [], [], 0.01), int(df.a.sum()))\n")
    r = isolated_sandbox.run(code, limits=Limits(timeout=60))
    assert r.status == "ok", r.stderr
    assert r.stdout.split("\n")[:4] == ["285", "child", "3", "([], [], []) 45"]
    assert len(r.figures) == 1 and r.figures[0].startswith(b"\x89PNG")


def test_proc_does_not_tell_the_host_boot_line(isolated_sandbox: Any) -> None:
    code = ("for p in ('/proc/cmdline', '/proc/modules', '/proc/version'):\n"
            "    try:\n        print(p, repr(open(p).read()))\n"
            "    except OSError as e:\n        print(p, 'denied', type(e).__name__)\n")
    r = isolated_sandbox.run(code, limits=FAST)
    assert r.status == "ok", r.stderr
    host = Path("/proc/cmdline").read_text().strip()
    assert host and host not in r.stdout
    assert Path("/proc/version").read_text().strip() not in r.stdout


def test_seccomp_profile_ships_with_the_package() -> None:
    import importlib.resources

    from llmscript_magic._sandbox.docker import DENIED_SYSCALLS, seccomp_profile

    data = importlib.resources.files("llmscript_magic._sandbox").joinpath("seccomp.json")
    profile = json.loads(data.read_text())
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for n in rule["names"]}
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert {"read", "write", "clone", "futex", "pselect6"} <= allowed
    assert allowed.isdisjoint(DENIED_SYSCALLS)
    gvisor = json.loads(seccomp_profile(True))
    assert gvisor["syscalls"] == [{"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO"}]


def test_every_container_gets_our_profile_and_masks(isolated_sandbox: Any,
                                                    docker_client: Any) -> None:
    from llmscript_magic._sandbox.docker import seccomp_profile
    from llmscript_magic._sandbox.image import OWNER_LABEL, owner_id

    r = isolated_sandbox.run("print(1)", limits=FAST)
    gvisor = r.isolation == "gvisor"
    deadline = time.monotonic() + 20
    warm: list[Any] = []
    while not warm and time.monotonic() < deadline:
        time.sleep(0.2)
        warm = [c for c in _inspect_all(docker_client, f"{OWNER_LABEL}={owner_id()}")
                if (c.attrs["HostConfig"].get("Runtime") == "runsc") == gvisor]
    assert warm, "the pool holds no container for this isolation level"
    for c in warm:
        opts = c.attrs["HostConfig"]["SecurityOpt"]
        assert "no-new-privileges" in opts and "seccomp=" + seccomp_profile(gvisor) in opts
        assert "/proc/cmdline" in c.attrs["HostConfig"]["MaskedPaths"]


def _inspect_all(client: Any, label: str) -> list[Any]:
    """Inspect each running container with `label`, skipping any the pool removes meanwhile."""
    import docker.errors

    found = []
    for sparse in client.containers.list(sparse=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):  # gone (Podman may say 500)
            found.append(client.containers.get(sparse.id))
    return found


def test_unknown_isolation_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Unknown isolation 'vm': use auto"):
        get_sandbox("docker", isolation="vm")
    with pytest.raises(ConfigurationError, match="applies to the docker sandbox only"):
        get_sandbox("local", isolation="gvisor")


# --- hostile files on the way back ----------------------------------------------------------


def test_sparse_file_over_the_budget_is_cut_not_hung(isolated_sandbox: Any) -> None:
    code = ("with open('sparse.bin', 'wb') as f:\n    f.truncate(256 * 2**20)\n"
            "open('small.txt', 'w').write('kept')\n")
    tracemalloc.start()
    start = time.monotonic()
    r = isolated_sandbox.run(code, limits=Limits(timeout=10, file_bytes=512 * 2**20))
    elapsed = time.monotonic() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.status == "ok", r.reason
    assert "sparse.bin" not in [f.name for f in r.files]
    assert "[sandbox] output files cut:" in r.stderr
    assert elapsed < 10 + GRACE and peak < 160 * 2**20


def test_hard_links_come_back_under_every_name(isolated_sandbox: Any) -> None:
    r = isolated_sandbox.run("import os\nopen('a.txt', 'w').write('same')\n"
                             "os.link('a.txt', 'b.txt')\n", limits=FAST)
    assert r.status == "ok", r.stderr
    assert [(f.name, f.data) for f in r.files] == [("a.txt", b"same"), ("b.txt", b"same")]


def test_file_growing_during_collection_is_a_result(isolated_sandbox: Any) -> None:
    code = ("import os, subprocess\n"
            "subprocess.Popen(['sh', '-c', 'while true; do head -c 65536 /dev/zero; done "
            ">> grow.bin'], start_new_session=True)\n"
            "import time\ntime.sleep(0.5)\n")
    start = time.monotonic()
    r = isolated_sandbox.run(code, limits=Limits(timeout=10))
    assert time.monotonic() - start < 10 + GRACE
    assert r.status in ("ok", "error"), r.reason  # a result either way, never an exception
    if "grow.bin" not in [f.name for f in r.files]:
        assert "[sandbox] output files cut:" in r.stderr


def test_too_many_files_are_cut_and_flagged(isolated_sandbox: Any) -> None:
    code = "import os\nfor i in range(10050):\n    open(f'f{i:05}', 'w').write('x')\n"
    r = isolated_sandbox.run(code, limits=Limits(timeout=60))
    assert r.status == "ok", r.reason
    assert len(r.files) == 10000
    assert "[sandbox] output files cut:" in r.stderr


# --- engine faults are not code faults ------------------------------------------------------


def _mine_with_pids(client: Any, pids: int) -> list[Any]:
    from llmscript_magic._sandbox.image import OWNER_LABEL, owner_id

    return [c for c in _with_pids(client, pids)
            if c.attrs["Config"]["Labels"].get(OWNER_LABEL) == owner_id()]


def test_lost_warm_container_is_replaced_transparently(docker_client: Any,
                                                       docker_leftover_check: None) -> None:
    sandbox = get_sandbox("docker")
    limits = Limits(timeout=10, pids=89)  # its own pool
    used = sandbox.run("import socket\nprint(socket.gethostname())", limits=limits).stdout

    def warm_ones() -> list[Any]:  # the kernel's one container, which served that run
        return [c for c in _mine_with_pids(docker_client, 89) if c.id.startswith(used.strip())]

    warm = warm_ones()
    assert len(warm) == 1
    for c in warm:  # what `docker rm -f` or a prune from another terminal does
        c.remove(force=True, v=True)
    r = sandbox.run("print('still here')", limits=limits)
    assert (r.status, r.stdout) == ("ok", "still here\n"), r.reason


def test_prune_removes_only_containers_whose_owner_is_gone(docker_client: Any,
                                                           docker_sandbox: Any) -> None:
    import socket as socket_module

    import docker

    from llmscript_magic._sandbox.image import LABEL, OWNER_LABEL, owner_id, prune
    from llmscript_magic._sandbox.pool import already_gone

    dead_owner = f"{socket_module.gethostname()}:999999999:1"
    made = {name: docker_client.containers.create(
        "llmscript-sandbox:1", ["sleep", "600"], labels={LABEL: "1", OWNER_LABEL: owner},
        network_mode="none") for name, owner in (("orphan", dead_owner), ("ours", owner_id()))}
    try:
        assert prune() >= 1
        with pytest.raises(docker.errors.APIError) as gone:
            docker_client.containers.get(made["orphan"].id)
        assert already_gone(gone.value)
        docker_client.containers.get(made["ours"].id)  # a live owner's container stays
        # and this process's own pool still serves runs
        assert docker_sandbox.run("print(1)", limits=Limits(pids=88)).stdout == "1\n"
    finally:
        for container in made.values():
            with contextlib.suppress(Exception):
                container.remove(force=True)


# --- a pool that follows demand, under a per-engine cap --------------------------------------


def _run_all(sandbox: Any, limits: Limits, threads: int, each: int) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(lambda _: sandbox.run("print(6 * 7)", limits=limits),
                           range(threads * each)))


def test_pool_grows_with_overlapping_runs_and_shrinks_when_quiet(
        docker_client: Any, docker_leftover_check: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from llmscript_magic._sandbox.docker import DockerSandbox
    from llmscript_magic._sandbox.engine import engine_id
    from llmscript_magic._sandbox.pool import warm_containers

    monkeypatch.setenv("LLMSCRIPT_POOL_IDLE", "6")
    sandbox = DockerSandbox(isolation="container")
    limits = Limits(timeout=10, pids=86)  # its own pool
    assert sandbox.run("pass", limits=limits).status == "ok"
    pool = sandbox._pool(limits)
    assert pool.target == 1  # quiet: the kernel's one container

    results = _run_all(sandbox, limits, threads=4, each=2)
    assert [r.stdout for r in results] == ["42\n"] * 8
    deadline, most = time.monotonic() + 20, 0  # four ran at once: it aims past that now
    while time.monotonic() < deadline and most < 3:
        most = max(most, pool.warm())
        time.sleep(0.1)
    assert most >= 3, "the pool did not grow past its base size"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and pool.warm() > 1:
        time.sleep(0.2)
    assert pool.warm() <= 1 and pool.target == 1  # quiet again: back to one
    assert warm_containers(engine_id(docker_client)) >= pool.warm()


def test_the_engine_budget_bounds_one_kernels_pools(docker_client: Any,
                                                   docker_leftover_check: None,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """A budget of one: a second limit set waits for the first's idle container, never for
    ever (a kernel does not wait on itself), and the two pools never hold two at once."""
    from llmscript_magic._sandbox.docker import DockerSandbox
    from llmscript_magic._sandbox.engine import engine_id
    from llmscript_magic._sandbox.pool import close_pools

    close_pools(engine_id(docker_client))  # earlier tests' pools were made under no budget
    monkeypatch.setenv("LLMSCRIPT_SANDBOX_BUDGET", "1")
    monkeypatch.setenv("LLMSCRIPT_SANDBOX_QUEUE", str(tmp_path))
    sandbox = DockerSandbox(isolation="container")
    first, second = Limits(timeout=10, pids=85), Limits(timeout=10, pids=84)  # two pools
    assert sandbox.run("print(1)", limits=first).stdout == "1\n"
    assert sandbox.run("print(2)", limits=second).stdout == "2\n"
    seen = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        seen = max(seen, sandbox._pool(first).warm() + sandbox._pool(second).warm())
        time.sleep(0.1)
    assert seen <= 1  # not 1 per pool
    assert sandbox.run("print(3)", limits=first).stdout == "3\n"
    close_pools(engine_id(docker_client))
