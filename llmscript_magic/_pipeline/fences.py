"""Read the formats a model reply comes in and say what each piece of it is.

Kept apart from ``extract`` because this part knows the formats: Markdown
(CommonMark fences, info strings, language tags, file names), reasoning traces
(``<think>…</think>`` and the other markers), wrappers (``<antArtifact>``,
``<answer>``), ``<code>`` tags, JSON tool calls written as text, notebooks as
JSON, shell heredocs, interactive sessions (``>>>``, ``In [1]:``) and the shapes
of non-code blocks (shell, sample output). ``extract`` only decides which python
blocks make the script.
"""

from __future__ import annotations

import ast
import html
import json
import re
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any

# tool_code: Gemini writes the code it would run as a "tool" in such blocks; it is Python
_PY_TAGS = {"python", "py", "python3", "py3", "ipython", "ipython3", "python2", "sage",
            "tool_code"}
_SHELL_TAGS = {"bash", "sh", "shell", "console", "zsh", "fish", "shell-session", "shellsession",
               "terminal", "powershell", "ps1", "pwsh", "cmd", "bat", "batch", "sh-session"}
_OUTPUT_TAGS = {"text", "txt", "output", "out", "plaintext", "plain", "log", "stdout", "json",
                "csv", "tsv", "yaml", "yml", "toml", "xml", "ini", "result", "none", "raw",
                "tool_outputs", "tool_output", "code_output"}
_SESSION_TAGS = {"pycon", "python-repl", "pyrepl", "doctest"}

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FENCE_START = re.compile(r"^ *(?:```|~~~)", re.M)
_PY_FILE = re.compile(r"[\w.\\/-]*\w\.(?:py|pyw|ipy)")
_OUTPUT_INTRO = re.compile(
    r"(\b(output|outputs|prints|print|result|results|produces|returns|gives|displays|shows)"
    r"|you(?:'ll| will| should) see|looks like|something like)\s*(is|are|would be|will be)?"
    r"\s*(\(.*\))?\s*:\s*$|^(example |sample |expected )?output:?$", re.I)
# "The final code looks like:" introduces code, not output: a code word and no output word
_CODE_WORD = re.compile(r"\b(code|script|program|snippet|function|class|implementation"
                        r"|solution|version|listing)\b", re.I)
_OUTPUT_WORD = re.compile(r"\b(output|outputs|prints?|printed|results?|displays?)\b", re.I)
_SHELL_LINE = re.compile(
    r"^\s*(\$ |> |sudo |pip3? |python3? -m |python3? \S+\.py|conda |apt(-get)? |brew |npm |uv |"
    r"poetry |cd |export |mkdir |curl |wget |git |docker |chmod |source )")
_PYTHONISH = re.compile(r"^(def |class |import |from [\w.]+ import |async def |@\w)", re.M)
_MAGIC_LINE = re.compile(r"^[!%].*$", re.M)
_LEADING_BLANKS = re.compile(r"\A(?:[ \t]*\n)+")
_SESSION_START = re.compile(r"\s*(>>>( |$)|In \[\d*\]: )")
_PROMPT = re.compile(r"[ \t]*(?:>>>|\.\.\.:|\.\.\.|In \[\d*\]:)( ?)(.*)$")
_SESSION_LINE = re.compile(r"^[ \t]*(>>>|In \[\d*\]:)( |$)", re.M)

# Reasoning traces: a leading <think>…</think> (DeepSeek-R1, Qwen3, QwQ, distills), Kimi's
# ◁think▷…◁/think▷, <reasoning>, gpt-oss's analysis channel (harmony tokens, or the plain
# text "analysis…assistantfinal…" left when a server drops them), or only a closing tag
# when the server put the opening one in the prompt.
_TRACE_OPEN = re.compile(r"\A\s*(<(think|thinking|thought|reasoning)>|<\|begin_of_thought\|>"
                         r"|◁think▷|(?:<\|start\|>assistant)?<\|channel\|>analysis<\|message\|>"
                         r"|analysis(?=.*?assistantfinal))", re.S)
_HARMONY_FINAL = re.compile(r"(?:<\|end\|>)?\s*(?:<\|start\|>assistant)?\s*<\|channel\|>final"
                            r"(?:\s*<\|constrain\|>\w*)?\s*<\|message\|>")
