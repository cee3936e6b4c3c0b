"""Code that comes inside something else: a wrapper tag, a shell heredoc, a notebook.

Claude's artifact format (``<antArtifact …>``) and XML-style answers put the
script between tag lines; a bash block can write the script with ``cat > x.py
<<'EOF'``; a model asked for a notebook may return the ``.ipynb`` JSON. Each is
read here into the shapes ``fences`` knows (fenced blocks, ``_Fenced``).
"""

from __future__ import annotations

import re

from .fences import (
    _FENCE_START,
    _MAGIC_LINE,
    _PY_FILE,
    _dedent,
    _Fenced,
    _lang,
    _parse,
    _substantive,
    block,
    json_objects,
)

# -- wrappers: <antArtifact …>, <artifact>, <answer>, <solution> ---------------------
_WRAP_OPEN = re.compile(r"^[ \t]*<([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)"
                        r"\s*>", re.M)
_ATTR = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
# tags that are content, not wrappers: HTML in a template string, and tags read elsewhere
_NOT_WRAPPERS = frozenset({
    "html", "head", "body", "div", "span", "p", "a", "b", "i", "u", "em", "strong", "small",
    "table", "thead", "tbody", "tfoot", "tr", "td", "th", "ul", "ol", "li", "dl", "dt", "dd",
    "pre", "code", "python", "script", "style", "form", "section", "article", "header", "footer",
    "nav", "main", "aside", "h1", "h2", "h3", "h4", "h5", "h6", "template", "svg", "g", "path",
    "rect", "circle", "text", "title", "meta", "link", "br", "hr", "img", "label", "button",
    "input", "select", "option", "textarea", "details", "summary", "blockquote", "iframe",
    "think", "thinking", "thought", "reasoning", "tool_call", "xml", "root", "item"})
_BACKTICK_RUN = re.compile(r"^ *(`{3,})", re.M)


def unwrap(text: str) -> tuple[str, list[str]]:
    """Turn wrappers around the answer into what they stand for; notes say which were read.

    Claude's artifact format (``<antArtifact identifier=… type=… language="python"
    title=…>``), seen as text when a client does not render it, and XML-style answers
    (``<answer>``, ``<solution>``) put a whole script between two tag lines. Read as
    prose, the tag lines glue onto the first and last paragraphs of the code, so only
    a middle fragment parses. A wrapper around code becomes a fence with the wrapper's
    language; one around a fenced block or prose just loses its tags. Tags inside
    fences (a template in the code) are left alone.
    """
    if "</" not in text:
        return text, []
    notes: list[str] = []
    pos, tried = 0, 0
    while (m := _WRAP_OPEN.search(text, pos)) is not None and tried < 50:  # bounded: XML output
        name = m.group(1)
        artifact = "artifact" in name.lower()
        tried += name.lower() not in _NOT_WRAPPERS
        if name.lower() in _NOT_WRAPPERS or _in_fence(text, m.start()):
            pos = m.end()
            continue
        close = re.compile(rf"</{re.escape(name)}>[ \t]*").search(text, m.end())
        if close is None and not artifact:
            pos = m.end()
            continue
        cs, ce = (close.start(), close.end()) if close is not None else (len(text), len(text))
        line_start = text.rfind("\n", 0, cs) + 1
        if not text[line_start:cs].strip():
            cs = line_start  # the close tag has its own line
        body = text[m.end():cs]
        attrs = {k: a or b for k, a, b in _ATTR.findall(m.group(2))}
        lang = None if _FENCE_START.search(body) else _wrapped_lang(attrs, body, artifact)
        if lang is None:
            opening, closing = "", ""
        else:
            runs = [len(r) for r in _BACKTICK_RUN.findall(body)]
            fence = "`" * max([3, *(r + 1 for r in runs)])
            opening = fence + lang + ("" if body.startswith("\n") else "\n")
            closing = ("" if body.endswith("\n") else "\n") + fence
            line = text.count("\n", 0, m.start()) + 1
            notes.append(f"Read the <{name}> wrapper at line {line} as a {lang} block.")
        if closing and ce < len(text) and text[ce] != "\n":  # "</antArtifact> Hope it helps."
            closing += "\n"
        text = text[:m.start()] + opening + body + closing + text[ce:]
        pos = m.start() + len(opening)
    return text, notes


