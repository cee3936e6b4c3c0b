"""When a kernel holds a notebook nobody vouched for, without ``llmscript run``.

``llmscript run`` hands its kernel the untrusted-notebook policy (``trust.ENV``). The
same policy binds every other way a notebook from someone else gets executed:

- a headless runner: the kernel's parent is papermill, ``jupyter nbconvert --execute``,
  ``jupyter execute`` or a script driving papermill/nbclient;
- a front end (JupyterLab, Notebook 7) running a notebook Jupyter does not trust: its
  file (``JPY_SESSION_NAME``, as the server started the kernel) carries no signature in
  this user's Jupyter notary (``jupyter trust NOTEBOOK`` adds one; the server signs
  what the user saved).

``LLMSCRIPT_TRUST=1`` in the runner's environment vouches for the notebook; ``=0``
applies the policy to any kernel (a runner we cannot recognise). Like the policy, both
are read from the environment the kernel STARTED with: a cell cannot change them.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

TRUST_ENV = "LLMSCRIPT_TRUST"
#: how each kind of run lifts the policy, the end of every refusal
LIFT = {
    "headless": f"set {TRUST_ENV}=1 for the runner only if you trust this notebook",
    "front end": "trust the notebook (`jupyter trust NOTEBOOK`, or save it from your own "
                 "session) only if you trust it",
}
_RUNNERS = ("papermill", "nbconvert", "jupyter-execute", "nbclient", "execute_notebook")


def initial_environ() -> dict[str, str] | None:
    """The environment this process started with (Linux), None where it cannot be read."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep:
            out[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


def in_kernel() -> bool:
    """This process is a Jupyter kernel (not IPython in a terminal, not a test process)."""
    return "ipykernel" in os.path.basename(sys.argv[0] if sys.argv else "") or \
        "ipykernel_launcher" in " ".join(sys.argv[:3])


def headless_runner() -> str | None:
    """The runner that started this kernel, when its command line names one."""
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for raw in argv[:3]:  # the interpreter, the tool (or -m/-c and its argument)
        text = raw.decode("utf-8", "replace")
        if text.endswith(".ipynb"):
            continue
        for name in _RUNNERS:
            if name in os.path.basename(text) or ("\n" in text and name in text) or (
                    text.startswith(("import", "from")) and name in text):
                return name
    return None


#: notebooks (path, mtime, size) found signed; an unsigned one is checked again each time,
#: as the user may trust it meanwhile (that changes the notary, not the file)
_SIGNED: set[tuple[str, float, int]] = set()


def _signed(path: str, mtime: float, size: int) -> bool:
    import nbformat
    from nbformat.sign import NotebookNotary

    if (path, mtime, size) in _SIGNED:
        return True
    notary = NotebookNotary()
    try:
        nb = nbformat.read(path, as_version=4)
        signed = bool(notary.check_signature(nb))
    except Exception:  # unreadable or not a notebook: nothing vouches for it
        return False
    finally:
        notary.close()  # its signature database: a connection, not left to the collector
    if signed:
        _SIGNED.add((path, mtime, size))
    return signed


def untrusted_notebook(env: dict[str, str]) -> str | None:
    """The front end's notebook, when Jupyter's notary has no signature for it."""
    named = env.get("JPY_SESSION_NAME", "")
    path = Path(named)
    if path.suffix != ".ipynb":
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return None if _signed(str(path.resolve()), stat.st_mtime, stat.st_size) else str(path)


@functools.lru_cache(maxsize=1)
def engine_isolation() -> str:
    """The strongest isolation this machine's engine gives: gvisor where it has runsc."""
    try:
        from .._sandbox.engine import connect, gvisor_problem

        if gvisor_problem(connect(timeout=10)) is None:
            return "gvisor"
    except Exception:  # no engine: runs fail with their own line; nothing to weaken
        pass
    return "container"


def implicit_kind() -> str | None:
    """``headless`` or ``front end`` when this kernel runs an untrusted notebook, else None."""
    env = initial_environ()
    if env is None or not in_kernel():
        return None
    vouched = env.get(TRUST_ENV, "")
    if vouched == "1":
        return None
    if vouched == "0" or headless_runner() is not None:
        return "headless"
    if untrusted_notebook(env) is not None:
        return "front end"
    return None


#: the working folder when this module was first imported (``%load_ext``): a later
#: ``os.chdir`` in a cell does not move the notebook's folder
_START_CWD = os.path.realpath(os.getcwd())


def runner_roots(env: dict[str, str], kind: str) -> tuple[str, ...]:
    """The run's folders, from what no cell can change: a headless runner's working folder
    and the notebooks on its command line, the front end's notebook, the kernel's first
    folder (a front end's server folder is often the home folder: never a root).
    """
    from .._store.recordings import _runner_arguments

    roots = {_START_CWD}
    if kind == "headless":
        roots.add(os.path.realpath(f"/proc/{os.getppid()}/cwd"))
        roots |= {str(Path(p).resolve().parent) for p in _runner_arguments()}
    if named := env.get("JPY_SESSION_NAME", ""):
        roots.add(str(Path(named).resolve().parent))
    return tuple(sorted(roots))


__all__ = ["LIFT", "TRUST_ENV", "engine_isolation", "implicit_kind", "in_kernel",
           "initial_environ", "runner_roots"]
