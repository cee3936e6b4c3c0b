"""Runs the user's script as __main__ with its inputs bound, then reports on it.

Executed as a standalone file by the sandbox's own Python (stdlib only):
``python3 -B -I wrapper.py JOB STATUS_FD`` (a fresh interpreter), or as a
container's zygote, ``python3 -B -I wrapper.py --zygote MODULES CTL_FD``: it
imports MODULES (comma-separated) once, hides them (see ``_Stash``), and
forks one process per run, which becomes the run's uid and runs its JOB
(see ``_zygote``). For ``--session`` the zygote forks, once, a session
process that runs each cell in globals that stay (``session.py`` beside it,
``_fork_apart``); the local backend starts one as ``wrapper.py --session
CTL_FD`` inside bubblewrap.

JOB is a JSON file written by the runner: ``{"script": path, "inputs":
[{"name", "format", "path"}], "outputs": [names], "check": expr or null,
"parquet": bool}``. In order, the wrapper binds the inputs into the script's
globals (decoded by ``codec.py`` beside it), runs the script unchanged, and,
if it did not fail, encodes the ``outputs`` names and the names the
``check`` uses from its globals.

The check's verdict is not the script's process's to give: anything that
process says, the script could have written. It is evaluated by ``verdict``
over the values as data (``{"check": expr, "values": [{"name", "format",
"path"} | {"name", "module"} | {"name", "opaque"}]}``), in a process the
script cannot reach: forked by the zygote before anything of the script
runs, under a uid of its own (``_fork_twin``), or
else a fresh ``python3 -B -I wrapper.py --verdict VJOB STATUS_FD`` that the
runner starts once every process of the script is gone (and, in the local
backend, in a sandbox of its own over what the run left). A check that calls
what cannot cross as data (the script's own functions or classes) is not
evaluated, and says how to write it instead: nothing of the script runs in
the evaluator.

Everything it reports goes to STATUS_FD as frames (1 type byte, 4-byte
length, payload; the kinds are named in ``protocol.py`` beside it), never
to the user's stdout or work dir: ``v`` a value
(JSON header line + data), ``k`` a value the check uses (the same, or a
header naming a module or saying why it is ``opaque``), ``m`` the outputs
that cannot come back (JSON ``{name: why}``), ``c`` (from the evaluator) the
check's verdict (JSON ``[ok, why]``), ``f`` PNG figures, ``x`` the
exception's name. matplotlib is touched only if the script imported it.
"""

import contextlib
import importlib.abc
import importlib.util
import json
import os
import sys
import types
from typing import Any


def _beside(name: str) -> Any:
    """A harness module from this file's folder, under a name no script imports by accident."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_llmscript_" + name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:  # the host imports this file from the package
    from . import protocol as proto
except ImportError:  # the sandbox runs it as a program (see protocol.py)
    proto = _beside("protocol")

VALUE_BYTES = proto.VALUE_BYTES  # all --output values together (the runner and host cap them too)
UNDEFINED = proto.UNDEFINED


def _send(fd: int, kind: bytes, payload: bytes, head: bytes = b"") -> None:
    """One frame; ``head`` goes before ``payload`` without copying a large value."""
    try:
        for part in (kind + proto.HEADER.pack(len(head) + len(payload)) + head, payload):
            data = memoryview(part)
            while data:
                data = data[os.write(fd, data):]
    except OSError:
        pass


def _codec() -> Any:
    """codec.py from this file's folder, under a name no script imports by accident."""
    return _beside("codec")


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
        _send(fd, proto.FIGURE, buf.getvalue())


def _bind_inputs(job: dict[str, Any], namespace: dict[str, Any], codec: Any) -> None:
    for item in job.get("inputs", []):
        with open(item["path"], "rb") as fh:
            data = fh.read()
        with contextlib.suppress(OSError):  # a root runner's copy stays (read-only to us)
            os.remove(item["path"])
        namespace[item["name"]] = codec.decode(item["format"], data)
        del data


def _encoded(value: Any, codec: Any, parquet: bool, room: int) -> tuple[str, bytes] | str:
    """(format, data) for a value that may cross, else a phrase saying why not."""
    try:
        fmt, data = codec.encode(value, parquet=parquet)
    except codec.CodecError as err:
        return str(err)
    except Exception as err:  # the value's own code failed (e.g. a broken __len__)
        return f"saving it failed: {type(err).__name__}: {str(err)[:200]}"
    if len(data) > room:
        return (f"it takes {len(data) / 2**20:.1f} MiB; at most "
                f"{VALUE_BYTES // 2**20} MiB of results can come back")
    return fmt, data


