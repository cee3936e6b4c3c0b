"""Record a notebook's generations against the stand-in model, then replay it offline.

The way a user shares a notebook: run it once with a model (here the loopback
stand-in, through the real SDK and a real kernel), save it, and let someone else
run it with `llmscript run --replay` where no model answers (a closed port).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from standins import TEST_ANTHROPIC_KEY, AnthropicStandIn, closed_port


def record_then_replay(cells: Sequence[str], replies: Sequence[str], folder: Path, name: str,
                       *run_args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """(`llmscript run`'s process, the notebook it wrote) for code cells recorded with replies."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    base = {k: v for k, v in os.environ.items()
            if not k.endswith("_API_KEY") and k not in ("LLMSCRIPT_REPLAY", "JPY_SESSION_NAME")}
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        for reply in replies:
            standin.enqueue(reply)
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute(
            env={**base, "ANTHROPIC_BASE_URL": standin.url, "NO_PROXY": "127.0.0.1",
                 "ANTHROPIC_API_KEY": TEST_ANTHROPIC_KEY,
                 "LLMSCRIPT_CACHE_DIR": str(folder / "c1")})
    path = folder / name
    nbformat.write(nb, path)
    env = {**base, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{closed_port()}",
           "LLMSCRIPT_CACHE_DIR": str(folder / "c2"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"}
    out = folder / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "run", str(path),
                           "--replay", *run_args, "-o", str(out)], env=env, cwd=folder,
                          capture_output=True, text=True, timeout=300)
    return proc, nbformat.read(out, as_version=4) if out.exists() else None
