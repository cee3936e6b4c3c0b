"""HTML for the widget's panels: pure functions of a generation, easy to test.

Everything the user's code or the model produced is escaped; every output
is capped (a notebook keeps widget state, so an unbounded stdout would bloat
it), and a cut is always said out loud.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._pipeline.risk import BOUNDARY
from .text import MAX_FIGURES, STATUS_WORD, listed_files, saved_by_name

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt
    from .._pipeline.validate import Check, ValidationReport
    from .._sandbox import OutputFile, RunResult

SHOWN_BYTES = 64 * 1024  # per stream (reply, stdout, stderr)
LINK_BYTES = 512 * 1024  # files up to this size get a data: download link
EMBED_BYTES = 1024 * 1024  # all data: links of one result together (widget state is saved)

ICON = {"pass": ("✓", "#1a7f37"), "warn": ("⚠", "#9a6700"), "fail": ("✗", "#cf222e")}
BADGE = {"ok": "#1a7f37", "error": "#cf222e", "timeout": "#9a6700", "memory": "#9a6700",
         "output_capped": "#9a6700"}
PRE = ("margin:0;padding:6px;max-height:24em;overflow:auto;white-space:pre-wrap;"
       "font-family:var(--jp-code-font-family,monospace);font-size:12px;"
       "background:var(--jp-layout-color2,#f6f8fa)")


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def cap(text: str, limit: int = SHOWN_BYTES, tail: bool = False) -> tuple[str, int]:
    """Text cut to ``limit`` UTF-8 bytes and how many bytes were left out."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text, 0
    part = raw[-limit:] if tail else raw[:limit]
    return part.decode("utf-8", "ignore"), len(raw) - limit


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"  # pragma: no cover


def thinking_html(text: str) -> str:
    """Extended thinking: collapsed, labelled, and kept apart from the reply's code."""
    return ('<details class="llmscript-thinking"><summary>Model\'s reasoning '
            f'({len(text.split())} words; not code, never run)</summary>'
            f'<pre style="white-space:pre-wrap;opacity:.75">{esc(text[-20000:])}</pre>'
            '</details>')


def stream_html(text: str) -> str:
    """The reply as it streams in: the tail when it is long."""
    shown, cut = cap(text, tail=True)
    note = f"<div><i>… first {human(cut)} not shown</i></div>" if cut else ""
    return f'{note}<pre class="llmscript-stream" style="{PRE}">{esc(shown)}</pre>'


def code_html(code: str | None, reply: str = "") -> str:
    """Highlighted code (inline styles: no stylesheet needed, survives nbconvert).

    Without code, the whole reply is shown instead (a question back, a refusal): the
    user should read what the model said, not only the end of it quoted in the error.
    """
    if code is None:
        if not reply.strip():
            return "<div><i>No code was extracted from the reply.</i></div>"
        shown, cut = cap(reply)
        note = f"<div><i>… {human(cut)} more not shown</i></div>" if cut else ""
        return ("<div><i>No code was extracted; the model's whole reply:</i></div>"
                f'<pre class="llmscript-reply" style="white-space:pre-wrap">{esc(shown)}</pre>'
                + note)
    shown, cut = cap(code)
    body = highlighted(shown)
    note = f"<div><i>… {human(cut)} more not shown</i></div>" if cut else ""
    return f'<div class="llmscript-code">{body}{note}</div>'


#: Token colours: the theme's own (JupyterLab's editor variables, also in nbconvert's light
#: and dark HTML), else a mid tone that reads on light and dark backgrounds alike.
TOKEN_COLORS = (
    ("Comment", "comment", "#808080"),
    ("Literal.String", "string", "#1f883d"),
    ("Literal.Number", "number", "#5f8a00"),
    ("Keyword", "keyword", "#9c5ccc"),
    ("Operator.Word", "keyword", "#9c5ccc"),
    ("Operator", "operator", "#9c5ccc"),
    ("Name.Builtin", "builtin", "#3178c6"),
    ("Name.Decorator", "meta", "#3178c6"),
    ("Name.Function", "def", "#0a7ea4"),
    ("Name.Class", "def", "#0a7ea4"),
    ("Error", "error", "#d1242f"),
)
#: the editor's own background: the one the theme chose its token colours for
CODE_PRE = (PRE + ";background:var(--jp-cell-editor-background,#f6f8fa)"
            ";color:var(--jp-content-font-color1,#1f2328)")


