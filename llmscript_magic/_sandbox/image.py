"""Build, list and prune the sandbox image.

No image registry is reachable on the machines this runs on, so the default
build is offline: debootstrap a minimal Debian root from the apt mirror the
host already uses, add Python with numpy/pandas/matplotlib, and import the
tree as an image. Hosts that do reach a registry can use the Dockerfile.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, SandboxError
from .harness.protocol import MPL_IMAGE, SCRIPT_UID, WORK
from .pool import already_gone

IMAGE_REPO = "llmscript-sandbox"
IMAGE_VERSION = "1"
DEFAULT_IMAGE = f"{IMAGE_REPO}:{IMAGE_VERSION}"
LABEL = "llmscript.sandbox"
OWNER_LABEL = "llmscript.owner"  # "host:pid:start" of the process whose pool made it
SUITE = "bookworm"
PACKAGES = ("python3", "python3-numpy", "python3-pandas", "python3-matplotlib", "coreutils")
MPL_CACHE = MPL_IMAGE  # prebuilt matplotlib font cache, copied to /tmp at start
CHANGES = [
    f"USER {SCRIPT_UID}:{SCRIPT_UID}",
    f"WORKDIR {WORK}",
    "ENV PATH=/usr/local/bin:/usr/bin:/bin",
    f"LABEL {LABEL}.image={IMAGE_VERSION}",
]

Log = Callable[[str], Any]


def debian_mirror() -> str:
    """The Debian mirror apt already uses here (never a hard-coded host)."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, _, value = line.partition(":")
                if not line.startswith("#") and value:
                    fields[key.strip().lower()] = value.strip()
            if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", ""):
                return fields["uris"].split()[0]
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(path):
            continue
        for line in Path(path).read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE:
                return m.group(1)
    raise SandboxError(
        f"No Debian {SUITE} mirror in /etc/apt sources: add one, or build from "
        "llmscript_magic/_sandbox/Dockerfile on a host that reaches a registry"
    )


def _client(timeout: int = 60) -> Any:
    from .engine import connect

    return connect(timeout=timeout)


def image_exists(name: str = DEFAULT_IMAGE) -> bool:
    """True when the engine already has the image (cheap; no build)."""
    import docker

    try:
        _client().images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _run(cmd: list[str], log: Log) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise SandboxError(f"`{cmd[0]}` failed (exit {proc.returncode}): {tail}")


def _debootstrap(rootfs: Path, log: Log) -> None:
    if shutil.which("debootstrap") is None:
        raise ConfigurationError(
            "debootstrap is not installed: run `sudo apt-get install debootstrap`, then "
            "`llmscript sandbox build` again"
        )
    if os.geteuid() != 0:
        raise ConfigurationError("The offline image build needs root (debootstrap): rerun as root")
    mirror = debian_mirror()
    _run(
        ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
         SUITE, str(rootfs), mirror],
        log,
    )
    for rel in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/info", "var/log"):
        target = rootfs / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    mpl = rootfs / MPL_CACHE.lstrip("/")
    mpl.mkdir(parents=True, exist_ok=True)
    # Build matplotlib's font list once here so a run that plots does not pay for it.
    _run(["chroot", str(rootfs), "env", f"MPLCONFIGDIR={MPL_CACHE}", "MPLBACKEND=Agg",
          "python3", "-c", "import matplotlib.pyplot"], log)
    work = rootfs / "work"
    work.mkdir(exist_ok=True)
    os.chown(work, SCRIPT_UID, SCRIPT_UID)