def _send_outputs(fd: int, names: list[str], namespace: dict[str, Any], codec: Any,
                  parquet: bool) -> tuple[int, list[str]]:
    """Send the ``--output`` values: (bytes of VALUE_BYTES left, the names sent)."""
    missing: dict[str, str] = {}
    room = VALUE_BYTES
    for name in names:
        if name not in namespace:
            missing[name] = UNDEFINED
            continue
        got = _encoded(namespace[name], codec, parquet, room)
        if isinstance(got, str):
            missing[name] = got
            continue
        fmt, data = got
        room -= len(data)
        head = json.dumps({"name": name, "format": fmt}).encode()
        _send(fd, proto.VALUE, data, head=head + b"\n")
        del data, got
    if missing:
        _send(fd, proto.MISSING, json.dumps(missing).encode())
    return room, [n for n in names if n not in missing]


def check_names(expr: str) -> list[str]:
    """The globals a check expression reads: not its comprehensions' or lambdas' own names."""
    import ast

    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return []
    nodes = list(ast.walk(tree))
    own = {n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    own |= {a.arg for n in nodes if isinstance(n, ast.Lambda) for a in ast.walk(n.args)
            if isinstance(a, ast.arg)}
    return sorted({n.id for n in nodes if isinstance(n, ast.Name)} - own)


def _send_check_values(fd: int, expr: str, namespace: dict[str, Any], sent: list[str],
                       codec: Any, room: int) -> None:
    """The values the check reads, for the evaluator (see ``verdict``).

    Modules go by name (the evaluator imports the image's own); the script's
    own modules, its functions and other objects that cannot cross as data
    go as ``opaque``, with why.
    """
    for name in check_names(expr):
        if name not in namespace or name in sent:
            continue  # a builtin, a comprehension's variable, or already sent as an output
        value = namespace[name]
        head: dict[str, Any] = {"name": name}
        data = b""
        if isinstance(value, types.ModuleType):
            origin = str(getattr(getattr(value, "__spec__", None), "origin", "") or "")
            if origin.startswith(os.getcwd() + os.sep):
                head["opaque"] = "it is a module of the script's own"
            else:
                head["module"] = value.__name__
        else:
            got = _encoded(value, codec, False, room)
            if isinstance(got, str):
                head["opaque"] = got  # "it is a function", "it takes 80.0 MiB; ..."
            else:
                head["format"], data = got
                room -= len(data)
        _send(fd, proto.CHECK_VALUE, data, head=json.dumps(head).encode() + b"\n")


def _evaluate(expr: str, scope: dict[str, Any]) -> list[Any]:
    """[verdict, why]: a check that raises is a failed check, not a crash."""
    try:
        ok, why = bool(eval(expr, scope)), ""
    except BaseException as err:
        ok, why = False, f"{type(err).__name__}: {err}"
    return [ok, why[:300]]


def verdict(job_path: str, fd: int) -> None:
    """``--verdict``: the check over the script's values as data, in a process it never touched.

    Sends ``c`` ``[ok, why]``; ``ok`` is null when the check cannot be
    evaluated apart from the script (it calls the script's own function).
    """
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    scope: dict[str, Any] = {"json": json, "os": os, "sys": sys}
    apart: list[str] = []
    codec = None
    wanted = set(check_names(job["check"]))  # outputs the check does not read stay unread
    try:
        for item in job["values"]:
            name = item["name"]
            if name not in wanted:
                continue
            if "opaque" in item:
                apart.append(f"{name} ({item['opaque']})")
            elif "module" in item:
                try:
                    scope[name] = importlib.import_module(item["module"])
                except Exception:
                    apart.append(f"{name} (module {item['module']}, not in the image)")
            else:
                codec = codec or _codec()
                with open(item["path"], "rb") as fh:
                    scope[name] = codec.decode(item["format"], fh.read())
    except Exception as err:  # values the script mangled: its check fails
        why = f"its values could not be read: {type(err).__name__}: {str(err)[:200]}"
        _send(fd, proto.VERDICT, json.dumps([False, why]).encode())
        return
    if apart:
        why = (f"it uses {', '.join(apart)}; checks run apart from the script, over the values "
               "it leaves (numbers, text, lists, dicts, arrays, DataFrames): compute the value "
               "in the script (r = f(2)) and check that (--check 'r == 4')")
        _send(fd, proto.VERDICT, json.dumps([None, why[:300]]).encode())
        return
    _send(fd, proto.VERDICT, json.dumps(_evaluate(job["check"], scope)).encode())


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
        _send(fd, proto.EXCEPTION, type(exc).__name__.encode())
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


def _become(uid: int) -> None:
    """Drop from root to uid for good (a no-op when not root: the runner did it)."""
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _twin(job_fd: int, stat_fd: int, uid: int) -> None:
    """The evaluator's life: own session and uid, says ``w``, evaluates one job, exits."""
    os.setsid()
    _become(uid)
    os.chdir(proto.WORK)
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    os.close(null)
    _send(stat_fd, proto.WAITING, b"")
    path = b""
    while not path.endswith(b"\n"):
        chunk = os.read(job_fd, 4096)
        if not chunk:
            break
        path += chunk
    if path.strip():
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if p != here]
        verdict(path.decode("utf-8").strip(), stat_fd)


