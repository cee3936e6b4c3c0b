"""The ``%%generate`` cell UI as ipywidgets: live reply, code, checks, run, actions.

Imported only when the magic shows a widget, so ``%load_ext`` never pays for
ipywidgets. The view implements the same protocol as ``text.TextView``
(``start``/``chunk``/``attempt``/``finish``/``fail``). Its display carries the
record metadata (``--replay`` reads it) but no text: when it finishes, the
persistent result of ``rich.py`` follows it (html, markdown, text and figures),
hidden while this widget is alive and shown by every front end once it is
gone, so nothing is said twice. Buttons update that result in place.

Buttons that need the notebook ask the JupyterLab extension over the
``llmscript`` comm: Run in sandbox asks for the generated cell's current text
(edits included), Insert copy below adds an ordinary cell. Without the
extension, the run uses the code as generated and says so.

Stop while the cell runs: the kernel's main thread is busy, so a click waits
until the cell ends. ipykernel >= 7.4 reads every comm message first on its
shell-channel thread and asks the target comm where to route it
(``_reply_subshell_for``); we watch that call on the Stop button's comm and
set ``cancel`` right there. Elsewhere the Stop button says to use ■ instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .._errors import LLMScriptError
from .._protocol import COMM_TARGET, OUTPUT_KEY
from . import rich
from . import widget_html as h
from .text import saved_files, source_note

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt, Generation
    from .._pipeline.options import Options
    from .base import Session

WIDGET_MIME = rich.WIDGET_MIME
#: the newest view per ``%%generate`` cell id (a re-run releases the one before)
_shown: dict[str, WidgetView] = {}
HIDE, SHOW = "none", ""
NO_EXTENSION = "JupyterLab extension not active: the code is ready to copy below."
#: No answer within INSERT_WAIT: a busy front end, not a missing extension; a late answer
#: still inserts and corrects this line.
NO_ANSWER_YET = ("No answer from the JupyterLab extension yet: the code is ready to copy "
                 "below; this line updates when it answers.")
AS_GENERATED = ("Ran the generated code as generated (without the JupyterLab extension, "
                "edits in the cell below are not seen).")
EDITED = "Ran your edited version of the generated cell."


def watch_clicks(button: w.Button, on_click: Callable[[], None], kernel: Any) -> bool:
    """Call ``on_click`` as soon as ipykernel's shell-channel thread sees a click.

    Relies on ipykernel 7.4's comm routing hook; returns False when it is absent.
    """
    comm = getattr(button, "comm", None)
    route = getattr(comm, "_reply_subshell_for", None)
    if route is None or getattr(kernel, "shell_channel_thread", None) is None:
        return False

    def watched(data: Any, default: Any) -> Any:
        try:
            content = data.get("content") if isinstance(data, dict) else None
            if (data.get("method") == "custom" and isinstance(content, dict)
                    and content.get("event") == "click"):
                on_click()
        except Exception:  # never drop the message: this runs inside ipykernel
            pass
        return route(data, default)

    comm._reply_subshell_for = watched  # type: ignore[union-attr]
    return True


def _button(description: str, tooltip: str, style: str = "") -> w.Button:
    """A button named by its words alone: an icon font's glyph would join its accessible
    name (Chromium reads CSS ``::before`` content), and ipywidgets cannot hide it."""
    return w.Button(description=description, tooltip=tooltip, button_style=style,
                    layout=w.Layout(width="auto"))


#: A focus ring that shows on every theme (ipywidgets' own is a 1px line).
WIDGET_CSS = (f".{rich.WIDGET_CLASS} .jupyter-button:focus-visible"
              "{outline:2px solid var(--jp-brand-color1,#1a73e8);outline-offset:2px}")
_GLYPHS = ("✓", "✗", "⚠")


def live(html: str, cls: str) -> str:
    """A live region (``role=status``): screen readers announce generation, run and
    failure as they change; a leading status glyph is hidden from them."""
    for glyph in _GLYPHS:
        if html.startswith(glyph):
            html = f'<span aria-hidden="true">{glyph}</span>{html[len(glyph):]}'
    return f'<div class="{cls}" role="status" aria-live="polite" aria-atomic="true">{html}</div>'


class WidgetView:
    """One ``%%generate`` cell's widget; ``insert_below`` is the extension's hook."""

    THROTTLE = 0.05  # seconds between stream updates sent to the front end
    INSERT_WAIT = 1.0  # seconds to wait for the extension's {"ok": true}

    def __init__(self, session: Session, cell: str, opts: Options, *,
                 source_cell: str | None = None, kernel: Any = None) -> None:
        self.session, self.cell, self.opts = session, cell, opts
        self.source_cell = source_cell  # a button's callback has no cell of its own
        self.cancel = threading.Event()
        self.gen: Generation | None = None
        self.attempts: list[Attempt] = []
        self.index = 0
        self._text, self._model, self._t0, self._last, self._tries = "", "", 0.0, 0.0, 0
        self._thinking = ""
        self._handle: Any = None  # the widget's display
        self._result: Any = None  # the persistent result's display (rich.py)
        self._figures: list[Any] = []  # one display per figure, after the result
        self._saved: list[dict[str, Any]] = []  # where the shown run's files went
        self._kinds: dict[int, str] = {}  # attempt index -> what a user run ran
        self._meta: dict[str, Any] = {}  # the record the outputs carry (replay reads it)
        self._insert_comm: Any = None

        self.status = w.HTML()
        self.stop = _button("Stop", "Stop generating; nothing is inserted", "warning")
        self.stop.on_click(lambda _: self.request_stop())
        self.stop_live = watch_clicks(self.stop, self.request_stop, kernel)
        if not self.stop_live:
            self.stop.tooltip = "This kernel applies Stop only after the cell: use ■ interrupt"
        self.stream = w.HTML()
        self.prev = _button("Previous", "Previous attempt")
        self.next = _button("Next", "Next attempt")
        self.prev.on_click(lambda _: self.show(self.index - 1))
        self.next.on_click(lambda _: self.show(self.index + 1))
        self.nav_label = w.HTML()
        self.nav = w.HBox([self.prev, self.nav_label, self.next])
        self.code = w.HTML()
        self.checklist = w.HTML()
        self.run_panel = w.HTML()
        self.figures = w.VBox()
        self.run_button = _button("Run in sandbox", "Run this code in the sandbox")
        self.regenerate_button = _button("Regenerate", "Ask the model again")
        self.copy = w.HTML()
        self.insert_button = _button("Insert copy below",
                                     "Insert this code as a new, ordinary cell below the "
                                     "generated cell (not linked: re-running the spec leaves "
                                     "it alone)")
        self.run_button.on_click(lambda _: self.run_in_sandbox())
        self.regenerate_button.on_click(lambda _: self.regenerate())
        self.insert_button.on_click(lambda _: self.insert_copy())
        self.actions = w.HBox([self.run_button, self.regenerate_button, self.copy,
                               self.insert_button])
        self.notice = w.HTML()
        self.fallback = w.Textarea(rows=10, layout=w.Layout(width="100%"))
        self.css = w.HTML(f"<style>{WIDGET_CSS}</style>")
        self.box = w.VBox([self.css, w.HBox([self.status, self.stop]), self.stream, self.nav,
                           self.code, self.checklist, self.run_panel, self.figures,
                           self.actions, self.notice, self.fallback])
        self.box.add_class(rich.WIDGET_CLASS)  # the saved result's CSS looks for it
        for part in (self.nav, self.code, self.checklist, self.run_panel, self.figures,
                     self.actions, self.fallback, self.stop):
            part.layout.display = HIDE
        if source_cell is not None:  # this cell ran again: its old widget is gone from view
            old = _shown.get(source_cell)
            _shown[source_cell] = self
            if old is not None and old is not self:
                old.release()

    def release(self) -> None:
        """Close this view's widgets and drop its generation and text.

        Called when its cell runs again: the front end replaced the old output, but the
        kernel would otherwise keep every old widget (ipywidgets keeps each one until it
        is closed) with its code, run output and figures for the kernel's life.
        """
        self.gen, self.attempts, self._meta, self._saved = None, [], {}, []
        self._text = self._thinking = ""
        self._figures = []
        _close_tree(self.box)

    # -- the view protocol ---------------------------------------------------------
    def start(self, model: str) -> None:
        self.cancel.clear()
        self._model, self._text, self._tries = model, "", 0
        self._thinking = ""
        self._t0 = self._last = time.monotonic()
        self.stop.disabled, self.stop.description = False, "Stop"
        self.stop.layout.display = SHOW
        self.stream.layout.display = SHOW
        self.actions.layout.display = HIDE
        self._status(f"Generating with <b>{h.esc(model)}</b> …")
        self.stream.value = h.stream_html("")
        bundle = self._bundle(f"Generating with {model} …")
        if self._handle is None:
            from IPython.display import display

            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def thinking(self, text: str) -> None:
        """The model's reasoning, streamed into a collapsed, labelled block."""
        self._thinking += text
        if time.monotonic() - self._last >= self.THROTTLE:
            self._flush()

    def chunk(self, text: str) -> None:
        self._text += text
        if time.monotonic() - self._last >= self.THROTTLE:
            self._flush()

    def waiting(self, ahead: int | None) -> None:
        """A run waits for the engine's sandbox budget (None: its turn came)."""
        from .._sandbox.fairshare import waiting_text

        if ahead is None:
            self._flush()
        else:
            self._status(f"{h.esc(waiting_text(ahead))} …")

    def attempt(self, attempt: Attempt, number: int) -> None:
        self._tries += 1
        if attempt.will_retry:
            self._text += (f"\n\n── attempt {self._tries} failed: "
                           f"{attempt.report.summary_line()}; asking the model to fix it ──\n\n")
            self._flush()

    def finish(self, gen: Generation, metadata: dict[str, Any]) -> None:
        self._flush()
        self.gen, self.attempts, self._kinds = gen, list(gen.attempts), {}
        self._saved, self._meta = saved_files(metadata), metadata
        self.stop.layout.display = HIDE
        self.stream.layout.display = HIDE
        self.show(len(self.attempts) - 1)
        # the widget's output keeps the record (replay reads it) but no text fallback:
        # the persistent result below says it all, once
        self._handle_update(None, metadata)
        self._show_result(metadata)

    def fail(self, message: str) -> None:
        self._flush()
        self.stop.layout.display = HIDE
        if self.gen is not None:  # a failed Regenerate: no cell error, so say it here
            self._status('<span style="color:#cf222e"><span aria-hidden="true">✗</span> '
                         f"{h.esc(message)}</span>")
            self.actions.layout.display = SHOW
            return
        # The cell's own error line says it, once: the widget keeps only what streamed.
        self._status("")
        self.stream.layout.display = SHOW if self._text.strip() else HIDE
        # The cell's error line is what lasts: the widget keeps no text of its own, and an
        # empty saved result carries the style that hides the widget once its model is gone.
        self._handle_update(None, None)
        if self._handle is not None and self._result is None:
            from IPython.display import display

            self._result = display(rich.empty_bundle(), raw=True, display_id=True)

    # -- state ------------------------------------------------------------------------
    @property
    def current(self) -> Attempt | None:
        return self.attempts[self.index] if self.attempts else None

    @property
    def current_code(self) -> str | None:
        return self.current.code if self.current is not None else None

    def show(self, index: int) -> None:
        """Show one attempt (the repair loop keeps every one) in all panels."""
        if not self.attempts or self.gen is None:
            return
        self.index = max(0, min(index, len(self.attempts) - 1))
        a, gen = self.attempts[self.index], self.gen
        self._status(self._headline(gen))
        self.nav.layout.display = SHOW if len(self.attempts) > 1 else HIDE
        self.nav_label.value = h.attempt_label(self.attempts, self.index,
                                               self._kinds.get(self.index, ""))
        self.prev.disabled = self.index == 0
        self.next.disabled = self.index == len(self.attempts) - 1
        self.code.value = h.code_html(a.code, a.reply)
        self.checklist.value = h.checklist_html(a.report)
        saved = self._saved if self.index == len(self.attempts) - 1 else ()
        self.run_panel.value = h.run_html(a.run, saved) if a.run is not None else ""
        self.figures.children = [w.Image(value=png, format="png") for png in h.figures(a.run)]
        for part in (self.code, self.checklist, self.actions):
            part.layout.display = SHOW
        self.run_panel.layout.display = SHOW if a.run is not None else HIDE
        self.figures.layout.display = SHOW if self.figures.children else HIDE
        self.copy.value = h.copy_html(a.code or "")
        self.run_button.disabled = self.insert_button.disabled = a.code is None
        self.run_button.description = "Run again" if a.run is not None else "Run in sandbox"

    # -- buttons ----------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop the stream at the next chunk (may run on ipykernel's shell-channel thread)."""
        self.cancel.set()

    def run_in_sandbox(self) -> None:
        """Validate and run what the generated cell holds now (edits included).

        The extension answers a "source" request with the generated cell's
        current text; without it, the shown attempt's code runs, as generated.
        The result becomes a new attempt and updates the saved result.
        """
        if self.current_code is None or self.gen is None:
            return
        if self.opts.sandbox == "none":
            self._notice("Runs are off (--sandbox none): use --sandbox docker or local.")
            return
        self.run_button.disabled = True
        self._notice("Reading the generated cell …")
        shown = self.current_code

        def answered(data: dict[str, Any] | None) -> None:
            text = data.get("text") if data and data.get("ok") else None
            if isinstance(text, str) and text.strip():
                edited = text.strip() != ((self.gen.code if self.gen else "") or "").strip()
                self._run_code(text, EDITED if edited else "Ran the generated cell (unedited).",
                               "your edited cell" if edited else "the generated cell")
            elif data is None:
                self._run_code(shown, AS_GENERATED, "as generated")
            else:  # the extension is there, but there is no generated cell to read
                why = data.get("reason") or "the generated cell was not found"
                self._run_code(shown, f"Ran the code as generated ({why}).", "as generated")

        self._ask("source", {"action": "source", "llmscript": self._summary(self.gen)},
                  answered)

    def _run_code(self, code: str, note: str, kind: str) -> None:
        self._notice(f"Running in the {h.esc(self.opts.sandbox)} sandbox …")
        assert self.gen is not None
        try:
            attempt = self.session.check_code(code, self.gen.spec, self.opts)
        except LLMScriptError as err:
            self._notice(f"✗ {h.esc(str(err))}")
            self.run_button.disabled = False
            return
        self.attempts.append(attempt)
        self._kinds[len(self.attempts) - 1] = kind
        self._saved = self.session.save_files(attempt.run, self.opts, owner=self.source_cell,
                                              checked=attempt.report.ok)
        self._notice(h.esc(note))
        self.show(len(self.attempts) - 1)
        self._show_result(None, attempt=attempt, note=note)

    def regenerate(self) -> None:
        """Ask again for the same spec (skipping the cache), then insert the new code."""
        try:
            gen = self.session.generate(self.cell, replace(self.opts, refresh=True), self,
                                        cancel=self.cancel, cell_id=self.source_cell)
        except LLMScriptError:
            return  # the session already showed it (fail)
        if gen.code is not None:
            self.insert_below()

    def insert_below(self, code: str | None = None) -> None:
        """Put code (default: the shown code) into the LINKED generated cell below.

        Regenerate's route: the extension inserts the generated cell, or replaces
        the one already there (asking first when it was edited by hand).
        """
        code = self.current_code if code is None else code
        if code is None or self.gen is None:
            return
        meta = {**self._summary(self.gen), "record": self.gen.record()}
        self._insert({"action": "insert", "text": code, "llmscript": meta}, code,
                     "✓ The generated cell below holds this code.")

    def insert_copy(self) -> None:
        """Insert the shown code as a new, ordinary (unlinked) cell below the generated one."""
        code = self.current_code
        if code is None or self.gen is None:
            return
        data = {"action": "insert-copy", "text": code, "llmscript": self._summary(self.gen)}
        self._insert(data, code, "✓ Inserted a copy below the generated cell (an ordinary "
                                 "cell: re-running the spec leaves it alone).")

    def _insert(self, data: dict[str, Any], code: str, done: str) -> None:
        if "insert" in getattr(self.opts, "course_locked", ()):  # the teacher's setting
            self._notice("Not inserted: this course does not insert generated code.")
            return
        self.fallback.layout.display = HIDE
        self._notice("Inserting below …")

        def answered(reply: dict[str, Any] | None) -> None:
            if reply is None:
                self._no_insert(code, NO_EXTENSION)
            elif reply.get("ok"):
                self.fallback.layout.display = HIDE
                self._notice(h.esc(done))
            else:
                self._no_insert(code, f"Not inserted: {reply.get('reason', 'no reason given')}.")

        self._ask("insert", data, answered, waiting=lambda: self._no_insert(code, NO_ANSWER_YET))

    def _ask(self, what: str, data: dict[str, Any],
             answered: Callable[[dict[str, Any] | None], None],
             waiting: Callable[[], None] | None = None) -> None:
        """One request to the extension's comm target; ``answered(None)`` when it is absent.

        Opens a comm and waits for the reply without blocking the kernel (the reply
        is a comm message this kernel must be free to read). Only the front end
        closing the comm (no such target) proves the extension absent. Silence for
        ``INSERT_WAIT`` may be a busy front end: with ``waiting``, that is said and the
        answer is still taken when it comes; without, the caller goes on without it.
        """
        state = {"done": False}

        def once(reply: dict[str, Any] | None) -> None:
            if not state["done"]:
                state["done"] = True
                answered(reply)

        def on_reply(msg: dict[str, Any]) -> None:
            once(msg.get("content", {}).get("data") or {})
            comm.close()

        def timed_out() -> None:
            if state["done"]:
                return
            if waiting is None:
                once(None)
            else:
                waiting()

        try:
            from comm import create_comm

            comm = create_comm(target_name=COMM_TARGET, data=data)
        except Exception:
            once(None)
            return
        self._insert_comm = comm
        comm.on_msg(on_reply)
        comm.on_close(lambda msg: once(None))  # no target registered in the front end
        self._later(self.INSERT_WAIT, timed_out)

    # -- helpers ----------------------------------------------------------------------
    def _no_insert(self, code: str, message: str) -> None:
        self._notice(h.esc(message))
        self.fallback.value = code
        self.fallback.layout.display = SHOW

    def _later(self, delay: float, fn: Callable[[], object]) -> None:
        """Run on the kernel's loop when there is one (widgets change on its thread)."""
        try:
            asyncio.get_running_loop().call_later(delay, fn)
        except RuntimeError:
            timer = threading.Timer(delay, fn)
            timer.daemon = True
            timer.start()

    def _flush(self) -> None:
        self._last = time.monotonic()
        elapsed = self._last - self._t0
        state = " · stopping …" if self.cancel.is_set() else ""
        hint = "" if self.stop_live else " · Stop applies after the cell: use ■ to interrupt"
        self._status(f"Generating with <b>{h.esc(self._model)}</b> · {elapsed:.1f}s{state}"
                     f"<small>{hint}</small>")
        reasoning = h.thinking_html(self._thinking) if self._thinking else ""
        self.stream.value = reasoning + h.stream_html(self._text)

    def _status(self, html: str) -> None:
        self.status.value = live(html, "llmscript-status")

    def _notice(self, html: str) -> None:
        self.notice.value = live(html, "llmscript-notice") if html else ""

    def _headline(self, gen: Generation) -> str:
        from .._store.cost import format_cost, generation_cost

        u = gen.usage
        cost = format_cost(generation_cost(gen, self._prices()))
        parts = [f"<b>{h.esc(gen.model)}</b>", f"{u.input_tokens} in / {u.output_tokens} out "
                 f"tokens", f"est. {cost}"]
        if gen.sent:  # the size-bounded notebook data that went into the prompt
            parts.append("context: " + h.esc("; ".join(gen.sent)))
        if gen.source != "model":
            parts.append(h.esc(source_note(gen.source, button=True)))
        if "total_s" in gen.timing:
            parts.append(f"{gen.timing['total_s']:.1f}s")
        return " · ".join(parts)

    def _prices(self) -> dict[str, tuple[float, float]]:
        return self.session.prices

    def _summary(self, gen: Generation) -> dict[str, Any]:
        return self.session.summary(gen, self.source_cell)

    def _bundle(self, text: str | None) -> dict[str, Any]:
        bundle: dict[str, Any] = {WIDGET_MIME: {"version_major": 2, "version_minor": 0,
                                                "model_id": self.box.model_id}}
        if text is not None:
            bundle["text/plain"] = text
        return bundle

    def _handle_update(self, text: str | None, metadata: dict[str, Any] | None) -> None:
        if self._handle is not None:
            self._handle.update(self._bundle(text), metadata=metadata or {}, raw=True)

    def _show_result(self, metadata: dict[str, Any] | None, attempt: Attempt | None = None,
                     note: str = "") -> None:
        """The persistent result (and figures) below the widget: shown the first time,
        in the cell; updated in place after a button (a callback has no cell to show in)."""
        from IPython.display import display

        assert self.gen is not None
        bundle = rich.result_bundle(self.gen, self._prices(), attempt=attempt,
                                    saved=self._saved, note=note)
        run = attempt.run if attempt is not None else self.gen.run
        pngs = rich.figure_pngs(run)
        if self._result is None:
            self._result = display(bundle, metadata=metadata or {}, raw=True, display_id=True)
            self._figures = [display(rich.figure_bundle(png, n), raw=True, display_id=True)
                             for n, png in enumerate(pngs, 1)]
            return
        extra = pngs[len(self._figures):]  # no output slot left: shown inside the html
        if extra:
            bundle = rich.result_bundle(self.gen, self._prices(), attempt=attempt,
                                        saved=self._saved, note=note, inline=extra)
        if metadata is None:  # an update replaces the metadata too: keep the record
            meta = dict(self._meta.get(OUTPUT_KEY) or {})
            metadata = {OUTPUT_KEY: {**meta, "files": self._saved}} if meta else {}
        self._result.update(bundle, metadata=metadata, raw=True)
        for n, handle in enumerate(self._figures, 1):
            png = pngs[n - 1] if n <= len(pngs) else None
            handle.update(rich.figure_bundle(png, n) if png else {"text/plain": ""}, raw=True)


__all__ = ["NO_EXTENSION", "WidgetView", "watch_clicks"]


def _close_tree(widget: Any) -> None:
    """Close a widget, its children and their layout and style models."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, w.Widget):
            part.close()
    widget.close()
