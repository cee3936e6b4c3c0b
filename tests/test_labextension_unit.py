"""Run the extension's TypeScript unit tests (labextension/test, node's test runner).

Needs Node.js and labextension/node_modules (scripts/build-labextension or
``pip install -e .`` provide both). Skips locally without them; fails in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parent.parent / "labextension"


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"TypeScript unit tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _jlpm() -> list[str]:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "jlpm", Path(sys.executable).parent / "jlpm"):
        if candidate.is_file():
            return [str(candidate)]
    found = shutil.which("jlpm")
    if found is None:
        _missing("jlpm not found (pip install jupyter-builder)")
    return [str(found)]


def test_typescript_unit_tests() -> None:
    if shutil.which("node") is None:
        _missing("Node.js is not installed")
    if not (EXT / "node_modules" / "typescript").is_dir():
        _missing("labextension/node_modules is missing: run scripts/build-labextension")
    done = subprocess.run(
        [*_jlpm(), "test"], cwd=EXT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = done.stdout + done.stderr
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert done.returncode == 0, output[-6000:]
    assert passed is not None and failed is not None, output[-6000:]
    assert int(failed.group(1)) == 0, output[-6000:]
    assert int(passed.group(1)) >= 20, output[-6000:]
