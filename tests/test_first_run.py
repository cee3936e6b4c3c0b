"""A first run on a new machine: what is missing is said at once, in one line, with the fix.

``%load_ext`` in a real kernel says when there is no key or no Docker engine; a
``--run`` cell checks the engine before it pays for a request; the no-key error of an
interactive cell says how to set the key, not how to run papermill.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient
from standins import TEST_ANTHROPIC_KEY

BIN = Path(sys.executable).parent


def _kernel_outputs(tmp_path: Path, *cells: str, cell_ids: bool = False,
                    **env: str) -> list[list[Any]]:
    """Run cells in a real kernel (sending cell ids as JupyterLab does when asked)."""

    class Client(NotebookClient):
        async def async_execute_cell(self, cell: Any, *args: Any, **kwargs: Any) -> Any:
            if cell_ids and self.kc is not None:
                self.kc.session.metadata = {"cellId": cell.get("id")}
            return await super().async_execute_cell(cell, *args, **kwargs)

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    base = {k: v for k, v in os.environ.items()
            if not k.endswith("_API_KEY") and k not in ("DOCKER_HOST", "JPY_SESSION_NAME",
                                                        "LLMSCRIPT_REPLAY")}
    Client(nb, timeout=120, kernel_name="python3", allow_errors=True,
           resources={"metadata": {"path": str(tmp_path)}}).execute(
        env={**base, "LLMSCRIPT_WARMUP": "0", "LLMSCRIPT_CACHE_DIR": str(tmp_path / "c"),
             "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}", **env})
    return [cell.outputs for cell in nb.cells]


def _text(outputs: list[Any]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def test_load_ext_says_in_one_line_there_is_no_key_and_no_engine(tmp_path: Path) -> None:
    [outputs] = _kernel_outputs(tmp_path, "%load_ext llmscript_magic",
                                DOCKER_HOST=f"unix://{tmp_path}/docker.sock")
    lines = _text(outputs).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("llmscript-magic: no API key for anthropic: set "
                               "ANTHROPIC_API_KEY in the kernel's environment")
    assert f"no Docker engine for --run (nothing at {tmp_path}/docker.sock)" in lines[0]
    assert lines[0].endswith("or use --sandbox local.")


def test_load_ext_is_silent_when_key_and_engine_are_there(tmp_path: Path) -> None:
    socket_path = tmp_path / "docker.sock"
    socket_path.touch()  # stands for the engine's socket: only its presence is checked
    [outputs] = _kernel_outputs(tmp_path, "%load_ext llmscript_magic",
                                ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY,
                                DOCKER_HOST=f"unix://{socket_path}")
    assert _text(outputs) == ""
    [outputs] = _kernel_outputs(tmp_path, "%load_ext llmscript_magic",
                                ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY,
                                DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    assert _text(outputs).count("\n") == 1 and "no API key" not in _text(outputs)


def test_a_run_cell_checks_the_engine_before_asking_the_model(
        ip: InteractiveShell, anthropic_standin: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    anthropic_standin.enqueue("```python\nprint(1)\n```")
    result = ip.run_cell("%%generate --run\nPrint one.")
    assert not result.success
    message = str(result.error_in_exec)
    assert message.startswith("Docker engine not reachable") and "\n" not in message
    assert "--sandbox local" in message
    assert anthropic_standin.request_count == 0  # nothing was paid for


def test_the_interactive_no_key_error_does_not_mention_papermill(tmp_path: Path) -> None:
    outputs = _kernel_outputs(tmp_path, "%load_ext llmscript_magic\n"
                              "%config GenerateMagics.widgets = False",
                              "%%generate\nPrint one.", cell_ids=True)
    errors = [o for o in outputs[1] if o.get("output_type") == "error"]
    assert len(errors) == 1
    assert errors[0]["evalue"].startswith("No API key for anthropic: set the ANTHROPIC_API_KEY")
    assert "papermill" not in errors[0]["evalue"] and "LLMSCRIPT_REPLAY" not in \
        errors[0]["evalue"]
