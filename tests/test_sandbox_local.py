"""The local (subprocess) sandbox: weaker, but the same limits and result shape."""

from __future__ import annotations

import socket
import time

import pytest

from llmscript_magic._sandbox import Limits, get_sandbox, run
from llmscript_magic._sandbox.local import WARNING, LocalSandbox

FAST = Limits(timeout=5)


@pytest.fixture(scope="module")
def local() -> LocalSandbox:
    sandbox = get_sandbox("local")
    assert isinstance(sandbox, LocalSandbox)
    return sandbox


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


def test_timeout_kills_the_process_group(local: LocalSandbox) -> None:
    code = ("import signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "subprocess.Popen(['sleep', '876543'])\ntime.sleep(600)\n")
    start = time.monotonic()
    r = local.run(code, limits=Limits(timeout=2))
    assert r.status == "timeout" and r.reason == "Stopped at the 2 s time limit"
    assert time.monotonic() - start < 2 + 2.5
    import subprocess

    assert "sleep 876543" not in subprocess.run(["ps", "-eo", "args"], capture_output=True,
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


def test_figure_is_captured(local: LocalSandbox) -> None:
    r = local.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])", limits=Limits(timeout=60))
    assert r.status == "ok", r.stderr
    assert len(r.figures) == 1 and r.figures[0].startswith(b"\x89PNG")
