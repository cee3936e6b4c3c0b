"""The Docker engine connection, shared by the backend and the image tools.

Kept apart so ``image`` and ``docker`` do not import each other. Also answers
what the engine can do (its runtimes), asked once per engine: choosing gVisor
must not cost a round trip per run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import ConfigurationError, ImageNotFoundError, SandboxError, SandboxUnavailableError

RUNSC = "runsc"
#: What the engine needs for --isolation gvisor; the setup scripts write exactly this.
RUNSC_CONFIG = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--oci-seccomp"]}
GVISOR_FIX = (
    "install Debian's runsc, add "
    '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
    '"runtimeArgs": ["--network=none", "--oci-seccomp"]}}} to /etc/docker/daemon.json and '
    "reload the engine with `kill -HUP $(pidof dockerd)` (running containers keep going); "
    "`llmscript doctor` checks it"
)


def unreachable_fix() -> str:
    """How to start the engine on this platform (never a script of our repository)."""
    import shutil
    import sys

    host = os.environ.get("DOCKER_HOST", "")
    if sys.platform in ("darwin", "win32"):
        how = "start Docker Desktop"
    elif "/run/user/" in host or "podman" in host:
        how = "start it with `systemctl --user start docker` (rootless Docker) or " \
              "`systemctl --user start podman.socket` (Podman)"
    elif host.startswith(("tcp://", "ssh://")):
        how = f"check that the engine at {host} is up and reachable"
    elif shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        how = "start it with `sudo systemctl start docker`"
    else:
        how = "start it with `sudo dockerd &` (install the docker.io package if missing)"
    return how + ", or use --sandbox local"


PLAIN_TCP_ENV = "LLMSCRIPT_ALLOW_PLAIN_TCP"
PLAIN_TCP_FIX = (
    "use mutual TLS (DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH=DIR with ca.pem, cert.pem, key.pem) "
    f"or DOCKER_HOST=ssh://user@host, or set {PLAIN_TCP_ENV}=1 if the network is yours alone"
)

_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()


def _environment(url: str | None) -> dict[str, str]:
    """The variables docker-py reads, for the engine at url (default: DOCKER_HOST's).

    TLS settings belong to DOCKER_HOST: another engine named explicitly (a
    push target or source on a unix socket) does not inherit them.
    """
    env = dict(os.environ)
    if url is not None and url != env.get("DOCKER_HOST"):
        env["DOCKER_HOST"] = url
        for var in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            if not url.startswith("tcp://"):
                env.pop(var, None)
    return env


def plain_tcp_problem(client: Any, where: str) -> str | None:
    """Why an unencrypted, unauthenticated TCP engine is refused (None: it is not one).

    Anyone who reaches that port runs containers as the engine's root, and the
    code and data of every run cross the network in clear text; the opt-in is
    an environment variable so one stray notebook flag cannot lower it.
    """
    if not str(client.api.base_url).startswith("http://"):
        return None  # unix socket (http+docker://), TLS (https://) or ssh
    if os.environ.get(PLAIN_TCP_ENV) == "1":
        return None
    return f"Docker engine {where} is plain TCP (no TLS, no authentication): {PLAIN_TCP_FIX}"


def connect(timeout: int = 60, url: str | None = None) -> Any:
    """A client for the engine DOCKER_HOST names (or url, or the local socket), pinged.

    One client per engine and timeout, shared: each holds a connection pool,
    and throwaway clients would leave their sockets to the garbage collector.
    ssh:// goes through paramiko (docker[ssh]): its channel honours the read
    timeouts the backend sets on the attach socket; the ssh binary's pipe would not.
    """
    env = _environment(url)
    where = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    key = (where, env.get("DOCKER_TLS_VERIFY") or "", env.get("DOCKER_CERT_PATH") or "",
           os.path.expanduser("~") if where.startswith("ssh://") else "",  # ~/.ssh decides
           str(timeout))
    with _clients_lock:
        client = _clients.get(key)
    try:
        if client is None:
            _knock(where)
            client = _client(env, timeout)
    except SandboxUnavailableError:
        raise
    except Exception as exc:  # ssh:// connects here: paramiko's errors are no DockerException
        raise unreachable(exc, where) from None
    problem = plain_tcp_problem(client, where)  # again: a cached client, opt-in since withdrawn
    if problem is not None:
        raise SandboxUnavailableError(problem)
    try:
        client.ping()
    except Exception as exc:
        with _clients_lock:
            _clients.pop(key, None)
        client.close()
        raise unreachable(exc, where) from None
    client.llmscript_where = where  # see engine_id
    with _clients_lock:
        client = _clients.setdefault(key, client)
    return client


def engine_id(client: Any) -> str:
    """Which engine a client talks to, for keying pools and cached facts.

    Not ``client.api.base_url``: the docker SDK gives every unix socket the same
    one (``http+docker://localhost``), so Docker's and Podman's sockets would share
    pools and facts.
    """
    return str(getattr(client, "llmscript_where", None) or client.api.base_url)


def _client(env: dict[str, str], timeout: int) -> Any:
    """docker.from_env, except that a TLS engine's own CA is the one that counts.

    requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace a session's CA file
    (psf/requests#3829), so with either set (common behind company proxies) the
    engine's certificate would be checked against the public CAs and refused.
    The client is made without its version request, told not to read those
    variables, and only then asks the engine's API version.
    """
    import docker
    from docker.constants import MINIMUM_DOCKER_API_VERSION
    from docker.utils import kwargs_from_env

    pinned = env.get("DOCKER_API_VERSION")
    client = docker.DockerClient(timeout=timeout, version=pinned or MINIMUM_DOCKER_API_VERSION,
                                 **kwargs_from_env(environment=env))
    if str(client.api.base_url).startswith("https://"):
        client.api.trust_env = False
    problem = plain_tcp_problem(client, env.get("DOCKER_HOST") or "")
    if problem is not None:  # refused before a single byte goes to it
        client.close()
        raise SandboxUnavailableError(problem)
    if not pinned:
        try:
            client.api._version = client.api._retrieve_server_version()
        except BaseException:
            client.close()
            raise
    return client


def _knock(where: str) -> None:
    """Connect once to a local engine's socket and hang up; raise OSError if it refuses.

    A socket file left by an engine that stopped refuses every connection, and docker-py
    never closes the socket of a refused connection (``UnixHTTPConnection.connect``):
    without this, every attempt (each ``%load_ext`` warm-up) would leak one.
    """
    if not where.startswith("unix://"):
        return
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(10)
        probe.connect(where.removeprefix("unix://"))


def missing_socket() -> str | None:
    """The engine's local socket when nothing is there (DOCKER_HOST's unix:// path, else the
    default one); None when it exists or the engine is remote (not contacted here)."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://") or "/var/run/docker.sock"
    return None if os.path.exists(path) else path


def unreachable(exc: Exception, where: str | None = None) -> SandboxUnavailableError:
    """The one-line error for an engine we cannot talk to, naming which one."""
    where = where or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    why = _why(exc)
    fix = unreachable_fix()
    if "paramiko" in why:
        fix = "install the ssh extra with `pip install 'docker[ssh]'`"
    elif where.startswith("ssh://"):
        login, _, port = where[len("ssh://"):].partition(":")
        ssh = f"ssh -p {port} {login}" if port else f"ssh {login}"
        fix = (f"check that `{ssh} docker version` works without a password prompt "
               "(key in ssh-agent or ~/.ssh/config, host in known_hosts)")
    elif "certificate" in why.lower() or "ssl" in why.lower() or "tls" in why.lower():
        fix = "check DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem for this engine)"
    return SandboxUnavailableError(f"Docker engine not reachable ({where}: {why}): {fix}")


def runtimes(client: Any) -> dict[str, Any]:
    """The engine's registered runtimes (``docker info``), asked once per engine."""
    return dict(engine_facts(client)["runtimes"])


def gvisor_problem(client: Any) -> str | None:
    """None when runsc is registered so that sandbox containers can start under it."""
    if engine_facts(client)["name"] == "Podman":  # its runtimes list has no runtimeArgs
        return ("gVisor is not supported on a Podman engine: use --isolation container "
                "(auto does), or a Docker engine with runsc registered")
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
    for words in ("Connection refused", "CERTIFICATE_VERIFY_FAILED", "certificate required",
                  "Authentication failed", "not found in known_hosts", "paramiko",
                  "No such file or directory", "Permission denied",
                  "timed out", "Name or service not known", "Connection reset",
                  "Connection aborted", "Read timed out"):
        if words.lower() in text.lower():
            return words
    return (text.splitlines() or [type(exc).__name__])[0][:120]


_facts: dict[str, dict[str, Any]] = {}
_facts_lock = threading.Lock()


def engine_facts(client: Any) -> dict[str, Any]:
    """What kind of engine this is, asked once: name, version, rootless, cgroup version, runtimes.

    Podman's Docker-compatible API answers the same calls as Docker's; what
    differs is what it can enforce, which these facts decide.
    """
    url = engine_id(client)
    with _facts_lock:
        known = _facts.get(url)
    if known is not None:
        return known
    try:
        version = client.version()
        info = client.info()
    except Exception as exc:
        raise unreachable(exc) from None
    names = [str(c.get("Name", "")) for c in version.get("Components") or []]
    podman = any("podman" in n.lower() for n in names)
    security = " ".join(str(o) for o in info.get("SecurityOptions") or [])
    found = {
        "name": "Podman" if podman else "Docker",
        "version": str(version.get("Version", "?")),
        "rootless": bool(info.get("Rootless")) or "rootless" in security,  # Podman: Rootless
        "cgroup": str(info.get("CgroupVersion") or "1"),
        "runtimes": dict(info.get("Runtimes") or {}),
        "cpus": int(info.get("NCPU") or 0),  # the engine machine's, for the sandbox budget
        "memory_mb": int(info.get("MemTotal") or 0) // 2**20,
    }
    with _facts_lock:
        _facts[url] = found
    return found


def limits_problem(client: Any) -> str | None:
    """Which sandbox limits this engine cannot enforce (None: it enforces them all).

    A rootless engine on cgroups v1 has no cgroup it may write to, so memory,
    CPU and pids caps are accepted and then dropped (Podman prints "Resource
    limits are not supported and ignored on cgroups V1 rootless systems").
    Rootless Podman 4.3's compatible API also drops the ulimits. The runner
    sets what rlimits can stand in for (``fallback_rlimits``): the process
    count, each process's memory and the file size hold; the total memory and
    the CPU share do not. The wall clock, the output cap, the sizes of /tmp
    and the work dir (tmpfs mounts, which Podman honours), the read-only root,
    no network and no capabilities still hold.
    """
    facts = engine_facts(client)
    lost = []
    if facts["rootless"] and facts["cgroup"] == "1":
        lost.append("total-memory (each process is capped, not their sum) and CPU-share")
    if not lost:
        return None
    return (f"{' and '.join(lost)} limits are NOT enforced: rootless {facts['name']} "
            f"{facts['version']}{' on cgroups v1' if facts['cgroup'] == '1' else ''} ignores "
            "them (a script can use more of this machine's memory or disk); use a rootful "
            f"engine{' on a cgroups v2 host' if facts['cgroup'] == '1' else ''} for those limits")


def fallback_rlimits(client: Any, limits: Any) -> dict[str, int]:
    """The rlimits the runner sets on the script where the engine drops the caps.

    Empty on an engine that enforces its cgroup limits and ulimits (a rootful
    Docker): RLIMIT_NPROC there would count every process of uid nobody on the
    host, not the sandbox's. Under rootless Podman the sandbox's uids map into
    the engine user's own sub-uid range, so the count stays within its sandboxes.
    """
    facts = engine_facts(client)
    if not facts["rootless"]:
        return {}
    out: dict[str, int] = {}
    if facts["cgroup"] == "1":
        out.update(nproc=limits.pids, data=limits.memory_mb * 2**20)
    if facts["name"] == "Podman":
        out["fsize"] = limits.file_bytes
    return out


def push_image(name: str, target: str | None = None, source: str | None = None, *,
               log: Callable[[str], Any] = print, chunk: int = 8 * 2**20) -> str:
    """Stream an image from one engine to another (save | load), no registry in between.

    source defaults to the local socket (where `llmscript sandbox build` put it);
    target to the engine DOCKER_HOST names (with its TLS settings), which is
    where runs go. Returns the image id on the target.
    """
    import docker

    src_url = source or "unix:///var/run/docker.sock"
    dst_url = target or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if src_url == dst_url:
        raise ConfigurationError(
            f"push source and target are the same engine ({dst_url}): set DOCKER_HOST or "
            "--engine to the engine that should receive the image")
    src = connect(timeout=1800, url=src_url)
    dst = connect(timeout=1800, url=dst_url)
    try:
        image = src.images.get(name)
    except docker.errors.ImageNotFound:
        raise ImageNotFoundError(
            f"{name} is not on {src_url}: build it there with `llmscript sandbox build`"
        ) from None
    total = int(image.attrs.get("Size") or 0)
    log(f"pushing {name} ({image.id[:19]}, {total / 2**20:.0f} MB) from {src_url} to {dst_url}")
    sent, start, last = 0, time.monotonic(), 0.0

    def tar() -> Any:
        nonlocal sent, last
        for part in src.api.get_image(name, chunk_size=chunk):
            sent += len(part)
            now = time.monotonic()
            if now - last >= 2:
                last = now
                share = f" ({min(99, 100 * sent // total)}%)" if total else ""
                log(f"  {sent / 2**20:.0f} MB sent{share}")
            yield part

    try:
        for line in dst.api.load_image(tar(), quiet=True):
            if isinstance(line, dict) and line.get("error"):
                raise SandboxError(f"{dst_url} refused the image ({line['error'][:160]}): "
                                   "check its free disk space with `docker system df`")
        pushed = dst.images.get(name)
    except SandboxError:
        raise
    except docker.errors.ImageNotFound:
        raise SandboxError(f"{dst_url} loaded the archive but has no {name}: "
                           "load it by hand with `docker save NAME | docker load`") from None
    except Exception as exc:
        raise SandboxUnavailableError(
            f"Pushing {name} to {dst_url} failed after {sent / 2**20:.0f} MB ({_why(exc)}): "
            "check the engine with `docker info` and push again") from None
    log(f"pushed {name} to {dst_url}: {sent / 2**20:.0f} MB in {time.monotonic() - start:.0f} s")
    return str(pushed.id)


def mask_option(client: Any, paths: list[str]) -> str | None:
    """The security option that masks ``paths`` on this engine (None: HostConfig does it).

    Docker reads ``HostConfig.MaskedPaths``; Podman 4.3's compatible API
    ignores that field (a script there read the host's ``/proc/cmdline``) and
    takes the same list as ``mask=PATH:PATH``.
    """
    if engine_facts(client)["name"] != "Podman":
        return None
    return "mask=" + ":".join(paths)


def seccomp_option(client: Any, profile: str) -> str | None:
    """The security option that applies our seccomp profile (JSON text) on this engine.

    Docker takes the profile inline. Podman's compatible API (4.3) reads the
    value as a file path on the engine's machine: for a local socket we write
    the profile to a world-readable file (it is no secret) and name it; for a
    remote Podman there is no such path, so its own default profile applies
    (``engine_warning`` says so).
    """
    if engine_facts(client)["name"] != "Podman":
        return "seccomp=" + profile
    if not str(client.api.base_url).startswith("http+docker://localhost"):
        return None
    import hashlib
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), "llmscript-seccomp")
    os.makedirs(folder, mode=0o755, exist_ok=True)
    path = os.path.join(folder, hashlib.sha256(profile.encode()).hexdigest()[:24] + ".json")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(profile)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic: a concurrent kernel never reads half a profile
    return "seccomp=" + path


def engine_warning(client: Any) -> str | None:
    """One line for RunResult.warning: what this engine does not enforce (None: all of it)."""
    parts = []
    problem = limits_problem(client)
    if problem:
        parts.append(problem)
    facts = engine_facts(client)
    if facts["name"] == "Podman" and not str(client.api.base_url).startswith(
            "http+docker://localhost"):
        parts.append("our seccomp profile is replaced by Podman's default on a remote Podman")
    return "; ".join(parts) or None
