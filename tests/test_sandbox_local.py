"""The local (bubblewrap) sandbox: weaker, but the same limits and result shape; attacked."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from llmscript_magic._errors import ConfigurationError
from llmscript_magic._sandbox import SHARED, Limits, SandboxSpec, get_sandbox, run
from llmscript_magic._sandbox.local import WARNING, LocalSandbox

FAST = Limits(timeout=5)


@pytest.fixture(scope="module")
def local() -> LocalSandbox:
    sandbox = get_sandbox("local")
    assert isinstance(sandbox, LocalSandbox)
    return sandbox


def test_a_spec_is_one_sandbox_per_process_and_a_bad_one_is_one_line() -> None:
    """Equal specs get the same sandbox (its warm interpreter and pool are paid once);
    a spec that cannot be built says which option to drop, before anything starts."""
    first = SHARED.get(SandboxSpec("local"))
    assert SHARED.get(SandboxSpec(kind="local", isolation="auto")) is first
    assert first.run("print(6 * 7)").stdout == "42\n"
    with pytest.raises(ConfigurationError) as err:
        SHARED.get(SandboxSpec("local", isolation="gvisor"))
    assert str(err.value) == ("--isolation applies to the docker sandbox only: drop it or "
                              "use --sandbox docker")
    with pytest.raises(ConfigurationError, match="Unknown sandbox 'vm'"):
        SHARED.get(SandboxSpec("vm"))
    assert SHARED.get(SandboxSpec("local")) is first  # a refused spec left nothing behind


def test_result_is_labelled_weaker(local: LocalSandbox) -> None:
    r = local.run("print('hi')")
    assert (r.status, r.stdout, r.exit_code) == ("ok", "hi\n", 0)
    assert r.backend == "local" and r.warning == WARNING == local.warning
    assert "weaker isolation" in r.summary()["warning"]


def test_exit_code_and_stderr(local: LocalSandbox) -> None:
    r = run("import sys\nprint('oops', file=sys.stderr)\nsys.exit(4)", sandbox="local")
    assert (r.status, r.exit_code, r.stderr) == ("error", 4, "oops\n")


def test_environment_is_empty_of_host_secrets(local: LocalSandbox,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-secret")
    r = local.run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('HOME'))")
    assert "sk-test-secret" not in r.stdout and "ANTHROPIC_API_KEY" not in r.stdout
    assert "MPLBACKEND" in r.stdout


def _unique_sleep() -> str:
    """A sleep length no other test process on this machine uses, to find our leftovers by."""
    return str(random.randrange(10**8, 10**9))


def test_timeout_kills_the_process_group(local: LocalSandbox) -> None:
    mark = _unique_sleep()  # other Pythons run this suite at the same time
    code = ("import signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"subprocess.Popen(['sleep', '{mark}'])\ntime.sleep(600)\n")
    start = time.monotonic()
    r = local.run(code, limits=Limits(timeout=2))
    assert r.status == "timeout" and r.reason == "Stopped at the 2 s time limit"
    assert time.monotonic() - start < 2 + 2.5

    assert f"sleep {mark}" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                text=True).stdout


def test_endless_output_is_capped(local: LocalSandbox) -> None:
    r = local.run("while True:\n    print('z' * 500)", limits=Limits(output_bytes=100_000))
    assert r.status == "output_capped" and r.truncated
    assert r.stdout.endswith("[... output truncated at 100000 bytes ...]\n")
    assert len(r.stdout) < 100_000 + 100


def test_memory_hog_reports_memory(local: LocalSandbox) -> None:
    r = local.run("data = b'x' * (2 * 2**30)", limits=Limits(memory_mb=256))
    assert r.status == "memory" and "256 MB" in r.reason


def test_no_network_when_namespaces_work(local: LocalSandbox) -> None:
    if not local.network_isolated:
        pytest.skip("unshare -rn does not work here: the local sandbox has network access")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    r = local.run(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), "
                  "timeout=2)\n    print('connected')\nexcept OSError as e:\n"
                  "    print('blocked')\n", limits=FAST)
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()
    assert r.stdout == "blocked\n"


def test_files_in_and_out_without_following_links(local: LocalSandbox) -> None:
    code = ("import os\ndata = open('in.txt').read()\nos.makedirs('out')\n"
            "open('out/up.txt', 'w').write(data.upper())\n"
            "os.symlink('/etc/passwd', 'out/passwd')\n")
    r = local.run(code, files={"in.txt": b"abc"}, limits=FAST)
    assert r.status == "ok", r.stderr
    assert [(f.name, f.data) for f in r.files] == [("out/up.txt", b"ABC")]


def test_an_input_over_the_file_size_limit_is_refused_or_mounted(local: LocalSandbox,
                                                                 tmp_path: Path) -> None:
    """As bytes it would be written under the file size limit: refused in one line. As a
    file on disk it is bound read-only, at any size."""
    limits = Limits(timeout=20, file_bytes=2**20)
    with pytest.raises(ConfigurationError, match=r"^--input big.bin is 2.0 MiB, over the "
                       r"sandbox's 1 MiB file size limit; pass it as a path"):
        local.run("print(1)", files={"big.bin": b"x" * (2 * 2**20)}, limits=limits)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 * 2**20))
    r = local.run("import os\nprint(os.path.getsize('big.bin'))", files={"big.bin": big},
                  limits=limits)
    assert r.stdout == f"{2 * 2**20}\n", r.stderr


def test_figure_is_captured(local: LocalSandbox) -> None:
    r = local.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])", limits=Limits(timeout=60))
    assert r.status == "ok", r.stderr
    assert len(r.figures) == 1 and r.figures[0].startswith(b"\x89PNG")


# --- bubblewrap walls, attacked --------------------------------------------------------------


def test_runs_in_its_own_namespaces(local: LocalSandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-41\n")
    code = ("import os, socket\nprint(os.getuid(), socket.gethostname())\n"
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
            f"for p in ({str(secret)!r}, os.path.expanduser('~root'), '/home', '/etc/passwd'):\n"
            "    print(p, os.path.exists(p))\n")
    r = local.run(code, limits=FAST)
    assert r.status == "ok", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "65534 sandbox" and r.isolation == "bubblewrap"
    assert max(json.loads(lines[1])) < 10  # only the sandbox's own few processes
    assert "host-secret-41" not in r.stdout
    assert all(line.endswith("False") for line in lines[2:]), lines[2:]


def test_docker_socket_is_unreachable(local: LocalSandbox) -> None:
    if not any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock")):
        pytest.skip("no Docker socket on this host to attack")
    code = ("import socket\nfor p in ('/var/run/docker.sock', '/run/docker.sock'):\n"
            "    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p)\n"
            "        s.sendall(b'GET /version HTTP/1.0\\r\\n\\r\\n')\n"
            "        print('reached', s.recv(100))\n"
            "    except OSError as e:\n        print('blocked', type(e).__name__)\n")
    r = local.run(code, limits=FAST)
    assert r.stdout == "blocked FileNotFoundError\nblocked FileNotFoundError\n", r.stdout


def test_abstract_unix_socket_of_the_host_is_unreachable(local: LocalSandbox) -> None:
    name = f"\0llmscript-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(name)
    server.listen(1)
    try:
        r = local.run(f"import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
                      f"    s.connect({name!r})\n    print('connected')\n"
                      "except OSError as e:\n    print('blocked', type(e).__name__)\n",
                      limits=FAST)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()
    assert r.stdout == "blocked ConnectionRefusedError\n", r.stdout


def test_double_forked_setsid_child_does_not_outlive_the_run(local: LocalSandbox) -> None:
    mark = _unique_sleep()
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execvp('sleep', ['sleep', '{mark}'])\n    os._exit(0)\n"
            "time.sleep(0.5)\nprint('parent done')\n")
    r = local.run(code, limits=FAST)
    assert r.status == "ok" and r.stdout == "parent done\n", r.stderr
    assert r.duration < 4
    time.sleep(0.3)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"sleep {mark}" not in ps


def test_sparse_file_is_not_returned_and_the_cut_is_said(local: LocalSandbox) -> None:
    code = ("with open('sparse.bin', 'wb') as f:\n    f.truncate(256 * 2**20)\n"
            "open('small.txt', 'w').write('kept')\n")
    tracemalloc.start()
    r = local.run(code, limits=Limits(timeout=10, file_bytes=512 * 2**20, disk_mb=64))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.status == "ok", r.stderr
    assert [(f.name, f.data) for f in r.files] == [("small.txt", b"kept")]
    assert "output files cut: 1 file(s) over the 64 MB" in r.stderr
    assert peak < 32 * 2**20  # the 256 MiB of zeros were never read
    assert r.duration < 8


@pytest.mark.parametrize("folder", [".", "/tmp"])
def test_the_disk_limit_holds_in_the_work_dir_and_tmp(local: LocalSandbox, folder: str) -> None:
    """Issue 22: 192 MiB went to /tmp and to a 64 MiB work dir; now both are 64 MiB tmpfs."""
    code = (f"import os\nwritten = 0\ntry:\n    for i in range(12):\n"
            f"        with open(os.path.join({folder!r}, f'f{{i}}.bin'), 'wb') as fh:\n"
            "            fh.write(bytes(16 * 2**20))\n"
            "        written += 16\nexcept OSError as e:\n    print(written, e.errno)\n"
            "x = 1\n")
    r = local.run(code, limits=Limits(timeout=20, disk_mb=64, file_bytes=32 * 2**20),
                  check="x == 1")
    assert r.status == "ok", r.stderr
    written, errno = map(int, r.stdout.split())
    assert written <= 64 and errno == 28  # ENOSPC: nothing past the limit, host or not
    assert sum(f.size for f in r.files) <= 64 * 2**20 and r.check == (True, "")


def test_forged_figure_that_is_not_a_png_is_dropped(local: LocalSandbox) -> None:
    code = ("import os, struct\nfor fd in map(int, os.listdir('/proc/self/fd')):\n"
            "    if fd > 2:\n        try:\n"
            "            os.write(fd, b'f' + struct.pack('>I', 8) + b'NOTAPNG!')\n"
            "        except OSError:\n            pass\n")
    r = local.run(code, limits=FAST)
    assert r.figures == []


def test_missing_bubblewrap_names_the_package(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from llmscript_magic._errors import SandboxUnavailableError
    from llmscript_magic._sandbox import local as local_module

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    local_module.bubblewrap_problem.cache_clear()
    try:
        with pytest.raises(SandboxUnavailableError) as err:
            get_sandbox("local")
    finally:
        local_module.bubblewrap_problem.cache_clear()
    assert str(err.value) == local_module.INSTALL_HINT
    assert "apt-get install bubblewrap" in str(err.value) and "\n" not in str(err.value)