def _token_style(ttype: Any) -> str:
    name = str(ttype).removeprefix("Token.")
    for prefix, var, fallback in TOKEN_COLORS:
        if name == prefix or name.startswith(prefix + "."):
            return f"color:var(--jp-mirror-editor-{var}-color,{fallback})"
    return ""


def highlighted(code: str) -> str:
    """Python with line numbers, coloured by the theme's variables (inline styles: no
    stylesheet needed, survives nbconvert), so a dark theme keeps it readable."""
    from pygments.lexers import PythonLexer

    lines: list[list[str]] = [[]]
    for ttype, value in PythonLexer(stripnl=False, ensurenl=False).get_tokens(code):
        style = _token_style(ttype)
        for i, part in enumerate(value.split("\n")):
            if i:
                lines.append([])
            if part:
                lines[-1].append(f'<span style="{style}">{esc(part)}</span>' if style
                                 else esc(part))
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    width = len(str(len(lines)))
    rows = [f'<span style="opacity:.6;user-select:none">{n:>{width}} </span>{"".join(parts)}'
            for n, parts in enumerate(lines, 1)]
    return f'<div class="highlight"><pre style="{CODE_PRE}">' + "\n".join(rows) + "</pre></div>"


def check_row(check: Check) -> str:
    icon, color = ICON.get(check.status, ("·", "inherit"))
    where = f" <small>(line {check.line})</small>" if check.line else ""
    message = f": {esc(check.message)}" if check.message else ""
    return (f'<li class="llmscript-check llmscript-{esc(check.status)}" '
            f'style="list-style:none"><span style="color:{color}">{icon}</span> '
            f"<b>{esc(check.name)}</b>{message}{where}</li>")


def checklist_html(report: ValidationReport) -> str:
    rows = "".join(check_row(c) for c in report.checks)
    if not rows:
        rows = '<li style="list-style:none"><i>No checks ran.</i></li>'
    footer = ""
    if any(c.layer == "risk" for c in report.checks):
        footer = f"<small><i>Risk checks are {esc(BOUNDARY)}.</i></small>"
    return (f'<div class="llmscript-checklist"><b>Checks</b> '
            f"<small>{esc(report.summary_line())}</small>"
            f'<ul style="margin:2px 0;padding-left:4px">{rows}</ul>{footer}</div>')


def _output_block(name: str, text: str, truncated: bool, limit: int = SHOWN_BYTES) -> str:
    if not text:
        return f"<div><small>{name}: (empty)</small></div>"
    shown, cut = cap(text, limit)
    notes = []
    if cut:
        notes.append(f"display cut at {human(limit)}; {human(cut)} more not shown")
    if truncated:
        notes.append("the sandbox capped the output")
    note = f" <small><i>({'; '.join(notes)})</i></small>" if notes else ""
    lines = text.count("\n") + (not text.endswith("\n"))
    return (f'<details class="llmscript-{name}" open><summary>{name} '
            f"<small>({lines} lines)</small>{note}</summary>"
            f'<pre style="{PRE}">{esc(shown)}</pre></details>')


