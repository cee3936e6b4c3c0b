"""The Docker engine connection, shared by the backend and the image tools.

Kept apart so ``image`` and ``docker`` do not import each other. Also answers
what the engine can do (its runtimes), asked once per engine: choosing gVisor
must not cost a round trip per run.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .._errors import SandboxUnavailableError

RUNSC = "runsc"
#: What the engine needs for --isolation gvisor; the setup scripts write exactly this.
RUNSC_CONFIG = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--oci-seccomp"]}
GVISOR_FIX = (
    "install Debian's runsc, add "
    '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
    '"runtimeArgs": ["--network=none", "--oci-seccomp"]}}} to /etc/docker/daemon.json and '
    "reload the engine with `kill -HUP $(pidof dockerd)` (running containers keep going); "
    "`bash scripts/setup` does this for an engine it starts"
)
UNREACHABLE_FIX = "start it with `bash scripts/start-docker` or use --sandbox local"


_clients: dict[tuple[str, int], Any] = {}
_clients_lock = threading.Lock()


def connect(timeout: int = 60) -> Any:
    """A client for the engine DOCKER_HOST names (or the local socket), pinged.

    One client per engine and timeout, shared: each holds a connection pool,
    and throwaway clients would leave their sockets to the garbage collector.
    """
    import docker

    key = (os.environ.get("DOCKER_HOST") or "", timeout)
    with _clients_lock:
        client = _clients.get(key)
    try:
        if client is None:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        if client is not None:
            with _clients_lock:
                _clients.pop(key, None)
            client.close()
        raise unreachable(exc) from None
    with _clients_lock:
        client = _clients.setdefault(key, client)
    return client


def unreachable(exc: Exception) -> SandboxUnavailableError:
    """The one-line error for an engine we cannot talk to, naming which one."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return SandboxUnavailableError(
        f"Docker engine not reachable ({where}: {_why(exc)}): {UNREACHABLE_FIX}")


_runtimes: dict[str, dict[str, Any]] = {}
_runtimes_lock = threading.Lock()


def runtimes(client: Any) -> dict[str, Any]:
    """The engine's registered runtimes (``docker info``), asked once per engine."""
    url = client.api.base_url
    with _runtimes_lock:
        known = _runtimes.get(url)
    if known is not None:
        return known
    try:
        found = dict(client.info().get("Runtimes") or {})
    except Exception as exc:
        raise unreachable(exc) from None
    with _runtimes_lock:
        _runtimes[url] = found
    return found


def gvisor_problem(client: Any) -> str | None:
    """None when runsc is registered so that sandbox containers can start under it."""
    spec = runtimes(client).get(RUNSC)
    if spec is None:
        return f"runsc is not registered with this Docker engine: {GVISOR_FIX}"
    args = spec.get("runtimeArgs") or []
    if "--network=none" not in args:
        # Without it runsc refuses every network-less container.
        return f"runsc is registered without --network=none: {GVISOR_FIX}"
    return None


def gvisor_applies_seccomp(client: Any) -> bool:
    """runsc ignores a container's seccomp profile unless started with --oci-seccomp."""
    spec = runtimes(client).get(RUNSC) or {}
    return "--oci-seccomp" in (spec.get("runtimeArgs") or [])


def _why(exc: Exception) -> str:
    """A few words from a long requests/urllib3 error chain."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation).splitlines()[0][:160]
    text = str(exc)
    for words in ("Connection refused", "No such file or directory", "Permission denied",
                  "timed out", "Name or service not known", "Connection reset",
                  "Connection aborted", "Read timed out"):
        if words.lower() in text.lower():
            return words
    return (text.splitlines() or [type(exc).__name__])[0][:120]
