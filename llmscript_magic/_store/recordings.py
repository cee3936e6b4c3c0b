"""Generations recorded in notebooks, and which recording answers which cell (replay).

Each ``%%generate`` cell replays its OWN recording: two cells with the same spec that
got different answers keep them. The running cell is known by its id (nbformat 4.5;
JupyterLab and ``llmscript run`` send it with every execute request). papermill,
nbconvert and plain nbclient send no id, so there the k-th run of a spec in this kernel
gets the k-th cell recorded with that spec (cells run in order there).

The kernel finds the notebook it is running without being told where the server
names it (``JPY_SESSION_NAME``), from the runner's command line (``papermill IN OUT``,
``jupyter nbconvert --execute NB``), or in its working folder; ``LLMSCRIPT_REPLAY`` (or
``--replay NB``) names it explicitly and makes a missing recording an error.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ReplayError
from .._protocol import OUTPUT_KEY, RECORD_KEY

#: Notebooks bigger than this are not read when looking for recordings on our own.
_MAX_BYTES = 64 * 1024 * 1024
#: At most this many notebooks of the working folder are read.
_MAX_NOTEBOOKS = 20


def record_of(cell: Mapping[str, Any]) -> dict[str, Any] | None:
    """A cell's recorded generation: cell metadata (the extension) first, then its outputs."""
    record: dict[str, Any] | None = cell.get("metadata", {}).get(RECORD_KEY)
    for output in cell.get("outputs", []):
        record = record or output.get("metadata", {}).get(OUTPUT_KEY, {}).get("record")
    return record or None


