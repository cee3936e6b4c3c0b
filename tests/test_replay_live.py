"""Re-running a cell in a live kernel asks again unless its recording succeeded unchanged.

A live kernel is what JupyterLab starts: the server names the notebook
(``JPY_SESSION_NAME``) and every execute request carries the cell's id. There a
recorded generation answers only when it succeeded and what is sent (spec, notebook
data, options) is what was recorded; a failure, or a cell whose data changed, asks the
model again. Headless replays (papermill: no cell ids) stay exact, failures included.
The reply cache never serves a reply that gave no code. The real ``anthropic`` SDK
talks to the stand-in; a replay with no request made says how to ask again.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from standins import TEST_ANTHROPIC_KEY, AnthropicStandIn, closed_port

BIN = Path(sys.executable).parent
SPEC = "Print the number of rows in {rows}."
NO_CODE = "I am sorry, I cannot help with that."
GOOD = "Here it is.\n\n```python\nprint('counted', len(rows))\n```\n"


class LabLikeClient(NotebookClient):
    """Sends each cell's id with its execute request, as JupyterLab does."""

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any,
                                 **kwargs: Any) -> Any:
        if self.kc is not None:
            self.kc.session.metadata = {"cellId": cell.get("id")}
        return await super().async_execute_cell(cell, cell_index, *args, **kwargs)


def _notebook(rows: int) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext llmscript_magic\n"
                                          "%config GenerateMagics.widgets = False"),
                nbformat.v4.new_code_cell(f"rows = list(range({rows}))"),
                nbformat.v4.new_code_cell(f"%%generate --no-insert\n{SPEC}")]
    return nb


def _env(url: str, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and k not in ("LLMSCRIPT_REPLAY", "JPY_SESSION_NAME")}
    env.update(ANTHROPIC_BASE_URL=url, LLMSCRIPT_CACHE_DIR=str(cache), NO_PROXY="127.0.0.1",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra)
    return env


def _live_run(path: Path, url: str, cache: Path, key: bool = True) -> Any:
    """Run the saved notebook as a JupyterLab kernel would; save it; return it."""
    nb = nbformat.read(path, as_version=4)
    extra = {"JPY_SESSION_NAME": str(path)}
    if key:
        extra["ANTHROPIC_API_KEY"] = TEST_ANTHROPIC_KEY
    LabLikeClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                  resources={"metadata": {"path": str(path.parent)}}).execute(
        env=_env(url, cache, **extra))
    nbformat.write(nb, path)
    return nb


def _result(nb: Any) -> tuple[str | None, str | None, str]:
    """(source, code, text) of the %%generate cell's result."""
    cell = next(c for c in nb.cells if c.source.startswith("%%generate"))
    text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                   for o in cell.outputs)
    for output in cell.outputs:
        meta = output.get("metadata", {}).get("llmscript")
        if meta:
            return meta["summary"]["source"], meta["record"]["code"], text
    return None, None, text


@pytest.fixture
def failed_notebook(tmp_path: Path) -> Path:
    """A notebook whose generation failed (the model gave no code), saved with its record."""
    path = tmp_path / "analysis.ipynb"
    nbformat.write(_notebook(865), path)
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(NO_CODE)
        nb = _live_run(path, standin.url, tmp_path / "cache-1")
        assert standin.request_count == 1
    source, code, text = _result(nb)
    assert (source, code) == ("model", None), text
    return path


def test_a_failed_generation_is_asked_again_in_a_live_kernel(failed_notebook: Path,
                                                               tmp_path: Path) -> None:
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(GOOD)
        nb = _live_run(failed_notebook, standin.url, tmp_path / "cache-2")
        assert standin.request_count == 1  # not the recorded failure: the model was asked
    source, code, _ = _result(nb)
    assert source == "model" and code is not None and "len(rows)" in code


def test_a_success_replays_until_the_data_changes(failed_notebook: Path,
                                                  tmp_path: Path) -> None:
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(GOOD)
        _live_run(failed_notebook, standin.url, tmp_path / "cache-2")  # now it succeeded
    # unchanged, in a new kernel with no key and an empty cache: the recording answers
    nb = _live_run(failed_notebook, f"http://127.0.0.1:{closed_port()}", tmp_path / "cache-3",
                   key=False)
    source, code, text = _result(nb)
    assert source == "replay" and code is not None
    assert "from replay (no request made; --refresh asks the model again)" in text
    # the data the spec names changed (865 -> 1009 rows): what is sent differs, so ask again
    nb = nbformat.read(failed_notebook, as_version=4)
    nb.cells[1].source = "rows = list(range(1009))"
    nbformat.write(nb, failed_notebook)
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(GOOD)
        nb = _live_run(failed_notebook, standin.url, tmp_path / "cache-4")
        assert standin.request_count == 1
        assert "1009" in str(standin.last.body)
    assert _result(nb)[0] == "model"


def test_papermill_replays_a_failure_exactly(failed_notebook: Path, tmp_path: Path) -> None:
    """Headless replay (no cell ids) stays exact: the recorded failure, with no request."""
    out = tmp_path / "out.ipynb"
    env = _env(f"http://127.0.0.1:{closed_port()}", tmp_path / "cache-5")
    proc = subprocess.run([str(BIN / "papermill"), str(failed_notebook), str(out)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0  # the recorded failure, again
    assert "The model replied without code" in proc.stderr
    source, code, _ = _result(nbformat.read(out, as_version=4))
    assert (source, code) == ("replay", None)


# -- the reply cache, in a shell -------------------------------------------------------
def _generate(ip: Any, flags: str = "") -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(Exception):
        ip.run_cell_magic("generate", f"--model fake:m --no-insert {flags}".strip(),
                          "Print hello.")
    return out.getvalue()


def test_the_cache_never_serves_a_reply_without_code(ip: Any, fake: Any) -> None:
    fake.enqueue(NO_CODE)
    _generate(ip)
    fake.enqueue("```python\nprint('hello')\n```")
    shown = _generate(ip)
    assert len(fake.history) == 2  # the reply without code was asked again
    assert "print('hello')" in shown and "from cache" not in shown
    shown = _generate(ip)  # a reply with code is served from the cache, and says how to refresh
    assert len(fake.history) == 2
    assert "from cache (no request made; --refresh asks the model again)" in shown
