"""Take the script out of a model reply.

Replies come in many shapes: one fenced block, several blocks that build one
script step by step, a complete script plus a usage example, shell commands
and sample output next to the code, or bare code with no fences at all. Code
is recognised with ``ast.parse`` rather than keyword guesses, so prose such as
"Import the CSV first." is never mistaken for a script.

Which python blocks are used (the rule, in order):

0. A block whose lines all repeat lines of another block is left out: it is
   an excerpt explained after the script, or a fragment that a later full
   listing repeats.
1. A block introduced as the complete / full / final script wins (the last
   such block that parses).
2. The blocks are joined, in order, when they are parts of one script: the
   joined text parses, every block is linked to another by a name one defines
   and the other uses, no later block redefines an earlier function or class,
   only the last block ends as a complete program (``if __name__ ...`` or a
   call to its own entry function), and no block is introduced as an
   alternative or usage example.
3. Otherwise the longest block that parses (a later one on a tie).
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass

from .._errors import NoCodeError, TruncatedReplyError
from .fences import (
    Block,
    _classify,
    _Fenced,
    _parse,
    _parse_strict,
    _scan,
    _skip_note,
    _substantive,
)

_COMPLETE_INTRO = re.compile(
    r"\b(complete|full|final|entire|whole|finished|combined|all[- ]in[- ]one)\b[\w\s,-]{0,20}?"
    r"\b(script|code|program|version|solution|listing|file|example)\b|putting it (all )?together"
    r"|all together", re.I)
_ALT_INTRO = re.compile(
    r"\b(usage|alternatively|alternative|another (way|option|approach)|instead|for example"
    r"|for instance|example use|to use (it|this)|you can (also |then )?(use|call|run|import))\b"
    r"|^\W*or\b", re.I | re.M)
_LEADING_BLANKS = re.compile(r"\A(?:[ \t]*\n)+")
_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "display", "get_ipython"}
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class Extraction:
    """The script, the blocks it was made from, and how they were chosen (for the user)."""

    code: str
    blocks: tuple[Block, ...]
    how: str
    notes: tuple[str, ...]


def extract_code(reply: str, *, truncated: bool = False) -> Extraction:
    """Return the one script in ``reply``; raise an ``ExtractionError`` when there is none."""
    if truncated:
        raise TruncatedReplyError(
            "The reply was cut off at max_tokens, so its code is incomplete and was not used: "
            "raise --max-tokens or shorten the spec.")
    text = reply.replace("\r\n", "\n").replace("\r", "\n")
    whole = _parse(text)
    if whole is not None and _substantive(whole):
        return _done([Block("python", "", text, 1)], "whole reply", [])
    fenced = _scan(text)
    if not fenced:
        found = _unfenced(text)
        if found is None:
            raise _no_code(text)
        return _done([found], "code found between prose", [
            f"The reply had no code fences; lines {found.start_line}-"
            f"{found.start_line + found.code.count(chr(10))} were taken as the script."])
    notes: list[str] = []
    for f in fenced:
        f.kind = _classify(f)
        if f.kind != "python":
            notes.append(_skip_note(f))
    cands = [f for f in fenced if f.kind == "python"]
    if not cands:
        raise _no_code(text)
    cands, repeats = _drop_excerpts(cands)
    notes.extend(repeats)
    chosen, how, why = _choose(cands)
    notes.extend(why)
    if not chosen[-1].closed:
        notes.append("The last code block had no closing fence; it was used as it is.")
    if any(c.magic for c in chosen):
        notes.append("Removed notebook lines starting with ! or % (such as !pip install): "
                     "install packages in the sandbox image instead.")
    return _done([c.block for c in chosen], how, notes)


def _drop_excerpts(cands: list[_Fenced]) -> tuple[list[_Fenced], list[str]]:
    """Rule 0: leave out blocks that only repeat lines of another (longer or later) block."""
    lines = [{x.strip() for x in c.block.code.splitlines() if x.strip()} for c in cands]
    keep, notes = [], []
    for i, c in enumerate(cands):
        host = next((cands[j] for j in range(len(cands)) if j != i and lines[i] <= lines[j]
                     and (len(lines[j]) > len(lines[i]) or j > i)), None)
        if host is None:
            keep.append(c)
        else:
            notes.append(f"Left out the python block at line {c.block.start_line}: it repeats "
                         f"lines of the block at line {host.block.start_line}.")
    return keep, notes


def _choose(cands: list[_Fenced]) -> tuple[list[_Fenced], str, list[str]]:
    """Apply the module docstring's rule to the python blocks."""
    n = len(cands)
    if n == 1:
        return cands, "single block", []
    left_out = "the other block was left out" if n == 2 else f"the other {n - 1} were left out"
    marked = [c for c in cands if c.tree is not None and _COMPLETE_INTRO.search(c.intro)]
    try:
        parts = _are_parts(cands)
    except RecursionError:  # absurdly nested code: not worth joining
        parts = False
    if marked and not (parts and marked[-1] is cands[0]):
        return [marked[-1]], "block marked complete", [
            f"Used the python block at line {marked[-1].block.start_line}, introduced as the "
            f"complete script; {left_out}."]
    if parts:
        return cands, f"joined {n} blocks", [
            f"Joined {n} python blocks that build on each other into one script."]
    ok = [c for c in cands if c.tree is not None] or cands
    best = max(reversed(ok), key=lambda c: _size(c.block.code))
    why = "the longest that parses" if best.tree is not None else "none parses; the longest"
    return [best], f"longest of {n} blocks", [
        f"Used the python block at line {best.block.start_line} ({why}); {left_out}."]


