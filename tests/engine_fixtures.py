"""Second engines on loopback for the engine tests: dockerd (TLS, unix socket), sshd, Podman.

Every one binds to 127.0.0.1 (or a socket under its own temp dir), is started
by the fixture that needs it and stopped by it, with its data, its user and
its certificates removed. Each kind is started once per session: a cold
dockerd plus a 1 GB image load costs tens of seconds, Podman more.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._sandbox import DEFAULT_IMAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(*commands: str) -> None:
    """A missing tool is a setup fault: `scripts/setup --test` installs each of these."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `bash scripts/setup --test`",
                    pytrace=False)


def _sh(*cmd: str, cwd: str | Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr[-1500:]}")


class Dockerd:
    """A second dockerd on its own data root, listening where `hosts` say."""

    def __init__(self, root: str, hosts: list[str], extra: list[str] | None = None) -> None:
        self.root = root
        self.hosts = hosts
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, client_factory: Any) -> Any:
        log = open(os.path.join(self.root, "dockerd.log"), "ab")  # noqa: SIM115
        r = self.root
        Path(r, "daemon.json").write_text("{}\n")  # not the host's: no runsc registered here
        self.proc = subprocess.Popen(
            ["dockerd", *[a for h in self.hosts for a in ("-H", h)],
             "--config-file", f"{r}/daemon.json",
             "--data-root", f"{r}/data", "--exec-root", f"{r}/exec",
             "--pidfile", f"{r}/dockerd.pid", "--bridge=none", "--iptables=false",
             "--ip-forward=false", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client = client_factory()
                client.ping()
                return client
            except Exception:
                time.sleep(0.5)
        log_text = Path(r, "dockerd.log").read_text(errors="replace")[-2000:]
        raise AssertionError("second dockerd did not come up: " + log_text)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # dockerd stops its own containerd
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a containerd that outlived it
        self.proc = None


@contextlib.contextmanager
def engine_root(prefix: str) -> Iterator[str]:
    """A short temp dir on tmpfs (containerd socket paths are limited; teardown is an unmount)."""
    root = tempfile.mkdtemp(prefix=prefix)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6g,mode=0711", "tmpfs", root],
                   capture_output=True)
    os.chmod(root, 0o711)  # the ssh user reaches its socket below, nothing else
    try:
        yield root
    finally:
        for _ in range(20):  # a just-stopped sshd or containerd may still hold it a moment
            subprocess.run(["umount", "-R", root], capture_output=True)
            if subprocess.run(["mountpoint", "-q", root]).returncode != 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["umount", "-R", "--lazy", root], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def make_certs(root: Path) -> tuple[Path, Path]:
    """A throwaway CA, a server cert for 127.0.0.1/localhost and a client cert.

    Returns (server dir, client dir); the client dir is what DOCKER_CERT_PATH names.
    """
    server, client = root / "server", root / "client"
    server.mkdir()
    client.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _sh("openssl", "req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=llmscript test CA", cwd=root)
    for who, ext in ((server, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                              "extendedKeyUsage=serverAuth\n"),
                     (client, "extendedKeyUsage=clientAuth\n")):
        (root / "ext.cnf").write_text(ext)
        _sh("openssl", "req", *ec, "-keyout", str(who / "key.pem"), "-out", "req.csr",
            "-subj", f"/CN={who.name}", cwd=root)
        _sh("openssl", "x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", str(who / "cert.pem"), "-days", "2",
            "-extfile", "ext.cnf", cwd=root)
        shutil.copy(root / "ca.pem", who / "ca.pem")
    return server, client


@contextlib.contextmanager
def temp_user(name: str) -> Iterator[pwd.struct_passwd]:
    """An unprivileged user (useradd also writes its /etc/subuid and /etc/subgid ranges)."""
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        _remove_user(name)  # a leftover of a killed run
    _sh("useradd", "--create-home", "--shell", "/bin/bash", name)
    try:
        yield pwd.getpwnam(name)
    finally:
        _remove_user(name)


def _remove_user(name: str) -> None:
    with contextlib.suppress(KeyError):
        kill_user_processes(pwd.getpwnam(name).pw_uid)
    subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)


def kill_user_processes(uid: int) -> None:
    """SIGKILL, by pid, what the throwaway user still runs (Podman's pause process, conmon)."""
    for _ in range(3):
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        pids.append(int(entry.name))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)


@dataclass
class TwoDoorEngine:
    """One second dockerd reached over mutual TLS and, through sshd, over SSH."""

    tls_url: str
    cert_dir: Path  # DOCKER_CERT_PATH for a client the CA signed
    ssh_url: str
    ssh_home: Path  # HOME with .ssh/{id_ed25519,known_hosts,config} for the ssh user
    client: Any  # a TLS client, for the tests' own checks


def _start_sshd(root: Path, port: int, user: str, sock: str) -> subprocess.Popen[bytes]:
    """sshd on 127.0.0.1:port, key login only, for one user whose DOCKER_HOST is sock."""
    _sh("usermod", "-p", "*", user)  # no password, but not "locked": sshd refuses locked ones
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key"))
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\n"
        f"PidFile {root}/sshd.pid\nAuthorizedKeysFile {root}/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"StrictModes no\nAllowUsers {user}\nAllowTcpForwarding no\nX11Forwarding no\n"
        # every API connection and every warm container's attach stream is one session
        "MaxSessions 64\n"
        f"SetEnv DOCKER_HOST=unix://{sock}\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation dir
    with open(root / "sshd.log", "ab") as log:
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return proc
        time.sleep(0.2)
    raise AssertionError("sshd did not come up: " + (root / "sshd.log").read_text()[-1500:])


