"""The ``--test`` judge as the sandbox runs it: its source and the names it uses.

``_pipeline/function_tests.py`` sends this program as the run's script (the
generated script and the tests' config go along as files) and reads the
verdicts from its marker line. The program itself lives in
``harness/function_tests.py``, with the code that runs inside the sandbox.
"""

from __future__ import annotations

from pathlib import Path

from .harness import function_tests as _judge

#: The start of the stdout line that carries the tests' results (JSON after it).
MARKER = _judge.MARKER
#: The work-dir names of the generated script and of the tests' config.
SCRIPT = _judge.SCRIPT
CONFIG = _judge.CONFIG


def program() -> str:
    """The judge's source: the script of a ``--test`` run."""
    return Path(_judge.__file__).read_text(encoding="utf-8")


__all__ = ["CONFIG", "MARKER", "SCRIPT", "program"]
