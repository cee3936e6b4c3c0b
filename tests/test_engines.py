"""The sandbox on engines other than the local Docker daemon, each started here on loopback.

- a second dockerd behind mutual TLS (certificates made with openssl for this
  session) and, through an sshd on 127.0.0.1, over SSH as an unprivileged user;
- rootless Podman's Docker-compatible API socket, run by a throwaway user.

The image travels with `llmscript sandbox push` (save | load, no registry). The
hostile cases of test_sandbox_docker.py run unchanged against each engine; on
rootless Podman over cgroups v1 the memory and pids caps cannot be enforced,
and the tests assert that every result says so instead.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import test_sandbox_docker as suite
from engine_fixtures import (  # noqa: F401  (the *_fixture names register fixtures)
    PodmanEngine,
    TwoDoorEngine,
    make_certs,
    podman_engine_fixture,
    two_door_engine_fixture,
)

from llmscript_magic._errors import SandboxUnavailableError
from llmscript_magic._sandbox import DEFAULT_IMAGE, Limits, get_sandbox, shutdown

pytestmark = pytest.mark.docker

ENGINE_VARS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "LLMSCRIPT_ALLOW_PLAIN_TCP")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`llmscript ARGV` in this process: (exit code, stdout, stderr)."""
    from llmscript_magic._cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _use(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for var in ENGINE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)


def _use_tls(monkeypatch: pytest.MonkeyPatch, engine: TwoDoorEngine) -> None:
    _use(monkeypatch, DOCKER_HOST=engine.tls_url, DOCKER_TLS_VERIFY="1",
         DOCKER_CERT_PATH=str(engine.cert_dir))


def _use_ssh(monkeypatch: pytest.MonkeyPatch, engine: TwoDoorEngine) -> None:
    _use(monkeypatch, DOCKER_HOST=engine.ssh_url, HOME=str(engine.ssh_home))


@pytest.fixture(scope="session")
def tls_engine(two_door_engine: TwoDoorEngine) -> Iterator[TwoDoorEngine]:
    """The two-door engine with the image pushed to it over TLS by the CLI."""
    mp = pytest.MonkeyPatch()
    try:
        _use_tls(mp, two_door_engine)
        code, out, err = run_cli(["sandbox", "push"])
        assert code == 0, err
        assert "MB sent" in err and f"pushed {DEFAULT_IMAGE} to {two_door_engine.tls_url}" in err
        assert out.strip() == "sandbox image ready on the DOCKER_HOST engine"
    finally:
        mp.undo()
    yield two_door_engine


