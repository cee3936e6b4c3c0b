"""The risk layer: point at what a generated script could do that deserves a look.

This layer informs; it does not protect. Any static scan of Python can be
evaded, so the Docker sandbox (no network, limited files, dropped privileges)
is the security boundary, and every message says so. Names are resolved through
aliases (``import subprocess as sp``, ``from os import system as s``,
``run = sp.run``), ``__import__``/``importlib``/``getattr`` with constant or
constant-folded names (``'o' + 's'``), so the usual obfuscations still show.
"""

from __future__ import annotations

import ast
import builtins
import functools
import posixpath
import re
import sys
from dataclasses import dataclass
from typing import Any

BOUNDARY = "informational only: the sandbox, not this check, is the security boundary"
_EXEC = ("execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe")
_SPAWN = ("spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
          "posix_spawn", "posix_spawnp", "fork", "forkpty", "startfile")
_NETWORK = ("socket", "urllib.request", "http.client", "requests", "httpx", "aiohttp", "ftplib",
            "smtplib", "urllib3", "telnetlib", "poplib", "imaplib", "xmlrpc.client", "socketserver",
            "http.server", "websocket", "websockets", "paramiko", "pycurl")
RULES: dict[str, tuple[str, str]] = {
    "subprocess": ("process", "starts a new process"),
    "pty": ("process", "starts a process on a pseudo-terminal"),
    "asyncio.create_subprocess_exec": ("process", "starts a new process"),
    **{f"os.{n}": ("process", "replaces, forks or starts a process") for n in _EXEC + _SPAWN},
    "os.system": ("shell", "runs a shell command"),
    "os.popen": ("shell", "runs a shell command"),
    "asyncio.create_subprocess_shell": ("shell", "runs a shell command"),
    "builtins.eval": ("eval", "runs code built from a string"),
    "builtins.exec": ("eval", "runs code built from a string"),
    "builtins.compile": ("eval", "compiles code from a string"),
    **{m: ("network", "opens network connections") for m in _NETWORK},
    **{f"os.{n}": ("delete", "deletes files or folders") for n in ("remove", "unlink", "rmdir",
                                                                    "removedirs")},
    "shutil.rmtree": ("delete", "deletes a folder tree"),
    "ctypes": ("ffi", "calls native code directly"),
    "cffi": ("ffi", "calls native code directly"),
    **{f"os.{n}": ("env", "reads environment variables, which may hold secrets")
       for n in ("environ", "environb", "getenv", "getenvb")},
}
_DUNDERS = {"__builtins__", "__subclasses__", "__globals__", "__bases__", "__mro__", "__code__",
            "__closure__", "__loader__"}
_PATH_TYPES = {"pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "pathlib.PurePosixPath",
               "pathlib.WindowsPath", "os.path.join"}
_PATH_WRITERS = {"write_text", "write_bytes", "touch", "mkdir", "symlink_to", "hardlink_to"}
_SAVERS = {"to_csv", "to_json", "to_parquet", "to_excel", "to_pickle", "to_feather", "savefig",
           "save", "savez", "savetxt", "imwrite", "to_file", "write_image", "write_html"}
_BUILTIN_NAMES = frozenset(dir(builtins))
_WRITE_ATTRS = _SAVERS | _PATH_WRITERS | {"open"}
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# ``try``/``except*`` (ast.TryStar) exists from Python 3.11; on 3.10 only ``try`` parses.
if sys.version_info >= (3, 11):
    TryNode = ast.Try | ast.TryStar
    TRIES: tuple[type[ast.stmt], ...] = (ast.Try, ast.TryStar)
else:
    TryNode = ast.Try
    TRIES = (ast.Try,)
_MAX_DEPTH = 400  # deeper than this, fold()/name() could exhaust Python's recursion limit
# Fields that never hold a node worth visiting (names, flags, contexts, operators).
_LEAF_FIELDS = {"ctx", "op", "ops", "id", "attr", "arg", "name", "asname", "module", "level",
                "kind", "type_comment", "simple", "conversion", "is_async", "rest", "kwd_attrs",
                "tag"}
_LEAVES = (ast.Constant, ast.Global, ast.Nonlocal, ast.MatchSingleton, ast.TypeIgnore, ast.alias)
_UP = object()  # marks the end of a node's children in the walk
CHILD_FIELDS: dict[type, tuple[str, ...]] = {}  # filled by child_fields(); .get() in hot loops
_NOTED = (ast.Name, ast.Attribute, ast.Call, ast.Import, ast.ImportFrom, ast.Subscript, *_DEFS,
          ast.arg, ast.Assign, *TRIES, ast.If)