def _import_hidden(modules: str) -> None:
    """Import the heavy modules, then hide them behind a ``_Stash`` (see there)."""
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


AS_SLACK = 256 * 2**20  # address space a run may reserve beyond its memory limit


def _vm_size() -> int:
    """This process's address space in bytes (the base its RLIMIT_AS is added to)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _preloaded(package: str) -> bool:
    """Whether this process holds package already (imported, or stashed by the zygote)."""
    return package in sys.modules or any(package in getattr(finder, "groups", {})
                                         for finder in sys.meta_path)


def _reseed() -> None:
    """A forked run must not repeat its siblings' random numbers (``random`` reseeds itself)."""
    numpy = sys.modules.get("numpy.random")
    for finder in sys.meta_path:
        numpy = numpy or getattr(finder, "groups", {}).get("numpy", {}).get("numpy.random")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.seed()


def _prepare(order: dict[str, Any]) -> dict[str, Any]:
    """In the zygote, just before it forks a run: what the run's process would do first.

    Under gVisor a forked child pays a page fault for every page it touches
    first (read or write), the zygote does not: so the run's environment,
    its job (data: JSON the runner wrote), the base of its address-space
    limit and a fresh numpy seed are made here, and the child inherits them.
    Nothing of a script has run in the zygote, and the next fork gets its own.
    """
    import gc

    _set_env(order)
    gc.freeze()  # the run's collections never walk (so never copy) the zygote's objects
    try:
        with open(str(order["job"]), encoding="utf-8") as fh:
            job = json.load(fh)
    except (OSError, ValueError):
        job = None  # the child meets the error, not the zygote
    return {"job": job, "vm": _vm_size() if order.get("memory") else 0}


def _set_env(order: dict[str, Any]) -> None:
    """The run's environment and a fresh numpy seed (forked runs would share one)."""
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in (order.get("env") or {}).items()})
    _reseed()


def _forked_run(order: dict[str, Any], ready: dict[str, Any], out: int, err: int,
                fd: int) -> None:
    """In a child of the zygote: become the run's own uid and session, then run its job
    (``ready``: what ``_prepare`` made for it in the zygote)."""
    _enter_run(order, out, err, ready)
    _run_job(ready["job"] if ready["job"] is not None else _load(str(order["job"])), fd)


def _enter_run(order: dict[str, Any], out: int, err: int,
               ready: dict[str, Any] | None = None) -> None:
    """Become a run (or a session) of the zygote's: own session, rlimits, uid, stdio, env.

    Still root here (the zygote is): the rlimits are set first (the run's
    address space is this copy's plus its memory limit and ``AS_SLACK``), then the uid, so the
    run may only lower them. Nothing of the zygote's process state is shared
    back: whatever the script changes (modules, builtins, environment, signal
    handlers, rlimits) ends with this process. ``ready`` is what ``_prepare``
    made for it (None for a session: its environment is made here).
    """
    import resource

    os.setsid()
    limits = dict(order.get("rlimits") or {})
    if order.get("memory"):  # address space, not memory: thread stacks and arenas count
        vm = _vm_size() if ready is None else int(ready["vm"])
        limits["as"] = vm + int(order["memory"]) + AS_SLACK
    for name, value in limits.items():
        which = getattr(resource, f"RLIMIT_{str(name).upper()}", None)
        if which is not None:
            resource.setrlimit(which, (int(value), int(value)))
    _become(int(order["uid"]))
    null = os.open(os.devnull, os.O_RDONLY)
    for src, std in ((null, 0), (out, 1), (err, 2)):
        os.dup2(src, std)
    for extra in {null, out, err} - {0, 1, 2}:
        os.close(extra)
    if ready is None:  # a session: nothing was prepared for it in the zygote
        _set_env(order)
    os.chdir(proto.WORK)


