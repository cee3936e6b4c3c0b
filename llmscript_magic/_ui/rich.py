"""The persistent result of a generation: an ordinary rich output saved in the notebook.

The widget needs the kernel that made it: reopened with a new kernel, JupyterLab
and Notebook 7 show "Error displaying widget: model not found" in its place
(``@jupyter-widgets/jupyterlab-manager`` 8 never falls back to another mime
type of the same bundle; a model id of "" only hides it). So every finished
generation also leaves this output: ``text/html`` (highlighted code with
inline styles, the checklist, the run, the files and where they were saved,
tokens and cost), ``text/markdown`` and ``text/plain`` alternatives, and each
figure as its own ``image/png`` output. Any front end renders it from the saved
file alone: JupyterLab, Notebook 7, nbconvert, GitHub, VS Code.

Nothing is shown twice: the html carries a ``<style>`` (honoured in trusted
outputs, which everything the live kernel produces is) that hides this result
and its figures while the live widget is rendered in the same output area,
and hides the widget's error once its model is gone. Untrusted notebooks drop
the ``<style>``, but there the widget renderer (not "safe") is skipped too, and
the widget's output carries no text fallback, so it renders as nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import widget_html as h
from .inert import md_text
from .text import MAX_FIGURES, STATUS_WORD, headline, listed_files, saved_by_name, summary_text

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt, Generation
    from .._sandbox import RunResult

RESULT_CLASS = "llmscript-result"
WIDGET_CLASS = "llmscript-widget"  # the live widget's box (WidgetView adds it)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SAVED_BYTES = 16 * 1024  # per stream in the saved result (it is stored three times)

_AREA = ".jp-OutputArea"
_CHILD = ".jp-OutputArea-child"
#: While the widget lives: hide this result and the figure outputs after it.
#: Once the widget's model is gone: hide the widget's output ("Error displaying widget").
LIVE_CSS = (
    f"{_AREA}:has(.{WIDGET_CLASS}) > {_CHILD}:has(.{RESULT_CLASS}),"
    f"{_AREA}:has(.{WIDGET_CLASS}) > {_CHILD}:has(.{RESULT_CLASS}) ~ {_CHILD}"
    ":has(.jp-RenderedImage){display:none}"
    # the widget renderer's node once it gave up on the model (class jupyter-widgets), or
    # while it still says "Loading widget..." (no kernel, a manager that never restores):
    # every other renderer marks its node with data-mime-type, the widget renderer does not
    f"{_AREA}:has(.{RESULT_CLASS}) > {_CHILD}:has(> .jp-OutputArea-output.jupyter-widgets)"
    f":not(:has(.{WIDGET_CLASS})),"
    f"{_AREA}:has(.{RESULT_CLASS}) > {_CHILD}:has(> .jp-OutputArea-output"
    f":not([data-mime-type])):not(:has(.{WIDGET_CLASS})){{display:none}}"
)


def _attempt(gen: Generation, attempt: Attempt | None) -> Attempt | None:
    return attempt if attempt is not None else (gen.last if gen.attempts else None)


def result_html(gen: Generation, prices: dict[str, tuple[float, float]] | None = None, *,
                attempt: Attempt | None = None, saved: Sequence[Mapping[str, Any]] = (),
                note: str = "", inline: Sequence[bytes] = ()) -> str:
    """The result card; ``inline`` figures are embedded (when no image output is left)."""
    a = _attempt(gen, attempt)
    parts = headline(gen, prices)
    head = f"<b>{h.esc(parts[0])}</b> · " + " · ".join(h.esc(p) for p in parts[1:])
    body = [f"<style>{LIVE_CSS}</style>",
            f'<div class="{RESULT_CLASS}" style="font-size:13px;line-height:1.4">',
            f'<div class="llmscript-status" style="margin-bottom:4px">{head}</div>']
    if note:
        body.append(f'<div class="llmscript-note"><i>{h.esc(note)}</i></div>')
    if a is None:
        body.append(f"<div>{h.esc(gen.error or 'No code was generated.')}</div>")
    else:
        body.append(h.code_html(a.code, a.reply))
        body.append(h.checklist_html(a.report))
        if a.run is not None:
            body.append(h.run_html(a.run, saved, links=False, limit=SAVED_BYTES))
            if a.run.figures:
                n = min(len(a.run.figures), MAX_FIGURES)
                body.append(f"<div><small>Figures: {n} (below)</small></div>")
    body += [f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
             'style="max-width:100%">' for png in inline]
    body.append("</div>")
    return "".join(body)


def _fence(text: str, lang: str = "") -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip(chr(10))}\n{fence}"


def _md_stream(name: str, text: str) -> list[str]:
    if not text:
        return []
    shown, cut = h.cap(text, SAVED_BYTES)
    more = f" ({h.human(cut)} more not shown)" if cut else ""
    return [f"{name}{more}:", "", _fence(shown), ""]


def _md_run(run: RunResult, saved: Sequence[Mapping[str, Any]]) -> list[str]:
    status = md_text(STATUS_WORD.get(run.status, run.status))
    lines = [f"**Run** ({md_text(run.backend)} sandbox): {status}, "
             f"exit code {run.exit_code}, {run.duration:.2f}s", ""]
    if run.reason:
        lines += [md_text(run.reason), ""]
    lines += _md_stream("stdout", run.stdout) + _md_stream("stderr", run.stderr)
    where = saved_by_name(saved)
    files, more = listed_files(run, saved)
    if files:
        lines.append("**Files written:**")
        for f in files:
            entry = where.get(f.name) or {}
            note = f" → {md_text(str(entry['note']))}" if entry.get("note") else ""
            lines.append(f"- {md_text(f.name)} ({h.human(f.size)}){note}")
        lines += [f"- {md_text(more)}"] if more else []
        lines.append("")
    if run.figures:
        lines += [f"Figures: {min(len(run.figures), MAX_FIGURES)} (below)", ""]
    return lines


def result_markdown(gen: Generation, prices: dict[str, tuple[float, float]] | None = None, *,
                    attempt: Attempt | None = None, saved: Sequence[Mapping[str, Any]] = (),
                    note: str = "") -> str:
    """The result as Markdown that renders literally: every text the model, the script or
    the notebook chose is escaped (``md_text``) or fenced, so no HTML in it is live."""
    a = _attempt(gen, attempt)
    parts = [md_text(p) for p in headline(gen, prices)]
    lines = [f"**{parts[0]}** · " + " · ".join(parts[1:]), ""]
    if note:
        lines += [f"*{md_text(note)}*", ""]
    if a is None:
        return "\n".join([*lines, md_text(gen.error or "No code was generated.")])
    lines += [_fence(a.code, "python") if a.code is not None else "*No code was extracted.*",
              "", f"**Checks:** {md_text(a.report.summary_line())}", ""]
    mark = {"pass": "✓", "warn": "⚠", "fail": "✗"}
    for c in a.report.checks:
        message = f": {md_text(c.message)}" if c.message else ""
        lines.append(f"- {mark.get(c.status, '·')} **{md_text(c.name)}**{message}")
    lines.append("")
    if a.run is not None:
        lines += _md_run(a.run, saved)
    return "\n".join(lines).rstrip("\n") + "\n"


def result_bundle(gen: Generation, prices: dict[str, tuple[float, float]] | None = None, *,
                  attempt: Attempt | None = None, saved: Sequence[Mapping[str, Any]] = (),
                  note: str = "", inline: Sequence[bytes] = ()) -> dict[str, str]:
    """The saved result as a mime bundle (html, markdown, plain text)."""
    kw: dict[str, Any] = {"attempt": attempt, "saved": saved, "note": note}
    return {"text/html": result_html(gen, prices, inline=inline, **kw),
            "text/markdown": result_markdown(gen, prices, **kw),
            "text/plain": summary_text(gen, prices, limit=SAVED_BYTES, **kw)}


def empty_bundle() -> dict[str, str]:
    """A result with nothing to say (a failed generation: the cell's error says it), kept
    for its style, which hides the widget's "model not found" after reopening."""
    return {"text/html": f'<style>{LIVE_CSS}</style><div class="{RESULT_CLASS}"></div>',
            "text/plain": ""}


def figure_bundle(png: bytes, number: int) -> dict[str, str]:
    return {"image/png": base64.b64encode(png).decode("ascii"),
            "text/plain": f"<Figure {number}>"}


def figure_pngs(run: RunResult | None) -> list[bytes]:
    return [] if run is None else list(run.figures[:MAX_FIGURES])


__all__ = ["LIVE_CSS", "RESULT_CLASS", "figure_bundle", "figure_pngs", "result_bundle"]
