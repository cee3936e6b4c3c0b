"""Layered checks on a generated script, gathered in one report the user reads.

The static layers here (syntax, imports, risk) run before anything executes;
later layers (the sandbox run, ``--check``) add their ``Check`` to the same
report. The risk layer informs only: the Docker sandbox is the security
boundary, not this module.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .packages import add_command, distribution, engine_needs
from .risk import BOUNDARY, Resolver, TryNode, find_risks

Status = Literal["pass", "warn", "fail"]
_MARKS = {"pass": "✓", "warn": "!", "fail": "✗"}
_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True)
class Check:
    """One line of the checklist; ``layer`` defaults to the part of ``name`` before ':'."""

    name: str
    status: Status
    message: str
    line: int | None = None
    col: int | None = None
    layer: str = ""

    def __post_init__(self) -> None:
        if self.status not in _MARKS:
            raise ValueError(f"status must be pass, warn or fail, not {self.status!r}")
        if not self.layer:
            object.__setattr__(self, "layer", self.name.split(":")[0])


@dataclass
class ValidationReport:
    """All checks for one script; stored in notebook metadata through ``to_dict``."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == "warn"]

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def extend(self, checks: list[Check]) -> None:
        self.checks.extend(checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary_line(),
                "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        """Tolerates keys added by newer versions, so old notebooks keep loading."""
        known = {f.name for f in fields(Check)}
        return cls([Check(**{k: v for k, v in c.items() if k in known})
                    for c in data.get("checks", [])])

    def summary_line(self) -> str:
        n = len(self.checks)
        counts = [f"{k} {s}" for s in _MARKS if (k := sum(c.status == s for c in self.checks))]
        return f"{n} check{'s' * (n != 1)}" + (": " + ", ".join(counts) if counts else "")

    def as_text(self) -> str:
        lines = [self.summary_line()]
        lines += [f"{_MARKS[c.status]} {c.name}: {c.message}" for c in self.checks]
        if any(c.layer == "risk" for c in self.checks):
            lines.append(f"(risk checks are {BOUNDARY})")
        return "\n".join(lines)


def check_syntax(code: str) -> Check:
    """The first layer: nothing else can be checked if the code does not parse."""
    try:
        _parse(code)
    except SyntaxError as err:
        line, col = err.lineno or 1, err.offset or 1
        return Check("syntax", "fail", f"Syntax error at line {line}, column {col}: {err.msg}",
                     line, col)
    except ValueError as err:  # null bytes
        return Check("syntax", "fail", f"Syntax error at line 1, column 1: {err}", 1, 1)
    except (RecursionError, MemoryError):
        return Check("syntax", "fail", "Syntax error at line 1, column 1: the code is nested too "
                     "deeply for Python to compile; ask for simpler code", 1, 1)
    return Check("syntax", "pass", "the code parses as Python")


def imported_modules(tree: ast.AST) -> dict[str, int]:
    """Top-level modules the code imports with literal names -> first line that imports them."""
    out: dict[str, int] = {}
    for module, node, _guarded in _import_sites(tree):
        line = getattr(node, "lineno", 0)
        out[module] = min(out.get(module, line), line)
    return dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))


def dynamic_imports(tree: ast.AST, resolver: Resolver | None = None) -> list[int]:
    """Lines that import a module whose name is only known at run time (see the risk layer)."""
    res = resolver if resolver is not None else Resolver(tree)
    return sorted(n.lineno for n in res.refs if isinstance(n, ast.Call) and n.args
                  and res.quick(n.func) in ("builtins.__import__", "importlib.import_module")
                  and not isinstance(n.args[0], ast.Constant))


def check_imports(tree: ast.AST, *, available: frozenset[str] | None = None,
                  allow: set[str] | None = None, deny: set[str] | None = None,
                  resolver: Resolver | None = None) -> list[Check]:
    """Imports the sandbox image lacks or the policy forbids; ``available`` is the image's list.

    ``resolver``: the one already built for ``tree`` (by ``validate``), to save a walk.
    """
    out: list[Check] = []
    fine: list[str] = []
    seen: set[str] = set()
    for module, node, guarded in _import_sites(tree, resolver):
        if module in seen or module == "__future__":
            continue
        seen.add(module)
        line, col = getattr(node, "lineno", 0), getattr(node, "col_offset", 0) + 1
        where = f"(line {line})"
        if deny is not None and module in deny:
            out.append(Check("imports", "fail", f"{module} is on the deny list {where}: ask for "
                             "code without it or take it off the deny list", line, col))
        elif allow is not None and module not in allow:
            out.append(Check("imports", "fail", f"{module} is not on the allow list {where}: ask "
                             "for code without it or add it to the allow list", line, col))
        elif available is not None and module not in available:
            status: Status = "warn" if guarded else "fail"
            tail = ("; the import is inside try/except ImportError, so the script may fall back"
                    if guarded else f": ask for code without it, or add it to the sandbox "
                    f"with `{add_command(distribution(module))}`")
            out.append(Check("imports", status, f"{module} is not in the sandbox image "
                             f"{where}{tail}", line, col))
        else:
            fine.append(module)
    if not any(c.status == "fail" for c in out):
        scope = "all in the sandbox image" if available is not None else "no image list given"
        listed = f"imports {', '.join(sorted(fine))} ({scope})" if fine else "no imports"
        out.append(Check("imports", "pass", listed))
    return out


def check_engines(tree: ast.AST, available: frozenset[str] | None) -> list[Check]:
    """Calls whose optional engine the image lacks (read_excel needs openpyxl, ...): they
    would pass every other static check and fail only when run."""
    if available is None:
        return []
    return [Check("imports", "fail", f"{call} (line {line}) needs {' or '.join(packages)} "
                  f"for {what}, and the sandbox image has none: ask for code without it, or "
                  f"add it with `{add_command(packages[0])}`", line, col)
            for call, what, packages, line, col in engine_needs(tree, available)]


def scan_risks(tree: ast.AST, *, strict: bool = False,
               resolver: Resolver | None = None) -> list[Check]:
    """The risk layer as checks: warn (fail when strict), or one pass when nothing is found."""
    status: Status = "fail" if strict else "warn"
    found = [Check(f"risk:{f.kind}", status, f.message, f.line, f.col)
             for f in find_risks(tree, resolver)]
    return found or [Check("risk", "pass", "no risky calls found")]


def validate(code: str, *, tree: ast.Module | None = None,
             available: frozenset[str] | None = None, allow_imports: set[str] | None = None,
             deny_imports: set[str] | None = None, strict: bool = False) -> ValidationReport:
    """Run the static layers in order; imports and risks only when the code parses.

    ``tree``: the tree of ``code`` when the caller has it (extraction keeps the one
    it parsed), so a reply is parsed once; the layers share one ``Resolver`` too.
    """
    if tree is None:
        report = ValidationReport([check_syntax(code)])
        if not report.ok:
            return report
        tree = _parse(code)
    else:
        report = ValidationReport([Check("syntax", "pass", "the code parses as Python")])
    try:
        res = Resolver(tree)
        report.extend(check_imports(tree, available=available, allow=allow_imports,
                                    deny=deny_imports, resolver=res))
        report.extend(check_engines(tree, available))
        report.extend(scan_risks(tree, strict=strict, resolver=res))
    except RecursionError:  # valid but too deep to walk: say so instead of crashing
        report.add(Check("risk:unscanned", "fail" if strict else "warn",
                         f"the code is nested too deeply to scan ({BOUNDARY})"))
    return report


def _parse(code: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes etc. are not the user's concern here
        return ast.parse(code)


def _import_sites(tree: ast.AST,
                  resolver: Resolver | None = None) -> list[tuple[str, ast.AST, bool]]:
    """(top-level module, node, guarded by try/except ImportError) for each literal import.

    Imports under ``if TYPE_CHECKING:`` never run and are left out. Which ones are
    guarded or skipped is read from source positions (inside a ``try`` body that
    catches ImportError), so this needs no walk of its own.
    """
    res = resolver if resolver is not None else Resolver(tree)
    guards = [_span(t.body) for t in res.tries if _catches_import_error(t)]
    skips = [_span(i.body) for i in res.ifs
             if res.type_checking and "TYPE_CHECKING" in ast.unparse(i.test)]
    out: list[tuple[str, ast.AST, bool]] = []
    for node in res.sites:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if not node.level and node.module:
                names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")
              and res.quick(node.func) in ("builtins.__import__", "importlib.import_module")):
            names = [node.args[0].value]
        if not names or any(_inside(node, span) for span in skips):
            continue
        guarded = any(_inside(node, span) for span in guards)
        out.extend((n.split(".")[0], node, guarded) for n in names)
    return out


_Span = tuple[tuple[int, int], tuple[int, int]]


def _span(body: list[ast.stmt]) -> _Span:
    """Where a block of statements starts and ends in the source."""
    first, last = body[0], body[-1]
    return ((first.lineno, first.col_offset),
            (last.end_lineno or last.lineno, last.end_col_offset or 0))


def _inside(node: ast.AST, span: _Span) -> bool:
    start = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
    end = (getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0)
    return span[0] <= start and end <= span[1]


def _catches_import_error(node: TryNode) -> bool:
    return any(h.type is None or any(
        isinstance(t, ast.Name | ast.Attribute) and ast.unparse(t).split(".")[-1] in _GUARDS
        for t in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]))
        for h in node.handlers)
