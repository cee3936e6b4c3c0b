"""Honest status in real JupyterLab: a slow acknowledgement is not a missing extension.

The widget waits ``INSERT_WAIT`` for the extension's answer to Regenerate's insert. Set
to 0 here, the answer always comes late, as on a busy machine: the widget must not
claim the extension is missing, and must say the cell was inserted once the late
answer arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import KERNEL_IDLE_JS, LabServer, StandIn, require_browser_stack, screenshot

pytestmark = pytest.mark.browser

TIMEOUT_MS = 90_000
REPLIES = [{"text": "```python\nprint('first')\n```\n"},
           {"text": "```python\nprint('second')\n```\n"},
           {"text": "```python\nprint('broken'\n```\n"},  # a11y: attempt 1 fails ...
           {"text": "```python\nprint('fixed')\n```\n"}]  # ... attempt 2 passes
CELLS_JS = """() => Array.from(window.jupyterapp.shell.currentWidget.content.model.cells)
  .map(c => ({source: c.sharedModel.getSource(), tags: c.getMetadata('tags') || []}))"""


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    require_browser_stack()
    server = StandIn(tmp_path_factory.mktemp("status-standin"), REPLIES)
    yield server
    server.stop()


def cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


def test_late_acknowledgement_is_not_a_missing_extension(page: Any, lab: LabServer) -> None:
    lab.write_notebook("status.ipynb", [
        cell("%load_ext llmscript_magic\nfrom llmscript_magic._ui.widget import WidgetView\n"
             "WidgetView.INSERT_WAIT = 0.0  # every answer is late, as on a busy machine"),
        cell("%%generate --no-cache\nPrint a word.")])
    page.goto(f"{lab.url}/lab/tree/status.ipynb?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    widget = page.locator(".jp-Notebook .llmscript-widget")
    widget.get_by_role("button", name="Regenerate").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    widget.get_by_role("button", name="Regenerate").click()
    notice = widget.locator(".llmscript-notice")
    page.wait_for_function("""() => { const n = document.querySelector(
        '.llmscript-widget .llmscript-notice'); return n && n.innerText.includes(
        'The generated cell below holds this code'); }""", timeout=TIMEOUT_MS)
    screenshot(page, "status-late-ack")
    text = widget.inner_text()
    assert "not active" not in text and "No answer" not in notice.inner_text()
    generated = [c for c in page.evaluate(CELLS_JS) if "llmscript-generated" in c["tags"]]
    assert [c["source"].strip() for c in generated] == ["print('second')"]


# -- the saved result's code block in a dark theme (issue 25, point 9) --------------------
CODE = "import os\n\ndef total(xs):\n    # add them up\n    return sum(xs) + 1  # 'text'\n"
CONTRAST_JS = """(root) => {
  const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number)
      .map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05); };
  const pre = document.querySelector(root + ' .llmscript-code pre');
  const bg = getComputedStyle(pre).backgroundColor;
  const spans = Array.from(pre.querySelectorAll('span'))
    .filter(s => !s.style.userSelect && s.textContent.trim());
  const worst = Math.min(...spans.map(s => ratio(getComputedStyle(s).color, bg)),
                         ratio(getComputedStyle(pre).color, bg));
  const keyword = spans.find(s => s.textContent === 'def');
  const low = spans.filter(s => ratio(getComputedStyle(s).color, bg) < 3)
    .map(s => s.textContent + ' ' + getComputedStyle(s).color + ' ' + s.style.color);
  return {bg, worst, low, keyword: getComputedStyle(keyword).color,
          theme: getComputedStyle(document.body)
            .getPropertyValue('--jp-mirror-editor-keyword-color').trim()};
}"""


def _code_notebook() -> list[dict[str, Any]]:
    from llmscript_magic._ui.widget_html import code_html

    out = {"output_type": "display_data", "metadata": {},
           "data": {"text/html": f'<div class="llmscript-result">{code_html(CODE)}</div>',
                    "text/plain": CODE}}
    return [{**cell("# the saved result"), "outputs": [out], "execution_count": 1}]


def _rgb(color: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in color[color.index("(") + 1:-1].split(",")[:3])


def test_code_block_reads_in_the_dark_theme_and_without_one(
        page: Any, lab: LabServer, tmp_path: Any) -> None:
    import subprocess
    import sys

    themes = lab.home / "settings" / "@jupyterlab" / "apputils-extension"
    (themes / "themes.jupyterlab-settings").write_text('{"theme": "JupyterLab Dark"}')
    lab.write_notebook("dark.ipynb", _code_notebook())
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(lab.root / "dark.ipynb")],
                   check=True, capture_output=True, env=lab.env, timeout=120)
    page.goto(f"{lab.url}/lab/tree/dark.ipynb?reset")
    page.wait_for_selector(".jp-Notebook .llmscript-code pre", timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                           timeout=TIMEOUT_MS)
    facts = page.evaluate(CONTRAST_JS, ".jp-Notebook")
    screenshot(page, "theme-lab-dark")
    assert sum(_rgb(facts["bg"])) < 3 * 100, facts  # a dark background, from the theme
    assert facts["worst"] >= 3.0, facts  # every token reads on it
    assert facts["theme"] and _rgb(facts["keyword"]) != (156, 92, 204), facts  # the theme's

    # nbconvert's dark HTML, and a page with no theme at all (GitHub, mail): fallbacks
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--theme",
                    "dark", "--output-dir", str(tmp_path), str(lab.root / "dark.ipynb")],
                   check=True, capture_output=True, timeout=300)
    page.goto((tmp_path / "dark.html").as_uri())
    page.wait_for_selector(".llmscript-code pre")
    facts = page.evaluate(CONTRAST_JS, "body")
    assert sum(_rgb(facts["bg"])) < 3 * 100 and facts["worst"] >= 3.0, facts
    bare = tmp_path / "bare.html"
    bare.write_text(_code_notebook()[0]["outputs"][0]["data"]["text/html"])
    page.goto(bare.as_uri())
    facts = page.evaluate(CONTRAST_JS, "body")
    assert facts["worst"] >= 3.0 and not facts["theme"], facts


# -- accessibility, read from Chromium's own accessibility tree (issue 25, point 10) -------
PRIVATE_USE = range(0xE000, 0xF900)  # icon-font glyphs


def _ax_tree(page: Any) -> list[dict[str, Any]]:
    cdp = page.context.new_cdp_session(page)
    nodes: list[dict[str, Any]] = cdp.send("Accessibility.getFullAXTree")["nodes"]
    cdp.detach()
    return nodes


def _value(node: dict[str, Any], key: str) -> str:
    return str((node.get(key) or {}).get("value", ""))


def _text_under(nodes: list[dict[str, Any]], node: dict[str, Any]) -> str:
    by_id = {n["nodeId"]: n for n in nodes}
    out, todo = [], list(node.get("childIds", []))
    while todo:
        child = by_id.get(todo.pop(0))
        if child is None:
            continue
        if _value(child, "role") in ("StaticText", "text"):
            out.append(_value(child, "name"))
        todo = list(child.get("childIds", [])) + todo
    return " ".join(out)


def test_widget_accessibility_tree(page: Any, lab: LabServer) -> None:
    themes = lab.home / "settings" / "@jupyterlab" / "apputils-extension"
    (themes / "themes.jupyterlab-settings").unlink(missing_ok=True)  # back to the light theme
    lab.write_notebook("a11y.ipynb", [
        cell("%load_ext llmscript_magic"),
        cell("%%generate --no-cache --retries 1\nPrint a word.")])
    page.goto(f"{lab.url}/lab/tree/a11y.ipynb?reset")
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    widget = page.locator(".jp-Notebook .llmscript-widget")
    widget.get_by_role("button", name="Regenerate").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=TIMEOUT_MS)
    nodes = _ax_tree(page)

    statuses = [n for n in nodes if _value(n, "role") == "status"]
    said = [_text_under(nodes, n) for n in statuses]
    assert any("anthropic:claude" in t and "tokens" in t for t in said), said  # announced
    live = [p for n in statuses for p in n.get("properties", []) if p["name"] == "live"]
    assert live and all(p["value"]["value"] == "polite" for p in live), live

    buttons = {_value(n, "name") for n in nodes if _value(n, "role") == "button"}
    assert {"Previous", "Next", "Regenerate", "Run in sandbox", "Insert copy below"} <= buttons
    glyphs = [b for b in buttons if any(ord(ch) in PRIVATE_USE for ch in b)]
    assert not glyphs, glyphs  # no icon-font glyph in any button's name

    # keyboard focus on a widget button shows a clear ring
    widget.get_by_role("button", name="Previous").click()
    page.keyboard.press("Tab")
    ring = page.evaluate("""() => { const el = document.activeElement, s = getComputedStyle(el);
        return {text: el.innerText, style: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }""")
    screenshot(page, "a11y-focus-ring")
    assert ring["style"] not in ("none", "") and ring["width"] >= 2, ring


# -- reopened without the widget's model: no stale "Loading widget..." (issue 25, point 7) --
def _saved_widget_notebook(path: Any) -> None:
    import json

    from llmscript_magic._ui.rich import LIVE_CSS, RESULT_CLASS, WIDGET_MIME

    widget = {"output_type": "display_data", "metadata": {},
              "data": {WIDGET_MIME: {"model_id": "0123456789abcdef", "version_major": 2,
                                     "version_minor": 0}}}
    result = {"output_type": "display_data", "metadata": {},
              "data": {"text/html": f'<style>{LIVE_CSS}</style><div class="{RESULT_CLASS}">'
                                    "SAVED RESULT</div>", "text/plain": "SAVED RESULT"}}
    nb = {"cells": [{"cell_type": "code", "id": "gen", "metadata": {}, "execution_count": 2,
                     "source": "%%generate\nPrint a word.", "outputs": [widget, result]}],
          # a kernel this server does not have: the widget manager never arrives
          "metadata": {"kernelspec": {"name": "gone", "display_name": "Gone",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_no_stale_loading_widget_above_a_saved_result(
        page: Any, app: str, request: pytest.FixtureRequest) -> None:
    import subprocess
    import sys

    server: LabServer = request.getfixturevalue("lab" if app == "lab" else "notebook7")
    _saved_widget_notebook(server.root / "saved.ipynb")
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(server.root / "saved.ipynb")],
                   check=True, capture_output=True, env=server.env, timeout=120)
    page.goto(f"{server.url}/lab/tree/saved.ipynb?reset" if app == "lab"
              else f"{server.url}/notebooks/saved.ipynb")
    page.locator(".jp-Notebook .llmscript-result").wait_for(timeout=TIMEOUT_MS)
    loading = page.locator(".jp-Notebook .jp-OutputArea-output", has_text="Loading widget")
    assert loading.count() == 1  # the widget renderer is there, still waiting ...
    page.wait_for_timeout(3000)
    screenshot(page, f"saved-no-loading-{app}")
    shown = page.evaluate("() => document.querySelector('.jp-Notebook').innerText")
    assert "Loading widget" not in shown and "Error displaying widget" not in shown, shown
    assert "SAVED RESULT" in shown

