"""Host files a run reads in place: bound read-only into the sandbox, never copied.

A ``--input PATH`` larger than a few MiB, and a notebook value too big to send
through the job, reach the sandbox as a single read-only file each (never a
folder) at ``MOUNT_ROOT/<name>``; the work dir holds a symlink of the same
name to it, so the script opens ``data.csv`` as it would in the kernel, and
cannot change, replace or grow the host's file. Which host files a container
sees is fixed at its creation, so the set is part of the Docker pool's key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .._errors import ConfigurationError
from .base import Value
from .files import safe_name

MOUNT_ROOT = "/in"  # where the read-only files appear inside the sandbox
VALUE_DIR = ".values"  # under MOUNT_ROOT: the values sent through a file
#: A value bigger than this goes through a mounted file, not the job (the sandbox's /tmp
#: holds the job's bytes, and its size is the work dir's).
INLINE_VALUE_BYTES = 16 * 2**20
#: A ``--input`` file bigger than this is bound read-only instead of sent in the job.
INLINE_FILE_BYTES = 8 * 2**20


def big_or_bytes(path: Path) -> bytes | Path:
    """A ``--input`` file's bytes, or its resolved path when it is to be bound read-only."""
    real = path.resolve()
    return real if real.stat().st_size > INLINE_FILE_BYTES else real.read_bytes()


def split_files(files: Mapping[str, bytes | os.PathLike[str]] | None, cap: int,
                remote: str = "") -> tuple[dict[str, bytes], dict[str, str]]:
    """(files sent in the job, {work dir name: resolved host path} of those bound read-only)

    cap: the sandbox's file size limit. A file sent in the job is written inside the
    sandbox under that limit, so a larger one is refused here, in one line that says
    what to do, rather than killing the run's supervisor mid-write.
    remote: why no file can be bound (the engine is on another machine), said to the user.
    """
    inline: dict[str, bytes] = {}
    mounted: dict[str, str] = {}
    for name, item in (files or {}).items():
        rel = safe_name(name)
        if isinstance(item, os.PathLike) and not remote:
            path = Path(item).resolve()  # symlinks resolved here: the engine binds the target
            if not path.is_file():
                raise ConfigurationError(
                    f"--input {os.fspath(item)!r} is not a regular file: name a file, not a "
                    "folder or device")
            mounted[rel] = str(path)
            continue
        data = Path(item).read_bytes() if isinstance(item, os.PathLike) else bytes(item)
        if len(data) > cap:
            how = (f"{remote}, so --input files are copied into it: pass a smaller file or a "
                   "sample of it" if remote else
                   "pass it as a path: a file on disk is mounted read-only at any size")
            raise ConfigurationError(
                f"--input {rel} is {len(data) / 2**20:.1f} MiB, over the sandbox's "
                f"{cap / 2**20:.0f} MiB file size limit; {how}")
        inline[rel] = data
    return inline, mounted


def check_others_read(mounted: Mapping[str, str]) -> None:
    """A container run has a uid of its own: a file only its owner reads is refused (one line)."""
    for rel, host in mounted.items():
        if not os.stat(host).st_mode & 0o004:
            raise ConfigurationError(
                f"--input {rel}: the sandbox reads it as another user, and only its owner may "
                f"read it: run `chmod o+r {host}` (it stays read-only in the sandbox)")


def target(rel: str) -> str:
    """The read-only path inside the sandbox for a work dir name."""
    return f"{MOUNT_ROOT}/{rel}"


def links(mounted: Mapping[str, str]) -> list[dict[str, str]]:
    """The job's symlinks: work dir name -> its read-only mount."""
    return [{"name": rel, "target": target(rel)} for rel in mounted]


@contextlib.contextmanager
def spilled(inputs: Sequence[Value], cap: int | None = INLINE_VALUE_BYTES
            ) -> Iterator[tuple[list[Value], list[dict[str, str]], dict[str, str]]]:
    """Values over cap written to private files for the run to read in place.

    Yields (values still sent in the job, the job's entries for the others,
    {sandbox path: host file} to bind read-only). The files live in a folder
    only this user can enter (the file itself is readable: the run's uid in
    the sandbox must open it through the bind) and are removed afterwards.
    """
    big = [v for v in inputs if cap is not None and len(v.data) > cap]
    if not big:
        yield list(inputs), [], {}
        return
    folder = tempfile.mkdtemp(prefix="llmscript-values-")  # 0700
    try:
        entries, binds = [], {}
        for i, value in enumerate(big):
            host = os.path.join(folder, f"value-{i}")
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(value.data)
            inside = f"{MOUNT_ROOT}/{VALUE_DIR}/{i}"
            entries.append({"name": value.name, "format": value.format, "mount": inside})
            binds[inside] = host
        yield [v for v in inputs if v not in big], entries, binds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["INLINE_FILE_BYTES", "INLINE_VALUE_BYTES", "MOUNT_ROOT", "big_or_bytes",
           "check_others_read", "links", "spilled", "split_files", "target"]
