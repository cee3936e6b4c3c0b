"""Read the formats a model reply comes in and say what each piece of it is.

Kept apart from ``extract`` because this part knows the formats: Markdown
(CommonMark fences, info strings, language tags, file names), ``<code>`` tags,
JSON tool calls written as text, interactive sessions (``>>>``, ``In [1]:``) and
the shapes of non-code blocks (shell, sample output). Reasoning traces are read
in ``traces``, wrappers, heredocs and notebooks in ``wrappers``. ``extract`` only
decides which python blocks make the script.
"""

from __future__ import annotations

import ast
import html
import json
import re
import textwrap
import warnings
from collections.abc import Iterator
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
    for obj, line in json_objects(text):
        found = _code_in(obj, 0)
        if found is not None:
            name = obj.get("name") if isinstance(obj, dict) else None
            return found, line, name if isinstance(name, str) else ""
    return None


def json_objects(text: str, most: int = 50) -> Iterator[tuple[Any, int]]:
    """(value, line) of each JSON object or array that starts where one may, at most ``most``
    tries: a reply is prose, so one that never parses is not tried to the end."""
    decoder = json.JSONDecoder()
    for n, m in enumerate(_TOOL_START.finditer(text)):
        if n >= most:
            return
        try:
            obj, _end = decoder.raw_decode(text, m.end())
        except ValueError:
            continue
        yield obj, text.count("\n", 0, m.end()) + 1


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
