"""Build the demo notebooks and record their generations.

No model is reachable from the build machines, so the replies are scripted
(written the way Claude answers) and served by the local stand-in of the
Messages API in ``tests/standins.py``; everything after that is the real
pipeline: the anthropic SDK, extraction, validation, the Docker sandbox. The
saved notebooks carry their recordings and re-run offline with
``llmscript run --replay``.

    .venv/bin/python notebooks/record.py [NAME ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from demo_content import NOTEBOOKS  # noqa: E402
from standins import TEST_ANTHROPIC_KEY, AnthropicStandIn  # noqa: E402

from llmscript_magic._cli.headless import EXPECT_FAIL_TAG  # noqa: E402


def build(name: str) -> Path:
    cells, replies = NOTEBOOKS[name]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for kind, source in cells:
        maker = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = maker(source)
        if kind == "code-expect-fail":
            cell.metadata["tags"] = [EXPECT_FAIL_TAG]
        nb.cells.append(cell)
    with AnthropicStandIn() as standin, tempfile.TemporaryDirectory() as work:
        for reply in replies:
            standin.enqueue(reply, chunk_size=40)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env.update(ANTHROPIC_BASE_URL=standin.url, ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY,
                   LLMSCRIPT_CACHE_DIR=str(Path(work) / "cache"))
        # No widget state, as JupyterLab saves by default: the saved results (rich.py)
        # show code, checks, output and charts from the file alone.
        NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=False,
                       resources={"metadata": {"path": work}}).execute(env=env)
        if standin.pending:
            raise SystemExit(f"{name}: {standin.pending} scripted replies were not used")
    out = HERE / f"{name}.ipynb"
    text = nbformat.writes(nb)
    if TEST_ANTHROPIC_KEY in text:
        raise SystemExit(f"{name}: the key leaked into the notebook")
    out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    for name in sys.argv[1:] or list(NOTEBOOKS):
        print(build(name))
