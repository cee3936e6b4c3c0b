"""Whole notebooks on a real ipykernel through nbclient: payload, recording, offline replay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from standins import TEST_ANTHROPIC_KEY

CODE = "total = sum(range(10))\nprint(f'total={total}')\n"
REPLY = f"Sure.\n\n```python\n{CODE}```\n"
ROOT = Path(__file__).resolve().parent.parent


def _notebook(spec: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext llmscript_magic\n"
                                  "%config GenerateMagics.widgets = False"),
        nbformat.v4.new_code_cell(f"%%generate\n{spec}"),
    ]
    return nb


def _kernel_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LLMSCRIPT_CACHE_DIR"] = str(tmp_path / "cache")
    env.update(extra)
    return env


def test_generate_cell_sends_insert_payload_and_records(tmp_path: Path,
                                                        anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(REPLY)
    nb = _notebook("Sum the numbers 0..9 and print the total.")
    replies: dict[int, Any] = {}

    def on_done(cell: Any, cell_index: int, execute_reply: Any) -> None:
        replies[cell_index] = execute_reply

    client = NotebookClient(nb, timeout=60, kernel_name="python3", on_cell_executed=on_done,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=_kernel_env(tmp_path, ANTHROPIC_BASE_URL=anthropic_standin.url,
                                   ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY))
    payloads = replies[1]["content"]["payload"]
    assert len(payloads) == 1
    payload = payloads[0]
    assert payload["source"] == "set_next_input" and payload["replace"] is False
    assert payload["text"] == CODE
    meta = payload["llmscript"]
    assert meta["model"] == "anthropic:claude-sonnet-5-5" and meta["validation"] == "pass"
    assert meta["record"]["code"] == CODE
    # the record is saved in the notebook too (output metadata), and holds no key
    saved = nbformat.writes(nb)
    assert TEST_ANTHROPIC_KEY not in saved
    records = [o["metadata"]["llmscript"]["record"] for o in nb.cells[1].outputs
               if "llmscript" in o.get("metadata", {})]
    assert records and records[0]["replies"][0]["reply"] == REPLY


def test_saved_notebook_replays_offline_without_key(tmp_path: Path,
                                                    anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(REPLY)
    recorded = tmp_path / "recorded.ipynb"
    nb = _notebook("Sum the numbers 0..9 and print the total.")
    NotebookClient(nb, timeout=60, kernel_name="python3").execute(
        env=_kernel_env(tmp_path, ANTHROPIC_BASE_URL=anthropic_standin.url,
                        ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY))
    nbformat.write(nb, recorded)
    url = anthropic_standin.url
    anthropic_standin.stop()  # nothing answers at that address any more

    out = tmp_path / "replayed.ipynb"
    env = _kernel_env(tmp_path / "fresh", ANTHROPIC_BASE_URL=url)
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "run", str(recorded),
                           "--replay", "-o", str(out)], capture_output=True, text=True, env=env,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replayed = nbformat.read(out, as_version=4)
    texts = "".join(o.get("data", {}).get("text/plain", "") for o in replayed.cells[1].outputs)
    assert "from replay" in texts and "total = sum(range(10))" in texts
    assert "ok" in proc.stdout.splitlines()[-1]

    # the same notebook with an edited spec is reported, not silently replayed
    nb2 = nbformat.read(recorded, as_version=4)
    nb2.cells[1].source = "%%generate\nSum the numbers 0..99 and print the total."
    nbformat.write(nb2, recorded)
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "run", str(recorded),
                           "--replay", "-o", str(out)], capture_output=True, text=True, env=env,
                          timeout=180)
    assert proc.returncode == 1
    assert "changed since they were recorded" in proc.stdout
