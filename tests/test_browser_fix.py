"""End to end: "Fix with llmscript" under a traceback, and the Generate button by kernel state.

Real JupyterLab 4 and Notebook 7 with the built extension, a real ipykernel, the real
anthropic SDK against the out-of-process stand-in (which answers with a fixed script).
Screenshots go to test-artifacts/. The expressions the extension asks the kernel are
also evaluated here in a real IPython shell, so a move on the Python side breaks this
test before it silently hides the Fix button.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import (
    KERNEL_IDLE_JS,
    ROOT,
    LabServer,
    StandIn,
    require_browser_stack,
    screenshot,
    wait_until,
)

TIMEOUT_MS = 60_000
FAILING = "import pandas as pd\nsales = pd.DataFrame({'price': [1.5, 2.0], 'qty': [2, 3]})\n" \
          "total = (sales['prise'] * sales['qty']).sum()\nprint('total', total)"
FIXED = "total = (sales['price'] * sales['qty']).sum()\nprint('total', total)\n"
REPLIES = [{"text": f"The column is spelled `price`:\n\n```python\n{FIXED}```\n"}] * 6

CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return Array.from(panel.content.model.cells).map(c => ({
    id: c.id, type: c.type, source: c.sharedModel.getSource(),
    metadata: c.sharedModel.getMetadata(),
    count: c.type === 'code' ? c.executionCount : null,
    outputs: c.type === 'code' ? c.outputs.toJSON() : []
  }));
}"""


# -- the kernel side of the check, in a real shell (no browser needed) -----------------
def _ts_expressions() -> dict[str, str]:
    text = (ROOT / "labextension" / "src" / "magicCheck.ts").read_text("utf-8")
    found = dict(re.findall(r"export const ([A-Z_]+_EXPRESSION) =\s*\n?\s*\"(.*?)\";", text))
    assert set(found) == {"LOADED_EXPRESSION", "INSTALLED_EXPRESSION", "ERRORS_EXPRESSION"}
    return found


def test_the_check_expressions_work_in_a_real_shell(ip: Any) -> None:
    """What the extension's check reads: loaded, installed, and the counts --fix can fix."""
    import llmscript_magic
    from llmscript_magic._notebook.cells import error_log

    expr = _ts_expressions()
    ip.magics_manager.magics["cell"].pop("generate", None)
    assert ip.ev(expr["LOADED_EXPRESSION"]) is False
    assert ip.ev(expr["INSTALLED_EXPRESSION"]) is True
    llmscript_magic.load_ipython_extension(ip)
    error_log(ip).clear()
    assert ip.ev(expr["LOADED_EXPRESSION"]) is True
    res = ip.run_cell("{'price': 1}['prise']", store_history=True)
    assert res.error_in_exec is not None
    assert ip.ev(expr["ERRORS_EXPRESSION"]) == [res.execution_count]
    error_log(ip).clear()


# -- the browser --------------------------------------------------------------------

@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("standin"), REPLIES)
    yield server
    server.stop()


def code_cell(cell_id: str, source: str) -> dict[str, Any]:
    return {"cell_type": "code", "id": cell_id, "metadata": {}, "outputs": [],
            "execution_count": None, "source": source}


