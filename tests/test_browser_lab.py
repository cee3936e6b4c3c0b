"""End to end: real JupyterLab 4 + the built extension + the real %%generate.

The Anthropic stand-in runs out of process; the kernel reaches it through the
server's environment. Every model reply is a different snippet, so which one
landed is read off the stand-in's request log. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import (
    EXTENSION_NAME,
    KERNEL_IDLE_JS,
    ROOT,
    LabServer,
    StandIn,
    labextension_list,
    require_browser_stack,
    screenshot,
    wait_until,
)

pytestmark = pytest.mark.browser

CODES = [f"value = {n} * 7\nprint('reply {n}', value)\n" for n in range(1, 41)]
REPLIES = [{"text": f"Here you go:\n\n```python\n{code}```\n"} for code in CODES]
TIMEOUT_MS = 60_000

CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return Array.from(panel.content.model.cells).map(c => ({
    id: c.id, type: c.type, source: c.sharedModel.getSource(),
    metadata: c.sharedModel.getMetadata()
  }));
}"""

KERNEL_EXEC_JS = """async (code) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  let out = '';
  const future = kernel.requestExecute({ code, store_history: false });
  future.onIOPub = msg => {
    if (msg.header.msg_type === 'stream') { out += msg.content.text; }
    if (msg.header.msg_type === 'error') { out += msg.content.ename + ': ' + msg.content.evalue; }
  };
  await future.done;
  return out;
}"""

@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("standin"), REPLIES)
    yield server
    server.stop()