def _ssh_home(root: Path, port: int, user: str) -> Path:
    """What a user's ~/.ssh holds for this host: a key, the host's key, a config entry."""
    home = root / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / "id_ed25519"))
    (root / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
    os.chmod(root / "authorized_keys", 0o644)
    host_key = (root / "host_key.pub").read_text().split()
    (ssh / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (ssh / "config").write_text(f"Host 127.0.0.1\n  User {user}\n"
                                f"  IdentityFile {ssh / 'id_ed25519'}\n")
    return home


@pytest.fixture(scope="session", name="two_door_engine")
def two_door_engine_fixture(docker_client: Any) -> Iterator[TwoDoorEngine]:
    """dockerd with --tlsverify on 127.0.0.1:PORT and a unix socket an ssh user may use."""
    import docker

    from llmscript_magic._sandbox import shutdown

    _need("dockerd", "openssl", "ssh-keygen", "/usr/sbin/sshd", "useradd")
    user = "llmscript-ssh"
    with temp_user(user) as account, engine_root("lse-") as root_name:
        root = Path(root_name)
        (root / "certs").mkdir()
        server, client_dir = make_certs(root / "certs")
        os.chmod(client_dir / "key.pem", 0o600)
        tls_port, ssh_port = free_port(), free_port()
        sock = f"{root}/docker.sock"
        engine = Dockerd(root_name, [f"tcp://127.0.0.1:{tls_port}", f"unix://{sock}"], [
            "--tlsverify", f"--tlscacert={server}/ca.pem", f"--tlscert={server}/cert.pem",
            f"--tlskey={server}/key.pem", f"--group={account.pw_gid}"])
        tls = docker.tls.TLSConfig(client_cert=(str(client_dir / "cert.pem"),
                                                str(client_dir / "key.pem")),
                                   ca_cert=str(client_dir / "ca.pem"), verify=True)
        sshd: subprocess.Popen[bytes] | None = None
        client: Any = None
        left: list[str] = []
        try:
            def tls_client() -> Any:
                made = docker.DockerClient(base_url=f"https://127.0.0.1:{tls_port}", tls=tls,
                                           timeout=600, version="1.41")
                made.api.trust_env = False  # else REQUESTS_CA_BUNDLE replaces our CA
                return made

            client = engine.start(tls_client)
            sshd = _start_sshd(root, ssh_port, user, sock)
            home = _ssh_home(root, ssh_port, user)
            yield TwoDoorEngine(f"tcp://127.0.0.1:{tls_port}", client_dir,
                                f"ssh://{user}@127.0.0.1:{ssh_port}", home, client)
        finally:
            shutdown()  # pools on this engine go before the engine does
            if client is not None:
                left = left_behind(client)
            if sshd is not None:
                sshd.terminate()
                sshd.wait(timeout=10)
            engine.stop()
        assert left == [], f"sandbox containers or volumes left on the second dockerd: {left}"


def left_behind(client: Any) -> list[str]:
    """What this process still has on the engine once its pools are shut down.

    The engines here live for the session only, so a leak would vanish with
    them: it is checked before they stop, as docker_leftover_check does locally.
    Removal is asynchronous, so it gets a moment.
    """
    from sandbox_fixtures import leftovers

    deadline = time.monotonic() + 15
    while (left := leftovers(client)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _accepts(path: Path) -> bool:
    """True once something listens on the unix socket at path."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@dataclass
class PodmanEngine:
    url: str
    client: Any
    user: str


@pytest.fixture(scope="session", name="podman_engine")
def podman_engine_fixture(docker_client: Any) -> Iterator[PodmanEngine]:
    """Rootless Podman's Docker-compatible API for a throwaway user, with the image loaded."""
    import docker

    from llmscript_magic._sandbox import shutdown
    from llmscript_magic._sandbox.engine import push_image

    _need("podman", "newuidmap", "useradd")
    user = "llmscript-podman"
    left: list[str] = []
    with temp_user(user) as account:
        run_dir = Path(f"/run/user/{account.pw_uid}")
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(run_dir, account.pw_uid, account.pw_gid)
        os.chmod(run_dir, 0o700)
        # Native rootless overlay (kernel >= 5.13): Podman's fallback, vfs, copies the
        # 1.2 GB image for every container (about 25 s each instead of 0.3 s).
        conf = Path(account.pw_dir) / ".config" / "containers"
        conf.mkdir(parents=True)
        (conf / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
        subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}",
                        str(Path(account.pw_dir) / ".config")], check=True)
        sock = run_dir / "podman" / "podman.sock"
        url = f"unix://{sock}"
        log = open(Path(account.pw_dir) / "podman-service.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
             "--init-groups", "--reset-env", "--",
             "env", f"HOME={account.pw_dir}", f"USER={user}", f"XDG_RUNTIME_DIR={run_dir}",
             "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
             "sh", "-c", f'mkdir -p "{sock.parent}" && cd && exec podman system service '
             f"--time=0 {url}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _accepts(sock):
                time.sleep(0.3)
            if not _accepts(sock):
                text = (Path(account.pw_dir) / "podman-service.log").read_text()[-1500:]
                raise AssertionError(f"podman system service did not come up: {text}")
            client = docker.DockerClient(base_url=url, timeout=600)
            push_image(DEFAULT_IMAGE, url, log=lambda line: None)
            yield PodmanEngine(url, client, user)
            shutdown()
            left = left_behind(client)
            client.close()
        finally:
            shutdown()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # rootless storage holds files owned by the user's sub-uids: remove as that user
            subprocess.run(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                            "--init-groups", "env", f"HOME={account.pw_dir}",
                            f"XDG_RUNTIME_DIR={run_dir}", "podman", "system", "reset",
                            "--force"], capture_output=True, cwd="/")
            shutil.rmtree(run_dir, ignore_errors=True)
    assert left == [], f"sandbox containers or volumes left on Podman: {left}"