_PLAIN = frozenset(k for k in vars(ast).values() if isinstance(k, type)
                   and issubclass(k, ast.AST) and not issubclass(k, _NOTED))
_URL = re.compile(r"(https?|ftp|wss?)://")
_SPECIAL_CALLS = ("builtins.__import__", "importlib.import_module", "builtins.getattr",
                  "subprocess.")
_WRITE_FUNCS = frozenset({"builtins.open", "io.open", "codecs.open", "shutil.copy",
                          "shutil.copy2", "shutil.copyfile", "shutil.move", "shutil.copytree",
                          "os.rename", "os.replace"})
_NAMING_CALLS = ("builtins.__import__", "importlib.import_module", "builtins.getattr")


def _children(kind: type) -> tuple[str, ...]:
    """The fields of a node type that can hold child nodes (cached per type)."""
    fields = () if issubclass(kind, _LEAVES) else tuple(
        f for f in getattr(kind, "_fields", ()) if f not in _LEAF_FIELDS)
    CHILD_FIELDS[kind] = fields
    return fields


def child_fields(kind: type) -> tuple[str, ...]:
    """The fields worth descending into for a node type (no names, contexts, operators).

    For hand-written iterative walks, several times faster than ``ast.walk``.
    """
    fields = CHILD_FIELDS.get(kind)
    return fields if fields is not None else _children(kind)


@dataclass(frozen=True)
class Finding:
    kind: str
    line: int
    col: int
    message: str
    target: str = ""


