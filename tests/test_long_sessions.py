"""A kernel that generates all day: bounded history, old widgets released, warm start.

Sizes are measured by ``benchmarks/memory.py``; these tests check what a user sees:
``%llmscript usage`` keeps every row, a follow-up still finds its cell's previous
turn after many other generations, a re-run cell's old widget lets go of its data,
and the background preparation builds the SDK client the first generation uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from llmscript_magic._notebook.session import KEEP_GENERATIONS
from llmscript_magic.testing import FakeProvider

CODE = "print({n})\n"


def fenced(code: str) -> str:
    return f"Here it is:\n\n```python\n{code}```\n"


@pytest.fixture
def cells(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The running cell's id, as JupyterLab sends it with every execute request."""
    parent: dict[str, Any] = {"metadata": {}}
    monkeypatch.setattr(ip, "get_parent", lambda: parent, raising=False)
    yield parent["metadata"]


def generate(ip: InteractiveShell, fake: FakeProvider, cell: str, spec: str, n: int) -> None:
    fake.enqueue(fenced(CODE.format(n=n)))
    result = ip.run_cell(f"%%generate --model fake:fake --no-cache --no-insert\n{spec}")
    assert result.success, result.error_in_exec


def test_usage_keeps_every_row_while_history_keeps_the_newest(
        ip: InteractiveShell, fake: FakeProvider, cells: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    total = KEEP_GENERATIONS + 6
    for n in range(total):
        cells["cellId"] = f"cell-{n % 4}"
        generate(ip, fake, cells["cellId"], f"Print {n}.", n)
    session = ip.magics_manager.registry["GenerateMagics"].session
    assert len(session.history) == KEEP_GENERATIONS
    assert session.history[-1].code == CODE.format(n=total - 1)
    assert len(session.log) == total
    capsys.readouterr()
    ip.run_line_magic("llmscript", "usage")
    out = capsys.readouterr().out
    first = session.log[0].cell
    assert first in out and session.log[-1].cell in out


def test_follow_up_finds_its_cell_after_many_other_generations(
        ip: InteractiveShell, fake: FakeProvider, cells: dict[str, Any]) -> None:
    cells["cellId"] = "report"
    generate(ip, fake, "report", "Print the report header.", 1000)
    for n in range(KEEP_GENERATIONS + 3):
        cells["cellId"] = f"other-{n}"
        generate(ip, fake, cells["cellId"], f"Print {n}.", n)
    cells["cellId"] = "report"
    generate(ip, fake, "report", "now also print a footer", 1001)
    sent = fake.history[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "user"]
    assert "print(1000)" in sent[1].content  # the cell's own previous reply, not another's
    assert "Print the report header." in sent[0].content


def test_rerun_releases_the_old_widget(ip: InteractiveShell, fake: FakeProvider,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import comm
    from test_widgets import RecordingComm

    from llmscript_magic._ui.widget import WidgetView

    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    gm = ip.magics_manager.registry["GenerateMagics"]
    views: list[WidgetView] = []

    def view(cell: str, opts: Any) -> WidgetView:
        views.append(WidgetView(gm.session, cell, opts, source_cell="sales-cell"))
        return views[-1]

    monkeypatch.setattr(gm, "_view", view)
    generate(ip, fake, "sales-cell", "Print one.", 1)
    old = _tree(views[0].box)
    assert views[0].gen is not None and all(w.comm is not None for w in old)
    generate(ip, fake, "sales-cell", "Print two.", 2)
    assert views[0].gen is None and views[0].attempts == []
    assert all(w.comm is None for w in old)  # closed: ipywidgets no longer keeps them
    assert all(w.layout.comm is None for w in old)
    assert views[1].gen is not None and views[1].gen.code == CODE.format(n=2)
    assert all(w.comm is not None for w in _tree(views[1].box))


def _tree(widget: Any) -> list[Any]:
    return [widget, *(c for child in getattr(widget, "children", ()) for c in _tree(child))]


def test_preparation_builds_the_client_the_first_generation_uses(
        ip: InteractiveShell, anthropic_standin: Any) -> None:
    from llmscript_magic._notebook import warmup
    from llmscript_magic.providers.clients import client_count, close_clients

    assert warmup.start(ip) is None  # not a kernel: a terminal or test shell is left alone
    close_clients()
    ip.run_line_magic("config", 'GenerateMagics.sandbox = "local"')
    warmup.warm(ip)
    assert client_count() == 1
    anthropic_standin.enqueue(fenced("print(1)\n"))
    assert ip.run_cell("%%generate --no-cache --no-insert\nPrint one.").success
    assert client_count() == 1  # the generation used the prepared client, built no other
    assert anthropic_standin.request_count == 1
