"""A remote engine via DOCKER_HOST: a second dockerd on a plain loopback TCP port.

Plain TCP is refused unless LLMSCRIPT_ALLOW_PLAIN_TCP=1 (first test); the others
opt in, as a user on a network of their own would.

Proves the sandbox needs no code change to run elsewhere: the image is copied
over (save | load), the run happens on the second engine and not the first,
and everything (engine, data dirs, containers) is torn down afterwards. The
second engine has no gVisor, and we stop and restart it under a warm pool:
engine faults must read as engine faults, and leave nothing behind.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from engine_fixtures import Dockerd, engine_root, free_port

from llmscript_magic._errors import ConfigurationError, SandboxUnavailableError
from llmscript_magic._sandbox import DEFAULT_IMAGE, Limits, get_sandbox, shutdown

pytestmark = pytest.mark.docker


class RemoteEngine(Dockerd):
    """A second dockerd on plain loopback TCP that we can stop and start again."""

    def __init__(self, root: str) -> None:
        self.url = f"tcp://127.0.0.1:{free_port()}"
        super().__init__(root, [self.url])
        self.client: Any = None

    def start(self, client_factory: Any = None) -> Any:
        import docker

        self.client = super().start(
            client_factory or (lambda: docker.DockerClient(base_url=self.url, timeout=600)))
        return self.client


@pytest.fixture(scope="module")
def remote_engine(docker_client: Any) -> Iterator[RemoteEngine]:
    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is missing: run `bash scripts/start-docker`")
    with engine_root("lsr-") as root:
        engine = RemoteEngine(root)
        try:
            client = engine.start()
            image = docker_client.images.get(DEFAULT_IMAGE)
            client.images.load(image.save(chunk_size=4 * 2**20, named=True))
            yield engine
        finally:
            shutdown()  # pools on the remote engine go before the engine does
            engine.stop()


def _started(client: Any, since: float) -> set[str]:
    events = client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "start"})
    return {e["id"] for e in events}


def _labelled(client: Any) -> list[str]:
    found = [f"container {c.short_id}" for c in client.containers.list(
        all=True, sparse=True, filters={"label": "llmscript.sandbox=1"})]
    return found + [f"volume {v.name}" for v in client.volumes.list(
        filters={"label": "llmscript.sandbox=1"})]


def test_plain_tcp_is_refused_unless_opted_in(remote_engine: RemoteEngine,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", remote_engine.url)
    monkeypatch.delenv("LLMSCRIPT_ALLOW_PLAIN_TCP", raising=False)
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    msg = str(err.value)
    assert msg.startswith(f"Docker engine {remote_engine.url} is plain TCP"), msg
    assert "DOCKER_TLS_VERIFY=1" in msg and "ssh://" in msg and "\n" not in msg
    assert "LLMSCRIPT_ALLOW_PLAIN_TCP=1" in msg
    r = run_cli(["sandbox", "list"])
    assert r[0] == 2 and "is plain TCP" in r[2] and r[1] == ""
    monkeypatch.setenv("LLMSCRIPT_ALLOW_PLAIN_TCP", "1")
    assert get_sandbox("docker").run("print(5)").stdout == "5\n"


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`llmscript ARGV` in this process: (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from llmscript_magic._cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_docker_host_selects_the_remote_engine(remote_engine: RemoteEngine,
                                               docker_client: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, remote = remote_engine.url, remote_engine.client
    monkeypatch.setenv("DOCKER_HOST", url)
    monkeypatch.setenv("LLMSCRIPT_ALLOW_PLAIN_TCP", "1")
    since = time.time()
    sandbox = get_sandbox("docker")
    r = sandbox.run("import socket, pandas\nprint(socket.gethostname())")
    assert r.status == "ok", r.stderr
    short_id = r.stdout.strip()
    time.sleep(1.1)  # event timestamps have one-second resolution
    assert any(cid.startswith(short_id) for cid in _started(remote, since))
    assert not any(cid.startswith(short_id) for cid in _started(docker_client, since))
    shutdown()
    deadline = time.monotonic() + 15
    while remote.containers.list(all=True, sparse=True,  # sparse: no inspect race
                                 filters={"label": "llmscript.sandbox=1"}):
        assert time.monotonic() < deadline, "containers left on the remote engine"
        time.sleep(0.2)


def test_engine_without_gvisor(remote_engine: RemoteEngine,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", remote_engine.url)
    monkeypatch.setenv("LLMSCRIPT_ALLOW_PLAIN_TCP", "1")
    with pytest.raises(ConfigurationError) as err:
        get_sandbox("docker", isolation="gvisor")
    msg = str(err.value)
    assert msg.startswith("gVisor isolation is not available: runsc is not registered")
    assert "/etc/docker/daemon.json" in msg and "--network=none" in msg and "\n" not in msg
    r = get_sandbox("docker").run("print('plain')")  # auto: plain containers here
    assert (r.status, r.stdout, r.isolation) == ("ok", "plain\n", "container")


def test_engine_stop_and_restart_under_a_warm_pool(remote_engine: RemoteEngine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", remote_engine.url)
    monkeypatch.setenv("LLMSCRIPT_ALLOW_PLAIN_TCP", "1")
    sandbox = get_sandbox("docker", isolation="container")
    limits = Limits(timeout=10, pids=87)
    for _ in range(2):  # a warm pool, then the engine goes away under it
        assert sandbox.run("print(1)", limits=limits).stdout == "1\n"
        time.sleep(2)
        remote_engine.stop()
        with pytest.raises(SandboxUnavailableError) as err:
            sandbox.run("print(2)", limits=limits)
        msg = str(err.value)
        assert msg.startswith("Docker engine not reachable (") and "\n" not in msg, msg
        assert msg.endswith(", or use --sandbox local") and "scripts/" not in msg
        remote_engine.start()
        r = sandbox.run("print(3)", limits=limits)  # recovers: stale containers replaced
        assert (r.status, r.stdout) == ("ok", "3\n"), r.reason
    shutdown()
    deadline = time.monotonic() + 15
    while _labelled(remote_engine.client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _labelled(remote_engine.client) == []  # no volumes left by the restarts
