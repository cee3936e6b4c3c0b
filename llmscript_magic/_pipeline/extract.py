"""Take the script out of a model reply.

Replies come in many shapes: one fenced block, several blocks that build one
script step by step, a complete script plus a usage example, shell commands
and sample output next to the code, a reasoning trace before the answer, a
JSON tool call written as text, an interactive session, or bare code with no
fences at all. Code is recognised with ``ast.parse`` rather than keyword
guesses, so prose such as "Import the CSV first." is never mistaken for a
script. The tree of the chosen code is kept (``Extraction.tree``) so validation
does not parse it again.

Before anything else, a leading reasoning trace (``<think>``, ``<reasoning>``,
Kimi's ``◁think▷``, gpt-oss's analysis channel) is set aside: when an answer
follows it, code is taken only from the answer, so a draft in the trace (longer,
or called "the full code") never wins. A trace that never closes and stops
mid-thought was cut off: there is no answer, and no draft is used. Then the
first rule that finds code is used; ``Extraction.how`` names it:

- ``whole reply``: the reply is code as it stands.
- (wrappers such as ``<antArtifact language="python">`` around code are read as
  fences first, so their tag lines never cut the script into a fragment.)
- python blocks (fenced, with a python or ``tool_code`` tag, a ``.py`` file name
  or no tag and code in it). A block taken for sample output only because of its
  intro ("The final code looks like:") is used when there is no other code; with
  none at all, a Python file a shell block writes by heredoc (``cat > x.py <<EOF``).
  A pytest file beside the script is set aside (``Extraction.tests``, with a note).

  0. A block whose lines all repeat lines of another block is left out: it is
     an excerpt explained after the script (``...`` elisions aside), a fragment
     that a later full listing repeats, or a tweak that changes a value of it.
  1. ``block marked complete``: a block introduced as the complete / full /
     final script wins (the last such block that parses).
  2. ``joined N blocks``: the blocks are joined, in order, when they are parts
     of one script: every block parses, every block is linked to another
     by a name one defines and the other uses, no later block redefines an
     earlier function or class, only the last block ends as a complete program
     (``if __name__ ...`` or a call to its own entry function), and no block is
     introduced as an alternative ("Option 2", "Alternatively"), usage example or
     optional tweak ("If your file uses ';', change…"). Blocks not linked by a
     name are joined too when each only defines functions or classes, or when
     each later one is introduced as the next step ("Then", "Step 2").
  3. ``longest of N blocks``: otherwise the longest block that parses, preferring
     one that runs on its own (uses no name only another block defines); a later
     one on a tie. ``single block`` when there is one.
- the same rules for ``<code>…</code>``, ``<python>`` or ``[PYTHON]`` tags (a note says so).
- ``notebook JSON``: an ``.ipynb`` written as JSON: its code cells, in order.
- ``JSON tool call``: ``{"name": ..., "arguments": {"code": "..."}}`` as text.
- ``code found between prose`` / ``indented code block``: the largest run of
  paragraphs outside any fence that parses as code (Markdown indented code
  blocks and indented snippets are dedented); code-like lines it leaves out
  are named in a note.
- ``interactive session, prompts removed``: only when nothing above found code,
  the ``>>>`` / ``...`` / ``In [1]:`` lines of a session, without prompts or output.

With no code at all, the error says what the reply held instead (a shell block,
another language, a notebook without code cells) rather than "without code".
"""

from __future__ import annotations

import ast
import bisect
import re
import textwrap
from dataclasses import dataclass, field

from .._errors import NoCodeError, TruncatedReplyError
from .blocks import (
    are_parts,
    drop_excerpts,
    is_tests,
    self_contained,
    shift_lines,
    tests_note,
)
from .fences import (
    Block,
    _classify,
    _Fenced,
    _parse,
    _parse_strict,
    _scan,
    _skip_note,
    _substantive,
    blank_lines,
    blank_sessions,
    block,
    has_session,
    strip_prompts,
    tagged,
    tool_call,
)
from .traces import Trace, split_trace, strip_tokens
from .wrappers import drop_magics, heredocs, notebook_cells, unwrap

_COMPLETE_INTRO = re.compile(
    r"\b(complete|full|final|entire|whole|finished|combined|all[- ]in[- ]one)\b[\w\s,-]{0,20}?"
    r"\b(script|code|program|version|solution|listing|file|example)\b|putting it (all )?together"
    r"|all together", re.I)