def file_row(f: OutputFile, entry: Mapping[str, Any] | None = None, link: bool = True) -> str:
    """A written file: a download link (small files, live widget) and where it was saved."""
    name = esc(f.name)
    if link and f.size <= LINK_BYTES and len(f.data) == f.size:
        url = "data:application/octet-stream;base64," + base64.b64encode(f.data).decode()
        name = f'<a download="{name}" href="{url}">{name}</a>'
    where = ""
    if entry and entry.get("note"):
        color = "#1a7f37" if entry.get("path") else "#9a6700"
        where = f' <span style="color:{color}">→ {esc(str(entry["note"]))}</span>'
    return f"<li>{name} <small>({human(f.size)})</small>{where}</li>"


def run_html(run: RunResult, saved: Sequence[Mapping[str, Any]] = (), *, links: bool = True,
             limit: int = SHOWN_BYTES) -> str:
    """Status badge, exit code, duration, both streams and the files written (and saved)."""
    color = BADGE.get(run.status, "#57606a")
    badge = (f'<span class="llmscript-run-badge" style="background:{color};color:white;'
             f'border-radius:8px;padding:0 6px">{esc(STATUS_WORD.get(run.status, run.status))}'
             "</span>")
    head = (f"<b>Run</b> {badge} exit code {run.exit_code} · {run.duration:.2f}s · "
            f"{esc(run.backend)} sandbox")
    parts = [f'<div class="llmscript-run">{head}']
    if run.reason:
        parts.append(f"<div>{esc(run.reason)}</div>")
    if run.warning:
        parts.append(f"<div><small>⚠ {esc(run.warning)}</small></div>")
    if run.session:
        parts.append(f"<div><small>Session: {esc(run.session)}</small></div>")
    parts.append(_output_block("stdout", run.stdout, run.truncated, limit))
    parts.append(_output_block("stderr", run.stderr, run.truncated, limit))
    if run.files:
        where = saved_by_name(saved)
        shown, more = listed_files(run, saved)
        embedded, rows = 0, []
        for f in shown:  # past EMBED_BYTES a file is only named where it was saved
            link = links and embedded + f.size <= EMBED_BYTES
            embedded += f.size if link and f.size <= LINK_BYTES else 0
            rows.append(file_row(f, where.get(f.name), link))
        rows += [f"<li>{esc(more)}</li>"] if more else []
        parts.append(f'<div class="llmscript-files">Files written:<ul style="margin:2px 0">'
                     f'{"".join(rows)}</ul></div>')
    if len(run.figures) > MAX_FIGURES:
        parts.append(f"<div><small>Showing {MAX_FIGURES} of {len(run.figures)} figures."
                     "</small></div>")
    parts.append("</div>")
    return "".join(parts)


def figures(run: RunResult | None) -> list[bytes]:
    return [] if run is None else list(run.figures[:MAX_FIGURES])


def attempt_label(attempts: Sequence[Attempt], index: int, kind: str = "") -> str:
    """"Attempt 2 of 3 (your run of the edited cell): passed"; ``kind`` names a user run."""
    a = attempts[index]
    verdict = "passed" if a.report.ok and a.code is not None else (
        "no code" if a.code is None else "failed: " + a.report.summary_line())
    kind = kind or ("your run" if a.source == "user" else "")
    return f"Attempt {index + 1} of {len(attempts)}{f' ({esc(kind)})' if kind else ''}: " \
           f"{esc(verdict)}"


def copy_html(code: str) -> str:
    """A front-end Copy button; when the clipboard is refused it shows the code selected."""
    js = ("var t=this.parentNode.querySelector('textarea');"
          "var done=()=>{this.textContent='Copied ✓'};"
          "var show=()=>{t.hidden=false;t.focus();t.select();"
          "this.textContent='Press Ctrl+C to copy'};"
          "try{navigator.clipboard.writeText(t.value).then(done,show)}catch(e){show()}")
    return (f'<span class="llmscript-copy"><button class="jupyter-button widget-button" '
            f'style="height:28px" title="Copy the code to the clipboard" '
            f'onclick="{esc(js)}">Copy</button>'
            f'<textarea hidden readonly rows="8" style="width:100%">{esc(code)}</textarea></span>')
