"""Model text is inert in real Chromium: JupyterLab (trusted, live and reopened), Notebook 7
and nbconvert's HTML.

A steered model replies with every markup trick in ``markup_payloads.py``: as an
explanation (``%llmscript explain``), as a reply without code, and around the code
of a generation. Nothing of it may run: ``window.__pwned`` stays unset, the title
stays, the loopback beacon gets no request and no ``<style>`` restyles the page,
while the words stay readable as text. A control shows each detector bites: the
same text displayed as raw ``text/markdown`` (what ``explain`` used to emit) does
run, in JupyterLab and in nbconvert's HTML.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    KERNEL_IDLE_JS,
    LabServer,
    StandIn,
    require_browser_stack,
    screenshot,
)
from markup_payloads import MARKER, PWNED_TITLE, hostile_markdown

pytestmark = pytest.mark.browser

TIMEOUT_MS = 90_000
NOTEBOOK = "inert.ipynb"
CODE = f'print("{MARKER} <img src=x onerror=alert(1)>")\n'


class Beacon:
    """A loopback HTTP server that counts every request a payload's fetch or image makes."""

    def __init__(self) -> None:
        hits = self.hits = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/beacon"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def beacon() -> Iterator[Beacon]:
    b = Beacon()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory, beacon: Beacon) -> Iterator[StandIn]:
    require_browser_stack()
    hostile = hostile_markdown(beacon.url)
    run = [{"text": hostile},  # %llmscript explain
           {"text": f"{hostile}\n\n```python\n{CODE}```\n"},  # code among the markup
           {"text": hostile}]  # no code at all
    server = StandIn(tmp_path_factory.mktemp("inert-standin"), run * 2)  # Lab, Notebook 7
    yield server
    server.stop()


def code_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


CELLS = [code_cell("%load_ext llmscript_magic"), code_cell("x = 1"),
         code_cell("%llmscript explain -1"),
         code_cell("%%generate --retries 0\nPrint the marker."),
         code_cell("%%generate --retries 0\nSay something.")]


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1300, "height": 2400})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"),
                                      dialog.dismiss()))
    return page


def open_and_wait(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)


def run_all_and_wait(page: Any) -> None:
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # the last cell fails with one UsageError line: every cell before it has run
    page.wait_for_function("() => document.querySelector('.jp-Notebook').innerText"
                           ".includes('UsageError: The model replied without code')",
                           timeout=TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)


def assert_nothing_ran(page: Any, beacon: Beacon, where: str) -> None:
    page.wait_for_timeout(1500)  # time for an onerror, onload, ontoggle or fetch to fire
    facts = page.evaluate("""() => ({
        pwned: window.__pwned === undefined ? null : String(window.__pwned),
        title: document.title,
        body: getComputedStyle(document.body).backgroundColor,
        areas: Array.from(document.querySelectorAll('.jp-OutputArea'))
          .map(a => getComputedStyle(a).backgroundColor),
        frames: document.querySelectorAll('.jp-OutputArea iframe, .jp-OutputArea svg circle,'
          + ' .jp-OutputArea script').length,
    })""")
    screenshot(page, f"inert-{where}")
    assert facts["pwned"] is None, (where, facts)
    assert PWNED_TITLE not in facts["title"], (where, facts)
    assert beacon.hits == [], (where, beacon.hits)
    red = "rgb(255, 0, 0)"
    assert facts["body"] != red and red not in facts["areas"], (where, facts)
    assert facts["frames"] == 0, (where, facts)  # no model-made element was created
    assert not [e for e in page.errors if "dialog" in e], page.errors


def assert_readable(page: Any) -> None:
    """The reply's words, tags included, are on the page as text."""
    text = page.evaluate("() => document.querySelector('.jp-Notebook').innerText")
    explained = page.locator(".jp-Notebook .llmscript-explain").first.inner_text()
    assert f"{MARKER} explanation" in explained
    assert "<script>window.__pwned=1" in explained and "<b>not bold</b>" in explained
    assert "[a javascript link](javascript:" in explained
    assert MARKER in text