_DOES = re.compile(r"[(=]|^\s*(import|from|def|class|for|while|if|with|try|return|raise|assert"
                   r"|del|async|await|global|pass|@)\b", re.M)
_SENTENCE = re.compile(r"[A-Z][a-z']*( [\w'`,/-]+)+[.:!?]\s*$")
# a line that reads as a Python statement, not prose ("Import the CSV first." does not)
_STATEMENT = re.compile(r"\s*(import [\w.]+( as \w+)?(, [\w.]+)*\s*$|from [\w.]+ import \S"
                        r"|def \w+\(|class \w+[(:]|if __name__ ==|@\w[\w.]*(\(|$))")
_MAX_TRIES = 400  # parses at most when looking for unfenced code: a bound, never reached
_QUOTE_LIMIT = 400  # characters of the reply's end quoted when it has no code
_SENTENCE_END = re.compile(r"(?<=[.!?…:])[\"')\]*_]*\s+|\n\s*")


@dataclass(frozen=True)
class Extraction:
    """The script, the blocks it was made from, and how they were chosen (for the user).

    ``tree`` is the parsed ``code`` (None when it does not parse): validation
    reuses it instead of parsing the script again.
    """

    code: str
    blocks: tuple[Block, ...]
    how: str
    notes: tuple[str, ...]
    tree: ast.Module | None = field(default=None, compare=False, repr=False)
    tests: tuple[Block, ...] = ()  # a test file (pytest) the reply wrote beside the script


def extract_code(reply: str, *, truncated: bool = False) -> Extraction:
    """Return the one script in ``reply``; raise an ``ExtractionError`` when there is none."""
    if truncated:
        raise TruncatedReplyError(
            "The reply was cut off at max_tokens, so its code is incomplete and was not used: "
            "raise --max-tokens or shorten the spec.")
    text = strip_tokens(reply.replace("\r\n", "\n").replace("\r", "\n"))
    text, trace = split_trace(text)
    if trace is not None and trace.cut:
        raise TruncatedReplyError(
            f"The reply stopped inside its reasoning ({trace.marker} from line "
            f"{trace.first_line} never ended), before any answer; drafts in the reasoning are "
            "not used: raise --max-tokens and run again.")
    found = _find(text)
    if found is None:
        raise _no_code(text)
    if trace is not None:
        return _with_note(found, _trace_note(trace))
    return found


def _trace_note(trace: Trace) -> str:
    where = (f"lines {trace.first_line}-{trace.last_line}" if trace.last_line > trace.first_line
             else f"line {trace.first_line}")
    if trace.marker not in ("<think>", "</think>"):
        where = f"{trace.marker}, {where}"
    if trace.answered:
        return (f"Left out the reasoning trace ({where}): code is taken only from the answer "
                "after it.")
    return f"The reply was only a reasoning trace ({where}); the code was taken from it."


def _with_note(found: Extraction, note: str) -> Extraction:
    return Extraction(found.code, found.blocks, found.how, (note, *found.notes), found.tree,
                      found.tests)


def _find(text: str) -> Extraction | None:
    """The first rule of the module docstring that finds code in ``text``."""
    whole = block("python", "", text, 1)
    tree = _parse(whole.code) if whole.code else None
    if tree is not None and _substantive(tree):
        return _done([whole], "whole reply", [], tree)
    text, wrapped = unwrap(text)
    found = _find_read(text)
    if found is not None and wrapped:
        return Extraction(found.code, found.blocks, found.how, (*wrapped, *found.notes),
                          found.tree, found.tests)
    return found