def fold(node: ast.AST | None) -> str | None:
    """The value of a string expression made only of constants (``'o' + 's'``, f-strings, join)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left), fold(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [fold(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return "".join(p for p in parts if p is not None) if None not in parts else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        base, sl = fold(node.value), node.slice
        bounds = [_int(b) for b in (sl.lower, sl.upper, sl.step)]
        if base is None or any(b is False for b in bounds) or bounds[2] == 0:
            return None
        return base[slice(*bounds)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not node.keywords:
        base, attr = fold(node.func.value), node.func.attr
        if attr == "join" and base is not None and len(node.args) == 1:
            arg = node.args[0]
            items = [fold(e) for e in arg.elts] if isinstance(arg, ast.List | ast.Tuple) else [None]
            return base.join(i for i in items if i is not None) if None not in items else None
        if attr in ("lower", "upper", "strip") and base is not None and not node.args:
            return str(getattr(base, attr)())
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "chr"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, int) and 0 <= node.args[0].value < 0x110000):
        return chr(node.args[0].value)
    return None


def _int(node: ast.expr | None) -> int | bool | None:
    """A constant slice bound; False when it is not one."""
    if node is None:
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int(node.operand)
        return -inner if isinstance(inner, int) and inner is not False else False
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return False


class Resolver:
    """Maps expressions to dotted names (``sp.run`` -> ``subprocess.run``) for one module.

    Built from ONE walk of the tree that also keeps what the import check and the
    risk scan look at (imports, references, calls, try blocks), so neither walks
    the tree again: a long script costs one parse plus a fraction of one.
    """

    def __init__(self, tree: ast.AST) -> None:
        self.aliases: dict[str, str] = {}
        self.imports: list[tuple[str, ast.stmt]] = []
        self.refs: list[ast.AST] = []  # loaded names, attributes, calls, ``globals()[...]``
        self.sites: list[ast.AST] = []  # imports and calls with a string first argument
        self.tries: list[TryNode] = []
        self.ifs: list[ast.If] = []
        self.type_checking = False  # the code mentions TYPE_CHECKING
        self.deep = False  # nested deeper than the recursive helpers below can follow
        shadow: set[str] = set()
        assigns: list[ast.Assign] = []
        refs, sites = self.refs, self.sites
        stack: list[Any] = [tree]
        depth, up = 0, _UP
        pop, push, extend = stack.pop, stack.append, stack.extend
        children = CHILD_FIELDS.get
        while stack:
            node = pop()
            if node is up:
                depth -= 1
                continue
            if node is None:  # optional fields and dict keys of ``**spread``
                continue
            kind = node.__class__
            if isinstance(node, ast.Name):  # the commonest node first
                if node.ctx.__class__ is ast.Load:
                    refs.append(node)
                    if node.id == "TYPE_CHECKING":
                        self.type_checking = True
                else:
                    if node.ctx.__class__ is ast.Store:
                        shadow.add(node.id)
                    if node.id == "__builtins__":
                        refs.append(node)
                continue
            if kind in _PLAIN:
                pass  # most other nodes: nothing to note, only children to visit
            elif isinstance(node, ast.Attribute):
                refs.append(node)
                if node.attr == "TYPE_CHECKING":
                    self.type_checking = True
            elif isinstance(node, ast.Call):
                refs.append(node)
                args = node.args
                if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                    sites.append(node)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                self._import(node)
                sites.append(node)
                continue
            elif isinstance(node, ast.Subscript):
                if isinstance(node.value, ast.Call):
                    refs.append(node)
            elif isinstance(node, _DEFS):
                shadow.add(node.name)
            elif isinstance(node, ast.arg):
                shadow.add(node.arg)
            elif isinstance(node, ast.Assign):
                if len(node.targets) == 1:
                    assigns.append(node)
            elif isinstance(node, TRIES):
                self.tries.append(node)
            elif isinstance(node, ast.If):
                self.ifs.append(node)
            fields = children(kind)
            if fields is None:
                fields = _children(kind)
            if not fields:
                continue
            depth += 1
            if depth > _MAX_DEPTH:
                self.deep = True
            push(up)  # popped after the children: back up one level
            for name in reversed(fields):  # popped first-child-first, as a NodeVisitor visits
                value = getattr(node, name)
                if value.__class__ is list:
                    extend(value[::-1])
                else:
                    push(value)
        self.shadow = shadow - set(self.aliases)
        for _ in range(2):  # ``run = sp.run`` and chains of such
            for assign in assigns:
                target = assign.targets[0]
                if isinstance(target, ast.Name) and (q := self.name(assign.value)) is not None:
                    self.aliases[target.id] = q
                    self.shadow.discard(target.id)
        # the only bare names ``name()`` can resolve: anything else is skipped in one lookup
        self.hot = set(self.aliases) | (_BUILTIN_NAMES - self.shadow) | {"__builtins__"}

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                self.aliases[a.asname or top] = a.name if a.asname else top
                self.imports.append((a.name, node))
        elif node.module and not node.level:
            for a in node.names:
                full = node.module if a.name == "*" else f"{node.module}.{a.name}"
                if a.name != "*":
                    self.aliases[a.asname or a.name] = full
                self.imports.append((full, node))

    def quick(self, node: ast.AST) -> str | None:
        """``name(node)``, answered without recursion when its root is a name nothing binds."""
        root = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id not in self.hot:
            return None
        return self.name(node)

    def name(self, node: ast.AST) -> str | None:
        """Dotted name an expression refers to, or None when it cannot be known statically."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id == "__builtins__":
                return "builtins"
            if node.id in _BUILTIN_NAMES and node.id not in self.shadow:
                return f"builtins.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self.name(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call) and node.args:
            func, arg = self.name(node.func), fold(node.args[0])
            if func == "builtins.__import__" and arg and not arg.startswith("."):
                return arg if any(k.arg == "fromlist" for k in node.keywords) else (
                    arg.split(".")[0])
            if func == "importlib.import_module" and arg and not arg.startswith("."):
                return arg
            if func == "builtins.getattr" and len(node.args) >= 2:
                base, attr = self.name(node.args[0]), fold(node.args[1])
                return f"{base}.{attr}" if base and attr else None
        return None