@pytest.fixture(params=["tls", "ssh", "podman"])
def engine_sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Docker backend pointed at one of the engines (plain containers: none has runsc)."""
    if request.param == "podman":
        podman: PodmanEngine = request.getfixturevalue("podman_engine")
        _use(monkeypatch, DOCKER_HOST=podman.url)
    else:
        engine: TwoDoorEngine = request.getfixturevalue("tls_engine")
        (_use_tls if request.param == "tls" else _use_ssh)(monkeypatch, engine)
    return get_sandbox("docker", isolation="container")


#: hostile cases that hold on every engine: none depends on a cgroup limit or a ulimit
#: (rootless Podman drops both; test_podman_says_which_limits_it_cannot_enforce)
HOSTILE: list[Callable[[Any], None]] = [
    suite.test_runs_as_nobody_without_capabilities,
    suite.test_cpu_spin_times_out_on_time,
    suite.test_sigterm_ignoring_sleeper_still_ends,
    suite.test_endless_stdout_is_capped_with_marker,
    suite.test_tcp_to_host_loopback_is_blocked,
    suite.test_dns_lookup_fails,
    suite.test_writing_etc_fails,
    suite.test_setuid_root_fails,
    suite.test_proc_kcore_gives_nothing,
    suite.test_symlinks_in_output_are_not_followed,
    suite.test_every_denied_syscall_fails_inside,
    suite.test_input_files_in_and_output_files_out,
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.__name__[5:] for c in HOSTILE])
def test_hostile_case_holds_on_every_engine(engine_sandbox: Any,
                                            case: Callable[[Any], None]) -> None:
    case(engine_sandbox)


def test_host_secrets_stay_out_on_every_engine(engine_sandbox: Any, host_canary: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    suite.test_host_file_is_not_readable(engine_sandbox, host_canary)
    suite.test_environment_holds_no_host_secret(engine_sandbox, monkeypatch)


def test_run_goes_to_the_tls_engine(tls_engine: TwoDoorEngine, docker_client: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _use_tls(monkeypatch, tls_engine)
    since = time.time()
    r = get_sandbox("docker").run("import socket\nprint(socket.gethostname())")
    assert (r.status, r.isolation, r.warning) == ("ok", "container", None), r.stderr
    time.sleep(1.1)  # event timestamps have one-second resolution
    started = {e["id"] for e in tls_engine.client.events(
        since=int(since) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "start"})}
    assert any(cid.startswith(r.stdout.strip()) for cid in started)
    suite.test_memory_hog_reports_memory(get_sandbox("docker"))  # the limits hold here


def test_tls_engine_refuses_a_client_its_ca_did_not_sign(
        tls_engine: TwoDoorEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stranger = make_certs(tmp_path)
    shutil.copy(tls_engine.cert_dir / "ca.pem", stranger / "ca.pem")  # trusts the server
    _use(monkeypatch, DOCKER_HOST=tls_engine.tls_url, DOCKER_TLS_VERIFY="1",
         DOCKER_CERT_PATH=str(stranger))
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    msg = str(err.value)
    assert msg.startswith(f"Docker engine not reachable ({tls_engine.tls_url}: "), msg
    assert "\n" not in msg


def test_tls_engine_is_not_reachable_in_plain_tcp(tls_engine: TwoDoorEngine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, DOCKER_HOST=tls_engine.tls_url, LLMSCRIPT_ALLOW_PLAIN_TCP="1")
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    assert str(err.value).startswith(f"Docker engine not reachable ({tls_engine.tls_url}: ")


def test_ssh_engine_runs_as_an_unprivileged_login(tls_engine: TwoDoorEngine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _use_ssh(monkeypatch, tls_engine)
    r = get_sandbox("docker").run("print(sum(range(10)))", files={"in.txt": b"x"})
    assert (r.status, r.stdout, r.warning) == ("ok", "45\n", None), r.stderr
    code, out, _ = run_cli(["sandbox", "list"])
    assert code == 0 and "llmscript-sandbox:1" in out


def test_ssh_without_a_known_host_key_is_refused(tls_engine: TwoDoorEngine, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    shutil.copytree(tls_engine.ssh_home, home)
    (home / ".ssh" / "known_hosts").write_text("")
    _use(monkeypatch, DOCKER_HOST=tls_engine.ssh_url, HOME=str(home))
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    msg = str(err.value)
    assert msg.startswith(f"Docker engine not reachable ({tls_engine.ssh_url}: "), msg
    assert "known_hosts" in msg and "\n" not in msg


def test_podman_says_which_limits_it_cannot_enforce(podman_engine: PodmanEngine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, DOCKER_HOST=podman_engine.url)
    sandbox = get_sandbox("docker", isolation="container")
    hog = sandbox.run("x = bytearray(600 * 2**20)\nprint(len(x) // 2**20)",
                      limits=Limits(timeout=30, memory_mb=256))
    assert hog.warning is not None and hog.warning.startswith(
        "memory, CPU and process-count and file-size and work-dir-size limits are NOT "
        "enforced: rootless Podman") and "cgroups v1" in hog.warning
    assert hog.status == "ok" and hog.stdout == "600\n"  # exactly what the warning says
    big = sandbox.run("open('big', 'wb').write(b'x' * 3 * 2**20)\nprint('wrote')",
                      limits=Limits(timeout=20, file_bytes=2**20, disk_mb=16))
    assert (big.status, big.stdout, big.warning) == ("ok", "wrote\n", hog.warning)
    ok = sandbox.run("print(6 * 7)")
    assert (ok.status, ok.stdout, ok.warning) == ("ok", "42\n", hog.warning)
    _, out, _ = run_cli(["doctor"])
    assert "rootless Podman" in out and "NOT enforced" in out


def test_podman_pool_leaves_nothing_behind(podman_engine: PodmanEngine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, DOCKER_HOST=podman_engine.url)
    sandbox = get_sandbox("docker", isolation="container")
    for n in range(3):  # warm pool: the later ones start from pre-started containers
        assert sandbox.run(f"print({n})").stdout == f"{n}\n"
    shutdown()
    client = podman_engine.client
    deadline = time.monotonic() + 30
    while client.containers.list(all=True, filters={"label": "llmscript.sandbox=1"}):
        assert time.monotonic() < deadline, "containers left on Podman"
        time.sleep(0.3)


def test_generate_run_and_run_api_use_podman(podman_engine: PodmanEngine, ip: Any,
                                             anthropic_standin: Any,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import llmscript_magic

    _use(monkeypatch, DOCKER_HOST=podman_engine.url)
    r = llmscript_magic.run("import os\nprint(os.getuid(), 6 * 7)")
    assert (r.status, r.stdout) == ("ok", "65534 42\n")
    assert r.warning and "NOT enforced" in r.warning
    anthropic_standin.enqueue("```python\nprint(sum(range(5)))\n```")
    res = ip.run_cell("%%generate --run\nPrint the sum of 0..4.")
    assert res.success, res.error_in_exec
    assert "10" in capsys.readouterr().out
    assert ip.rl_next_input == "print(sum(range(5)))"


def test_push_errors_are_one_line_with_the_fix(tls_engine: TwoDoorEngine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _use_tls(monkeypatch, tls_engine)
    code, out, err = run_cli(["sandbox", "push", "--image", "llmscript-nope:0"])
    assert (code, out) == (2, "")
    assert err == ("llmscript: llmscript-nope:0 is not on unix:///var/run/docker.sock: build it "
                   "there with `llmscript sandbox build`\n")
    code, _, err = run_cli(["sandbox", "push", "--engine", "unix:///var/run/docker.sock"])
    assert code == 2 and err.startswith("llmscript: push source and target are the same engine")
    assert err.count("\n") == 1