def _find_read(text: str) -> Extraction | None:
    fenced = _scan(text)
    for f in fenced:
        f.kind = _classify(f)
    cands = [f for f in fenced if f.kind == "python"]
    promoted: list[str] = []
    if not cands:  # an only code block is never dropped for how its intro sounds
        cands = [f for f in fenced if f.by_intro and f.tree is not None and _substantive(f.tree)]
        for f in cands:
            f.kind = "python"
            promoted.append(f"Used the block at line {f.block.start_line}, introduced like "
                            "sample output, as it is the only code in the reply.")
    writers: set[int] = set()  # the shell blocks the script came from
    if not cands:  # a script written by a shell heredoc (cat > clean.py << 'EOF')
        cands = [h for f in fenced if f.kind == "shell" for h in heredocs(f)]
        writers = {h.lines[0] for h in cands}
        promoted += [f"The script was written by a shell heredoc ({h.block.info.split(' ', 1)[1]})"
                     f" in the shell block at line {h.lines[0] + 1}; it was taken from there and "
                     "the shell commands around it were not run." for h in cands]
    if cands:
        notes = [_skip_note(f) for f in fenced if f.kind != "python" and f.lines[0] not in writers]
        notes += [f"Read the block at line {f.block.start_line} past a line of backticks at line "
                  f"{f.read_past}: that line is part of the code's own text." for f in cands
                  if f.read_past]
        return _pick(cands, notes + promoted)
    tags = tagged(text)
    for f in tags:
        f.kind = _classify(f)
    if cands := [f for f in tags if f.kind == "python"]:
        tag = cands[0].block.info
        return _pick(cands, [f"The code was in {tag} tags rather than a fenced block."])
    if (nb := _notebook(text)) is not None:
        return nb
    if (call := tool_call(text)) is not None:
        code, line, name = call
        b = block("python", "tool call", code, line)
        what = f'a "{name}" tool call' if name else "a tool call"
        return _done([b], "JSON tool call", [
            f"The reply was {what} written as JSON text (line {line}); its code argument was "
            "used."], _parse(b.code))
    rest = blank_lines(text, [f.lines for f in fenced])
    if (found := _unfenced(search := blank_sessions(rest))) is not None:
        b, tree, indented = found
        last = b.start_line + b.code.count("\n")
        lines = f"lines {b.start_line}-{last}"
        note = (f"The reply had no python block; {lines}, outside its fences, were taken as the "
                "script." if fenced else f"The reply had no code fences; {lines} were taken as "
                "the script.")
        notes = [note]
        if left := _code_left_out(search, b.start_line, last):
            notes.append(f"Left out code-like lines outside them ({left}): they do not parse "
                         "together with the script; check nothing the script needs is missing.")
        return _done([b], "indented code block" if indented else "code found between prose",
                     notes, tree)
    return _session([f for f in fenced if f.kind == "session"], rest)


def _notebook(text: str) -> Extraction | None:
    """A notebook returned as ``.ipynb`` JSON: its code cells, in order, make the script."""
    found = notebook_cells(text)
    if found is None or not found[0]:
        return None
    cells, line = found
    code = "\n\n".join(cells)
    used = (f"its {len(cells)} code cells were joined in order" if len(cells) > 1
            else "its code cell was used")
    notes = [f"The reply was a notebook written as JSON (line {line}); {used}."]
    if _parse(code) is None and (bare := drop_magics(code)) is not None:
        code = bare
        notes.append("Removed notebook lines starting with ! or % (such as !pip install): "
                     "install packages in the sandbox image instead.")
    b = block("python", "notebook", code, line)
    return _done([b], "notebook JSON", notes, _parse(b.code))


def _pick(cands: list[_Fenced], notes: list[str]) -> Extraction:
    """Rules 0-3 of the module docstring for the python blocks found."""
    tests: list[_Fenced] = []
    if len(cands) > 1:
        tests = [c for c in cands if is_tests(c)]
        if tests and len(tests) < len(cands):
            cands = [c for c in cands if c not in tests]
            notes.extend(tests_note(t) for t in tests)
        else:
            tests = []
    if len(cands) > 1:
        cands, repeats = drop_excerpts(cands)
        notes.extend(repeats)
    chosen, how, why, tree = _choose(cands)
    notes.extend(why)
    if not chosen[-1].closed:
        notes.append("The last code block had no closing fence; it was used as it is.")
    if any(c.magic for c in chosen):
        notes.append("Removed notebook lines starting with ! or % (such as !pip install): "
                     "install packages in the sandbox image instead.")
    found = _done([c.block for c in chosen], how, notes, tree)
    if tests:
        found = Extraction(found.code, found.blocks, found.how, found.notes, found.tree,
                           tuple(t.block for t in tests))
    return found


def _session(blocks: list[_Fenced], rest: str) -> Extraction | None:
    """The last resort: the code typed into an interactive session, prompts removed."""
    pieces = [block("python", f.block.info, code, f.block.start_line)
              for f in blocks if (code := strip_prompts(f.block.code))]
    if not pieces and has_session(rest) and (code := strip_prompts(rest)):
        first = next(k for k, line in enumerate(rest.split("\n"), 1) if has_session(line))
        pieces = [block("python", "", code, first)]
    parsed = [(b, t) for b in pieces if (t := _parse(b.code)) is not None and _substantive(t)]
    if not parsed:
        return None
    tree = _parse("\n\n".join(b.code for b, _ in parsed)) if len(parsed) > 1 else None
    if tree is not None:  # a session in several blocks: one script
        used = [b for b, _ in parsed]
    else:  # one block, or blocks that do not go together: the longest
        best, tree = max(reversed(parsed), key=lambda p: _size(p[0].code))
        used = [best]
    return _done(used, "interactive session, prompts removed", [
        "The only code was an interactive session; its >>> / In [n]: prompts and output lines "
        "were removed."], tree)