def open_notebook(page: Any, lab: LabServer, name: str, cells: list[dict[str, Any]] | None = None,
                  path: str = "lab/tree") -> None:
    lab.write_notebook(name, cells)
    page.goto(f"{lab.url}/{path}/{name}?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)


def cells(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(CELLS_JS)
    return result


def generated(page: Any) -> list[dict[str, Any]]:
    return [c for c in cells(page) if "llmscript-generated" in c["metadata"].get("tags", [])]


def kernel_exec(page: Any, code: str) -> str:
    out: str = page.evaluate(KERNEL_EXEC_JS, code)
    return out



def last_code(standin: StandIn) -> str:
    """The code of the reply the stand-in gave last."""
    return CODES[len(standin.requests()) - 1]


def cell_editor(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")


def type_in_cell(page: Any, index: int, text: str) -> None:
    editor = cell_editor(page, index)
    editor.click()
    page.keyboard.type(text)


def run_cell_in_place(page: Any, index: int) -> None:
    cell_editor(page, index).click()
    page.keyboard.press("Control+Enter")


def assert_badge_visible(page: Any, index: int) -> None:
    """The badge shows above the cell's editor, not hidden under it."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    badge = cell.locator(".llmscript-badge").bounding_box()
    editor = cell.locator(".jp-InputArea-editor").bounding_box()
    assert badge is not None and editor is not None
    assert badge["height"] > 8
    assert badge["y"] + badge["height"] <= editor["y"] + 1


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_extension_is_listed_enabled(lab: LabServer) -> None:
    listing = labextension_list(lab.env)
    line = next((x for x in listing.splitlines() if EXTENSION_NAME in x), "")
    assert "enabled" in line and "OK" in line, listing


def test_generate_inserts_then_replaces_then_asks(page: Any, lab: LabServer,
                                                  standin: StandIn) -> None:
    open_notebook(page, lab, "generate.ipynb")
    type_in_cell(page, 0, "%load_ext llmscript_magic")
    page.keyboard.press("Shift+Enter")
    page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length >= 2")
    type_in_cell(page, 1, "%%generate --no-cache\nMultiply a number by seven and print it.")
    page.keyboard.press("Shift+Enter")

    # 1. First run: exactly one generated cell, right below, with code and metadata.
    wait_until(lambda: len(generated(page)) == 1, "the generated cell")
    page.wait_for_selector(".llmscript-badge", timeout=TIMEOUT_MS)
    screenshot(page, "lab-1-generated")
    code1 = last_code(standin)
    nb = cells(page)
    source_cell = nb[1]
    assert source_cell["source"].startswith("%%generate")
    gen = nb[2]
    assert gen["metadata"]["tags"] == ["llmscript-generated"]
    assert gen["source"].strip() == code1.strip()
    info = gen["metadata"]["llmscript"]
    assert info["source_cell"] == source_cell["id"]
    assert info["code_hash"] == sha256(gen["source"])
    assert info["model"].startswith("anthropic:")
    assert info["validation"] in ("pass", "warn")
    assert "record" not in info
    record = source_cell["metadata"]["llmscript_record"]
    assert record["code"].strip() == code1.strip()
    # JupyterLab did not also insert the payload as a plain cell.
    assert sum(code1.strip() in c["source"] for c in nb) == 1
    badge = page.locator(".llmscript-generated-cell .llmscript-badge")
    assert badge.inner_text().startswith("generated · anthropic:")
    assert "edited" not in badge.inner_text()
    assert_badge_visible(page, 2)

    # 2. Run again: still one generated cell, the same one, with the new code.
    first_id = gen["id"]
    count = len(nb)
    run_cell_in_place(page, 1)
    wait_until(lambda: generated(page)[0]["source"].strip() != code1.strip(), "replacement")
    code2 = last_code(standin)
    assert code2 != code1
    nb = cells(page)
    assert len(nb) == count
    assert [c["id"] for c in generated(page)] == [first_id]
    assert nb[2]["source"].strip() == code2.strip()
    assert nb[2]["metadata"]["llmscript"]["code_hash"] == sha256(nb[2]["source"])
    screenshot(page, "lab-2-replaced")

    # 3. Edit the generated cell by hand: the badge says so, live.
    cell_editor(page, 2).click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# my own line")
    page.wait_for_selector(".llmscript-badge[data-edited='true']", timeout=TIMEOUT_MS)
    assert "edited" in page.locator(".llmscript-badge").inner_text()
    edited_source = cells(page)[2]["source"]
    assert "# my own line" in edited_source

    # 4. Regenerate: asked first; "Keep mine" leaves the cell alone.
    requests_before = len(standin.requests())
    run_cell_in_place(page, 1)
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=TIMEOUT_MS)
    assert "Overwrite your edits?" in dialog.inner_text()
    screenshot(page, "lab-3-overwrite-dialog")
    assert len(standin.requests()) == requests_before + 1
    dialog.get_by_role("button", name="Keep mine").click()
    dialog.wait_for(state="detached")
    time.sleep(1.0)
    assert len(generated(page)) == 1
    assert cells(page)[2]["source"] == edited_source
    assert len(cells(page)) == count

    # 5. Regenerate again and overwrite.
    run_cell_in_place(page, 1)
    dialog.wait_for(timeout=TIMEOUT_MS)
    dialog.get_by_role("button", name="Overwrite").click()
    code4 = last_code(standin)
    wait_until(lambda: cells(page)[2]["source"].strip() == code4.strip(), "overwrite")
    assert [c["id"] for c in generated(page)] == [first_id]
    page.wait_for_selector(".llmscript-badge[data-edited='false']", timeout=TIMEOUT_MS)
    screenshot(page, "lab-4-overwritten")

    # 6. The widget's Regenerate button (a comm callback, no execute reply)
    #    replaces the same cell through the comm route.
    regenerate = page.locator(".jp-Notebook .jp-Cell").nth(1).get_by_role(
        "button", name="Regenerate")
    regenerate.click()
    wait_until(lambda: len(standin.requests()) > requests_before + 2
               and cells(page)[2]["source"].strip() == last_code(standin).strip(),
               "the widget's regeneration")
    assert last_code(standin) != code4
    assert [c["id"] for c in generated(page)] == [first_id]
    assert len(cells(page)) == count
    page.get_by_text("The generated cell below holds this code").wait_for(timeout=TIMEOUT_MS)
    screenshot(page, "lab-5-widget-regenerated")


def test_generate_from_markdown_cell_with_shortcut(page: Any, lab: LabServer,
                                                   standin: StandIn) -> None:
    open_notebook(page, lab, "command.ipynb", [
        {"cell_type": "markdown", "id": "spec-md", "metadata": {},
         "source": "Multiply seven by a number and print the result."},
    ])
    page.locator(".jp-Notebook .jp-Cell").nth(0).click()
    page.keyboard.press("Escape")
    assert page.locator(".llmscript-toolbar-button").count() == 1
    page.keyboard.press("Control+Shift+G")
    wait_until(lambda: len(generated(page)) == 1, "generated cell from the command")
    code = last_code(standin)
    nb = cells(page)
    assert nb[0]["id"] == "spec-md"
    assert nb[1]["source"] == "%%generate\nMultiply seven by a number and print the result."
    assert nb[1]["metadata"]["llmscript_from"] == "spec-md"
    assert nb[2]["source"].strip() == code.strip()
    assert nb[2]["metadata"]["llmscript"]["source_cell"] == nb[1]["id"]
    screenshot(page, "lab-5-command")

    # The toolbar button on the same (changed) markdown cell reuses its %%generate cell.
    page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.model.cells.get(0)
      .sharedModel.setSource('Multiply eight by a number and print the result.')""")
    page.locator(".jp-Notebook .jp-Cell").nth(0).click()
    page.keyboard.press("Escape")
    page.locator(".llmscript-toolbar-button").click()
    wait_until(lambda: generated(page)[0]["source"].strip() != code.strip(), "regeneration")
    nb = cells(page)
    assert len(generated(page)) == 1
    assert nb[1]["source"] == "%%generate\nMultiply eight by a number and print the result."
    assert sum(c["source"].startswith("%%generate") for c in nb) == 1
    assert nb[2]["source"].strip() == last_code(standin).strip()


def test_comm_route_hello_and_insert(page: Any, lab: LabServer) -> None:
    open_notebook(page, lab, "comm.ipynb", [
        {"cell_type": "code", "id": "src-cell", "metadata": {}, "outputs": [],
         "execution_count": None, "source": "%%generate\nanything"},
        {"cell_type": "code", "id": "other", "metadata": {}, "outputs": [],
         "execution_count": None, "source": "x = 1"},
    ])
    kernel_exec(page, (
        "from comm import create_comm\n"
        "replies = []\n"
        "def ask(data):\n"
        "    c = create_comm(target_name='llmscript', data=data)\n"
        "    c.on_msg(lambda m: replies.append(m['content']['data']))\n"
        "    return c\n"
        "hello = ask({'action': 'hello'})\n"
    ))
    wait_until(lambda: "version" in kernel_exec(page, "print(replies)"), "hello reply")
    hello = json.loads(kernel_exec(page, "import json; print(json.dumps(replies[0]))"))
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert hello == {"ok": True, "version": package["version"]}

    code = "print('from a widget')\n"
    meta = {"source_cell": "src-cell", "generation_id": "comm-gen-1", "code_hash": sha256(code),
            "model": "anthropic:claude-sonnet-5-5", "validation": "warn",
            "checks": "4 checks: 3 pass, 1 warn", "run": None, "record": {"code": code}}
    kernel_exec(page, f"ins = ask({{'action': 'insert', 'text': {code!r}, "
                      f"'llmscript': {meta!r}}})")
    wait_until(lambda: len(generated(page)) == 1, "comm insertion")
    wait_until(lambda: "cell_id" in kernel_exec(page, "print(replies)"), "insert reply")
    reply = json.loads(kernel_exec(page, "print(json.dumps(replies[1]))"))
    nb = cells(page)
    assert nb[0]["id"] == "src-cell" and nb[2]["id"] == "other"
    assert reply == {"ok": True, "cell_id": nb[1]["id"], "replaced": False}
    assert nb[1]["source"] == code
    assert nb[0]["metadata"]["llmscript_record"] == {"code": code}
    badge = page.locator(".llmscript-badge").inner_text()
    assert badge == ("generated · anthropic:claude-sonnet-5-5 · ! check warnings · "
                     "static checks only")
    screenshot(page, "lab-6-comm")

    # "source": the generated cell's current text (Run in sandbox runs edits too)
    page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.model.cells.get(1)
      .sharedModel.setSource("print('edited by hand')\\n")""")
    info = {k: v for k, v in meta.items() if k != "record"}
    kernel_exec(page, f"src = ask({{'action': 'source', 'llmscript': {info!r}}})")
    wait_until(lambda: "edited by hand" in kernel_exec(page, "print(replies)"), "source reply")
    reply = json.loads(kernel_exec(page, "print(json.dumps(replies[2]))"))
    assert reply == {"ok": True, "cell_id": nb[1]["id"], "text": "print('edited by hand')\n",
                     "edited": True}

    # "insert-copy": a new, unlinked cell below the generated one; nothing else changes
    kernel_exec(page, f"cp = ask({{'action': 'insert-copy', 'text': 'y = 2\\n', "
                      f"'llmscript': {info!r}}})")
    wait_until(lambda: len(cells(page)) == 4, "the copy")
    nb = cells(page)
    assert [c["id"] for c in nb[:2]] == ["src-cell", reply["cell_id"]] and nb[3]["id"] == "other"
    assert nb[2]["source"] == "y = 2\n" and "llmscript" not in nb[2]["metadata"]
    assert "tags" not in nb[2]["metadata"] and len(generated(page)) == 1
    assert nb[1]["source"] == "print('edited by hand')\n"



def test_notebook7_generate_then_replace(page: Any, notebook7: LabServer,
                                         standin: StandIn) -> None:
    """The same prebuilt extension in Notebook 7."""
    listing = labextension_list(notebook7.env)
    assert EXTENSION_NAME in listing
    open_notebook(page, notebook7, "nb7.ipynb", [
        {"cell_type": "code", "id": "load", "metadata": {}, "outputs": [],
         "execution_count": None, "source": "%load_ext llmscript_magic"},
        {"cell_type": "code", "id": "gen-src", "metadata": {}, "outputs": [],
         "execution_count": None,
         "source": "%%generate --no-cache\nMultiply a number by seven and print it."},
    ], path="notebooks")
    run_cell_in_place(page, 0)
    run_cell_in_place(page, 1)
    wait_until(lambda: len(generated(page)) == 1, "the generated cell in Notebook 7")
    page.wait_for_selector(".llmscript-badge", timeout=TIMEOUT_MS)
    nb = cells(page)
    assert [c["id"] for c in nb][:2] == ["load", "gen-src"]
    assert nb[2]["source"].strip() == last_code(standin).strip()
    assert nb[2]["metadata"]["llmscript"]["source_cell"] == "gen-src"
    assert sum(last_code(standin).strip() in c["source"] for c in nb) == 1
    assert_badge_visible(page, 2)
    first_id = nb[2]["id"]
    screenshot(page, "nb7-1-generated")

    run_cell_in_place(page, 1)
    wait_until(lambda: generated(page)[0]["source"].strip() == last_code(standin).strip()
               and generated(page)[0]["source"].strip() != nb[2]["source"].strip(),
               "replacement in Notebook 7")
    assert [c["id"] for c in generated(page)] == [first_id]
    assert len(cells(page)) == len(nb)
    screenshot(page, "nb7-2-replaced")
