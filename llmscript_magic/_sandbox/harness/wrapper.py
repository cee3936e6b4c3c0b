"""Runs the user's script as __main__ with its inputs bound, then reports on it.

Executed as a standalone file by the sandbox's own Python (stdlib only):
``python3 -B -I wrapper.py JOB STATUS_FD``, or, started warm before the job
exists, ``python3 -B -I wrapper.py --warm MODULES STATUS_FD``: it imports
MODULES (comma-separated), hides them (see ``_Stash``), then reads JOB's path
from stdin (the runner's go-signal) and carries on in this process.

JOB is a JSON file written by the runner: ``{"script": path, "inputs":
[{"name", "format", "path"}], "outputs": [names], "check": expr or null,
"parquet": bool}``. In order, the wrapper
binds the inputs into the script's globals (decoded by ``codec.py`` beside
it), runs the script unchanged, and, if it did not fail, encodes the
``outputs`` names from its globals and evaluates ``check`` there.

Everything it reports goes to STATUS_FD as frames (1 type byte, 4-byte
length, payload), never to the user's stdout or work dir: ``v`` a value
(JSON header line + data), ``m`` the outputs that cannot come back (JSON
``{name: why}``), ``c`` the check's verdict (JSON ``[ok, why]``), ``f`` PNG
figures, ``x`` the exception's name. matplotlib is touched only if the script
imported it.
"""

import contextlib
import importlib.abc
import importlib.util
import json
import os
import struct
import sys
import types
from typing import Any

VALUE_BYTES = 64 * 2**20  # all --output values together (the runner and host cap them too)
UNDEFINED = "it is not defined when the script ends"


def _send(fd: int, kind: bytes, payload: bytes, head: bytes = b"") -> None:
    """One frame; ``head`` goes before ``payload`` without copying a large value."""
    try:
        for part in (kind + struct.pack(">I", len(head) + len(payload)) + head, payload):
            data = memoryview(part)
            while data:
                data = data[os.write(fd, data):]
    except OSError:
        pass


def _codec() -> Any:
    """codec.py from this file's folder, under a name no script imports by accident."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "codec.py")
    spec = importlib.util.spec_from_file_location("_llmscript_codec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _figures(fd: int) -> None:
    if "matplotlib.pyplot" not in sys.modules:
        return
    import io

    plt = sys.modules["matplotlib.pyplot"]
    for num in plt.get_fignums():
        buf = io.BytesIO()
        try:
            plt.figure(num).savefig(buf, format="png", dpi=100)
        except Exception as exc:  # a broken figure must not hide the others
            print(f"[sandbox] figure {num} could not be saved: {exc}", file=sys.stderr)
            continue
        _send(fd, b"f", buf.getvalue())


def _bind_inputs(job: dict[str, Any], namespace: dict[str, Any], codec: Any) -> None:
    for item in job.get("inputs", []):
        with open(item["path"], "rb") as fh:
            data = fh.read()
        with contextlib.suppress(OSError):  # a root runner's copy stays (read-only to us)
            os.remove(item["path"])
        namespace[item["name"]] = codec.decode(item["format"], data)
        del data


def _send_outputs(fd: int, names: list[str], namespace: dict[str, Any], codec: Any,
                  parquet: bool) -> None:
    missing: dict[str, str] = {}
    room = VALUE_BYTES
    for name in names:
        if name not in namespace:
            missing[name] = UNDEFINED
            continue
        try:
            fmt, data = codec.encode(namespace[name], parquet=parquet)
        except codec.CodecError as err:
            missing[name] = str(err)
            continue
        except Exception as err:  # the value's own code failed (e.g. a broken __len__)
            missing[name] = f"saving it failed: {type(err).__name__}: {str(err)[:200]}"
            continue
        if len(data) > room:
            missing[name] = (f"it takes {len(data) / 2**20:.1f} MiB; at most "
                             f"{VALUE_BYTES // 2**20} MiB of results can come back")
            continue
        room -= len(data)
        head = json.dumps({"name": name, "format": fmt}).encode()
        _send(fd, b"v", data, head=head + b"\n")
        del data
    if missing:
        _send(fd, b"m", json.dumps(missing).encode())


def _check(fd: int, expr: str, namespace: dict[str, Any]) -> None:
    scope = {"json": json, "os": os, "sys": sys, **namespace}
    try:
        ok, why = bool(eval(expr, scope)), ""
    except BaseException as err:  # a check that raises is a failed check, not a crash
        ok, why = False, f"{type(err).__name__}: {err}"
    _send(fd, b"c", json.dumps([ok, why[:300]]).encode())


def _run_script(script: str, module: types.ModuleType, fd: int) -> int:
    """Exit code of the script run as __main__ in module's globals (0 = did not fail)."""
    import traceback

    with open(script, encoding="utf-8") as fh:
        source = fh.read()
    sys.modules["__main__"] = module  # as runpy does: pickle, dataclasses find the script
    try:
        exec(compile(source, script, "exec"), module.__dict__)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return 0
        if not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
            return 1
        return exc.code
    except BaseException as exc:
        _send(fd, b"x", type(exc).__name__.encode())
        # Hide the wrapper's frames: the user sees only their own code.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
        return 1
    return 0


