"""Files a sandboxed script wrote, saved next to the notebook (or under ``--files-to``).

The sandbox hands files back as bytes; a user who asked for "write totals.json"
expects ``totals.json`` on disk, beside the notebook (the kernel's working
directory). Three promises: a name never leaves the target folder (no ``..``,
no absolute path, no symlink along the way); an existing file is never
replaced without ``--overwrite`` (the file is saved as ``totals (1).json`` and
the user is told); and identical content already on disk is left alone, so a
re-run or a replay does not pile up copies. Each file gets one JSON-ready
entry the views show and the notebook keeps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._sandbox import OutputFile

#: Names the harness may use for its own files; never saved or listed.
INTERNAL_PREFIXES = ("_llmscript", "__llmscript", ".llmscript")
MAX_COPIES = 999


def is_internal(name: str) -> bool:
    """A file of the harness itself (by its first path part)."""
    return name.replace("\\", "/").lstrip("/").split("/")[0].startswith(INTERNAL_PREFIXES)


def _relative(name: str) -> PurePosixPath | None:
    """The file's path inside the target folder, or None when it would leave it."""
    text = name.replace("\\", "/")
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return None
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _shown(path: Path) -> str:
    """The path as the user reads it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def _free_name(target: Path) -> Path:
    """``totals (1).json``, ``totals (2).json``, ...: the first name not taken."""
    suffix = "".join(target.suffixes[-1:])
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    for n in range(1, MAX_COPIES + 1):
        candidate = target.with_name(f"{stem} ({n}){suffix}")
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"{MAX_COPIES} copies of {target.name} already exist")


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` exclusively (never follows or replaces anything)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _replace(path: Path, data: bytes) -> None:
    """Write next to ``path`` and rename over it: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.llmscript-tmp")
    if os.path.lexists(tmp):
        tmp.unlink()
    _write_new(tmp, data)
    os.replace(tmp, path)


def save_one(root: Path, f: OutputFile, overwrite: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f.name, "size": f.size, "path": None, "status": "not saved"}
    rel = _relative(f.name)
    if rel is None:
        return {**entry, "note": "not saved: the name points outside the folder"}
    if len(f.data) != f.size:
        return {**entry, "note": "not saved: the sandbox returned only part of it"}
    target = root / rel
    parent = target.parent
    try:
        # every folder on the way must be a real folder inside root (no symlink escape)
        for step in reversed([parent, *parent.parents]):
            if step == root or root not in (step, *step.parents):
                continue
            if step.is_symlink() or (step.exists() and not step.is_dir()):
                return {**entry, "note": f"not saved: {_shown(step)} is not a plain folder"}
            step.mkdir(exist_ok=True)
        if not _inside(root, parent):
            return {**entry, "note": "not saved: the name points outside the folder"}
        if target.is_symlink() or (target.exists() and not target.is_file()):
            if not overwrite:
                target = _free_name(target)
            else:
                return {**entry, "note": f"not saved: {_shown(target)} is a link or a folder "
                                         "and is never replaced"}
        if target.is_file():
            if target.read_bytes() == f.data:
                return {**entry, "path": _shown(target), "status": "unchanged",
                        "note": f"already in {_shown(target)} (same content)"}
            if overwrite:
                _replace(target, f.data)
                return {**entry, "path": _shown(target), "status": "replaced",
                        "note": f"replaced {_shown(target)} (--overwrite)"}
            taken = target
            target = _free_name(target)
            _write_new(target, f.data)
            return {**entry, "path": _shown(target), "status": "renamed",
                    "note": f"saved as {_shown(target)}: {_shown(taken)} exists "
                            "(--overwrite replaces it)"}
        _write_new(target, f.data)
    except OSError as err:
        return {**entry, "note": f"not saved: {err.strerror or err}"}
    return {**entry, "path": _shown(target), "status": "saved", "note": f"saved as "
                                                                      f"{_shown(target)}"}


def save_files(files: Sequence[OutputFile], folder: str | os.PathLike[str] | None = None, *,
               save: bool = True, overwrite: bool = False,
               why_not: str = "") -> list[dict[str, Any]]:
    """Save each (non-internal) file under ``folder`` (default: the working directory).

    Returns one entry per file: name, size, path written (or None), status
    (saved, renamed, replaced, unchanged, not saved) and a one-line note.
    ``save=False`` lists them as kept in the result only, with ``why_not``.
    """
    shown = [f for f in files if not is_internal(f.name)]
    if not save:
        note = why_not or "kept in the result only (--no-files)"
        return [{"name": f.name, "size": f.size, "path": None, "status": "not saved",
                 "note": note} for f in shown]
    root = Path(folder or os.getcwd()).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
    except OSError as err:
        return [{"name": f.name, "size": f.size, "path": None, "status": "not saved",
                 "note": f"not saved: cannot use folder {root} ({err.strerror or err})"}
                for f in shown]
    return [save_one(root, f, overwrite) for f in shown]


__all__ = ["is_internal", "save_files"]
