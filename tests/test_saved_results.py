"""What %%generate leaves in the notebook: a result that survives reopening, files on disk.

Real kernels through nbclient (run, save, reopen, run again with a new kernel),
real ``jupyter nbconvert --to html``, the real local sandbox; the model is the
Anthropic stand-in. The browser side (JupyterLab, Notebook 7) is in
``test_browser_reopen.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from llmscript_magic._notebook.save_files import save_files
from llmscript_magic._sandbox import OutputFile

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

CHART = '''\
import json

import matplotlib
import matplotlib.pyplot as plt

totals = {"north": 110.5, "south": 80.0}
plt.bar(list(totals), list(totals.values()))
plt.title("Revenue by region")
plt.savefig("chart.png")
with open("totals.json", "w") as f:
    json.dump(totals, f)
print("regions:", len(totals))
'''


def fenced(code: str) -> str:
    return f"Here you go:\n\n```python\n{code}```\n"


def out(name: str, data: bytes) -> OutputFile:
    return OutputFile(name, len(data), data)


# -- files in llmscript-files/ beside the notebook ---------------------------------------
FILES = "llmscript-files"


def test_files_are_saved_and_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "totals.json").write_text("mine")
    entries = save_files([out("totals.json", b"{}"), out("report/summary.txt", b"ok")],
                         tmp_path)
    assert (tmp_path / "totals.json").read_text() == "mine"  # the user's file is untouched
    assert (tmp_path / "totals (1).json").read_bytes() == b"{}"
    assert (tmp_path / "report" / "summary.txt").read_bytes() == b"ok"
    first, second = entries
    assert first["status"] == "renamed" and first["path"].endswith("totals (1).json")
    assert "totals.json exists" in first["note"] and "--overwrite" in first["note"]
    assert second["status"] == "saved" and second["path"].endswith("summary.txt")
    again = save_files([out("totals.json", b"{}")], tmp_path)  # a second copy? no: a third
    assert again[0]["path"].endswith("totals (2).json")
    same = save_files([out("report/summary.txt", b"ok")], tmp_path)  # same bytes: no copy
    assert same[0]["status"] == "unchanged" and not (tmp_path / "report" /
                                                      "summary (1).txt").exists()


def test_overwrite_replaces_only_what_this_cell_saved(tmp_path: Path) -> None:
    (tmp_path / "totals.json").write_text("the analyst's")
    [entry] = save_files([out("totals.json", b"new")], tmp_path, overwrite=True, owner="cell-a")
    assert entry["status"] == "renamed" and "this cell did not save it" in entry["note"]
    assert (tmp_path / "totals.json").read_text() == "the analyst's"
    [mine] = save_files([out("mine.json", b"1")], tmp_path, owner="cell-a")
    assert mine["status"] == "saved"
    [other] = save_files([out("mine.json", b"2")], tmp_path, overwrite=True, owner="cell-b")
    assert other["status"] == "renamed" and (tmp_path / "mine.json").read_text() == "1"
    [again] = save_files([out("mine.json", b"3")], tmp_path, overwrite=True, owner="cell-a")
    assert again["status"] == "replaced" and (tmp_path / "mine.json").read_text() == "3"
    [kept] = save_files([out("x.txt", b"1")], tmp_path, save=False)
    assert kept["path"] is None and "--no-files" in kept["note"]
    assert not (tmp_path / "x.txt").exists()


def test_names_stay_inside_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "link").symlink_to(outside, target_is_directory=True)
    (target / "data.csv").symlink_to(outside / "data.csv")
    entries = save_files([out("../escape.txt", b"x"), out("/etc/evil", b"x"),
                          out("link/through.txt", b"x"), out("data.csv", b"x"),
                          out("__llmscript_job.json", b"{}")], target, overwrite=True)
    assert [e["name"] for e in entries] == ["../escape.txt", "/etc/evil", "link/through.txt",
                                            "data.csv"]  # the harness's file is not listed
    assert all(e["path"] is None for e in entries), entries
    assert list(outside.iterdir()) == []  # nothing landed outside, not even through a link
    assert not (tmp_path / "escape.txt").exists()
    assert "outside the folder" in entries[0]["note"]
    assert "not a plain folder" in entries[2]["note"]
    assert "never replaced" in entries[3]["note"]


def test_magic_saves_files_in_their_own_folder(ip: Any, anthropic_standin: Any,
                                               tmp_path: Path) -> None:
    """Files land in llmscript-files/, never the kernel's working folder; --files-to . is
    the explicit way to put data files next to the notebook."""
    anthropic_standin.enqueue(fenced(CHART))
    (tmp_path / "totals.json").write_text("the analyst's own")
    assert ip.run_cell("%%generate --run --sandbox local --no-insert\nPlot revenue.").success
    assert (tmp_path / "totals.json").read_text() == "the analyst's own"
    assert json.loads((tmp_path / FILES / "totals.json").read_text()) == {"north": 110.5,
                                                                        "south": 80.0}
    assert (tmp_path / FILES / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert {FILES, "totals.json"} <= {p.name for p in tmp_path.iterdir()}
    assert not any(p.suffix in (".png", ".json") and p.name != "totals.json"
                   for p in tmp_path.iterdir())
    anthropic_standin.enqueue(fenced(CHART))
    folder = tmp_path / "results"
    assert ip.run_cell(f"%%generate --run --sandbox local --no-insert --files-to {folder}\n"
                       "Plot revenue again.").success
    assert (folder / "totals.json").is_file() and (folder / "chart.png").is_file()
    anthropic_standin.enqueue(fenced(CHART))
    assert ip.run_cell("%%generate --run --sandbox local --no-insert --files-to .\n"
                       "Plot revenue next to the notebook.").success
    assert (tmp_path / "chart.png").is_file() and (tmp_path / "totals (1).json").is_file()
    anthropic_standin.enqueue(fenced(CHART.replace("110.5", "1.0")))
    assert ip.run_cell("%%generate --run --sandbox local --no-insert --no-files\n"
                       "Plot revenue a third way.").success
    assert not (tmp_path / FILES / "totals (1).json").exists()


# -- the result survives reopening -------------------------------------------------------
def _run(nb: Any, folder: Path) -> None:
    from nbclient import NotebookClient

    # store_widget_state=False: what JupyterLab saves by default (no widget state)
    NotebookClient(nb, timeout=180, kernel_name="python3", store_widget_state=False,
                   resources={"metadata": {"path": str(folder)}}).execute()


def _result(cell: Any) -> Any:
    [result] = [o for o in cell.outputs if "text/html" in o.get("data", {})]
    return result


def test_saved_notebook_shows_code_checks_output_and_chart(anthropic_standin: Any,
                                                           tmp_path: Path) -> None:
    anthropic_standin.enqueue(fenced(CHART))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext llmscript_magic"),
                nbformat.v4.new_code_cell("%%generate --run --sandbox local --no-insert\n"
                                          "Plot revenue per region, write totals.json.")]
    os.environ["LLMSCRIPT_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        _run(nb, tmp_path)
    finally:
        del os.environ["LLMSCRIPT_CACHE_DIR"]
    path = tmp_path / "analysis.ipynb"
    nbformat.write(nb, path)

    saved = nbformat.read(path, as_version=4)  # reopened: no kernel, no widget model
    cell = saved.cells[1]
    stray = [o.get("text") for o in cell.outputs if o.output_type == "stream"]
    assert not stray, f"the saved cell has stray output: {stray}"  # said in full
    widget, result, figure = cell.outputs
    assert set(widget.data) == {WIDGET_MIME}  # no second copy of the text
    assert widget.metadata["llmscript"]["record"]["code"] == CHART  # replay reads it here
    assert result.metadata["llmscript"]["record"]["code"] == CHART
    assert set(result.data) == {"text/html", "text/markdown", "text/plain"}
    html = result.data["text/html"]
    assert "savefig" in html and "Revenue by region" in html  # the code, highlighted
    assert "llmscript-check llmscript-pass" in html and "<b>syntax</b>" in html
    assert "regions: 2" in html and "exit code 0" in html
    assert "totals.json" in html and f"saved as {FILES}/totals.json" in html
    assert "```python\n" + CHART.rstrip() in result.data["text/markdown"]
    assert "regions: 2" in result.data["text/plain"]
    assert figure.data["image/png"] and figure.output_type == "display_data"
    assert (tmp_path / FILES / "totals.json").is_file()
    assert (tmp_path / FILES / "chart.png").is_file()

    html_out = tmp_path / "analysis.html"
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                    str(path), "--output", html_out.stem], check=True, capture_output=True,
                   timeout=120)
    page = html_out.read_text(encoding="utf-8")
    assert "savefig" in page and "regions: 2" in page  # the code and the stdout
    assert "llmscript-check llmscript-pass" in page  # the checklist
    assert re.search(r'<img[^>]* src="data:image/png;base64,', page)  # the chart
    assert "Error displaying widget" not in page

    # run again with a new kernel (the cache answers): the same result, no pile-up of files
    before = sorted(p.name for p in tmp_path.iterdir())
    os.environ["LLMSCRIPT_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        _run(saved, tmp_path)
    finally:
        del os.environ["LLMSCRIPT_CACHE_DIR"]
    again = _result(saved.cells[1])
    assert again.metadata["llmscript"]["record"]["code"] == CHART
    assert "regions: 2" in again.data["text/plain"]
    assert "same content" in again.data["text/plain"]  # totals.json was already there
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / FILES).iterdir()) == [
        ".llmscript-manifest.json", "chart.png", "totals.json"]
    assert anthropic_standin.request_count == 1


def test_text_view_leaves_the_same_result(ip: Any, anthropic_standin: Any) -> None:
    """Without widgets (a terminal, or widgets=False) the same rich result is displayed."""
    from IPython.utils.capture import capture_output

    anthropic_standin.enqueue(fenced(CHART))
    with capture_output() as captured:
        assert ip.run_cell("%%generate --run --sandbox local --no-insert\nPlot.").success
    bundles = [o.data for o in captured.outputs]
    [result] = [o for o in captured.outputs if "text/html" in o.data]
    assert "regions: 2" in result.data["text/plain"]
    assert "llmscript-result" in result.data["text/html"]
    assert any("image/png" in b for b in bundles)
    assert result.metadata["llmscript"]["record"]["code"] == CHART


def test_a_failed_run_saves_nothing_and_says_why(ip: Any, anthropic_standin: Any,
                                                 tmp_path: Path) -> None:
    from IPython.utils.capture import capture_output

    anthropic_standin.enqueue(fenced("open('half.txt', 'w').write('partial')\n"
                                     "raise SystemExit(3)\n"))
    with capture_output() as captured:
        ip.run_cell("%%generate --run --sandbox local --no-insert --retries 0\nWrite half.txt.")
    assert not (tmp_path / "half.txt").exists() and not (tmp_path / FILES).exists()
    [result] = [o for o in captured.outputs if "text/html" in o.data]
    assert "half.txt" in result.data["text/plain"]
    assert "kept in the result only: the run did not succeed" in result.data["text/html"]
