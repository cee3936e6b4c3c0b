"""Generated code never runs in the kernel unseen: Run All in Notebook 7 and JupyterLab.

A generated cell that only passed static checks (no ``--run``) would run in the
kernel, outside the sandbox. Run All asks once, naming it; declined, the cells
before it run and it does not; confirmed, it runs and its badge says "ran in the
kernel, not sandboxed".
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
    require_browser_stack,
    screenshot,
    wait_until,
)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 90_000
CODE = "print('generated ran', 6 * 7)\n"
REPLIES = [{"text": f"```python\n{CODE}```\n"}] * 24  # each Run All regenerates (no cache)
CELLS_JS = """() => Array.from(window.jupyterapp.shell.currentWidget.content.model.cells)
  .map(c => ({source: c.sharedModel.getSource(), count: c.executionCount,
              tags: c.getMetadata('tags') || [],
              text: JSON.stringify(c.toJSON().outputs || [])}))"""


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("gate-standin"), REPLIES)
    yield server
    server.stop()



def cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


def cells(page: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(CELLS_JS)
    return found


def run_all(page: Any) -> None:
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def check_run_all_asks(page: Any, server: LabServer, url: str, name: str) -> None:
    server.write_notebook(name, [cell("%load_ext llmscript_magic\n%config "
                                      "GenerateMagics.widgets = False"),
                                 cell("%%generate --no-cache\nPrint six times seven."),
                                 cell("before = 1")])
    page.goto(url)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
    run_all(page)  # the generation inserts the generated cell below its source
    wait_until(lambda: any("llmscript-generated" in c["tags"] for c in cells(page)),
               "the generated cell")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    nb = cells(page)
    assert "llmscript-generated" in nb[2]["tags"] and nb[2]["count"] is None
    last_count = nb[3]["count"]  # "before = 1" ran in the first Run All

    # Run All again: one question, naming the generated cell; declined, it does not run
    run_all(page)
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT_MS)
    text = dialog.inner_text()
    assert "will run in the kernel, NOT in the sandbox" in text
    assert "Cell 3: it never ran in the sandbox (static checks only)." in text
    screenshot(page, f"gate-{server.app}-ask")
    dialog.get_by_role("button", name="Do not run").click()
    dialog.wait_for(state="detached", timeout=TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    time.sleep(1.0)
    nb = cells(page)
    assert nb[1]["count"] is not None and nb[1]["count"] > last_count  # before it: ran again
    assert nb[2]["count"] is None and "generated ran" not in nb[2]["text"]
    assert nb[3]["count"] == last_count  # after it: not run, as Run All stops at an error

    # confirmed: it runs, and its badge says where
    run_all(page)
    dialog.wait_for(timeout=TIMEOUT_MS)
    dialog.get_by_role("button", name="Run in the kernel").click()
    wait_until(lambda: "generated ran 42" in cells(page)[2]["text"], "the generated cell's run")
    wait_until(lambda: (cells(page)[3]["count"] or 0) > last_count, "the cell after it")
    badge = page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".llmscript-badge")
    assert badge.inner_text().endswith("static checks only · ran in the kernel, not sandboxed")
    screenshot(page, f"gate-{server.app}-ran")
    # once confirmed, the same code runs again without a question
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    run_all(page)
    page.wait_for_timeout(1500)
    assert page.locator(".jp-Dialog").count() == 0


def test_run_all_asks_before_a_never_sandboxed_generated_cell_in_notebook7(
        page: Any, notebook7: LabServer) -> None:
    check_run_all_asks(page, notebook7, f"{notebook7.url}/notebooks/gate7.ipynb", "gate7.ipynb")


def test_run_all_asks_before_a_never_sandboxed_generated_cell_in_lab(
        page: Any, lab: LabServer) -> None:
    check_run_all_asks(page, lab, f"{lab.url}/lab/tree/gate.ipynb?reset", "gate.ipynb")
