"""A new result replaces the cell's earlier failure, in real JupyterLab (issue 25, point 2).

The first run of a spec gets no code: a red UsageError. The widget's Regenerate then
succeeds: the UsageError must go from the page and from the saved notebook.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import KERNEL_IDLE_JS, LabServer, StandIn, require_browser_stack, screenshot

pytestmark = pytest.mark.browser

TIMEOUT_MS = 90_000
REPLIES = [{"text": "Which word would you like?"},  # no code: a UsageError ...
           {"text": "```python\nprint('regenerated')\n```\n"}]  # ... then Regenerate works


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("stale-standin"), REPLIES)
    yield server
    server.stop()


def cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


def test_regenerate_replaces_the_stale_usage_error(page: Any, lab: LabServer) -> None:
    import json

    lab.write_notebook("stale.ipynb", [
        cell("%load_ext llmscript_magic"),
        cell("%%generate --no-cache --retries 0\nPrint a word.")])
    page.goto(f"{lab.url}/lab/tree/stale.ipynb?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    notebook = page.locator(".jp-Notebook")
    notebook.get_by_text("UsageError: The model replied without code").wait_for(
        timeout=TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.locator(".llmscript-widget").get_by_role("button", name="Regenerate").click()
    page.wait_for_function("""() => Array.from(window.jupyterapp.shell.currentWidget.content
        .model.cells).some(c => c.sharedModel.getSource().includes("regenerated"))""",
                           timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    screenshot(page, "stale-error-replaced")
    assert "UsageError" not in page.evaluate(
        "() => document.querySelector('.jp-Notebook').innerText")
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                           timeout=TIMEOUT_MS)
    saved = json.loads((lab.root / "stale.ipynb").read_text())
    outputs = json.dumps(saved["cells"][1]["outputs"])
    assert "UsageError" not in outputs and "llmscript-result" in outputs