def _are_parts(cands: list[_Fenced]) -> bool:
    """True when the blocks read as consecutive steps of one script."""
    trees = [c.tree for c in cands]
    if any(t is None for t in trees) or _parse("\n\n".join(c.block.code for c in cands)) is None:
        return False
    if any(_ALT_INTRO.search(c.intro) for c in cands[1:]):
        return False
    if any(_complete(t) for t in trees[:-1] if t is not None):
        return False
    info = [_names(t) for t in trees if t is not None]
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


def _names(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """(top-level bound names, def/class names, names used before this block binds them)."""
    tops = [_bound_at_top(stmt) for stmt in tree.body]
    every = set().union(*tops)
    defs = {n.name for n in tree.body if isinstance(n, _DEFS)}
    free: set[str] = set()
    before: set[str] = set()
    for stmt, top in zip(tree.body, tops, strict=True):
        loads = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Load)} - _nested_bound(stmt) - _BUILTINS
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


def _bound_at_top(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the module namespace."""
    if isinstance(stmt, _DEFS):
        return {stmt.name}
    out: set[str] = set()
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, _DEFS):
            out.add(node.name)
            continue
        elif isinstance(node, _SCOPES):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _nested_bound(stmt: ast.stmt) -> set[str]:
    """Names bound inside functions, lambdas and comprehensions (local, not free)."""
    out: set[str] = set()
    for scope in ast.walk(stmt):
        if isinstance(scope, (*_DEFS, *_SCOPES)):
            for n in ast.walk(scope):
                if isinstance(n, ast.arg):
                    out.add(n.arg)
                elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    out.add(n.id)
    return out


def _complete(tree: ast.Module) -> bool:
    """A block that ends as a program: a ``__main__`` guard or a call to its own function."""
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return True
    last = tree.body[-1] if tree.body else None
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and isinstance(last.value.func, ast.Name) and last.value.func.id in own)


def _unfenced(text: str) -> Block | None:
    """The largest run of blank-line-separated paragraphs that parses as code."""
    lines = text.split("\n")
    paras: list[tuple[int, int]] = []
    for k, line in enumerate(lines):
        if line.strip() and (k == 0 or not lines[k - 1].strip()):
            paras.append((k, k + 1))
        elif line.strip():
            paras[-1] = (paras[-1][0], k + 1)
    starts = [a for a in range(len(paras)) if _could_start(lines[paras[a][0]])][:40]
    spans = sorted(((paras[a][0], paras[b][1]) for a in starts
                    for b in range(a, len(paras))), key=lambda s: s[0] - s[1])
    for lo, hi in spans:
        code = "\n".join(lines[lo:hi])
        tree = _parse(code)
        if tree is not None and _substantive(tree):
            return Block("python", "", code, lo + 1)
    return None


def _could_start(line: str) -> bool:
    """A first line that parses alone or is only unfinished (``def f():``, ``x = [``)."""
    try:
        _parse_strict(line)
    except SyntaxError as err:
        unfinished = ("expected an indented", "never closed", "EOF", "unterminated triple")
        return line.startswith("@") or any(w in str(err.msg) for w in unfinished)
    except (ValueError, RecursionError):
        return False
    return True


def _size(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip())


def _done(blocks: list[Block], how: str, notes: list[str]) -> Extraction:
    code = "\n\n".join(_LEADING_BLANKS.sub("", b.code).rstrip() for b in blocks)
    return Extraction(code + "\n", tuple(blocks), how, tuple(notes))


def _no_code(text: str) -> NoCodeError:
    flat = " ".join(text.split())
    if not flat:
        return NoCodeError("The model replied with an empty message: rephrase the spec or add "
                           "details.")
    preview = flat if len(flat) <= 80 else flat[:80].rstrip() + "…"
    return NoCodeError(f"The model replied without code: {preview} Rephrase the spec or add "
                       "details.")


__all__ = ["Block", "Extraction", "extract_code"]
