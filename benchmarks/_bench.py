"""Shared plumbing of the benchmarks: the Messages-API stand-in out of process, medians,
targets.

The stand-in runs in its own process so its HTTP server does not share our GIL:
what we time is the pipeline, not the stand-in's Python. Every benchmark measures its
figures side by side in one run and exits non-zero when a target is missed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STANDIN_KEY = "sk-ant-benchmark-standin"


@contextmanager
def standin(replies: Sequence[str | dict[str, Any]], default: str | None = None,
            api: str = "anthropic") -> Iterator[dict[str, str]]:
    """Serve ``replies`` in order (then ``default``); yields the environment that points at it."""
    with tempfile.TemporaryDirectory(prefix="llmscript-bench-") as tmp:
        script = Path(tmp) / "replies.json"
        data: dict[str, Any] = {"replies": list(replies)}
        if default is not None:
            data["default"] = {"text": default}
        script.write_text(json.dumps(data))
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "standins"), api, "--port", "0",
             "--script", str(script), "--api-key", STANDIN_KEY],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            url = f"http://127.0.0.1:{port}"
            yield {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": STANDIN_KEY,
                   "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def use_env(env: dict[str, str]) -> None:
    """Point this process at the stand-in (and at no proxy)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "ANTHROPIC_AUTH_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(env)


def fenced(code: str) -> str:
    """A reply as a model writes it: a sentence, then the code in a python fence."""
    return f"Here is the script.\n\n```python\n{code.rstrip()}\n```\n"


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


def verdict(rows: list[tuple[str, float, float, str]]) -> int:
    """Print ``name  value  target`` rows; the exit status: 0 when every target is met."""
    ok = True
    for name, value, limit, unit in rows:
        met = value <= limit
        ok = ok and met
        print(f"  {'ok  ' if met else 'MISS'} {name:44s} {value:8.3f} {unit:3s} "
              f"(target <= {limit:g})")
    return 0 if ok else 1