def _choose(cands: list[_Fenced]) -> tuple[list[_Fenced], str, list[str], ast.Module | None]:
    """Apply rules 1-3 to the python blocks; the last item is the tree of the result."""
    n = len(cands)
    if n == 1:
        return cands, "single block", [], cands[0].tree
    left_out = "the other block was left out" if n == 2 else f"the other {n - 1} were left out"
    marked = [c for c in cands if c.tree is not None and _COMPLETE_INTRO.search(c.intro)]
    parts = are_parts(cands)
    if marked and not (parts and marked[-1] is cands[0]):
        return [marked[-1]], "block marked complete", [
            f"Used the python block at line {marked[-1].block.start_line}, introduced as the "
            f"complete script; {left_out}."], _own_lines(marked[-1])
    if parts:
        body = [stmt for c in cands if c.tree is not None for stmt in c.tree.body]
        return cands, f"joined {n} blocks", [
            f"Joined {n} python blocks that build on each other into one script."], ast.Module(
            body=body, type_ignores=[])
    ok = [c for c in cands if c.tree is not None] or cands
    alone = {id(c) for c in ok if c.tree is not None and self_contained(c.tree)}
    best = max(reversed(ok), key=lambda c: (id(c) in alone, _size(c.block.code)))
    why = ("none parses; the longest" if best.tree is None else "the longest that parses"
           if len(alone) in (0, len(ok)) else "the longest that parses and runs on its own")
    return [best], f"longest of {n} blocks", [
        f"Used the python block at line {best.block.start_line} ({why}); {left_out}."], (
        _own_lines(best))


def _own_lines(c: _Fenced) -> ast.Module | None:
    """The tree of a block used alone, with the line numbers of its own code again."""
    if c.shift and c.tree is not None:
        shift_lines(c.tree, -c.shift)
        c.shift = 0
    return c.tree


def _unfenced(text: str) -> tuple[Block, ast.Module | None, bool] | None:
    """The largest run of blank-line-separated paragraphs that parses as code.

    Indented runs (a Markdown indented code block, a snippet indented under a
    list item) are dedented first; the last item says whether that was needed.
    For each paragraph that could start code, the longest run is tried first;
    a syntax error in paragraph p rules out every longer run through p at once.
    """
    lines = text.split("\n")
    paras: list[tuple[int, int]] = []
    for k, line in enumerate(lines):
        if line.strip() and (k == 0 or not lines[k - 1].strip()):
            paras.append((k, k + 1))
        elif line.strip():
            paras[-1] = (paras[-1][0], k + 1)
    # a run can only be a script if one of its paragraphs can do something (calls, assigns,
    # statements): "Okay" or "Note: this" parse too, and are never worth a parse
    doing = [0]
    for lo, hi in paras:
        doing.append(doing[-1] + bool(_DOES.search("\n".join(lines[lo:hi]))))
    # a one-line sentence ("Run it with python.") is never code: a run never ends on one,
    # which saves a parse of the whole run that would fail on its last line
    sentence = [hi - lo == 1 and bool(_SENTENCE.match(lines[lo])) for lo, hi in paras]
    first_lines = [lo for lo, _ in paras]
    best: tuple[Block, ast.Module | None, bool] | None = None
    best_len, tries = 0, 0
    starts = 0
    for a in range(len(paras)):
        if paras[-1][1] - paras[a][0] <= best_len or starts >= 40:
            break  # no later start can give a longer run
        if not _could_start(lines[paras[a][0]]):
            continue
        starts += 1
        b = len(paras) - 1
        while b > a and sentence[b]:
            b -= 1
        while b >= a and tries < _MAX_TRIES and doing[b + 1] > doing[a]:
            lo, hi = paras[a][0], paras[b][1]
            if hi - lo <= best_len:  # an earlier start already found one at least as long
                break
            tries += 1
            raw = "\n".join(lines[lo:hi])
            indented = lines[lo][:1] in (" ", "\t")
            code = textwrap.dedent(raw) if indented else raw
            try:
                tree = _parse_strict(code)
            except SyntaxError as err:
                # runs through the error's paragraph fail too (not so when dedenting: a shorter
                # run may dedent further)
                where = bisect.bisect_right(first_lines, lo + (err.lineno or 1) - 1) - 1
                b = b - 1 if indented else min(b - 1, max(where, a))
                continue
            except (ValueError, RecursionError, MemoryError):
                b -= 1
                continue
            if _substantive(tree):
                found = block("python", "", code, lo + 1)
                # what the cell holds: the same lines unless blank lines led (never here)
                kept = tree if found.code == code.rstrip() else _parse(found.code)
                best, best_len = (found, kept, code != raw), hi - lo
                break
            b -= 1
    return best