def test_model_markup_stays_inert_in_lab_live_and_reopened(
        browser: Any, lab: LabServer, beacon: Beacon) -> None:
    lab.write_notebook(NOTEBOOK, CELLS)
    page = new_page(browser)
    open_and_wait(page, f"{lab.url}/lab/tree/{NOTEBOOK}?reset")
    run_all_and_wait(page)
    page.locator(".jp-Notebook .llmscript-widget .llmscript-reply").first.wait_for(
        timeout=TIMEOUT_MS)  # the widget shows the no-code reply whole
    assert "<img src=" in page.locator(".llmscript-widget .llmscript-reply").first.inner_text()
    assert_readable(page)
    assert_nothing_ran(page, beacon, "lab-live")

    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                           timeout=TIMEOUT_MS)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.context.close()

    page = new_page(browser)  # reopened with a new kernel: the saved outputs, trusted
    open_and_wait(page, f"{lab.url}/lab/tree/{NOTEBOOK}?reset")
    page.locator(".jp-Notebook .llmscript-explain").first.wait_for(timeout=TIMEOUT_MS)
    trusted = page.evaluate("""() => Array.from(window.jupyterapp.shell.currentWidget.content
        .model.cells).filter(c => c.type === 'code').map(c => c.trusted)""")
    assert trusted and all(trusted), trusted  # signed on save: outputs are rendered as trusted
    assert_readable(page)
    assert_nothing_ran(page, beacon, "lab-reopened")
    page.context.close()


def test_model_markup_stays_inert_in_notebook7(browser: Any, notebook7: LabServer,
                                               beacon: Beacon) -> None:
    notebook7.write_notebook(NOTEBOOK, CELLS)
    page = new_page(browser)
    open_and_wait(page, f"{notebook7.url}/notebooks/{NOTEBOOK}")
    run_all_and_wait(page)
    assert_readable(page)
    assert_nothing_ran(page, beacon, "notebook7-live")
    page.context.close()


def _to_html(source: Path, out_dir: Path) -> Path:
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                    "--output-dir", str(out_dir), str(source)], check=True,
                   capture_output=True, timeout=300)
    return out_dir / (source.stem + ".html")


def test_model_markup_stays_inert_in_nbconvert_html(browser: Any, lab: LabServer,
                                                    beacon: Beacon, tmp_path: Path) -> None:
    saved = lab.root / NOTEBOOK  # written by the JupyterLab test, outputs and all
    if not saved.is_file() or "llmscript-explain" not in saved.read_text():
        pytest.fail("the JupyterLab test did not leave its saved notebook")
    page = new_page(browser)
    page.goto(_to_html(saved, tmp_path).as_uri())
    page.wait_for_selector(".llmscript-explain")
    text = page.locator(".llmscript-explain").first.inner_text()
    assert f"{MARKER} explanation" in text and "<script>window.__pwned=1" in text
    assert_nothing_ran(page, beacon, "nbconvert")
    page.context.close()


def _raw_markdown_notebook(path: Path, beacon: Beacon) -> None:
    """What ``explain`` used to save: the reply as a raw ``text/markdown`` output."""
    nb = {"cells": [{"cell_type": "code", "id": "raw", "metadata": {}, "execution_count": 1,
                     "source": "%llmscript explain",
                     "outputs": [{"output_type": "display_data", "metadata": {},
                                  "data": {"text/markdown": hostile_markdown(beacon.url),
                                           "text/plain": "explanation"}}]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


def test_control_raw_markdown_does_run(browser: Any, lab: LabServer, beacon: Beacon,
                                       tmp_path: Path) -> None:
    """The detectors above bite: raw Markdown from the model runs its script when shown
    trusted in JupyterLab and in nbconvert's HTML."""
    raw = lab.root / "raw.ipynb"
    _raw_markdown_notebook(raw, beacon)
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(raw)], check=True,
                   capture_output=True, env=lab.env, timeout=120)
    page = new_page(browser)
    try:
        page.goto(f"{lab.url}/lab/tree/raw.ipynb?reset")
        page.wait_for_function("() => window.__pwned !== undefined || document.title"
                               f".includes('{PWNED_TITLE}')", timeout=TIMEOUT_MS)
    finally:
        screenshot(page, "inert-control-lab")
        page.context.close()
    page = new_page(browser)
    try:
        page.goto(_to_html(raw, tmp_path).as_uri())
        page.wait_for_function("() => window.__pwned !== undefined", timeout=TIMEOUT_MS)
    finally:
        page.context.close()
    assert beacon.hits  # the image and the fetch reached the loopback server
    beacon.hits.clear()
