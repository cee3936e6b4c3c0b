"""The ``%%generate`` cell UI as ipywidgets: live reply, code, checks, run, actions.

Imported only when the magic shows a widget, so ``%load_ext`` never pays for
ipywidgets. The view implements the same protocol as ``_render.TextView``
(``start``/``chunk``/``attempt``/``finish``/``fail``); its display also carries
``text/plain`` (the TextView summary) and the record metadata, so nbconvert,
GitHub and ``--replay`` see the same facts without a widget manager.

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
from .._protocol import COMM_TARGET
from . import widget_html as h
from .text import summary_text

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt, Generation
    from .._pipeline.options import Options
    from .base import Session

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
HIDE, SHOW = "none", ""
NO_EXTENSION = "JupyterLab extension not active: the code is ready to copy below."


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


def _button(description: str, icon: str, tooltip: str, style: str = "") -> w.Button:
    return w.Button(description=description, icon=icon, tooltip=tooltip, button_style=style,
                    layout=w.Layout(width="auto"))


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
        self._handle: Any = None
        self._insert_comm: Any = None

        self.status = w.HTML()
        self.stop = _button("Stop", "stop", "Stop generating; nothing is inserted", "warning")
        self.stop.on_click(lambda _: self.request_stop())
        self.stop_live = watch_clicks(self.stop, self.request_stop, kernel)
        if not self.stop_live:
            self.stop.tooltip = "This kernel applies Stop only after the cell: use ■ interrupt"
        self.stream = w.HTML()
        self.prev = _button("", "chevron-left", "Previous attempt")
        self.next = _button("", "chevron-right", "Next attempt")
        self.prev.on_click(lambda _: self.show(self.index - 1))
        self.next.on_click(lambda _: self.show(self.index + 1))
        self.nav_label = w.HTML()
        self.nav = w.HBox([self.prev, self.nav_label, self.next])
        self.code = w.HTML()
        self.checklist = w.HTML()
        self.run_panel = w.HTML()
        self.figures = w.VBox()
        self.run_button = _button("Run in sandbox", "play", "Run this code in the sandbox")
        self.regenerate_button = _button("Regenerate", "refresh", "Ask the model again")
        self.copy = w.HTML()
        self.insert_button = _button("Insert below", "arrow-down", "Insert as a new cell below")
        self.run_button.on_click(lambda _: self.run_in_sandbox())
        self.regenerate_button.on_click(lambda _: self.regenerate())
        self.insert_button.on_click(lambda _: self.insert_below())
        self.actions = w.HBox([self.run_button, self.regenerate_button, self.copy,
                               self.insert_button])
        self.notice = w.HTML()
        self.fallback = w.Textarea(rows=10, layout=w.Layout(width="100%"))
        self.box = w.VBox([w.HBox([self.status, self.stop]), self.stream, self.nav, self.code,
                           self.checklist, self.run_panel, self.figures, self.actions,
                           self.notice, self.fallback])
        self.box.add_class("llmscript-widget")
        for part in (self.nav, self.code, self.checklist, self.run_panel, self.figures,
                     self.actions, self.fallback, self.stop):
            part.layout.display = HIDE

    # -- the view protocol ---------------------------------------------------------
    def start(self, model: str) -> None:
        self.cancel.clear()
        self._model, self._text, self._tries = model, "", 0
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

    def chunk(self, text: str) -> None:
        self._text += text
        if time.monotonic() - self._last >= self.THROTTLE:
            self._flush()

    def attempt(self, attempt: Attempt, number: int) -> None:
        self._tries += 1
        if attempt.will_retry:
            self._text += (f"\n\n── attempt {self._tries} failed: "
                           f"{attempt.report.summary_line()}; asking the model to fix it ──\n\n")
            self._flush()

    def finish(self, gen: Generation, metadata: dict[str, Any]) -> None:
        self._flush()
        self.gen, self.attempts = gen, list(gen.attempts)
        self.stop.layout.display = HIDE
        self.stream.layout.display = HIDE
        self.show(len(self.attempts) - 1)
        self._handle_update(summary_text(gen, self._prices()), metadata)

    def fail(self, message: str) -> None:
        self._flush()
        self.stop.layout.display = HIDE
        self._status(f'<span style="color:#cf222e">✗ {h.esc(message)}</span>')
        if self.gen is not None:  # a failed Regenerate: the old result stays usable
            self.actions.layout.display = SHOW
        self._handle_update(message, None)

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
        self.nav_label.value = h.attempt_label(self.attempts, self.index)
        self.prev.disabled = self.index == 0
        self.next.disabled = self.index == len(self.attempts) - 1
        self.code.value = h.code_html(a.code)
        self.checklist.value = h.checklist_html(a.report)
        self.run_panel.value = h.run_html(a.run) if a.run is not None else ""
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
        """Validate and run the shown code again; the result becomes a new history entry."""
        code = self.current_code
        if code is None or self.gen is None:
            return
        if self.opts.sandbox == "none":
            self._notice("Runs are off (--sandbox none): use --sandbox docker or local.")
            return
        self.run_button.disabled = True
        self._notice(f"Running in the {h.esc(self.opts.sandbox)} sandbox …")
        try:
            attempt = self.session.check_code(code, self.gen.spec, self.opts)
        except LLMScriptError as err:
            self._notice(f"✗ {h.esc(str(err))}")
            self.run_button.disabled = False
            return
        self.attempts.append(attempt)
        self._notice("")
        self.show(len(self.attempts) - 1)

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
        """The hook for the JupyterLab extension: insert code (default: the shown code).

        Opens a comm to the extension's target and waits ``INSERT_WAIT`` for its
        ``{"ok": true}``; without an answer, the code is shown ready to copy.
        """
        code = self.current_code if code is None else code
        if code is None or self.gen is None:
            return
        self.fallback.layout.display = HIDE
        meta = {**self._summary(self.gen), "record": self.gen.record()}
        answered = threading.Event()

        def on_reply(msg: dict[str, Any]) -> None:
            answered.set()
            data = msg.get("content", {}).get("data") or {}
            if data.get("ok"):
                self.fallback.layout.display = HIDE
                self._notice("✓ Inserted below.")
            else:
                self._no_insert(code, f"Not inserted: {data.get('reason', 'no reason given')}.")
            comm.close()

        def on_close(msg: dict[str, Any]) -> None:  # no target registered in the front end
            if not answered.is_set():
                answered.set()
                self._no_insert(code, NO_EXTENSION)

        try:
            from comm import create_comm

            comm = create_comm(target_name=COMM_TARGET,
                               data={"action": "insert", "text": code, "llmscript": meta})
        except Exception:
            self._no_insert(code, NO_EXTENSION)
            return
        self._insert_comm = comm
        comm.on_msg(on_reply)
        comm.on_close(on_close)
        self._notice("Inserting below …")

        def no_answer() -> None:
            if not answered.is_set():
                self._no_insert(code, NO_EXTENSION)

        self._later(self.INSERT_WAIT, no_answer)

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
        self.stream.value = h.stream_html(self._text)

    def _status(self, html: str) -> None:
        self.status.value = f'<div class="llmscript-status">{html}</div>'

    def _notice(self, html: str) -> None:
        self.notice.value = f'<div class="llmscript-notice">{html}</div>' if html else ""

    def _headline(self, gen: Generation) -> str:
        from .._store.cost import format_cost, generation_cost

        u = gen.usage
        cost = format_cost(generation_cost(gen, self._prices()))
        parts = [f"<b>{h.esc(gen.model)}</b>", f"{u.input_tokens} in / {u.output_tokens} out "
                 f"tokens", f"est. {cost}"]
        if gen.sent:  # the size-bounded notebook data that went into the prompt
            parts.append("context: " + h.esc("; ".join(gen.sent)))
        if gen.source != "model":
            parts.append(f"from {h.esc(gen.source)} (no request made)")
        if "total_s" in gen.timing:
            parts.append(f"{gen.timing['total_s']:.1f}s")
        return " · ".join(parts)

    def _prices(self) -> dict[str, tuple[float, float]]:
        return self.session.prices

    def _summary(self, gen: Generation) -> dict[str, Any]:
        return self.session.summary(gen, self.source_cell)

    def _bundle(self, text: str) -> dict[str, Any]:
        return {WIDGET_MIME: {"version_major": 2, "version_minor": 0,
                              "model_id": self.box.model_id}, "text/plain": text}

    def _handle_update(self, text: str, metadata: dict[str, Any] | None) -> None:
        if self._handle is not None:
            self._handle.update(self._bundle(text), metadata=metadata or {}, raw=True)


__all__ = ["NO_EXTENSION", "WidgetView", "watch_clicks"]