def _fork_twin(job_fd: int, stat_fd: int, uid: int, close: list[int]) -> int:
    """The check's evaluator for one run, forked before its script.

    It has a uid of its own and its own session, so the script can neither
    signal, trace nor read it, and the kill of the run's uid does not reach
    it. It keeps only its two pipes to the runner, says it is there (``w``),
    and evaluates the check job whose path comes on the first (see
    ``verdict``); the runner kills it after the verdict. This saves a fresh
    interpreter and its imports per check.
    """
    pid = os.fork()
    if pid:
        return pid
    try:  # pragma: no cover (the evaluator)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        _twin(job_fd, stat_fd, uid)
    finally:
        os._exit(0)


def _zygote(modules: str, ctl_fd: int, later: str = "") -> None:
    """``--zygote``: import once, then fork one fresh process per run, for a whole container.

    The runner sends each run's order (JSON: job path, uid, evaluator uid,
    env, rlimits, memory) on the control socket with the run's stdout,
    stderr and status pipes (and the evaluator's two, for a check) as
    passed descriptors. The zygote forks the evaluator (if asked), then the
    run, which answers ``{"pid", "twin"}`` itself before anything of the
    script runs; the zygote waits for the run and answers ``{"exit": code}``.
    It never runs anything of a script itself.

    While a child it forked lives, the zygote touches as little memory as
    it can: under gVisor the first write to each 2 MiB of memory still
    shared with a child copies all of it (about 2.5 ms each), and once the
    children are gone the same writes are free. So everything is prepared
    before the forks (``_prepare``), and in between the zygote only closes
    the run's descriptors and waits.

    ``later``: modules imported (hidden the same way) before the first run whose order
    says it ``plots``, in the environment the zygote started with; until then every fork
    is the cheaper for their absence.
    """
    import resource  # noqa: F401 (each run's rlimits: imported once, not per fork)
    import socket

    _import_hidden(modules)
    boot_env = dict(os.environ)
    sock = socket.socket(fileno=ctl_fd)
    sock.send(b'{"ready": true}')
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 65536, 8)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)  # the runner is gone (or discarded us)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # evaluators of earlier runs
                pass
        order = json.loads(msg)
        if order.get("kind") in ("session", "twin"):
            sock.send(json.dumps(_fork_apart(order, fds, sock.fileno())).encode())
            continue
        if later and order.get("plots"):  # no child of ours runs now: the writes are free
            os.environ.clear()
            os.environ.update(boot_env)
            _import_hidden(later)
            later = ""
        ready = _prepare(order)
        twin = None
        if order.get("twin_uid") is not None and len(fds) >= 5:
            twin = _fork_twin(fds[3], fds[4], int(order["twin_uid"]),
                              [sock.fileno(), *fds[:3]])
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the run)
            code = 70
            try:
                sock.send(json.dumps({"pid": os.getpid(), "twin": twin}).encode())
                sock.close()
                for fd in fds[3:]:
                    os.close(fd)
                _forked_run(order, ready, fds[0], fds[1], fds[2])
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())


def _fork_apart(order: dict[str, Any], fds: list[int], sock_fd: int) -> dict[str, Any]:
    """A process the zygote does not wait for: a session (``session.py``) or an evaluator.

    ``session``: fds is the session's control socket; the child becomes the
    session's uid and serves its cells until the socket closes. ``twin``: fds
    are an evaluator's two pipes (see ``_fork_twin``), for a session's check.
    """
    if order["kind"] == "twin" and len(fds) >= 2:
        pid = _fork_twin(fds[0], fds[1], int(order["twin_uid"]), [sock_fd])
    elif order["kind"] == "session" and fds:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the session)
            try:
                os.close(sock_fd)
                null = os.open(os.devnull, os.O_WRONLY)
                _enter_run(order, null, null)
                _session_module().serve(fds[0], _session_hooks())
            finally:
                os._exit(0)
    else:
        pid = None
    for fd in fds:
        os.close(fd)
    return {"pid": pid}