@functools.lru_cache(maxsize=4096)
def rule_for(target: str) -> tuple[str, str] | None:
    """The rule for a dotted name or its closest parent (``os.environ.get`` -> ``os.environ``)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        if (hit := RULES.get(".".join(parts[:n]))) is not None:
            return hit
    return None


@functools.lru_cache(maxsize=4096)
def _may_match(target: str) -> bool:
    """Could ``target`` or an attribute of it have a rule (``os`` yes, ``csv`` no)?"""
    return bool(target) and (rule_for(target) is not None or any(
        rule.startswith(target + ".") for rule in RULES))


_LIVE_BUILTINS = frozenset(n for n in _BUILTIN_NAMES if _may_match(f"builtins.{n}"))


def path_of(node: ast.AST, res: Resolver) -> str | None:
    """A constant path expression: ``'/etc/x'``, ``Path('/etc') / 'x'``, ``Path.home()``."""
    if (text := fold(node)) is not None:
        return text
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = path_of(node.left, res), path_of(node.right, res)
        return posixpath.join(left, right) if left is not None and right is not None else None
    if isinstance(node, ast.Call):
        func = res.name(node.func)
        if func in _PATH_TYPES:
            parts = [p for a in node.args if (p := path_of(a, res)) is not None]
            if len(parts) != len(node.args):
                return None
            return posixpath.join(*parts) if parts else "."
        if func in ("pathlib.Path.home", "os.path.expanduser"):
            return "~"
    return None


def outside(path: str) -> bool:
    """Absolute, home-relative or climbing out with ``..``."""
    return (path.startswith(("/", "\\", "~")) or bool(re.match(r"[A-Za-z]:[\\/]", path))
            or ".." in re.split(r"[\\/]", path))


def find_risks(tree: ast.AST, res: Resolver | None = None) -> list[Finding]:
    """Every risky reference in ``tree``, one per (kind, line), in line order.

    Pass the ``Resolver`` already built for ``tree`` to save a walk. Raises
    ``RecursionError`` for code nested too deeply to follow; the caller says so.
    """
    res = res if res is not None else Resolver(tree)
    if res.deep:
        raise RecursionError("the code is nested too deeply to scan")
    scan = _Scanner(res)
    scan.run()
    for target, node in res.imports:  # imported but never used in a way we can follow
        hit = rule_for(target)
        if hit and not any(f.target == target or f.target.startswith(target + ".")
                           for f in scan.found.values()):
            scan.add(hit[0], node, f"imports {target}, which {hit[1]}", target)
    return sorted(scan.found.values(), key=lambda f: (f.line, f.col, f.kind))


class _Scanner:
    """Looks at the references the resolver kept, in the order a tree visitor would."""

    def __init__(self, res: Resolver) -> None:
        self.res = res
        self.found: dict[tuple[str, int], Finding] = {}
        self.done: set[int] = set()

    def run(self) -> None:
        res = self.res
        # the names through which some rule can be reached: os yes, csv or print no
        live = {n for n, target in res.aliases.items() if _may_match(target)}
        live |= (_LIVE_BUILTINS - res.shadow - res.aliases.keys()) | {"__builtins__"}
        self.live = live
        for node in res.refs:
            if isinstance(node, ast.Name):
                if node.id in live:
                    self.visit_name(node)
            elif isinstance(node, ast.Attribute):
                self.visit_attribute(node)
            elif isinstance(node, ast.Call):
                self.visit_call(node)
            elif isinstance(node, ast.Subscript):
                self.visit_subscript(node)

    def add(self, kind: str, node: ast.AST, what: str, target: str = "") -> None:
        line, col = getattr(node, "lineno", 0), getattr(node, "col_offset", 0) + 1
        msg = f"{what} (line {line})"
        self.found.setdefault((kind, line), Finding(kind, line, col, msg, target))

    def _chain(self, node: ast.AST) -> None:
        """Mark a matched chain's inner names so they are not reported again."""
        while isinstance(node, ast.Attribute | ast.Name):
            self.done.add(id(node))
            if isinstance(node, ast.Name):
                break
            node = node.value

    def _ref(self, node: ast.Name | ast.Attribute) -> None:
        if id(node) in self.done:
            return
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id not in self.live:
            return  # no rule names anything reached through this name
        target = self.res.name(node)
        hit = rule_for(target) if target else None
        if target and hit:
            src = ast.unparse(node)
            shown = target.removeprefix("builtins.")
            self.add(hit[0], node, f"{src} {hit[1]}" if src == shown else
                     f"{src} (= {shown}) {hit[1]}", target)
            self._chain(node)

    def visit_name(self, node: ast.Name) -> None:
        if node.id == "__builtins__":
            self.add("dynamic", node, "touches __builtins__ to reach functions indirectly")
        if isinstance(node.ctx, ast.Load):
            self._ref(node)

    def visit_attribute(self, node: ast.Attribute) -> None:
        if node.attr in _DUNDERS or (node.attr == "__dict__" and self.res.quick(node.value)):
            self.add("dynamic", node, f"reaches into interpreter internals (.{node.attr})")
        self._ref(node)

    def visit_subscript(self, node: ast.Subscript) -> None:
        value = node.value
        if isinstance(value, ast.Call) and self.res.quick(value.func) in (
                "builtins.globals", "builtins.locals", "builtins.vars"):
            self.add("dynamic", node, f"looks up names at run time through {ast.unparse(value)}")

    def visit_call(self, node: ast.Call) -> None:
        func = self.res.quick(node.func)
        if func is not None and func.startswith(_SPECIAL_CALLS):
            self._special_call(node, func)
        attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if func in _WRITE_FUNCS or attr in _WRITE_ATTRS:
            self._writes(node, func)
        if func is None and attr in ("unlink", "rmdir"):
            self.add("delete", node, f".{attr}() deletes a file or folder")
        if node.args:
            self._urls(node, func)

    def _special_call(self, node: ast.Call, func: str) -> None:
        """Dynamic imports, ``getattr`` with built names, ``shell=True``."""
        first = node.args[0] if node.args else None
        dynamic_import = func in ("builtins.__import__", "importlib.import_module")
        if dynamic_import and first is not None and not isinstance(first, ast.Constant):
            value = fold(first)
            known = f" ({value!r})" if value else ""
            self.add("dynamic", node, f"{ast.unparse(node.func)} builds a module name at run "
                     f"time{known}")
        if func == "builtins.getattr" and len(node.args) >= 2 and not isinstance(
                node.args[1], ast.Constant) and self.res.quick(node.args[0]):
            self.add("dynamic", node, f"getattr on {ast.unparse(node.args[0])} with a name built "
                     "at run time")
        if func.startswith("subprocess.") and any(
                k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords):
            self.add("shell", node, f"{ast.unparse(node.func)}(..., shell=True) runs a shell "
                     "command", func)
            self._chain(node.func)
        if (func in _NAMING_CALLS and (target := self.res.name(node))
                and (hit := rule_for(target))):  # getattr(os, 'system')
            self.add(hit[0], node, f"{ast.unparse(node)} (= {target.removeprefix('builtins.')})"
                     f" {hit[1]}", target)

    def _urls(self, node: ast.Call, func: str | None) -> None:
        """A call given a constant URL fetches it (unless the call is already a finding)."""
        for arg in node.args:
            if isinstance(arg, ast.Constant):
                url = arg.value if isinstance(arg.value, str) else None
            elif isinstance(arg, ast.JoinedStr):  # f"...{name}..." never folds: skip the work
                url = None if any(isinstance(v, ast.FormattedValue) and isinstance(
                    v.value, ast.Name | ast.Attribute) for v in arg.values) else fold(arg)
            elif isinstance(arg, ast.BinOp | ast.Subscript | ast.Call):
                url = fold(arg)
            else:
                continue
            if url and _URL.match(url) and not (func and rule_for(func)):
                self.add("network", node, f"{ast.unparse(node.func)} fetches {url[:60]}")

    def _writes(self, node: ast.Call, func: str | None) -> None:
        """Writes to a constant path outside the working folder."""
        path: ast.AST | None = None
        mode: ast.AST | None = None
        if func in ("builtins.open", "io.open", "codecs.open"):
            path, mode = _arg(node, 0, "file"), _arg(node, 1, "mode")
        elif func in ("shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.move",
                      "shutil.copytree", "os.rename", "os.replace") and len(node.args) >= 2:
            path, mode = node.args[1], ast.Constant("w")
        elif isinstance(node.func, ast.Attribute) and node.func.attr in _SAVERS and node.args:
            path, mode = node.args[0], ast.Constant("w")  # df.to_csv('/x'), plt.savefig('/x')
        elif isinstance(node.func, ast.Attribute) and node.func.attr in _PATH_WRITERS | {"open"}:
            path = node.func.value
            mode = _arg(node, 0, "mode") if node.func.attr == "open" else ast.Constant("w")
        text = fold(mode) if mode is not None else None
        where = path_of(path, self.res) if path is not None else None
        if where is not None and text and set(text) & set("wax+") and outside(where):
            self.add("write", node, f"writes to {where}, outside the working folder")


def _arg(call: ast.Call, pos: int, name: str) -> ast.expr | None:
    if len(call.args) > pos and not isinstance(call.args[pos], ast.Starred):
        return call.args[pos]
    return next((k.value for k in call.keywords if k.arg == name), None)
