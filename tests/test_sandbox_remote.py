"""A remote engine via DOCKER_HOST: a second dockerd on a loopback TCP port.

Proves the sandbox needs no code change to run elsewhere: the image is copied
over (save | load), the run happens on the second engine and not the first,
and everything (engine, data dirs, containers) is torn down afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._sandbox import DEFAULT_IMAGE, get_sandbox, shutdown

pytestmark = pytest.mark.docker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def remote_engine(docker_client: Any) -> Iterator[tuple[str, Any]]:
    import docker

    if shutil.which("dockerd") is None:
        pytest.fail("dockerd is missing: run `bash scripts/start-docker`")
    root = tempfile.mkdtemp(prefix="lsr-")  # short: containerd socket paths are limited
    # On tmpfs the 1 GB image unpacks fast and teardown is an unmount, not a slow rm.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6g", "tmpfs", root], capture_output=True)
    url = f"tcp://127.0.0.1:{_free_port()}"
    log = open(os.path.join(root, "dockerd.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["dockerd", "-H", url, "--data-root", f"{root}/data", "--exec-root", f"{root}/exec",
         "--pidfile", f"{root}/dockerd.pid", "--bridge=none", "--iptables=false",
         "--ip-forward=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client = docker.DockerClient(base_url=url, timeout=600)
                client.ping()
                break
            except Exception:
                client = None
                time.sleep(0.5)
        log_text = Path(root, "dockerd.log").read_text(errors="replace")[-2000:]
        assert client is not None, "second dockerd did not come up: " + log_text
        image = docker_client.images.get(DEFAULT_IMAGE)
        client.images.load(image.save(chunk_size=4 * 2**20, named=True))
        yield url, client
    finally:
        shutdown()  # pools on the remote engine go before the engine does
        proc.terminate()  # dockerd stops its own containerd
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a containerd that outlived it
        log.close()
        subprocess.run(["umount", "-R", root], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _started(client: Any, since: float) -> set[str]:
    events = client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "start"})
    return {e["id"] for e in events}


def test_docker_host_selects_the_remote_engine(remote_engine: tuple[str, Any],
                                               docker_client: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, remote = remote_engine
    monkeypatch.setenv("DOCKER_HOST", url)
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
    while remote.containers.list(all=True, filters={"label": "llmscript.sandbox=1"}):
        assert time.monotonic() < deadline, "containers left on the remote engine"
        time.sleep(0.2)