_LONE_CLOSE = re.compile(r"(^[ \t]*(</(think|thinking)>|◁/think▷)"
                         r"|(?<![`'\"(\[])(</(think|thinking)>|◁/think▷)[ \t]*$)", re.M)
_TRACE_TAGS = re.compile(r"</?(think|thinking|thought|reasoning)>|<\|(begin|end)_of_thought\|>"
                         r"|◁/?think▷|<\|[a-z_]+\|>")
_ENDS_WITH_FENCE = re.compile(r"^ *(`{3,}|~{3,})\s*\Z", re.M)
# Special tokens that leak into text from local servers: Llama's code-interpreter call
# starts with <|python_tag|>; chat templates end with <|eot_id|>, <|im_end|> and such.
_LEAD_TOKEN = re.compile(r"\A\s*<\|python_tag\|>")
_TAIL_TOKENS = re.compile(
    r"(?:<\|(?:eom_id|eot_id|im_end|endoftext|end|return|call)\|>|</s>|\s)+\Z")
# <code>, <python> (XML-style answers), [PYTHON]…[/PYTHON] (Code Llama's instruction format)
_CODE_TAG = re.compile(r"[<\[](code|python)(\s[^>\]]*)?[>\]](.*?)[<\[]/\1[>\]]", re.S | re.I)
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_TOOL_START = re.compile(r"^[ \t]*(?:<tool_call>\s*|\[TOOL_CALLS\]\s*)?(?=[\[{])", re.M)
_CODE_KEYS = ("code", "script", "source", "source_code", "python", "python_code", "program",
              "content", "action_input")
_NESTED_KEYS = ("arguments", "parameters", "input", "args", "function", "tool_calls",
                "tool_input", "function_call", "action_input")
_ALL_KEYS = frozenset(_CODE_KEYS + _NESTED_KEYS)


@dataclass(frozen=True)
class Block:
    """A fenced (or implied) block; ``start_line`` is its first code line, 1-based."""

    lang: str
    info: str
    code: str
    start_line: int


@dataclass
class _Fenced:
    """A block with the prose just before it, which often says what the block is."""

    block: Block
    intro: str
    closed: bool
    kind: str = ""
    tree: ast.Module | None = None
    magic: bool = False
    by_intro: bool = False  # taken for sample output only because of its intro sentence
    parsed: bool = False  # ``tree`` is already the parse of the code (None: it does not parse)
    read_past: int = 0  # a line of backticks the block was read past (its code's own string)
    shift: int = 0  # lines ``tree`` was moved by, to where the block lands when blocks are joined
    lines: tuple[int, int] = (0, 0)  # the reply lines it spans, fences included (0-based, end+1)


def block(lang: str, info: str, code: str, start_line: int) -> Block:
    """A block with leading blank lines and trailing whitespace trimmed.

    Trimmed once, here, so the code a user gets is exactly the text that was
    parsed and the tree's line numbers are the cell's line numbers.
    """
    lead = _LEADING_BLANKS.match(code)
    if lead:
        start_line += lead.group().count("\n")
        code = code[lead.end():]
    return Block(lang, info, code.rstrip(), start_line)


def _dedent(text: str) -> str:
    """``textwrap.dedent``, skipped when a line starts at column 0 (the usual case)."""
    return text if re.search(r"^\S", text, re.M) else textwrap.dedent(text)