class _Stash:
    """Pre-imported modules, out of ``sys.modules`` until the script imports them.

    A warm interpreter imports the image's heavy libraries before the job, but
    the script must see the same ``sys.modules`` as in a fresh interpreter
    (``'matplotlib' in sys.modules`` is how code, ours included, tells whether
    it plotted). The first import of a stashed name puts back its whole
    top-level package at once, as the very objects already loaded.
    """

    def __init__(self, modules: dict[str, Any]) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        for name, module in modules.items():
            self.groups.setdefault(name.partition(".")[0], {})[name] = module

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        group = self.groups.pop(name.partition(".")[0], None)
        if group is None:
            return None
        module = group.pop(name, None)
        sys.modules.update(group)  # not name itself: importlib would then load it again
        if not self.groups and self in sys.meta_path:
            sys.meta_path.remove(self)
        if module is None:
            return None  # a submodule never loaded: the normal finders take it
        return importlib.util.spec_from_loader(name, _Loaded(module))


class _Loaded(importlib.abc.Loader):
    """A loader for a module that is already loaded: hands back the same object."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.spec = getattr(module, "__spec__", None)

    def create_module(self, spec: Any) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        if self.spec is not None:
            module.__spec__ = self.spec  # importlib set ours: put the real one back


def _warm_up(modules: str, fd: int) -> str:
    """Import the heavy modules, hide them, say so (a ``w`` frame), then wait for the job.

    The runner starts the script's clock only after the ``w`` frame, so the
    imports never eat into the script's time limit.
    """
    import warnings

    before = set(sys.modules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in filter(None, modules.split(",")):
            try:
                importlib.import_module(name)
            except Exception:  # a missing library is the script's to meet
                continue
    loaded = {n: m for n, m in sys.modules.items() if n not in before}
    for name in loaded:
        del sys.modules[name]
    if loaded:
        sys.meta_path.insert(0, _Stash(loaded))
    _send(fd, b"w", b"")
    path = sys.stdin.buffer.readline().decode("utf-8").strip()
    if not path:
        os._exit(0)  # the container was discarded before its job came
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the script's stdin is empty, as in a fresh interpreter
    os.close(devnull)
    return path


def main() -> None:
    if sys.argv[1] == "--warm":
        job_path = _warm_up(sys.argv[2], int(sys.argv[3]))
        del sys.argv[1]
    else:
        job_path = sys.argv[1]
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    fd = int(sys.argv[2])
    os.set_inheritable(fd, False)
    script = job["script"]
    sys.argv = [script]
    sys.path.insert(0, os.getcwd())
    import warnings

    warnings.filterwarnings("ignore", message=".*non-interactive.*")
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=script, __builtins__=__builtins__)
    codec = _codec() if job.get("inputs") or job.get("outputs") else None
    try:
        _bind_inputs(job, module.__dict__, codec)
    except Exception as err:
        print(f"[sandbox] an input variable could not be loaded: {type(err).__name__}: {err}",
              file=sys.stderr)
        _send(fd, b"x", b"InputError")
        os._exit(1)
    code = _run_script(script, module, fd)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    if code == 0:
        if job.get("outputs"):
            _send_outputs(fd, list(job["outputs"]), module.__dict__, codec,
                          bool(job.get("parquet")))
        if job.get("check"):
            _check(fd, job["check"], module.__dict__)
    _figures(fd)
    os._exit(code if 0 <= code <= 255 else 1)


if __name__ == "__main__":
    main()
