"""Read the fenced blocks of a model reply and say what each one is.

Kept apart from ``_extract`` because this part knows Markdown (CommonMark fences,
info strings, language tags) and the shapes of non-code blocks (shell, sample
output, ``>>>`` sessions); ``_extract`` only decides which python blocks make
the script.
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings
from dataclasses import dataclass

_PY_TAGS = {"python", "py", "python3", "py3", "ipython", "ipython3", "python2", "sage"}
_SHELL_TAGS = {"bash", "sh", "shell", "console", "zsh", "fish", "shell-session", "shellsession",
               "terminal", "powershell", "ps1", "pwsh", "cmd", "bat", "batch", "sh-session"}
_OUTPUT_TAGS = {"text", "txt", "output", "out", "plaintext", "plain", "log", "stdout", "json",
                "csv", "tsv", "yaml", "yml", "toml", "xml", "ini", "result", "none", "raw"}
_SESSION_TAGS = {"pycon", "python-repl", "pyrepl", "doctest"}

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_OUTPUT_INTRO = re.compile(
    r"(\b(output|outputs|prints|print|result|results|produces|returns|gives|displays|shows)"
    r"|you(?:'ll| will| should) see|looks like|something like)\s*(is|are|would be|will be)?"
    r"\s*(\(.*\))?\s*:\s*$|^(example |sample |expected )?output:?$", re.I)
_SHELL_LINE = re.compile(
    r"^\s*(\$ |> |sudo |pip3? |python3? -m |python3? \S+\.py|conda |apt(-get)? |brew |npm |uv |"
    r"poetry |cd |export |mkdir |curl |wget |git |docker |chmod |source )")
_PYTHONISH = re.compile(r"^(def |class |import |from [\w.]+ import |async def |@\w)", re.M)
_MAGIC_LINE = re.compile(r"^[!%].*$", re.M)


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


def _scan(text: str) -> list[_Fenced]:
    """Find fenced blocks by the CommonMark rules, allowing list-item indentation."""
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
        close = re.compile(rf"^ {{0,{indent + 3}}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = textwrap.dedent("\n".join(lines[i + 1:j]))
        block = Block(_lang(info), info, body, i + 2)
        out.append(_Fenced(block, "\n".join(prose).strip(), j < len(lines)))
        prose = []
        i = j + 1
    return out


def _lang(info: str) -> str:
    """``python title="x.py"``, ``{.python}``, ``Python3:main.py`` -> ``python``."""
    word = info.split()[0] if info.split() else ""
    word = word.strip("{}").lstrip(".").split(":")[0].split(",")[0].lower()
    return "python" if word in _PY_TAGS else word


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
    if lang in _SESSION_TAGS or re.match(r"\s*>>> ", code):
        return "session"
    if lang not in ("python", ""):
        return "other"
    f.tree = tree = _parse(code)
    if tree is None and _MAGIC_LINE.search(code):
        f.tree = tree = _parse(bare := _MAGIC_LINE.sub("", code))
        if tree is not None:
            f.block, f.magic = Block(lang, f.block.info, bare, f.block.start_line), True
    output_intro = bool(_OUTPUT_INTRO.search(last_intro))
    if lang == "python":
        return "output" if output_intro and not _defines(tree) else "python"
    if output_intro:
        return "output"
    if tree is None:
        if _SHELL_LINE.match(code):
            return "shell"
        return "python" if _PYTHONISH.search(code) else "other"
    return "python" if _substantive(tree) else "output"


def _skip_note(f: _Fenced) -> str:
    where = f"at line {f.block.start_line - 1}"
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