def _wrapped_lang(attrs: dict[str, str], body: str, artifact: bool) -> str | None:
    """The language of a wrapper's unfenced body; None when it is prose (tags just go)."""
    if lang := attrs.get("language") or attrs.get("lang"):
        return _lang(lang) or None
    names = " ".join(attrs.get(k, "") for k in ("title", "filename", "file", "path", "name"))
    kind = attrs.get("type", "").lower()
    if _PY_FILE.search(names) or "python" in kind:
        return "python"
    tree = _parse(_dedent(body.strip("\n")))
    if tree is not None and _substantive(tree):
        return "python"
    if artifact and kind and "code" not in kind:  # text/markdown, text/html, …react
        return re.split(r"[/.+]", kind)[-1] or None
    return None


def _in_fence(text: str, offset: int) -> bool:
    """Is ``offset`` inside a fenced block? A quick reading of the fences before it."""
    fence = ""
    for line in text[:offset].split("\n")[:-1]:
        stripped = line.lstrip(" ")
        if not fence:
            if stripped.startswith(("```", "~~~")):
                run = len(stripped) - len(stripped.lstrip(stripped[0]))
                fence = stripped[0] * run
        elif stripped.startswith(fence) and (
                not stripped.lstrip(fence[0]).strip() or stripped.lstrip(fence[0]).startswith("<")):
            fence = ""
    return bool(fence)


# -- a Python file written by a shell heredoc ------------------------------------------
_HEREDOC = re.compile(r"<<-?[ \t]*(['\"]?)([A-Za-z_]\w*)\1")
_HEREDOC_PY = re.compile(r"(?:>\s*|\btee\s+(?:-a\s+)?)['\"]?([\w./-]*\.pyw?)\b"
                         r"|\bpython[\d.]*\s+-(?:\s|$)")


def heredocs(f: _Fenced) -> list[_Fenced]:
    """Python written by a shell block's heredocs: ``cat > clean.py << 'EOF'`` … ``EOF``.

    Also ``tee clean.py <<EOF`` and ``python3 - <<'EOF'``: the body is the script.
    """
    lines = f.block.code.split("\n")
    out: list[_Fenced] = []
    k = 0
    while k < len(lines):
        line = lines[k]
        m, target = _HEREDOC.search(line), _HEREDOC_PY.search(line)
        if m is None or target is None:
            k += 1
            continue
        end = next((e for e in range(k + 1, len(lines))
                    if lines[e].strip() == m.group(2)), len(lines))
        name = target.group(1) or "python -"
        body = block("python", f"heredoc {name}", _dedent("\n".join(lines[k + 1:end])),
                     f.block.start_line + k + 1)
        found = _Fenced(body, f.intro, end < len(lines), kind="python", parsed=True)
        found.tree, found.lines = _parse(body.code), f.lines
        if body.code:
            out.append(found)
        k = end + 1
    return out


# -- a notebook returned as JSON -------------------------------------------------------
def notebook_cells(text: str) -> tuple[list[str], int] | None:
    """(code cells in order, line) of the first ``.ipynb`` JSON object in ``text``."""
    if '"cells"' not in text:
        return None
    for obj, line in json_objects(text):
        if isinstance(obj, dict) and isinstance(obj.get("cells"), list):
            cells = []
            for cell in obj["cells"]:
                if isinstance(cell, dict) and cell.get("cell_type") == "code":
                    src = _source(cell.get("source", ""))
                    if isinstance(src, str) and src.strip():
                        cells.append(src.strip("\n").rstrip())
            return cells, line
    return None


def _source(src: object) -> object:
    """A cell's source: a list of lines is joined as written.

    Models often leave the newline out of each line (``["import json", "import sys"]``);
    such a list is joined with newlines when joining it as written does not parse.
    """
    if not isinstance(src, list) or not all(isinstance(x, str) for x in src):
        return src
    joined = "".join(src)
    if len(src) > 1 and not any(x.endswith("\n") for x in src[:-1]) and _parse(joined) is None:
        return "\n".join(src)
    return joined


def drop_magics(code: str) -> str | None:
    """``code`` without notebook lines (``!pip …``, ``%matplotlib …``) when that makes it parse."""
    if not _MAGIC_LINE.search(code):
        return None
    bare = _MAGIC_LINE.sub("", code)
    return bare if _parse(bare) is not None else None
