"""How the python blocks of one reply relate: excerpts, tweaks, tests, parts of one script.

``extract`` asks this module three things about a reply's python blocks: which
only repeat (or tweak) another block, which are a test file beside the script,
and whether the rest are consecutive parts of one script. Parts are told by the
names the blocks define and use, read in one walk per block that also moves the
block's line numbers to where it lands when the blocks are joined.
"""

from __future__ import annotations

import ast
import builtins
import re
from difflib import SequenceMatcher
from typing import Any

from .fences import _Fenced
from .risk import CHILD_FIELDS, child_fields

_ALT_INTRO = re.compile(
    r"\b(usage|alternatively|alternative|another (way|option|approach)|instead|for example"
    r"|for instance|example use|to use (it|this)|you can (also )?(use|call|run|import)"
    r"|(option|method|approach|solution|variant) ?#?([2-9]|two|three|b)\b)\b"
    r"|^\W*or\b", re.I | re.M)
# the sentence just before a block that offers a tweak: "If your file uses ';', change this line"
_TWEAK_INTRO = re.compile(r"\bif (your|you)\b|\b(change|replace|swap|tweak) (this|that|the|it)\b"
                          r"|\boptional(ly)?\b|\bto (make|have) it\b", re.I)
# a block introduced as the next step: joined even when no name links it to the others
_NEXT_INTRO = re.compile(r"^\W*((then|next|now|finally|lastly|after that|afterwards|second(ly)?"
                         r"|third|step ?\d+|part ?\d+|and then|continue)\b|\d+[.)] )", re.I)
_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "display", "get_ipython"}
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_NAMING = frozenset({ast.alias, ast.arg, *_DEFS, *_SCOPES})  # nodes that bind or open a scope
_HAS_LINES = frozenset(k for k in vars(ast).values() if isinstance(k, type)
                       and issubclass(k, ast.AST) and "lineno" in k._attributes)
_ELIDED = frozenset({"...", "…", "# ...", "# …", "pass  # ..."})
_HEAD = re.compile(r"([\w.\[\]\"', ]+?)\s*[-+*/|&]?=(?!=)")  # what a line assigns
_TEST_FILE = re.compile(r"\b(test_\w+|\w+_test|conftest)\.py\b")


def drop_excerpts(cands: list[_Fenced]) -> tuple[list[_Fenced], list[str]]:
    """Rule 0: leave out blocks that only repeat lines of another (longer or later) block.

    Elided lines (``...``) are ignored, and a line may repeat another one with a
    changed value (``reader = csv.reader(f, delimiter=";")`` for ``csv.reader(f)``):
    such a block is an optional tweak of the script, not a part of it.
    """
    lines = [{x.strip() for x in c.block.code.splitlines() if x.strip()} - _ELIDED
             for c in cands]
    keep, notes = [], []
    for i, c in enumerate(cands):
        host = next((cands[j] for j in range(len(cands)) if j != i and lines[i] <= lines[j]
                     and (len(lines[j]) > len(lines[i]) or j > i)), None)
        if host is not None:
            notes.append(f"Left out the python block at line {c.block.start_line}: it repeats "
                         f"lines of the block at line {host.block.start_line}.")
        elif (host := next((cands[j] for j in range(len(cands)) if j != i
                            and 2 * len(lines[i]) <= len(lines[j])
                            and _variant(lines[i], lines[j])), None)) is not None:
            notes.append(f"Left out the python block at line {c.block.start_line}: it is a "
                         f"changed copy of lines of the block at line {host.block.start_line} "
                         "(an optional tweak).")
        else:
            keep.append(c)
    return keep, notes


def _variant(small: set[str], big: set[str]) -> bool:
    """Every line of ``small`` is in ``big`` or changes the value of one of its lines."""
    changed = [(line, h.group(1)) for line in small - big if (h := _HEAD.match(line))]
    if not changed or len(changed) < len(small - big):  # a line that assigns nothing is new
        return False
    wanted = {head for _, head in changed}
    heads: dict[str, list[str]] = {}
    for line in big:
        if (h := _HEAD.match(line)) is not None and h.group(1) in wanted:
            heads.setdefault(h.group(1), []).append(line)
    return all(any(SequenceMatcher(None, line, other).ratio() >= 0.7
                   for other in heads.get(head, ())) for line, head in changed)