def _session_module() -> Any:
    """session.py from this file's folder (the harness's; see ``_codec``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "session.py")
    spec = importlib.util.spec_from_file_location("_llmscript_session", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _session_hooks() -> dict[str, Any]:
    """What a session's cell does that a single run does too: the same functions."""
    return {"place_files": _place_files, "codec": _codec, "bind_inputs": _bind_inputs,
            "run_script": _run_script, "send_outputs": _send_outputs,
            "send_check_values": _send_check_values, "figures": _figures,
            "mpl_home": _mpl_home, "send": _send, "value_bytes": VALUE_BYTES,
            "proto": proto}


def _place_files(job: dict[str, Any]) -> None:
    """The run's input files, copied into its work dir as its own uid (they are its to change).

    A host file bound read-only (``links``) gets a symlink of its name instead:
    read in place, never copied, and the script cannot write to it.
    """
    for item in job.get("links") or []:
        rel = str(item["name"])
        if rel.startswith("/") or ".." in rel.split("/"):
            continue
        if os.path.dirname(rel):
            os.makedirs(os.path.dirname(rel), exist_ok=True)
        if os.path.lexists(rel):  # a session's earlier cell placed it
            os.remove(rel)
        os.symlink(str(item["target"]), rel)
    for item in job.get("files") or []:
        rel = str(item["name"])
        if rel.startswith("/") or ".." in rel.split("/"):
            continue  # the host checked the names; never trust that twice
        folder = os.path.dirname(rel)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(item["path"], "rb") as src, open(rel, "wb") as dst:
            while chunk := src.read(2**20):
                dst.write(chunk)


MPL_SHARED = proto.MPL_SHARED  # the runner's copy of the image's font list


def _mpl_home() -> None:
    """A matplotlib config folder of the run's own (MPLCONFIGDIR), open for the runner to remove.

    matplotlib wants it writable, else it builds its font list anew, slowly,
    in a temporary folder; the image's prebuilt list is linked in. Not for a
    run forked from a zygote that imported matplotlib: that one already knows
    its folders (matplotlib reads MPLCONFIGDIR once, on import).
    """
    home = os.environ.get("MPLCONFIGDIR")
    if not home or os.path.isdir(home) or _preloaded("matplotlib"):
        return
    with contextlib.suppress(OSError):
        os.makedirs(home)
        os.chmod(home, 0o777)
        for name in os.listdir(MPL_SHARED):
            os.symlink(os.path.join(MPL_SHARED, name), os.path.join(home, name))


def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return dict(json.load(fh))


def _run_job(job: dict[str, Any], fd: int) -> None:
    """Run job in this process (already the script's uid, in /work); exits."""
    _mpl_home()
    os.set_inheritable(fd, False)
    try:
        _place_files(job)
    except OSError as err:
        print(f"[sandbox] an input file could not be placed: {err}", file=sys.stderr)
        _send(fd, proto.EXCEPTION, b"InputError")
        os._exit(1)
    script = job["script"]
    sys.argv = [script]
    sys.path.insert(0, os.getcwd())
    import warnings

    warnings.filterwarnings("ignore", message=".*non-interactive.*")
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=script, __builtins__=__builtins__)
    codec = _codec() if job.get("inputs") or job.get("outputs") or job.get("check") else None
    try:
        _bind_inputs(job, module.__dict__, codec)
    except Exception as err:
        print(f"[sandbox] an input variable could not be loaded: {type(err).__name__}: {err}",
              file=sys.stderr)
        _send(fd, proto.EXCEPTION, b"InputError")
        os._exit(1)
    code = _run_script(script, module, fd)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    if code == 0:
        room = VALUE_BYTES
        sent: list[str] = []
        if job.get("outputs"):
            room, sent = _send_outputs(fd, list(job["outputs"]), module.__dict__, codec,
                                       bool(job.get("parquet")))
        if job.get("check"):
            _send_check_values(fd, job["check"], module.__dict__, sent, codec, room)
    _figures(fd)
    os._exit(code if 0 <= code <= 255 else 1)


def main() -> None:
    if sys.argv[1] == "--verdict":
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if p != here]  # no module of ours by name
        verdict(sys.argv[2], int(sys.argv[3]))
        os._exit(0)
    if sys.argv[1] == "--session":  # the local backend's session (already in its sandbox)
        null = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        os.close(null)
        _session_module().serve(int(sys.argv[2]), _session_hooks())
        os._exit(0)
    if sys.argv[1] == "--zygote":
        _zygote(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
        os._exit(0)
    job_path, fd = sys.argv[1], int(sys.argv[2])  # a fresh interpreter, already our uid
    _run_job(_load(job_path), fd)


if __name__ == "__main__":
    main()
