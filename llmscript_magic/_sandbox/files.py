"""Files in and out of the sandbox as tar streams, checked member by member.

Inputs are packed with safe relative names; outputs are read as a stream with
a byte, count and time budget and only regular files come back: symlinks,
devices, absolute or `..` names and oversize files are skipped, never
followed; hard links come back under each name; a cut is reported, never raised.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError
from .base import Limits, OutputFile
from .harness.protocol import SCRIPT_UID as OWNER  # the run's files are the script's


def safe_name(name: str) -> str:
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigurationError(
            f"Input file name {name!r} is not allowed: use a plain relative path like 'data.csv'")
    return "/".join(parts)


def tar_inputs(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for name, data in files.items():
            rel = safe_name(name)
            parents = rel.split("/")[:-1]
            for i in range(len(parents)):
                d = "/".join(parents[:i + 1])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, OWNER, OWNER
                    tar.addfile(info)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, OWNER, OWNER
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(bytes(data)))
    return buf.getvalue()


class Outputs(list[OutputFile]):
    """The files that came back, and (``cut``) one line on what did not, if anything."""

    cut: str = ""


MAX_FILES = 10_000
COLLECT_SECONDS = 10.0  # a hostile work dir must not hold the run open


def read_outputs(chunks: Any, limits: Limits, inputs: Mapping[str, bytes],
                 wanted: set[str], *, seconds: float = COLLECT_SECONDS) -> Outputs:
    """Regular files from a get_archive stream, checked member by member; never raises.

    Bounded in bytes (the tar's sizes are apparent sizes, so a sparse file counts
    in full), in count and in time: past a bound the stream is dropped and the
    result's ``cut`` says so. A hard link comes back under every wanted name; a
    file that changed while the engine packed it (the stream breaks) is reported.
    """
    budget = limits.disk_mb * 2**20 + 2**20
    deadline = time.monotonic() + seconds
    read = 0
    over: list[str] = []

    class _Bound(Exception):
        pass

    class _Reader(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = memoryview(b"")

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            nonlocal read
            while not self.buf:
                if time.monotonic() > deadline:
                    over.append(f"collecting took over {seconds:g} s")
                    raise _Bound
                try:
                    self.buf = memoryview(next(chunks))  # sliced without copying
                except StopIteration:
                    return 0
                read += len(self.buf)
                if read > budget:
                    over.append(f"more than the {limits.disk_mb} MB the work dir holds")
                    raise _Bound
            n = min(len(b), len(self.buf))
            b[:n], self.buf = self.buf[:n], self.buf[n:]
            return n

    out = Outputs()
    seen: dict[str, bytes] = {}  # every regular file read, for hard links to it
    skipped = 0
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Reader()), mode="r|") as tar:
            for member in tar:
                name = _rel(member.name)
                parts = name.split("/")
                if not name or member.name.startswith("/") or ".." in parts:
                    continue  # escapes are never returned
                if member.islnk():
                    target = _rel(member.linkname)
                    data_or_none = seen.get(target, inputs.get(target))
                    if name in wanted and data_or_none is not None:
                        if len(out) >= MAX_FILES:
                            skipped += 1
                            continue
                        out.append(OutputFile(name=name, size=len(data_or_none),
                                              data=data_or_none))
                    continue
                if not member.isreg():
                    continue  # symlinks, devices: never followed or returned
                if member.size > limits.file_bytes:
                    skipped += name in wanted
                    continue
                fh = tar.extractfile(member)
                data = fh.read() if fh is not None else b""
                if len(data) != member.size:
                    over.append(f"{name} changed while it was collected")
                    break
                seen[name] = data
                if name not in wanted:
                    skipped += name not in inputs  # new, yet beyond the runner's list
                    continue
                if inputs.get(name) == data:
                    continue
                if len(out) >= MAX_FILES:
                    skipped += 1
                    continue
                out.append(OutputFile(name=name, size=len(data), data=data))
    except _Bound:
        pass
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        # The engine stops the stream when a file grows or shrinks as it packs it.
        over.append(f"a file changed while it was collected ({type(exc).__name__})")
    finally:
        _close_stream(chunks)
    out.sort(key=lambda f: f.name)
    notes = over[:1]
    if skipped:
        notes.append(f"{skipped} file(s) over the {limits.file_bytes}-byte file cap or the "
                     f"{MAX_FILES}-file count")
    if notes:
        out.cut = "output files cut: " + "; ".join(notes)
    return out


def _rel(member_name: str) -> str:
    """The archive's member name relative to the work dir (its first part is the dir)."""
    return member_name.split("/", 1)[1] if "/" in member_name else ""


def _close_stream(chunks: Any) -> None:
    """Close a stream we may have dropped early, and the HTTP response under it.

    docker-py's archive stream is a generator over a streamed response and has
    no handle of its own; closing only the generator would leave the socket to
    the garbage collector (a ResourceWarning, and a connection held meanwhile).
    """
    frame = getattr(chunks, "gi_frame", None)
    response = frame.f_locals.get("response") if frame is not None else None
    with contextlib.suppress(Exception):
        chunks.close()
    with contextlib.suppress(Exception):
        if response is not None:
            response.close()


def outputs_from_tar(chunks: Any, limits: Limits, inputs: Mapping[str, bytes],
                     wanted: set[str]) -> Outputs:
    """The changed files from the runner's tar (either backend), and what was cut.

    The runner sends the files its report names as changed, in order, while
    their sizes fit in the work dir's; one it left out is named in ``cut``.
    """
    out = read_outputs(iter(chunks), limits, inputs, wanted)
    lost = wanted - {f.name for f in out}
    if lost and not out.cut:
        out.cut = (f"output files cut: {len(lost)} file(s) over the {limits.disk_mb} MB "
                   "the work dir holds")
    return out