def is_tests(c: _Fenced) -> bool:
    """A pytest / unittest file: named test_x.py (or x_test.py) or made of test functions."""
    last_intro = c.intro.splitlines()[-1] if c.intro else ""
    if _TEST_FILE.search(c.block.info) or _TEST_FILE.search(last_intro):
        return True
    tree = c.tree
    if tree is None:
        return False
    tests = [n for n in tree.body if (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                                      and n.name.startswith("test"))
             or (isinstance(n, ast.ClassDef) and n.name.startswith("Test"))]
    framework = any(isinstance(n, ast.Import | ast.ImportFrom) and any(
        (a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
        in ("pytest", "unittest") for a in n.names) for n in tree.body)
    # without pytest or unittest: only test functions (a script may well have a test_speed())
    only_tests = len(tests) >= 2 and all(
        n in tests or isinstance(n, ast.Import | ast.ImportFrom) for n in tree.body)
    return bool(tests) and (framework or only_tests)


def tests_note(t: _Fenced) -> str:
    named = _TEST_FILE.search(t.block.info) or _TEST_FILE.search(
        t.intro.splitlines()[-1] if t.intro else "")
    what = f"tests ({named.group()})" if named else "tests"
    return (f"The reply also wrote {what} in the block at line {t.block.start_line}; they are "
            "not part of the script. To use them, save them beside the script and run pytest.")


def are_parts(cands: list[_Fenced]) -> bool:
    """True when the blocks read as consecutive steps of one script."""
    trees = [c.tree for c in cands]
    if any(t is None for t in trees) or any(
            _ALT_INTRO.search(c.intro) or _TWEAK_INTRO.search(_last_line(c.intro))
            for c in cands[1:]):
        return False
    try:
        if any(_complete(t) for t in trees[:-1] if t is not None):
            return False
    except RecursionError:  # absurdly nested code: not worth joining
        return False
    # the walk that reads the names also moves each tree's line numbers to where its block
    # lands in the joined script, so joining needs no walk of its own (_choose undoes it for
    # a block used alone)
    info, offset = [], 0
    for c in cands:
        assert c.tree is not None
        info.append(_names(c.tree, offset))
        c.shift = offset
        offset += c.block.code.count("\n") + 2  # its lines and the blank line after it
    if len({d for _, defs, _ in info for d in defs}) < sum(len(defs) for _, defs, _ in info):
        return False  # a later block redefines an earlier function or class
    if all(_defines_only(t) for t in trees if t is not None):
        return True  # pieces of one module
    if all(_NEXT_INTRO.search(_last_line(c.intro)) for c in cands[1:]) and sum(
            len(top) for top, _, _ in info) == len(set().union(*(top for top, _, _ in info))):
        return True  # steps the reply puts in order, none redoing what another one did
    parent = list(range(len(info)))

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    seen_defs: set[str] = set()
    for i, (_top, defs, free) in enumerate(info):
        if defs & seen_defs:
            return False
        seen_defs |= defs
        for j in range(i):
            if free & info[j][0]:
                parent[root(i)] = root(j)
    return len({root(k) for k in range(len(info))}) == 1


def _last_line(intro: str) -> str:
    return intro.rsplit("\n", 1)[-1].strip(" *_#>")


def _defines_only(tree: ast.Module) -> bool:
    """Only imports, functions and classes (a docstring too): a piece of a module."""
    return bool(tree.body) and any(isinstance(n, _DEFS) for n in tree.body) and all(
        isinstance(n, (*_DEFS, ast.Import, ast.ImportFrom)) or (
            isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in tree.body)


def self_contained(tree: ast.Module) -> bool:
    """Uses no name it does not define (``data.sort()`` alone needs another block's data)."""
    try:
        return not _names(tree)[2]
    except RecursionError:
        return False


def _names(tree: ast.Module, shift: int = 0) -> tuple[set[str], set[str], set[str]]:
    """(top-level bound names, def/class names, names used before this block binds them).

    ``shift``: add this to every line number on the way (see ``are_parts``).
    """
    scanned = [(stmt, *_statement_names(stmt, shift)) for stmt in tree.body]
    every = set().union(*(top for _, top, _ in scanned))
    defs = {n.name for n in tree.body if isinstance(n, _DEFS)}
    free: set[str] = set()
    before: set[str] = set()
    for stmt, top, loads in scanned:
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            loads.add(stmt.target.id)
        if isinstance(stmt, _DEFS):
            free |= loads - every
        elif isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            free |= loads - before
        else:
            free |= loads - before - top
        before |= top
    return every, defs, free


def _statement_names(stmt: ast.stmt, shift: int = 0) -> tuple[set[str], set[str]]:
    """(names a top-level statement binds in the module, names it reads from outside).

    One walk: names bound inside functions, lambdas and comprehensions are local
    to them, so they are neither bound at the top nor read from outside.
    """
    top: set[str] = {stmt.name} if isinstance(stmt, _DEFS) else set()
    loads: set[str] = set()
    local: set[str] = set()
    stack: list[tuple[Any, bool]] = [(stmt, False)]
    pop, push, extend, fields_of = stack.pop, stack.append, stack.extend, CHILD_FIELDS.get
    while stack:
        node, scoped = pop()
        kind = node.__class__
        if shift and kind in _HAS_LINES:
            node.lineno += shift
            if node.end_lineno is not None:
                node.end_lineno += shift
        if kind is ast.Name:
            if node.ctx.__class__ is ast.Load:
                loads.add(node.id)
            elif node.ctx.__class__ is ast.Store:
                (local if scoped else top).add(node.id)
            continue
        if kind in _NAMING:
            if kind is ast.alias:
                if not scoped:
                    top.add((node.asname or node.name).split(".")[0])
                continue
            if kind is ast.arg:
                local.add(node.arg)
            elif kind in _DEFS:
                if not scoped and node is not stmt:
                    top.add(node.name)
                scoped = True
            else:  # lambda, comprehension
                scoped = True
        fields = fields_of(kind)
        if fields is None:
            fields = child_fields(kind)
        for name in fields:
            value = getattr(node, name)
            if value.__class__ is list:
                extend([(v, scoped) for v in value if v is not None])
            elif value is not None:
                push((value, scoped))
    return top, loads - local - _BUILTINS


def shift_lines(tree: ast.AST, lines: int) -> None:
    """``ast.increment_lineno`` without its recursion and its cost."""
    stack: list[Any] = [tree]
    pop, push, extend, fields_of = stack.pop, stack.append, stack.extend, CHILD_FIELDS.get
    while stack:
        node = pop()
        kind = node.__class__
        if kind in _HAS_LINES:
            node.lineno += lines
            if node.end_lineno is not None:
                node.end_lineno += lines
        fields = fields_of(kind)
        if fields is None:
            fields = child_fields(kind)
        for name in fields:
            value = getattr(node, name)
            if value.__class__ is list:
                extend([v for v in value if v is not None])
            elif value is not None:
                push(value)


def _complete(tree: ast.Module) -> bool:
    """A block that ends as a program: a ``__main__`` guard or a call to its own function."""
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return True
    last = tree.body[-1] if tree.body else None
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and isinstance(last.value.func, ast.Name) and last.value.func.id in own)
