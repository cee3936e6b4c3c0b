"""The %%generate widget in a real JupyterLab, seen through Debian's Chromium.

The Anthropic stand-in runs out of process and answers in file order, so the
tests below consume its scripted replies in the order they are written.
Screenshots go to test-artifacts/widget-*.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import (
    KERNEL_IDLE_JS,
    LabServer,
    StandIn,
    chromium,
    require_browser_stack,
    screenshot,
)

pytestmark = pytest.mark.browser

CODE = "numbers = [1, 2, 3]\nprint('widget total', sum(numbers))\n"
SLOW = "print('never shown')\n"
REPLIES = [
    {"text": f"Here you go:\n\n```python\n{CODE}```\n", "chunk_size": 6, "chunk_delay": 0.01},
    {"text": f"```python\n{SLOW}```\n" + "still typing " * 600, "chunk_size": 4,
     "chunk_delay": 0.03},
]
TIMEOUT_MS = 90_000
WIDGET = ".jp-Notebook .llmscript-widget"

CELL_SOURCES_JS = """() => Array.from(window.jupyterapp.shell.currentWidget.content.model.cells)
  .map(c => c.sharedModel.getSource())"""


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("widget-standin"), REPLIES)
    yield server
    server.stop()


@pytest.fixture
def page(lab: LabServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1300, "height": 1100})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        screenshot(pg, f"widget-{request.node.name}-end")
        context.close()
    assert not errors, errors


def code_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


def run_notebook(page: Any, lab: LabServer, name: str, spec_cell: str) -> None:
    lab.write_notebook(name, [code_cell("%load_ext llmscript_magic"), code_cell(spec_cell)])
    page.goto(f"{lab.url}/lab/tree/{name}?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    # not awaited: the command's promise settles only when every cell is done
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def test_widget_shows_code_checks_and_run(page: Any, lab: LabServer, standin: StandIn) -> None:
    run_notebook(page, lab, "widget.ipynb",
                 "%%generate --run --sandbox local\nAdd up 1, 2 and 3 and print the total.")
    widget = page.locator(WIDGET)
    stdout = widget.locator(".llmscript-stdout pre")
    stdout.wait_for(timeout=TIMEOUT_MS)
    assert "widget total 6" in stdout.inner_text()
    code = widget.locator(".llmscript-code").inner_text()
    assert "numbers = [1, 2, 3]" in code and "print('widget total', sum(numbers))" in code
    checks = widget.locator(".llmscript-checklist .llmscript-check")
    assert checks.count() >= 3
    assert widget.locator(".llmscript-checklist .llmscript-fail").count() == 0
    passed = widget.locator(".llmscript-checklist .llmscript-pass").all_inner_texts()
    assert any(t.startswith("✓ syntax") for t in passed), passed
    assert widget.locator(".llmscript-run-badge").inner_text() == "ok"
    assert "anthropic:claude-sonnet-5-5" in widget.locator(".llmscript-status").inner_text()
    screenshot(page, "widget-run")

    widget.get_by_role("button", name="Copy", exact=True).click()
    page.wait_for_function("async () => (await navigator.clipboard.readText()).length > 0")
    assert page.evaluate("() => navigator.clipboard.readText()") == CODE

    widget.get_by_role("button", name="Run again").click()
    page.wait_for_function("""() => document.querySelector('.llmscript-widget')
        .innerText.includes('Attempt 2 of 2 (the generated cell)')""", timeout=TIMEOUT_MS)
    assert "widget total 6" in widget.locator(".llmscript-stdout pre").inner_text()
    assert len(standin.requests()) == 1  # a re-run asks no model


def test_stop_button_ends_a_streaming_reply(page: Any, lab: LabServer) -> None:
    run_notebook(page, lab, "stop.ipynb", "%%generate\nType slowly for a long time.")
    widget = page.locator(WIDGET)
    stream = widget.locator(".llmscript-stream")
    page.wait_for_function("""() => { const s = document.querySelector('.llmscript-stream');
        return s && s.innerText.includes('still typing'); }""", timeout=TIMEOUT_MS)
    assert "still typing" in stream.inner_text()  # the reply streams in live
    screenshot(page, "widget-streaming")
    t0 = time.monotonic()
    widget.get_by_role("button", name="Stop").click()
    # said once, where errors are: the cell's error line, not the widget as well
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-OutputArea-output')]
        .some(o => o.innerText.includes('Generation stopped'))""", timeout=TIMEOUT_MS)
    assert "Generation stopped" not in widget.inner_text()
    assert time.monotonic() - t0 < 10  # the whole reply would take ~45 s
    sources = page.evaluate(CELL_SOURCES_JS)
    assert not any("never shown" in s for s in sources)  # nothing was inserted
    screenshot(page, "widget-stopped")
