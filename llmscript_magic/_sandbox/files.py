"""Files in and out of the sandbox as tar streams, checked member by member.

Inputs are packed with safe relative names; outputs are read as a stream with
a byte budget and only regular files come back: links, devices, absolute or
`..` names and oversize files are skipped, never followed.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError, SandboxError
from .base import Limits, OutputFile


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
                    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 65534, 65534
                    tar.addfile(info)
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.uid, info.gid = len(data), 0o644, 65534, 65534
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(bytes(data)))
    return buf.getvalue()


def read_outputs(chunks: Any, limits: Limits, inputs: Mapping[str, bytes],
                 wanted: set[str]) -> list[OutputFile]:
    """Regular files from a get_archive stream, checked member by member."""
    budget = limits.disk_mb * 2**20 + 2**20
    read = 0

    class _Reader(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = b""

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            nonlocal read
            while not self.buf:
                try:
                    self.buf = next(chunks)
                except StopIteration:
                    return 0
                read += len(self.buf)
                if read > budget:
                    raise SandboxError("The sandbox returned more data than its disk holds")
            n = min(len(b), len(self.buf))
            b[:n], self.buf = self.buf[:n], self.buf[n:]
            return n

    out = []
    with tarfile.open(fileobj=io.BufferedReader(_Reader()), mode="r|") as tar:
        for member in tar:
            name = member.name.split("/", 1)[1] if "/" in member.name else ""
            parts = name.split("/")
            if (not member.isreg() or not name or member.name.startswith("/")
                    or ".." in parts or member.size > limits.file_bytes or name not in wanted):
                continue  # links, devices, escapes and oversize files are never returned
            fh = tar.extractfile(member)
            data = fh.read() if fh is not None else b""
            if inputs.get(name) == data:
                continue
            out.append(OutputFile(name=name, size=len(data), data=data))
    return sorted(out, key=lambda f: f.name)