def open_notebook(page: Any, server: LabServer, name: str, cells: list[dict[str, Any]],
                  path: str = "lab/tree") -> None:
    server.write_notebook(name, cells)
    page.goto(f"{server.url}/{path}/{name}?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)


def cells(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(CELLS_JS)
    return result



def run_cell(page: Any, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Control+Enter")


def ran(page: Any, index: int) -> bool:
    return cells(page)[index]["count"] is not None


def error_names(cell: dict[str, Any]) -> list[str]:
    return [o["ename"] for o in cell["outputs"] if o["output_type"] == "error"]


def stdout(cell: dict[str, Any]) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


def fix_buttons(page: Any) -> Any:
    return page.locator(".llmscript-fix-button")


def generate_button(page: Any) -> Any:
    return page.locator(".llmscript-toolbar-button .jp-ToolbarButtonComponent")


def fix_and_check(page: Any, standin: StandIn, failing: int) -> list[dict[str, Any]]:
    """Click Fix under cell ``failing``; the fix cell and the fixed code appear below."""
    nb = cells(page)
    count = nb[failing]["count"]
    assert error_names(nb[failing]) == ["KeyError"]
    button = page.locator(".jp-Notebook .jp-Cell").nth(failing).locator(".llmscript-fix-button")
    button.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert fix_buttons(page).count() == 1  # only under the traceback
    ref = f"cell:{nb[failing]['id'][:8]}"  # the cell's id: not its count, which a restart reuses
    title = button.get_attribute("title") or ""
    assert f"--fix {ref}" in title and f"In [{count}]" in title
    requests_before = len(standin.requests())
    button.click()
    wait_until(lambda: len(cells(page)) >= len(nb) + 2
               and "llmscript-generated" in cells(page)[failing + 2]["metadata"].get("tags", [])
               and cells(page)[failing + 1]["count"] is not None,  # the reply may come later
               "the fix cell and the fixed code below it")
    after = cells(page)
    fix_cell, fixed = after[failing + 1], after[failing + 2]
    assert fix_cell["source"] == f"%%generate --fix {ref}"
    assert fix_cell["metadata"]["llmscript_from"] == nb[failing]["id"]
    assert fix_cell["count"] is not None and not error_names(fix_cell)
    assert fixed["source"].strip() == FIXED.strip()
    assert fixed["metadata"]["llmscript"]["source_cell"] == fix_cell["id"]
    # The model was sent the failing code and its traceback.
    sent = str(standin.requests()[requests_before:])
    assert "prise" in sent and "KeyError" in sent
    return after


@pytest.mark.browser
def test_fix_button_in_jupyterlab(page: Any, lab: LabServer, standin: StandIn) -> None:
    open_notebook(page, lab, "fix.ipynb", [
        code_cell("load", "%load_ext llmscript_magic"),
        code_cell("fails", FAILING),
    ])
    assert fix_buttons(page).count() == 0
    run_cell(page, 0)
    wait_until(lambda: ran(page, 0), "%load_ext")
    run_cell(page, 1)
    wait_until(lambda: ran(page, 1), "the failing cell")
    fix = page.locator(".llmscript-fix-button")
    fix.wait_for(state="visible", timeout=TIMEOUT_MS)
    # the Generate button is plain (the magic is loaded)
    assert "llmscript-mod-not-loaded" not in (generate_button(page).get_attribute("class") or "")
    fix.scroll_into_view_if_needed()
    fix.hover()
    screenshot(page, "fix-1-button-under-traceback")

    after = fix_and_check(page, standin, 1)
    page.wait_for_selector(".llmscript-badge", timeout=TIMEOUT_MS)
    screenshot(page, "fix-2-fixed-below")

    # The fixed code runs in the kernel, not the sandbox, and it never ran there: the
    # extension asks first, naming the cell; once confirmed it runs, marked not sandboxed.
    run_cell(page, 3)
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT_MS)
    assert "Cell 4: it never ran in the sandbox (static checks only)" in dialog.inner_text()
    assert not ran(page, 3)
    screenshot(page, "fix-2b-confirm-kernel-run")
    dialog.get_by_role("button", name="Run in the kernel").click()
    wait_until(lambda: ran(page, 3), "the fixed cell")
    badge = page.locator(".jp-Notebook .jp-Cell").nth(3).locator(".llmscript-badge")
    assert badge.inner_text().endswith(
        "static checks only · ran in the kernel, not sandboxed"), badge.inner_text()
    fixed = cells(page)[3]
    assert not error_names(fixed) and "total 9.0" in stdout(fixed)
    # No Fix button anywhere now: the only traceback is still cell 1's, which keeps its button.
    assert fix_buttons(page).count() == 1
    assert len(cells(page)) == len(after)

    # Kernel restart: the kernel forgot its errors (and the magic): the button goes.
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session"
                  ".kernel.restart()")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    fix_buttons(page).first.wait_for(state="detached", timeout=TIMEOUT_MS)
    generate_button(page).and_(page.locator(".llmscript-mod-not-loaded")).wait_for(
        timeout=TIMEOUT_MS)


def error_text(cell: dict[str, Any]) -> str:
    return "\n".join([o["evalue"] + "\n" + "\n".join(o["traceback"])
                      for o in cell["outputs"] if o["output_type"] == "error"])


@pytest.mark.browser
def test_fix_cell_still_names_the_failing_cell_after_restart_and_run_all(
        page: Any, lab: LabServer, standin: StandIn) -> None:
    """The fix cell names the failing cell by its id: after a restart it says in one line
    to run that cell first; after Run All (which stops at that cell's error, now under
    another count) it fixes that cell, not whichever cell got the old count."""
    open_notebook(page, lab, "fixref.ipynb", [
        code_cell("load", "%load_ext llmscript_magic"),
        code_cell("fails", FAILING),
    ])
    run_cell(page, 0)
    wait_until(lambda: ran(page, 0), "%load_ext")
    run_cell(page, 1)
    wait_until(lambda: ran(page, 1), "the failing cell")
    run_cell(page, 1)  # again: In [3], a count Run All gives to another cell
    wait_until(lambda: cells(page)[1]["count"] == 3 and bool(error_names(cells(page)[1])),
               "the failing cell, run twice")
    fix_and_check(page, standin, 1)
    fix_id = cells(page)[2]["id"]

    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session"
                  ".kernel.restart()")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    fix_buttons(page).first.wait_for(state="detached", timeout=TIMEOUT_MS)
    requests_before = len(standin.requests())
    run_cell(page, 0)
    wait_until(lambda: cells(page)[0]["count"] == 1, "%load_ext after the restart")
    run_cell(page, 2)  # the fix cell, before the failing cell ran in this kernel
    wait_until(lambda: cells(page)[2]["count"] == 2 and bool(error_names(cells(page)[2])),
               "the fix cell's message")
    shown = error_text(cells(page)[2])
    assert "--fix cell:fails: that cell has not run in this kernel yet" in shown, shown
    assert "run the failing cell above, then this one" in shown
    assert "Traceback" not in shown and len(standin.requests()) == requests_before
    screenshot(page, "fix-8-after-restart-run-the-cell-first")

    # Run All: the fixed code below the fix cell never ran in the sandbox, so the
    # extension asks first; it stays unrun. The kernel stops at the failing cell.
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT_MS)
    dialog.get_by_role("button", name="Do not run").click()
    wait_until(lambda: cells(page)[1]["count"] == 4 and bool(error_names(cells(page)[1])),
               "Run All up to the failing cell")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    assert cells(page)[0]["count"] == 3  # In [3] is now the %load_ext cell
    count = len(cells(page))
    run_cell(page, 2)
    wait_until(lambda: len(standin.requests()) > requests_before
               and cells(page)[2]["count"] == 5, "the fix request")
    sent = str(standin.requests()[requests_before:])
    assert "In [4] raised KeyError" in sent and "prise" in sent
    wait_until(lambda: cells(page)[3]["source"].strip() == FIXED.strip()
               and not error_names(cells(page)[2]), "the fixed code below the fix cell")
    after = cells(page)
    assert len(after) == count and after[2]["id"] == fix_id
    assert after[3]["metadata"]["llmscript"]["source_cell"] == fix_id
    screenshot(page, "fix-9-after-run-all-fixed")


