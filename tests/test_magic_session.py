"""``%%generate --run --session`` and ``%llmscript session`` through a real InteractiveShell.

The model is the FakeProvider (the provider is not the subject); the sandbox is
real at every isolation level. A headless notebook of ``--session`` cells,
recorded once against the Anthropic stand-in, replays offline with the same
results (``llmscript run --replay``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from replay_helpers import record_then_replay
from sandbox_fixtures import SANDBOX_FLAGS

from llmscript_magic._sandbox import sessions

SANDBOXES = SANDBOX_FLAGS


@pytest.fixture
def engine(engine_for: None) -> Iterator[None]:
    """The real engine (and gVisor) for the docker params; no session before or after."""
    sessions.reset()
    yield
    sessions.reset()


def _fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def _cell(ip: InteractiveShell, line: str, body: str = "") -> tuple[Any, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = ip.run_cell(f"{line}\n{body}" if body else line)
    return result, out.getvalue()


@pytest.mark.parametrize("flags", SANDBOXES)
def test_session_cells_share_state_until_reset(flags: str, engine: None, ip: InteractiveShell,
                                               fake: Any) -> None:
    gen = f"%%generate --model fake:m --no-insert --retries 0 --run --session {flags}"
    fake.enqueue(_fenced("import pandas as pd\n"
                         "sales = pd.DataFrame({'total': [10, 20, 11]})\nprint('loaded')"))
    result, shown = _cell(ip, gen, "Load the sales.")
    assert result.success, shown
    assert "loaded" in shown and "Session: a new session" in shown
    fake.enqueue(_fenced("print('sum', int(sales.total.sum()))"))
    result, shown = _cell(ip, gen + " --check 'True'", "Sum the sales.")
    assert result.success, shown
    assert "sum 41" in shown and "Session: session cell 2:" in shown
    _, status = _cell(ip, "%llmscript session")
    assert "session alive (" in status and "2 cells" in status
    _, cleared = _cell(ip, "%llmscript session reset")
    assert cleared.strip().startswith("session reset (") and "after 2 cells" in cleared
    assert "variables, files and processes are gone" in cleared
    _, status = _cell(ip, "%llmscript session status")
    assert status.strip().startswith("no session")
    fake.enqueue(_fenced("print('sales' in globals())"))
    _, shown = _cell(ip, gen, "Is it still there?")
    assert "False" in shown.split("--- stdout ---")[1]


def test_session_mistakes_are_one_line(ip: InteractiveShell, fake: Any) -> None:
    result, _ = _cell(ip, "%llmscript session forget")
    assert "Usage: %llmscript session [status] | %llmscript session reset" in str(
        result.error_in_exec)
    result, _ = _cell(ip, "%%generate --model fake:m --run --session --test 'f(1) == 1'",
                      "A function f.")
    assert str(result.error_in_exec) == ("--test judges the script in a fresh process, without "
                                         "the session's variables: drop --test or --session")
    assert fake.pending() == 0 and not fake.history  # said before any request


def test_a_recorded_session_notebook_replays_offline(tmp_path: Path) -> None:
    flags = "%%generate --run --session --sandbox local --retries 0"
    proc, out = record_then_replay(
        ["%load_ext llmscript_magic\n%config GenerateMagics.widgets = False",
         f"{flags}\nSet base to 40.",
         f"{flags} --check 'answer == 42' --output answer\nAdd 2 to base as answer."],
        [_fenced("base = 40"), _fenced("answer = base + 2\nprint('answer', answer)")],
        tmp_path, "analysis.ipynb", "--trust")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                   for o in out.cells[2].outputs)
    assert "answer 42" in text and "session cell 2:" in text
    assert "from replay" in text
