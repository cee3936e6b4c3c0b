"""Files a sandboxed script wrote, saved in ``llmscript-files/`` beside the notebook.

The sandbox hands files back as bytes, and they are data: a user who asked for
"write totals.json" finds ``llmscript-files/totals.json``, never a file in the
kernel's working folder, where Python imports from (``--files-to DIR`` picks
another folder; ``--files-to .`` the notebook's own, by explicit choice). Promises:
a name never leaves the target folder (no ``..``, no absolute path, no symlink
along the way); names something could run (``file_rules.held_back``: dot paths,
importable files, notebooks, auto-run names, control or bidi characters) are held
back, as is anything past ``MAX_SAVED_FILES`` / ``MAX_SAVED_BYTES``; an existing
file is never replaced unless ``--overwrite`` is given AND this cell saved it
(the folder's manifest, ``.llmscript-manifest.json``, says which cell saved
what); otherwise it is saved as ``totals (1).json`` and the user is told; identical
content already on disk is left alone, so a re-run or a replay does not pile up
copies. Each file gets one JSON-ready entry the views show and the notebook keeps;
a held-back file's entry says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .file_rules import (
    FILES_FOLDER,
    MAX_SAVED_BYTES,
    MAX_SAVED_FILES,
    held_back,
    on_sys_path,
)

if TYPE_CHECKING:
    from .._sandbox import OutputFile

#: Names the harness may use for its own files; never saved or listed.
INTERNAL_PREFIXES = ("_llmscript", "__llmscript", ".llmscript")
MAX_COPIES = 999
MANIFEST = ".llmscript-manifest.json"


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


class Manifest:
    """Which cell saved which file in one folder: ``--overwrite`` replaces only those."""

    def __init__(self, root: Path) -> None:
        self.path = root / MANIFEST
        self.files: dict[str, dict[str, str]] = {}
        try:
            data = json.loads(self.path.read_bytes()) if not self.path.is_symlink() else {}
            files = data.get("files", {}) if isinstance(data, dict) else {}
            self.files = {str(k): v for k, v in files.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            pass
        self.changed = False

    def owned(self, rel: str, owner: str) -> bool:
        return bool(owner) and self.files.get(rel, {}).get("owner") == owner

    def add(self, rel: str, owner: str, data: bytes) -> None:
        self.files[rel] = {"owner": owner, "sha256": hashlib.sha256(data).hexdigest()}
        self.changed = True

    def save(self) -> None:
        if self.changed:
            with contextlib.suppress(OSError):  # a lost manifest only means no --overwrite
                _replace(self.path, json.dumps({"version": 1, "files": self.files},
                                               indent=1).encode())


def _held(entry: dict[str, Any], why: str) -> dict[str, Any]:
    return {**entry, "status": "held back", "note": f"held back: {why}"}


def save_one(root: Path, f: OutputFile, overwrite: bool, manifest: Manifest | None = None,
             owner: str = "", importable_folder: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f.name, "size": f.size, "path": None, "status": "not saved"}
    rel = _relative(f.name)
    if rel is None:
        return _held(entry, "the name points outside the folder")
    if (why := held_back(rel, importable_folder=importable_folder)) is not None:
        return _held(entry, why)
    if len(f.data) != f.size:
        return {**entry, "note": "not saved: the sandbox returned only part of it"}
    manifest = manifest or Manifest(root)
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
            return _held(entry, "the name points outside the folder")
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
            key = target.relative_to(root).as_posix()
            if overwrite and manifest.owned(key, owner):
                _replace(target, f.data)
                manifest.add(key, owner, f.data)
                return {**entry, "path": _shown(target), "status": "replaced",
                        "note": f"replaced {_shown(target)} (--overwrite)"}
            taken = target
            target = _free_name(target)
            _write_new(target, f.data)
            manifest.add(target.relative_to(root).as_posix(), owner, f.data)
            why = ("this cell did not save it, so --overwrite leaves it" if overwrite
                   else "--overwrite replaces it")
            return {**entry, "path": _shown(target), "status": "renamed",
                    "note": f"saved as {_shown(target)}: {_shown(taken)} exists ({why})"}
        _write_new(target, f.data)
        manifest.add(rel.as_posix(), owner, f.data)
    except OSError as err:
        return {**entry, "note": f"not saved: {err.strerror or err}"}
    return {**entry, "path": _shown(target), "status": "saved", "note": f"saved as "
                                                                      f"{_shown(target)}"}


def default_folder() -> Path:
    """``llmscript-files/`` in the working folder (the notebook's): never the folder itself."""
    return Path.cwd() / FILES_FOLDER


def save_files(files: Sequence[OutputFile], folder: str | os.PathLike[str] | None = None, *,
               save: bool = True, overwrite: bool = False, why_not: str = "",
               owner: str = "") -> list[dict[str, Any]]:
    """Save each (non-internal) file under ``folder`` (default: ``default_folder()``).

    Returns one entry per file: name, size, path written (or None), status
    (saved, renamed, replaced, unchanged, held back, not saved) and a one-line note.
    ``save=False`` lists them as kept in the result only, with ``why_not``.
    ``owner`` names the cell: ``--overwrite`` replaces only what it saved before.
    """
    shown = [f for f in files if not is_internal(f.name)]
    if not save:
        note = why_not or "kept in the result only (--no-files)"
        return [{"name": f.name, "size": f.size, "path": None, "status": "not saved",
                 "note": note} for f in shown]
    root = Path(folder).expanduser() if folder else default_folder()
    try:
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
    except OSError as err:
        return [{"name": f.name, "size": f.size, "path": None, "status": "not saved",
                 "note": f"not saved: cannot use folder {root} ({err.strerror or err})"}
                for f in shown]
    manifest = Manifest(root)
    importable = on_sys_path(root)
    entries: list[dict[str, Any]] = []
    count = total = 0
    for f in shown:
        base = {"name": f.name, "size": f.size, "path": None, "status": "not saved"}
        if count >= MAX_SAVED_FILES:
            entries.append(_held(base, f"more than {MAX_SAVED_FILES} files in one run"))
            continue
        if total + f.size > MAX_SAVED_BYTES:
            entries.append(_held(base, f"more than {MAX_SAVED_BYTES // 2**20} MiB in one run"))
            continue
        entry = save_one(root, f, overwrite, manifest, owner, importable)
        if entry["path"] is not None:
            count += 1
            total += f.size
        entries.append(entry)
    manifest.save()
    return entries


__all__ = ["default_folder", "is_internal", "save_files"]
