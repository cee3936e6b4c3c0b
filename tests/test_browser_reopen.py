"""A saved %%generate result in real JupyterLab and Notebook 7, seen through Chromium.

The user's path: run a chart spec in JupyterLab (the widget is the one view
while the kernel lives), edit the generated cell and press Run in sandbox (the
edit is what runs), Insert copy below (a new, unlinked cell), save, shut the
kernel down, reopen with a new kernel: the saved result shows the code, the
checks, the output and the chart, with no "Error displaying widget". Then the
same file in Notebook 7, and a demo notebook from the repository. Screenshots
go to test-artifacts/reopen-*.png.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    KERNEL_IDLE_JS,
    ROOT,
    LabServer,
    StandIn,
    require_browser_stack,
    screenshot,
)

pytestmark = pytest.mark.browser

CHART = '''\
import matplotlib.pyplot as plt

totals = {"north": 110.5, "south": 80.0}
plt.bar(list(totals), list(totals.values()))
plt.title("Revenue by region")
plt.savefig("chart.png")
print("regions:", len(totals))
'''
REPLIES = [{"text": f"Here you go:\n\n```python\n{CHART}```\n"}] * 2  # Lab, Notebook 7
TIMEOUT_MS = 90_000
SPEC = "%%generate --run --sandbox local\nPlot revenue per region as a bar chart."
NOTEBOOK = "reopen.ipynb"

CELLS_JS = """() => Array.from(window.jupyterapp.shell.currentWidget.content.model.cells)
  .map(c => ({source: c.sharedModel.getSource(), metadata: c.sharedModel.getMetadata()}))"""
VISIBLE_TEXT_JS = "() => document.querySelector('.jp-Notebook').innerText"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("reopen-standin"), REPLIES)
    yield server
    server.stop()


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1300, "height": 1500})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


def code_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


def open_and_wait(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)


def assert_saved_result_shown(page: Any, name: str) -> None:
    """The saved result is visible (code, checks, stdout, chart); no widget error."""
    result = page.locator(".jp-Notebook .llmscript-result").first
    result.wait_for(state="visible", timeout=TIMEOUT_MS)
    page.wait_for_timeout(3000)  # the widget manager gives up on missing models by now
    text = result.inner_text()
    assert "plt.bar" in text and "Revenue by region" in text  # the code
    assert "✓ syntax" in text  # the checklist
    assert "regions: 2" in text and "ok" in text  # the run
    chart = page.locator(".jp-Notebook .jp-OutputArea-output img").first
    chart.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert chart.evaluate("img => img.naturalWidth") > 100  # a real picture, decoded
    screenshot(page, name)
    shown = page.evaluate(VISIBLE_TEXT_JS)
    assert "Error displaying widget" not in shown, shown
    assert shown.count("regions: 2") == 1, shown  # said once


def test_live_then_saved_then_reopened(browser: Any, lab: LabServer, notebook7: LabServer,
                                       standin: StandIn) -> None:
    lab.write_notebook(NOTEBOOK, [code_cell("%load_ext llmscript_magic"), code_cell(SPEC)])
    page = new_page(browser)
    open_and_wait(page, f"{lab.url}/lab/tree/{NOTEBOOK}?reset")
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    widget = page.locator(".jp-Notebook .llmscript-widget")
    widget.locator(".llmscript-stdout pre").wait_for(timeout=TIMEOUT_MS)
    assert "regions: 2" in widget.locator(".llmscript-stdout pre").inner_text()
    page.wait_for_selector(".jp-Notebook .llmscript-result", state="attached",
                           timeout=TIMEOUT_MS)
    # live: the widget is the one view; the saved result and its figure output are hidden
    assert not page.locator(".jp-Notebook .llmscript-result").is_visible()
    assert page.evaluate(VISIBLE_TEXT_JS).count("regions: 2") == 1
    assert "saved as llmscript-files/chart.png" in widget.inner_text()
    # in the files folder beside the notebook, not in the kernel's working folder
    assert (lab.root / "llmscript-files" / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert not (lab.root / "chart.png").exists()
    screenshot(page, "reopen-1-live")

    # edit the generated cell, then Run in sandbox: the edit is what runs
    page.evaluate("""() => { const cells = window.jupyterapp.shell.currentWidget.content.model
        .cells; const gen = Array.from(cells).find(c => (c.getMetadata('tags') || [])
        .includes('llmscript-generated')); gen.sharedModel.setSource(gen.sharedModel
        .getSource().replace('print("regions:"', 'print("edited regions:"')); }""")
    widget.get_by_role("button", name="Run again").click()
    page.wait_for_function("""() => document.querySelector('.llmscript-widget .llmscript-stdout')
        .innerText.includes('edited regions: 2')""", timeout=TIMEOUT_MS)
    assert "Ran your edited version" in widget.inner_text()
    assert "(your edited cell)" in widget.inner_text()
    screenshot(page, "reopen-2-edited-run")

    # Insert copy below: a new, ordinary cell; the linked generated cell is untouched
    before = page.evaluate(CELLS_JS)
    widget.get_by_role("button", name="Insert copy below").click()
    page.wait_for_function(f"() => window.jupyterapp.shell.currentWidget.content.model.cells"
                           f".length === {len(before) + 1}", timeout=TIMEOUT_MS)
    after = page.evaluate(CELLS_JS)
    copy = after[3]
    assert copy["source"] == after[2]["source"] or "regions" in copy["source"]
    assert "llmscript" not in copy["metadata"] and "tags" not in copy["metadata"]
    assert after[2]["metadata"]["tags"] == ["llmscript-generated"]
    assert "edited regions" in after[2]["source"]  # the user's edit is still there
    page.wait_for_function("""() => document.querySelector('.llmscript-widget')
        .innerText.includes('Inserted a copy below')""", timeout=TIMEOUT_MS)

    # save, shut the kernel down, reopen with a new kernel
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                           timeout=TIMEOUT_MS)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    errors = list(page.errors)
    page.context.close()
    assert not [e for e in errors if "llmscript" in e], errors
    saved = json.loads((lab.root / NOTEBOOK).read_text())
    assert saved["cells"][1]["outputs"][0]["metadata"]["llmscript"]["record"]["code"] == CHART

    page = new_page(browser)
    open_and_wait(page, f"{lab.url}/lab/tree/{NOTEBOOK}?reset")
    assert_saved_result_shown(page, "reopen-3-lab-new-kernel")
    assert "edited regions: 2" in page.locator(".llmscript-result").inner_text()
    page.context.close()

    # the same file in Notebook 7 (another server, another kernel)
    shutil.copy(lab.root / NOTEBOOK, notebook7.root / NOTEBOOK)
    page = new_page(browser)
    open_and_wait(page, f"{notebook7.url}/notebooks/{NOTEBOOK}")
    assert_saved_result_shown(page, "reopen-4-notebook7")
    page.context.close()


def test_demo_notebook_shows_its_chart(browser: Any, notebook7: LabServer, lab: LabServer) -> None:
    """A repository demo (saved by nbclient, so untrusted here) shows its result and chart."""
    demo = ROOT / "notebooks" / "data_transform.ipynb"
    for server, url in ((lab, f"{lab.url}/lab/tree/data_transform.ipynb?reset"),
                        (notebook7, f"{notebook7.url}/notebooks/data_transform.ipynb")):
        shutil.copy(demo, Path(server.root) / demo.name)
        page = new_page(browser)
        open_and_wait(page, url)
        result = page.locator(".jp-Notebook .llmscript-result").first
        result.wait_for(state="visible", timeout=TIMEOUT_MS)
        page.wait_for_timeout(3000)
        assert "import pandas" in result.inner_text() and "✓ syntax" in result.inner_text()
        chart = page.locator(".jp-Notebook .jp-OutputArea-output img").first
        chart.scroll_into_view_if_needed()
        assert chart.evaluate("img => img.naturalWidth") > 100
        shown = page.evaluate(VISIBLE_TEXT_JS)
        assert "Error displaying widget" not in shown
        screenshot(page, f"reopen-5-demo-{server.app}")
        page.context.close()


def test_notebook7_live_shows_the_widget_once(browser: Any, notebook7: LabServer) -> None:
    notebook7.write_notebook("live7.ipynb", [code_cell("%load_ext llmscript_magic"),
                                             code_cell(SPEC)])
    page = new_page(browser)
    open_and_wait(page, f"{notebook7.url}/notebooks/live7.ipynb")
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    widget = page.locator(".jp-Notebook .llmscript-widget")
    widget.locator(".llmscript-stdout pre").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .llmscript-result", state="attached",
                           timeout=TIMEOUT_MS)
    assert not page.locator(".jp-Notebook .llmscript-result").is_visible()
    assert page.evaluate(VISIBLE_TEXT_JS).count("regions: 2") == 1
    visible_images = page.locator(".jp-Notebook .jp-OutputArea-child:visible img")
    assert visible_images.count() == 1  # the widget's; the saved figure output is hidden
    screenshot(page, "reopen-6-notebook7-live")
    page.context.close()