def _scan(text: str) -> list[_Fenced]:
    """Find fenced blocks by the CommonMark rules, allowing list-item indentation.

    Two readings differ from CommonMark, both for Python blocks only. A closing
    fence may carry smolagents' ``<end_code>`` marker. And when the block ends at
    a line of backticks that belongs to the code's own strings (a Markdown
    template), the CommonMark reading is a fragment that does not parse: the
    block is read on to the first later closing line where it does parse.
    """
    if not _FENCE_START.search(text):
        return []
    lines = text.split("\n")
    out: list[_Fenced] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):
            prose.append(lines[i])
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        close = re.compile(rf"^ {{0,{indent + 3}}}{re.escape(fence[0])}{{{len(fence)},}}"
                           r"\s*(?:<end_code>\s*)?$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        lang = _lang(info)
        code = block(lang, info, _dedent("\n".join(lines[i + 1:j])), i + 2)
        tree, past = None, 0
        if lang in ("python", ""):
            tree = _parse(code.code)
            if tree is None and j < len(lines):
                j, code, tree, past = _read_on(lines, i, j, close, code)
        found = _Fenced(code, "\n".join(prose).strip(), j < len(lines))
        found.lines = (i, min(j + 1, len(lines)))
        found.tree, found.parsed, found.read_past = tree, lang in ("python", ""), past
        out.append(found)
        prose = []
        i = j + 1
    return out


def _read_on(lines: list[str], i: int, j: int, close: re.Pattern[str],
             short: Block) -> tuple[int, Block, ast.Module | None, int]:
    """(closing line, block, tree, the 1-based line read past) of the first longer reading
    of the block opened at ``i`` that parses; the CommonMark one (``j``) when none does."""
    tries = 0
    for k in range(j + 1, len(lines)):
        if not close.match(lines[k]):
            continue
        tries += 1
        longer = block(short.lang, short.info, _dedent("\n".join(lines[i + 1:k])), i + 2)
        if (tree := _parse(longer.code)) is not None and _substantive(tree):
            return k, longer, tree, j + 1
        if tries >= 20:
            break
    return j, short, None, 0


def _lang(info: str) -> str:
    """``python title="x.py"``, ``{.python}``, ``Python3:main.py``, ``main.py`` -> ``python``."""
    word = info.split()[0] if info.split() else ""
    word = word.strip("{}").lstrip(".").split(":")[0].split(",")[0].lower()
    if word in _PY_TAGS or _PY_FILE.fullmatch(word):  # ```main.py, ```app.py python
        return "python"
    return word


def _classify(f: _Fenced) -> str:
    """Say what a block is: python, shell, output, session or other."""
    lang, code = f.block.lang, f.block.code
    last_intro = f.intro.splitlines()[-1].strip(" *_#>") if f.intro else ""
    if not code.strip():
        return "empty"
    if lang in _SHELL_TAGS:
        return "shell"
    if lang in _OUTPUT_TAGS:
        return "output"
    if lang in _SESSION_TAGS or _SESSION_START.match(code):
        return "session"
    if lang not in ("python", ""):
        return "other"
    if not f.parsed:
        f.tree = _parse(code)
    tree = f.tree
    if tree is None and _MAGIC_LINE.search(code):
        bare = block(lang, f.block.info, _MAGIC_LINE.sub("", code), f.block.start_line)
        f.tree = tree = _parse(bare.code)
        if tree is not None:
            f.block, f.magic = bare, True
    output_intro = bool(_OUTPUT_INTRO.search(last_intro)) and not (
        _CODE_WORD.search(last_intro) and not _OUTPUT_WORD.search(last_intro))
    if lang == "python":
        f.by_intro = output_intro and not _defines(tree)
        return "output" if f.by_intro else "python"
    if output_intro:
        f.by_intro = True
        return "output"
    if tree is None:
        if _SHELL_LINE.match(code):
            return "shell"
        return "python" if _PYTHONISH.search(code) else "other"
    return "python" if _substantive(tree) else "output"


def _skip_note(f: _Fenced) -> str:
    where = f"at line {f.lines[0] + 1}"  # the opening fence
    if f.kind == "shell":
        return (f"Skipped a shell block {where}: shell commands are not run; "
                "install packages in the sandbox image instead.")
    if f.kind == "output":
        return f"Skipped a sample-output block {where}."
    if f.kind == "empty":
        return f"Skipped an empty block {where}."
    if f.kind == "session":
        return f"Skipped an interactive-session (>>>) block {where}."
    return f"Skipped a {f.block.lang or 'non-Python'} block {where}."


def blank_lines(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the given line ranges emptied, so line numbers stay the same."""
    lines = text.split("\n")
    for lo, hi in spans:
        lines[lo:hi] = [""] * (hi - lo)
    return "\n".join(lines)


# -- reasoning traces and special tokens ----------------------------------------------
@dataclass(frozen=True)
class Trace:
    """Where a reasoning trace sat in the reply (1-based lines) and whether an answer follows.

    ``cut``: the trace never closed and stops mid-thought (the reply was cut off), so
    there is no answer and its drafts must not be used. ``marker`` names the trace's form.
    """

    first_line: int
    last_line: int
    answered: bool
    cut: bool = False
    marker: str = "<think>"


def strip_tokens(text: str) -> str:
    """Drop chat-template tokens a local server left in the text (never inside the code)."""
    text = _LEAD_TOKEN.sub(lambda m: m.group().replace("<|python_tag|>", ""), text, count=1)
    if "<" not in text[-40:]:
        return text
    cut = max(len(text) - 200, 0)  # end tokens sit at the very end: never scan the whole reply
    return text[:cut] + _TAIL_TOKENS.sub("\n", text[cut:], count=1)


def _trace_end(text: str, m: re.Match[str]) -> tuple[int, int, str]:
    """(start, end) of the closing marker of the trace opened by ``m`` (-1s: none); its name."""
    opened = m.group(1)
    if opened.startswith("<|begin"):
        close, name = "<|end_of_thought|>", "<|begin_of_thought|>"
    elif opened == "◁think▷":
        close, name = "◁/think▷", opened
    elif opened.startswith("<|"):
        final = _HARMONY_FINAL.search(text, m.end())
        return (final.start(), final.end(), "analysis channel") if final else (-1, -1,
                                                                              "analysis channel")
    elif opened == "analysis":
        close, name = "assistantfinal", "analysis…assistantfinal"
    else:
        close, name = f"</{m.group(2)}>", opened
    end = text.find(close, m.end())
    return (end, end + len(close), name) if end >= 0 else (-1, -1, name)


def split_trace(text: str) -> tuple[str, Trace | None]:
    """Blank out a leading reasoning trace; keep it only when no answer follows it.

    Reasoning models write drafts in the trace (often longer than the answer, or
    "the full code"); the answer after it is what the user asked for. The trace
    is replaced by empty lines so line numbers in notes still match the reply.
    A trace that never closes is read only when it ends on a finished code block;
    one that stops mid-thought was cut off and is marked ``cut``.
    """
    m = _TRACE_OPEN.match(text)
    if m:
        end, stop, name = _trace_end(text, m)
        start = m.start(1)
        if end < 0:
            stop = len(text)
    else:
        lone = _LONE_CLOSE.search(text) if ("</think" in text or "◁/think▷" in text) else None
        if lone is None or re.search(r"<(think|thinking)>|◁think▷", text[:lone.start()]):
            return text, None
        start, stop, end, name = 0, lone.end(), lone.start(), lone.group().strip()
    first = text.count("\n", 0, start) + 1
    last = first + text.count("\n", start, stop)
    if text[stop:].strip():
        return text[:start] + "\n" * (last - first) + text[stop:], Trace(first, last, True,
                                                                         marker=name)
    inner = _TRACE_TAGS.sub("", text[start:stop])
    cut = end < 0 and not _ENDS_WITH_FENCE.search(inner.rstrip())
    # nothing else to go on: read the trace itself, without its tags
    return text[:start] + inner, Trace(first, last, False, cut, name)


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
        close = re.compile(rf"</{re.escape(name)}>[ \t]*$", re.M).search(text, m.end())
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
    decoder = json.JSONDecoder()
    for n, m in enumerate(_TOOL_START.finditer(text)):
        if n >= 50:
            break
        try:
            obj, _end = decoder.raw_decode(text, m.end())
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("cells"), list):
            cells = []
            for cell in obj["cells"]:
                if isinstance(cell, dict) and cell.get("cell_type") == "code":
                    src = cell.get("source", "")
                    src = "".join(src) if isinstance(src, list) else src
                    if isinstance(src, str) and src.strip():
                        cells.append(src.strip("\n").rstrip())
            return cells, text.count("\n", 0, m.end()) + 1
    return None


def drop_magics(code: str) -> str | None:
    """``code`` without notebook lines (``!pip …``, ``%matplotlib …``) when that makes it parse."""
    if not _MAGIC_LINE.search(code):
        return None
    bare = _MAGIC_LINE.sub("", code)
    return bare if _parse(bare) is not None else None


# -- <code> tags ---------------------------------------------------------------------
def tagged(text: str) -> list[_Fenced]:
    """``<code>``, ``<pre><code class="language-python">``, ``[PYTHON]`` blocks, as fenced ones."""
    out: list[_Fenced] = []
    prev = 0
    for m in _CODE_TAG.finditer(text):
        attrs, body = m.group(2) or "", m.group(3)
        line_start = text.rfind("\n", 0, m.start()) + 1
        if "\n" not in body.strip() and re.sub(r"<pre[^>]*>", "", text[line_start:m.start()]
                                               ).strip():
            continue  # "the <code>load()</code> function": a mention in a sentence, not a block
        if _ENTITY.search(body):
            body = html.unescape(body)
        lang = re.search(r"(?:language-|lang(?:uage)?=[\"']?)(\w+)", attrs)
        tag = m.group(1).lower()
        name = "python" if tag == "python" else _lang(lang.group(1)) if lang else ""
        start = text.count("\n", 0, m.start(3)) + 1
        info = f"<{tag}>" if m.group().startswith("<") else f"[{m.group(1)}]"
        found = _Fenced(block(name, info, _dedent(body), start),
                        re.sub(r"<[^>]+>", "", text[prev:m.start()]).strip(), True)
        out.append(found)
        prev = m.end()
    return out


# -- interactive sessions -------------------------------------------------------------
def strip_prompts(text: str) -> str | None:
    """The code of a ``>>>`` / ``In [1]:`` session: prompts removed, output lines dropped."""
    out: list[str] = []
    for line in text.split("\n"):
        m = _PROMPT.match(line)
        if m:
            out.append(m.group(2))
        elif not line.strip() and out and out[-1].strip():
            out.append("")
    code = "\n".join(out).strip("\n")
    return code or None


def has_session(text: str) -> bool:
    return bool(_SESSION_LINE.search(text))


def blank_sessions(text: str) -> str:
    """``text`` with session lines emptied: ``In [2]: df = f()`` even parses as Python."""
    if not has_session(text) and "Out[" not in text:
        return text
    lines = text.split("\n")
    in_session = False
    for k, line in enumerate(lines):
        if re.match(r"[ \t]*(>>>|In \[\d*\]:|Out\[\d*\]:)( |$)", line) or (
                in_session and re.match(r"[ \t]*\.\.\.:?( |$)", line)):
            lines[k], in_session = "", True
        elif line.strip():
            in_session = False
    return "\n".join(lines)


# -- JSON tool calls written as text -------------------------------------------------
def tool_call(text: str) -> tuple[str, int, str] | None:
    """(code, line, tool name) of the first JSON tool call in ``text`` whose code parses.

    Small local models asked for code often answer as if calling a tool:
    ``{"name": "python", "arguments": {"code": "..."}}``, Hermes/Qwen
    ``<tool_call>…</tool_call>``, Mistral ``[TOOL_CALLS] [...]``, OpenAI-style
    ``"arguments": "<json string>"`` or LangChain ``{"action_input": "..."}``.
    """
    if not any(f'"{key}"' in text for key in _ALL_KEYS):  # no JSON that could hold code
        return None
    decoder = json.JSONDecoder()
    for n, m in enumerate(_TOOL_START.finditer(text)):
        if n >= 50:
            break
        try:
            obj, _end = decoder.raw_decode(text, m.end())
        except ValueError:
            continue
        found = _code_in(obj, 0)
        if found is not None:
            name = obj.get("name") if isinstance(obj, dict) else None
            return found, text.count("\n", 0, m.end()) + 1, name if isinstance(name, str) else ""
    return None


def _code_in(obj: Any, depth: int) -> str | None:
    if depth > 8:  # tool_calls -> [..] -> function -> arguments (a JSON string) -> code
        return None
    if isinstance(obj, list):
        return next((c for x in obj if (c := _code_in(x, depth + 1)) is not None), None)
    if isinstance(obj, str):
        stripped = obj.strip()
        if stripped.startswith(("{", "[")):
            try:
                return _code_in(json.loads(stripped), depth + 1)
            except ValueError:
                pass
        tree = _parse(obj)
        return obj if tree is not None and _substantive(tree) else None
    if not isinstance(obj, dict):
        return None
    for key in _CODE_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and (code := _code_in(value, depth + 1)) is not None:
            return code
    for key in _NESTED_KEYS:
        if isinstance(obj.get(key), dict | list | str) and (
                code := _code_in(obj[key], depth + 1)) is not None:
            return code
    return None


# -- parsing ---------------------------------------------------------------------------
def _parse_strict(code: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(code)


def _parse(code: str) -> ast.Module | None:
    try:
        return _parse_strict(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _substantive(tree: ast.Module) -> bool:
    """Parses *and* does something; "Note: see below" or "Yes, sure" parse too."""
    for node in tree.body:
        if isinstance(node, ast.Expr):
            if any(isinstance(n, ast.Call | ast.Await) for n in ast.walk(node)):
                return True
        elif not (isinstance(node, ast.AnnAssign) and node.value is None):
            return True
    return False


def _defines(tree: ast.Module | None) -> bool:
    return tree is not None and any(not isinstance(n, ast.Expr) for n in tree.body)