def _code_left_out(text: str, first: int, last: int) -> str:
    """The lines outside ``first``-``last`` (1-based) that read like Python statements."""
    found = [k for k, line in enumerate(text.split("\n"), 1)
             if not first <= k <= last and _STATEMENT.match(line)]
    if not found:
        return ""
    shown = ", ".join(f"line {k}" for k in found[:3])
    return shown + (f" and {len(found) - 3} more" if len(found) > 3 else "")


def _could_start(line: str) -> bool:
    """A first line that parses alone or is only unfinished (``def f():``, ``x = [``)."""
    line = line.strip()
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


def _done(blocks: list[Block], how: str, notes: list[str],
          tree: ast.Module | None) -> Extraction:
    """The extraction; ``tree`` must be the parse of exactly the joined block code."""
    return Extraction("\n\n".join(b.code for b in blocks) + "\n", tuple(blocks), how,
                      tuple(notes), tree)


def _no_code(text: str) -> NoCodeError:
    """Quote the END of the reply (where a model asks its question) and say how to fix it."""
    flat = " ".join(text.split())
    if not flat:
        return NoCodeError("The model replied with an empty message: rephrase the spec or add "
                           "details.")
    fix = ("Answer its question in the spec, or rephrase the spec or add details."
           if flat.endswith("?") else "Rephrase the spec or add details.")
    seen, prose = _unused(text)
    if seen:  # code of another kind: say what it was, not "without code"
        quote = f" It ends: {_tail(prose.strip())}" if flat.endswith("?") and prose.strip() else ""
        return NoCodeError(f"The reply had no Python script to use, only {seen}.{quote} {fix}")
    return NoCodeError(f"The model replied without code: {_tail(text.strip())} {fix}")


def _unused(text: str) -> tuple[str, str]:
    """What the reply held that looked like code but could not be used; the reply's prose."""
    text, _ = unwrap(text)
    found: list[str] = []
    fenced = _scan(text)
    for f in fenced:
        kind = f.kind or _classify(f)
        where = f"line {f.lines[0] + 1}"
        if kind == "shell":
            found.append(f"a shell block ({where}; shell commands are not run)")
        elif kind == "output":
            found.append(f"a sample-output block ({where})")
        elif kind == "empty":
            found.append(f"an empty {f.block.lang or 'code'} block ({where})")
        elif kind == "other":
            found.append(f"a {f.block.lang or 'non-Python'} block ({where})")
    nb = notebook_cells(text)
    if nb is not None and not nb[0]:
        found.append(f"a notebook as JSON with no code cells (line {nb[1]})")
    if len(found) > 3:
        found[2:] = [f"{len(found) - 2} more"]
    seen = ", ".join(found[:-1]) + (" and " if len(found) > 1 else "") + found[-1] if found else ""
    return seen, blank_lines(text, [f.lines for f in fenced])


def _tail(text: str) -> str:
    """The last whole sentences of ``text`` within about ``_QUOTE_LIMIT`` characters.

    Starts at a sentence or line start, so a question is never quoted from its
    middle; a last sentence longer than the limit is cut at a word, marked "…".
    """
    flat = " ".join(text.split())
    if len(flat) <= _QUOTE_LIMIT:
        return flat
    window = text[-(_QUOTE_LIMIT * 3):]  # enough raw text for the limit after flattening
    starts = [m.end() for m in _SENTENCE_END.finditer(window)]
    for start in starts:
        quote = " ".join(window[start:].split())
        if quote and len(quote) <= _QUOTE_LIMIT:
            return "…" + quote
    cut = flat[-_QUOTE_LIMIT:]
    return "…" + (cut.split(" ", 1)[1] if " " in cut else cut)


__all__ = ["Block", "Extraction", "extract_code"]