def records_in_notebook(nb: Mapping[str, Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    """(cell index, record) for every %%generate cell that carries one."""
    for index, cell in enumerate(nb.get("cells", [])):
        if record := record_of(cell):
            yield index, record


@dataclass(frozen=True)
class _Cell:
    index: int
    id: str | None
    record: dict[str, Any] | None


@dataclass(frozen=True)
class Found:
    """A lookup's answer: the record, or a one-line reason there is none."""

    record: dict[str, Any] | None
    problem: str = ""
    cell: int | None = None  # index of the answering (or changed) cell


class Recordings:
    """The recorded cells of one notebook, looked up by cell id or by spec and order."""

    def __init__(self, cells: list[_Cell], source: str) -> None:
        self.cells = cells
        self.source = source
        self._by_id = {c.id: c for c in cells if c.id}
        self._next: dict[str, int] = {}  # spec hash -> how many times it was looked up by order
        self._lock = threading.Lock()

    @classmethod
    def from_notebook(cls, path: str | os.PathLike[str]) -> Recordings:
        """The notebook's recordings; re-read only when the file changed."""
        p = Path(path)
        stat = p.stat()
        key = (str(p.resolve()), stat.st_mtime_ns, stat.st_size)
        with _loaded_lock:
            known = _loaded.get(key[0])
            if known is not None and known[0] == key:
                return known[1]
        nb = json.loads(p.read_text(encoding="utf-8"))
        cells = [_Cell(i, c.get("id"), record_of(c)) for i, c in enumerate(nb.get("cells", []))
                 if c.get("cell_type") == "code"]
        made = cls(cells, str(path))
        with _loaded_lock:
            _loaded[key[0]] = (key, made)
        return made

    def find(self, spec_hash: str, cell_id: str | None = None, by_order: bool = True) -> Found:
        """The recording for the running cell: by its id, else (``by_order``) the next
        recording of this spec in cell order."""
        cell = self._by_id.get(cell_id) if cell_id else None
        if cell is not None:
            if cell.record is None:
                return Found(None, f"cell {cell.index} was never recorded", cell.index)
            if cell.record.get("spec_hash") != spec_hash:
                return Found(None, f"cell {cell.index} changed since it was recorded (its spec "
                             "differs)", cell.index)
            return Found(cell.record, cell=cell.index)
        if not by_order:
            return Found(None, "the running cell is not in this notebook (not saved yet?)")
        matches = [c for c in self.cells
                   if c.record and c.record.get("spec_hash") == spec_hash]
        if not matches:
            return Found(None, "no cell with this spec was recorded (the spec changed since "
                         "recording, or it was never run)")
        with self._lock:
            turn = self._next.get(spec_hash, 0)
            self._next[spec_hash] = turn + 1
        chosen = matches[turn % len(matches)]
        return Found(chosen.record, cell=chosen.index)


_loaded: dict[str, tuple[tuple[str, int, int], Recordings]] = {}
_loaded_lock = threading.Lock()


# -- which cell is asking, and where its notebook is ----------------------------------
@dataclass(frozen=True)
class ReplayScope:
    """What the notebook layer knows about the running cell (set around ``generate``)."""

    cell_id: str | None = None
    notebooks: tuple[str, ...] = ()  # where to look for recordings without --replay
    #: several notebooks of the working folder whose cells match what this kernel ran
    #: (``week3.ipynb`` and its ``week3.out.ipynb``): they answer when they agree
    candidates: tuple[str, ...] = ()
    found_here: tuple[str, ...] = ()  # every notebook of the folder, for the how-to-choose line
    headless: bool = False  # a kernel run without cell ids (papermill, nbconvert, nbclient)


_scope: ContextVar[ReplayScope | None] = ContextVar("llmscript_replay_scope", default=None)


@contextmanager
def replay_scope(cell_id: str | None, notebooks: Iterable[str] = (),
                 ran: Sequence[str] = (), headless: bool = False) -> Iterator[None]:
    """Tell the pipeline which cell runs and which notebooks may hold its recording.

    ``ran``: the sources of the cells this kernel ran so far, the running one last;
    with no notebook named, they pick the folder's notebooks that hold these cells.
    """
    notebooks = tuple(notebooks)
    candidates: tuple[str, ...] = ()
    here: tuple[str, ...] = ()
    if not notebooks and cell_id is None and ran:
        here = folder_notebooks()
        candidates = tuple(p for p in here if _holds(p, ran))
        if len(candidates) == 1:
            notebooks, candidates = candidates, ()
    token = _scope.set(ReplayScope(cell_id, notebooks, candidates, here, headless))
    try:
        yield
    finally:
        _scope.reset(token)


def current_scope() -> ReplayScope:
    return _scope.get() or ReplayScope()


def kernel_notebooks() -> tuple[str, ...]:
    """Notebooks this kernel is probably running, most certain first; () if none.

    The server's ``JPY_SESSION_NAME`` wins; else the ``.ipynb`` arguments of the process
    that started the kernel (papermill, nbconvert, jupyter execute); else the working
    folder's notebook when it holds exactly one (where schedulers run a notebook).
    """
    if named := os.environ.get("JPY_SESSION_NAME", ""):
        path = Path(named)
        if path.suffix == ".ipynb" and path.is_file():
            return (str(path.resolve()),)
    if found := _runner_arguments():
        return found
    try:
        here = [p for p in Path.cwd().glob("*.ipynb") if p.is_file()]
    except OSError:
        return ()
    # Only an unambiguous folder: with several notebooks, one (a stranger's, say) must
    # never answer another's cells. LLMSCRIPT_REPLAY names the notebook explicitly.
    if len(here) == 1 and here[0].stat().st_size <= _MAX_BYTES:
        return (str(here[0].resolve()),)
    return ()


def folder_notebooks() -> tuple[str, ...]:
    """The working folder's notebooks (a bounded number, none too big), by name."""
    try:
        here = sorted(p for p in Path.cwd().glob("*.ipynb") if p.is_file())
        return tuple(str(p.resolve()) for p in here[:_MAX_NOTEBOOKS]
                     if p.stat().st_size <= _MAX_BYTES)
    except OSError:
        return ()


def _holds(notebook: str, ran: Sequence[str]) -> bool:
    """Whether the notebook's code cells include the cells this kernel ran, in order."""
    try:
        sources = iter(_code_sources(notebook))
    except (OSError, ValueError, AttributeError):
        return False
    wanted = [t for t in map(_text, ran) if t]
    return all(any(text == source for source in sources) for text in wanted)


_sources: dict[str, tuple[tuple[int, int], list[str]]] = {}


def _code_sources(notebook: str) -> list[str]:
    """The notebook's code cell sources; re-read only when the file changed."""
    stat = os.stat(notebook)
    key = (stat.st_mtime_ns, stat.st_size)
    with _loaded_lock:
        known = _sources.get(notebook)
    if known is not None and known[0] == key:
        return known[1]
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    found = [_text(c.get("source", "")) for c in nb.get("cells", [])
             if c.get("cell_type") == "code"]
    with _loaded_lock:
        _sources[notebook] = (key, found)
    return found


def _text(source: str | list[str]) -> str:
    return ("".join(source) if isinstance(source, list) else str(source)).strip()


def _runner_arguments() -> tuple[str, ...]:
    """Existing ``.ipynb`` paths on the parent process's command line (Linux only)."""
    parent = Path(f"/proc/{os.getppid()}")
    try:
        argv = (parent / "cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(parent / "cwd"))
    except OSError:
        return ()
    found = []
    for raw in argv[1:]:
        arg = raw.decode("utf-8", "replace")
        if not arg.endswith(".ipynb"):
            continue
        path = (cwd / arg) if not Path(arg).is_absolute() else Path(arg)
        try:
            if path.is_file() and path.stat().st_size <= _MAX_BYTES:
                found.append(str(path.resolve()))
        except OSError:
            continue
    return tuple(dict.fromkeys(found))


def lookup(spec_hash: str, scope: ReplayScope) -> tuple[dict[str, Any], str] | None:
    """(record, notebook) from the first of the scope's notebooks that recorded this cell.

    A cell with an id (JupyterLab, ``llmscript run``) is looked up by its id only: a new
    cell never takes another cell's answer. Without an id (papermill, nbconvert), cells
    run in order, so the k-th run of a spec takes the k-th recording of it.
    """
    for notebook in scope.notebooks:
        try:
            found = Recordings.from_notebook(notebook).find(spec_hash, scope.cell_id,
                                                            by_order=scope.cell_id is None)
        except (OSError, ValueError):
            continue  # unreadable or not JSON: not ours to complain about
        if found.record is not None:
            return found.record, notebook
        if found.cell is not None:
            return None  # this notebook has the cell, and it changed: generate anew
    return _agreed(spec_hash, scope)


def _agreed(spec_hash: str, scope: ReplayScope) -> tuple[dict[str, Any], str] | None:
    """The recording the folder's matching notebooks agree on; several answers: one line."""
    answers: dict[str, tuple[dict[str, Any], str]] = {}
    for notebook in scope.candidates:
        try:
            found = Recordings.from_notebook(notebook).find(spec_hash)
        except (OSError, ValueError):
            continue
        if found.record is not None:
            answers.setdefault(str(found.record.get("id")), (found.record, notebook))
    if len(answers) > 1:
        names = ", ".join(Path(n).name for n in scope.candidates)
        raise ReplayError(f"Several notebooks here could be this one and recorded different "
                          f"answers ({names}): set LLMSCRIPT_REPLAY=NOTEBOOK to choose one.")
    return next(iter(answers.values()), None)


__all__ = ["Found", "Recordings", "ReplayScope", "current_scope", "folder_notebooks",
           "kernel_notebooks", "lookup", "record_of", "records_in_notebook", "replay_scope"]