@pytest.mark.browser
def test_no_fix_and_an_explaining_generate_button_without_the_magic(
        page: Any, lab: LabServer) -> None:
    open_notebook(page, lab, "nomagic.ipynb", [
        code_cell("fails", FAILING),
        code_cell("load", "%load_ext llmscript_magic"),
    ])
    run_cell(page, 0)
    wait_until(lambda: ran(page, 0), "the failing cell")
    assert error_names(cells(page)[0]) == ["KeyError"]
    # Installed in the kernel's environment but not loaded: the button says so, in one line.
    button = generate_button(page)
    page.locator(".llmscript-toolbar-button .llmscript-mod-not-loaded").wait_for(
        timeout=TIMEOUT_MS)
    title = button.get_attribute("title") or ""
    assert "%load_ext llmscript_magic" in title and "\n" not in title
    time.sleep(1.5)  # the check after the failing cell's reply has landed
    assert fix_buttons(page).count() == 0
    button.hover()
    page.wait_for_timeout(1200)  # the tooltip
    screenshot(page, "fix-3-no-magic")

    # %load_ext: the button becomes plain; the error raised before it is unknown to
    # --fix, so it still gets no Fix action; raised again, it does.
    run_cell(page, 1)
    wait_until(lambda: ran(page, 1), "%load_ext")
    page.locator(".llmscript-toolbar-button .llmscript-mod-not-loaded").wait_for(
        state="detached", timeout=TIMEOUT_MS)
    assert "%load_ext" not in (button.get_attribute("title") or "")
    time.sleep(1.0)
    assert fix_buttons(page).count() == 0
    run_cell(page, 0)
    page.locator(".llmscript-fix-button").wait_for(state="visible", timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_fix_button_in_notebook7(page: Any, notebook7: LabServer, standin: StandIn) -> None:
    open_notebook(page, notebook7, "fix7.ipynb", [
        code_cell("load", "%load_ext llmscript_magic"),
        code_cell("fails", FAILING),
    ], path="notebooks")
    run_cell(page, 0)
    wait_until(lambda: ran(page, 0), "%load_ext")
    run_cell(page, 1)
    wait_until(lambda: ran(page, 1), "the failing cell")
    screenshot(page, "fix-4-nb7-button")
    fix_and_check(page, standin, 1)
    screenshot(page, "fix-5-nb7-fixed")


NOTIFICATION_COUNT_JS = """() => {
  const status = document.querySelector('.jp-Notification-Status');
  return status ? Number(status.textContent.trim() || 0) : 0;
}"""
# As if the kernel's environment lacked the package: importing it fails like a missing one.
NOT_INSTALLED = """import sys
class NoLlmscript:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'llmscript_magic':
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoLlmscript())"""


@pytest.mark.browser
def test_kernel_that_cannot_load_the_magic_hides_generate(page: Any, lab: LabServer) -> None:
    """A kernel whose environment lacks the package: no button; the shortcut says how."""
    open_notebook(page, lab, "absent.ipynb", [
        {"cell_type": "markdown", "id": "spec", "metadata": {},
         "source": "Multiply seven by a number and print the result."},
        code_cell("hide", NOT_INSTALLED),
    ])
    page.locator(".llmscript-toolbar-button .llmscript-mod-not-loaded").wait_for(
        timeout=TIMEOUT_MS)
    run_cell(page, 1)
    wait_until(lambda: ran(page, 1), "the hiding cell")
    page.locator(".llmscript-toolbar-button").wait_for(state="hidden", timeout=TIMEOUT_MS)
    screenshot(page, "fix-6-cannot-load")
    count = len(cells(page))
    page.locator(".jp-Notebook .jp-Cell").nth(0).click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+G")
    # The one-line message (a toast, also kept in the status bar's notification list).
    wait_until(lambda: page.evaluate(NOTIFICATION_COUNT_JS) > 0, "the notification")
    page.locator(".jp-Notification-Status").click()
    message = page.get_by_text("install llmscript-magic in its environment").first
    message.wait_for(timeout=TIMEOUT_MS)
    screenshot(page, "fix-7-cannot-load-message")
    text = message.inner_text()
    assert text.startswith("Cannot load the magic in this kernel: install llmscript-magic in its "
                           "environment, then run %load_ext llmscript_magic (ModuleNotFoundError)")
    assert len(cells(page)) == count  # nothing was added


@pytest.mark.browser
def test_fix_button_after_run_all(page: Any, lab: LabServer) -> None:
    """Run all: the cells after the error (and a check queued behind them) are aborted;
    the extension asks again and the Fix button still appears."""
    open_notebook(page, lab, "runall.ipynb", [
        code_cell("load", "%load_ext llmscript_magic"),
        code_cell("fails", FAILING),
        code_cell("after", "print('not reached')"),
    ])
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    wait_until(lambda: ran(page, 1), "the failing cell")
    page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".llmscript-fix-button").wait_for(
        state="visible", timeout=TIMEOUT_MS)
    assert fix_buttons(page).count() == 1
    assert not stdout(cells(page)[2])