def _import(rootfs: Path, name: str, log: Log) -> str:
    repo, _, tag = name.partition(":")
    log(f"importing {rootfs} as {name}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        assert tar.stdout is not None
        _client(timeout=1800).api.import_image(
            src=tar.stdout, repository=repo, tag=tag or "latest", changes=CHANGES,
            stream_src=True,
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait()
    if tar.returncode != 0:
        raise SandboxError(f"tar of the image root failed (exit {tar.returncode})")
    return str(_client().images.get(name).id)


def _docker_build(name: str, log: Log) -> str:
    context = Path(__file__).parent
    log(f"building {name} from {context / 'Dockerfile'}")
    import docker

    try:
        image, _ = _client(timeout=1800).images.build(
            path=str(context), dockerfile="Dockerfile", tag=name, rm=True,
            labels={f"{LABEL}.image": IMAGE_VERSION},
        )
    except docker.errors.DockerException as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise SandboxError(f"Building {name} from the Dockerfile failed ({first}): without "
                           "an image registry, build offline with `llmscript sandbox build`."
                           ) from None
    return str(image.id)


def build_image(name: str = DEFAULT_IMAGE, *, offline: bool = True, force: bool = False,
                log: Log = print) -> str:
    """Build the sandbox image unless it is already there; returns the image id."""
    if not force and image_exists(name):
        image_id = str(_client().images.get(name).id)
        log(f"{name} already built ({image_id[:19]})")
        return image_id
    start = time.monotonic()
    if not offline:
        image_id = _docker_build(name, log)
    else:
        with tempfile.TemporaryDirectory(prefix="llmscript-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _debootstrap(rootfs, log)
            image_id = _import(rootfs, name, log)
    log(f"built {name} ({image_id[:19]}) in {time.monotonic() - start:.0f} s")
    return image_id


def list_images() -> list[dict[str, Any]]:
    """Sandbox images on the engine, newest first, for `llmscript sandbox list`."""
    rows = []
    for image in _client().images.list(filters={"label": f"{LABEL}.image"}):
        rows.append({
            "id": image.short_id,
            "tags": list(image.tags),
            "size_mb": round(image.attrs.get("Size", 0) / 2**20),
            "created": image.attrs.get("Created", ""),
        })
    return sorted(rows, key=lambda r: r["created"], reverse=True)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_id() -> str:
    """This process as a sandbox owner: host, pid and start time."""
    import socket

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or 0}"


def owner_gone(owner: str | None) -> bool:
    """True when the owning process has ended; owners on other hosts are never gone."""
    import socket

    if not owner:
        return True  # made before owners were labelled
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _start_time(int(pid)) != start


def prune() -> int:
    """Remove sandbox containers and volumes whose owning process is gone.

    A live kernel's warm containers are left alone (prune from another
    terminal must not break it); returns how many went.
    """
    import docker

    client = _client()
    removed = 0
    for container in client.containers.list(all=True, sparse=True,
                                            filters={"label": f"{LABEL}=1"}):
        if not owner_gone((container.attrs.get("Labels") or {}).get(OWNER_LABEL)):
            continue
        try:
            client.api.remove_container(container.id, force=True, v=True)
            removed += 1
        except docker.errors.APIError as exc:
            if not already_gone(exc):
                raise
    for volume in client.volumes.list(filters={"label": f"{LABEL}=1"}):
        if not owner_gone((volume.attrs.get("Labels") or {}).get(OWNER_LABEL)):
            continue
        try:
            volume.remove()  # not force: a volume still in use stays (409)
            removed += 1
        except docker.errors.APIError as exc:
            if not already_gone(exc):
                raise
    return removed


def main(argv: list[str] | None = None) -> int:
    """CLI used by scripts/build-sandbox-image: [--if-missing] [--online] [--name N]."""
    import argparse

    parser = argparse.ArgumentParser(prog="llmscript-sandbox-image")
    parser.add_argument("--name", default=DEFAULT_IMAGE)
    parser.add_argument("--if-missing", action="store_true", help="do nothing if already built")
    parser.add_argument("--online", action="store_true", help="docker build from the Dockerfile")
    args = parser.parse_args(argv)
    try:
        build_image(args.name, offline=not args.online, force=not args.if_missing)
    except (SandboxError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


