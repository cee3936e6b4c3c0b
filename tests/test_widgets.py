"""The %%generate widget: state through a recording comm, then a real kernel via nbclient.

In-process tests drive ``%%generate`` through a real InteractiveShell with the
widget view forced on (a plain shell has no kernel, so the magic would pick
text); what the front end would receive is read from the recorded comm traffic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from standins import TEST_ANTHROPIC_KEY

from llmscript_magic._ui.text import summary_text
from llmscript_magic.testing import FakeProvider

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATE_MIME = "application/vnd.jupyter.widget-state+json"

GOOD = '''\
import json

rows = [{"a": 1}, {"a": 2}]
print("total:", sum(r["a"] for r in rows))
with open("totals.json", "w") as f:
    json.dump({"a": 3}, f)
'''
FIGURE = '''\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

plt.plot([1, 2, 3])
plt.savefig("line.png")
print("plotted")
'''
BROKEN = "def total(rows:\n    return 0\n"


def fenced(code: str) -> str:
    return f"Here you go:\n\n```python\n{code}```\n"


class RecordingComm:
    """Stands where ipykernel's Comm would: keeps what would go to the front end."""

    all: list[RecordingComm] = []

    def __init__(self, target_name: str = "", data: Any = None, **_: Any) -> None:
        self.comm_id = uuid.uuid4().hex
        self.kernel = "recording"
        self.target_name, self.open_data = target_name, data
        self.sent: list[Any] = []
        self.closed = False
        self.msg_cb: Callable[[dict[str, Any]], None] | None = None
        self.close_cb: Callable[[dict[str, Any]], None] | None = None
        RecordingComm.all.append(self)

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.sent.append(data)

    def on_msg(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self.msg_cb = cb

    def on_close(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self.close_cb = cb

    def open(self, *_: Any, **__: Any) -> None:
        pass

    def close(self, *_: Any, **__: Any) -> None:
        self.closed = True

    def reply(self, data: dict[str, Any]) -> None:
        """What the JupyterLab extension sends back on its comm."""
        assert self.msg_cb is not None
        self.msg_cb({"content": {"comm_id": self.comm_id, "data": data}})


def updates(widget: Any, key: str) -> list[Any]:
    """Every value of ``key`` the widget sent to the front end, in order."""
    return [m["state"][key] for m in widget.comm.sent
            if m.get("method") == "update" and key in m.get("state", {})]


@pytest.fixture
def wv(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``%%generate`` with the widget view; yields {"view": last view, "displays": [...]}."""
    import comm

    from llmscript_magic._ui.widget import WidgetView

    RecordingComm.all.clear()
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    gm = ip.magics_manager.registry["GenerateMagics"]
    seen: dict[str, Any] = {"displays": []}

    def view(cell: str, opts: Any) -> WidgetView:
        seen["view"] = WidgetView(gm.session, cell, opts)
        return seen["view"]

    monkeypatch.setattr(gm, "_view", view)
    original = ip.display_pub.publish

    def publish(data: dict[str, Any], metadata: Any = None, *args: Any, **kw: Any) -> None:
        seen["displays"].append({"data": data, "metadata": metadata, **kw})
        original(data, metadata, *args, **kw)

    monkeypatch.setattr(ip.display_pub, "publish", publish)
    yield seen


def gen_cell(ip: InteractiveShell, line: str, spec: str = "Sum the rows.") -> Any:
    return ip.run_cell(f"%%generate {line}\n{spec}")


def test_stream_is_live_but_throttled(ip: InteractiveShell, wv: dict[str, Any],
                                      anthropic_standin: Any) -> None:
    reply = fenced(GOOD) + "It prints the total. " * 40
    anthropic_standin.enqueue(reply, chunk_size=2, chunk_delay=0.002)
    assert gen_cell(ip, "--no-insert").success
    view = wv["view"]
    streamed = updates(view.stream, "value")
    chunks = len(reply) // 2
    assert 2 <= len(streamed) < chunks / 4  # live, but not one message per chunk
    assert "It prints the total." in streamed[-1]  # the whole reply reached the front end
    statuses = updates(view.status, "value")
    assert any("claude-sonnet-5-5" in s and "s" in s for s in statuses[:3])
    assert any("Stop" in str(m) for m in view.stop.comm.open_data["state"].values())
    assert view.stream.layout.display == "none"  # replaced by the code once done


def test_display_carries_summary_and_exact_metadata(ip: InteractiveShell, wv: dict[str, Any],
                                                    anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--no-insert").success
    view = wv["view"]
    first = wv["displays"][0]
    widget = [d for d in wv["displays"] if WIDGET_MIME in d["data"]][-1]
    result = wv["displays"][-1]  # the persistent result, after the widget
    assert first["data"][WIDGET_MIME]["model_id"] == view.box.model_id
    assert widget["update"] is True and set(widget["data"]) == {WIDGET_MIME}  # said once, below
    for shown in (widget, result):
        record = shown["metadata"]["llmscript"]["record"]
        assert record == view.gen.record()
        assert shown["metadata"]["llmscript"]["summary"]["code_hash"] == view.gen.code_hash()
    assert set(result["data"]) == {"text/html", "text/markdown", "text/plain"}
    assert result["data"]["text/plain"] == summary_text(view.gen)
    assert "llmscript-result" in result["data"]["text/html"]
    assert "```python\n" + GOOD.rstrip("\n") + "\n```" in result["data"]["text/markdown"]


def test_code_and_checklist(ip: InteractiveShell, wv: dict[str, Any],
                            fake: FakeProvider) -> None:
    fake.enqueue(fenced("import subprocess\nsubprocess.run(['ls'])\nprint('done')\n"))
    assert gen_cell(ip, "--model fake:fake --no-insert").success
    view = wv["view"]
    assert "subprocess" in view.code.value and "color" in view.code.value  # highlighted
    checks = view.checklist.value
    assert "llmscript-check llmscript-pass" in checks and "<b>syntax</b>" in checks
    assert "llmscript-check llmscript-warn" in checks and "<b>risk:process</b>" in checks
    assert "(line 2)" in checks
    assert "fake:fake" in view.status.value and "est. $0.0000" in view.status.value
    assert view.nav.layout.display == "none"  # one attempt: nothing to step through


def test_attempt_history_steps_through_repairs(ip: InteractiveShell, wv: dict[str, Any],
                                               fake: FakeProvider) -> None:
    fake.enqueue(fenced(BROKEN))
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --no-insert --retries 1").success
    view = wv["view"]
    assert view.nav.layout.display == ""
    assert "Attempt 2 of 2" in view.nav_label.value and "passed" in view.nav_label.value
    assert "totals" in view.code.value and view.next.disabled
    view.prev.click()
    assert "Attempt 1 of 2" in view.nav_label.value and "failed" in view.nav_label.value
    assert "llmscript-fail" in view.checklist.value and "line 1" in view.checklist.value
    assert "return" in view.code.value
    assert view.prev.disabled and not view.next.disabled
    view.next.click()
    assert "Attempt 2 of 2" in view.nav_label.value


def test_run_panel_stdout_figure_and_files(ip: InteractiveShell, wv: dict[str, Any],
                                           fake: FakeProvider) -> None:
    fake.enqueue(fenced(FIGURE))
    assert gen_cell(ip, "--model fake:fake --no-insert --run --sandbox local").success
    view = wv["view"]
    panel = view.run_panel.value
    assert view.run_panel.layout.display == ""
    assert ">ok</span>" in panel and "exit code 0" in panel and "local sandbox" in panel
    assert "plotted" in panel
    assert 'download="line.png"' in panel and "data:application/octet-stream;base64," in panel
    assert len(view.figures.children) >= 1
    assert bytes(view.figures.children[0].value).startswith(b"\x89PNG")
    assert view.run_button.description == "Run again"


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_run_button_without_extension_runs_the_code_as_generated(
        ip: InteractiveShell, wv: dict[str, Any], fake: FakeProvider, tmp_path: Path) -> None:
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --no-insert --sandbox local").success
    view = wv["view"]
    view.INSERT_WAIT = 0.1
    assert view.run_panel.layout.display == "none"  # not run yet
    view.run_button.click()
    ask = RecordingComm.all[-1]
    assert ask.open_data["action"] == "source"  # asks the extension for the cell's text
    assert ask.open_data["llmscript"]["generation_id"] == view.gen.id
    # nobody answers: after INSERT_WAIT the code runs as generated, then the result follows
    wait_for(lambda: "as generated" in wv["displays"][-1]["data"].get("text/html", ""))
    assert "total: 3" in view.run_panel.value and "totals.json" in view.run_panel.value
    assert "Attempt 2 of 2 (as generated)" in view.nav_label.value
    assert "as generated" in view.notice.value and "<b>run</b>" in view.checklist.value
    assert (tmp_path / "llmscript-files" / "totals.json").read_text() == '{"a": 3}'  # saved
    result = wv["displays"][-1]  # the saved result follows the run
    assert result["update"] is True and "total: 3" in result["data"]["text/plain"]
    assert "as generated" in result["data"]["text/html"]
    assert result["metadata"]["llmscript"]["record"] == view.gen.record()  # kept for replay
    assert result["metadata"]["llmscript"]["files"][0]["path"] == "llmscript-files/totals.json"


def test_run_button_runs_the_edited_cell(ip: InteractiveShell, wv: dict[str, Any],
                                         fake: FakeProvider, tmp_path: Path) -> None:
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --no-insert --sandbox local").success
    view = wv["view"]
    view.INSERT_WAIT = 5.0
    view.run_button.click()
    edited = GOOD.replace('print("total:"', 'print("edited total:"')
    RecordingComm.all[-1].reply({"ok": True, "text": edited, "cell_id": "gen-1"})
    assert "edited total: 3" in view.run_panel.value
    assert view.current_code == edited
    assert "(your edited cell)" in view.nav_label.value
    assert "Ran your edited version" in view.notice.value
    result = wv["displays"][-1]
    assert "Ran your edited version" in result["data"]["text/plain"]
    assert "edited total: 3" in result["data"]["text/html"]

    view.run_button.click()  # the generated cell was deleted (or --no-insert): says so
    RecordingComm.all[-1].reply({"ok": False, "reason": "no generated cell below the "
                                                        "%%generate cell"})
    assert "Attempt 3 of 3 (as generated)" in view.nav_label.value
    assert "Ran the code as generated (no generated cell below" in view.notice.value


def test_long_output_is_capped_and_says_so(ip: InteractiveShell, wv: dict[str, Any],
                                           fake: FakeProvider) -> None:
    fake.enqueue(fenced("print('x' * 200_000)\n"))
    assert gen_cell(ip, "--model fake:fake --no-insert --run --sandbox local").success
    panel = wv["view"].run_panel.value
    assert "display cut at 64.0 KiB" in panel
    assert len(panel) < 80_000
    saved = wv["displays"][-1]["data"]  # what the notebook keeps: smaller, and says so
    assert "display cut at 16.0 KiB" in saved["text/html"] and len(saved["text/html"]) < 30_000
    assert "more not shown" in saved["text/markdown"] and len(saved["text/markdown"]) < 20_000
    assert "more bytes not shown" in saved["text/plain"] and len(saved["text/plain"]) < 20_000


def test_regenerate_asks_again_and_inserts(ip: InteractiveShell, wv: dict[str, Any],
                                           fake: FakeProvider) -> None:
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --no-insert").success
    view = wv["view"]
    view.INSERT_WAIT = 0.1
    fake.enqueue(fenced("print('second answer')\n"))
    view.regenerate_button.click()
    assert fake.pending() == 0 and len(fake.history) == 2
    assert "second answer" in view.code.value
    inserts = [c for c in RecordingComm.all if c.target_name == "llmscript"]
    assert len(inserts) == 1
    data = inserts[0].open_data
    assert data["action"] == "insert" and data["text"] == "print('second answer')\n"
    assert data["llmscript"]["record"]["code"] == "print('second answer')\n"
    assert data["llmscript"]["code_hash"] == view.gen.code_hash()
    last = wv["displays"][-1]  # the saved output follows the new generation
    assert last["metadata"]["llmscript"]["record"]["id"] == view.gen.id
    time.sleep(0.3)  # no answer yet (a busy front end?): the code to copy, no false claim
    assert "No answer from the JupyterLab extension yet" in view.notice.value
    assert "not active" not in view.notice.value
    assert view.fallback.value == "print('second answer')\n"
    assert view.fallback.layout.display == ""
    inserts[0].reply({"ok": True, "cell_id": "gen-1", "replaced": True})  # late: corrected
    assert "The generated cell below holds this code" in view.notice.value
    assert view.fallback.layout.display == "none"

    fake.enqueue(fenced("print('third answer')\n"))
    view.regenerate_button.click()
    ask = [c for c in RecordingComm.all if c.target_name == "llmscript"][-1]
    assert ask.close_cb is not None
    ask.close_cb({})  # the front end has no such comm target: now it is known
    assert "JupyterLab extension not active" in view.notice.value
    assert view.fallback.layout.display == ""


def test_insert_copy_with_extension_answer(ip: InteractiveShell, wv: dict[str, Any],
                                           fake: FakeProvider) -> None:
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --no-insert").success
    view = wv["view"]
    view.INSERT_WAIT = 0.2
    assert view.insert_button.description == "Insert copy below"
    view.insert_button.click()
    comm = RecordingComm.all[-1]
    assert comm.target_name == "llmscript" and comm.open_data["text"] == GOOD
    assert comm.open_data["action"] == "insert-copy"  # a new, unlinked cell
    assert "record" not in comm.open_data["llmscript"]
    comm.reply({"ok": True, "cell_id": "abc"})
    time.sleep(0.4)
    assert "Inserted a copy below" in view.notice.value
    assert view.fallback.layout.display == "none"
    assert comm.closed


def test_insert_refused_shows_reason(ip: InteractiveShell, wv: dict[str, Any],
                                     fake: FakeProvider) -> None:
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --no-insert").success
    view = wv["view"]
    view.insert_below()
    RecordingComm.all[-1].reply({"ok": False, "reason": "kept hand edits"})
    assert "Not inserted: kept hand edits." in view.notice.value
    assert view.fallback.value == GOOD


def test_copy_offers_the_code(ip: InteractiveShell, wv: dict[str, Any],
                              fake: FakeProvider) -> None:
    fake.enqueue(fenced('print("<b>&")\n'))
    assert gen_cell(ip, "--model fake:fake --no-insert").success
    copy = wv["view"].copy.value
    assert "navigator.clipboard.writeText" in copy
    assert "print(&quot;&lt;b&gt;&amp;&quot;)" in copy  # escaped inside the textarea


def test_failure_is_shown_once_and_no_secret_reaches_the_front_end(
        ip: InteractiveShell, wv: dict[str, Any], anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(status=529)
    anthropic_standin.enqueue(status=529)
    anthropic_standin.enqueue(status=529)
    ip.run_line_magic("config", f"GenerateMagics.api_key = '{TEST_ANTHROPIC_KEY}'")
    result = gen_cell(ip, "--no-insert")
    assert not result.success and "overloaded" in str(result.error_in_exec).lower()
    view = wv["view"]
    # the cell's error line is the one place the message shows: not the widget as well
    assert "✗" not in view.status.value and view.stop.layout.display == "none"
    traffic = json.dumps([c.open_data for c in RecordingComm.all] +
                         [c.sent for c in RecordingComm.all], default=str)
    assert TEST_ANTHROPIC_KEY not in traffic
    assert TEST_ANTHROPIC_KEY not in json.dumps(wv["displays"], default=str)
    widget = [d for d in wv["displays"] if WIDGET_MIME in d["data"]][-1]
    assert set(widget["data"]) == {WIDGET_MIME}  # the cell's error line says it, once
    assert wv["displays"][-1]["data"]["text/plain"] == ""  # no second copy either


def test_load_ext_does_not_import_ipywidgets() -> None:
    code = ("import sys; from IPython.testing.globalipapp import start_ipython; "
            "ip = start_ipython(); ip.run_line_magic('load_ext', 'llmscript_magic'); "
            "print('ipywidgets' in sys.modules, 'llmscript_magic._ui.widget' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[-2:] == ["False", "False"]


# -- through a real kernel -----------------------------------------------------------
def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def test_nbclient_saves_widget_state(anthropic_standin: Any, tmp_path: Path) -> None:
    from nbclient import NotebookClient

    anthropic_standin.enqueue(fenced(GOOD))
    nb = _notebook("%load_ext llmscript_magic",
                   "%%generate --run --sandbox local --no-insert\nSum the rows, print the total.")
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[1].outputs
    shown = [o for o in outputs if WIDGET_MIME in o.get("data", {})]
    assert len(shown) == 1, outputs
    out = shown[0]
    saved = outputs[-1]  # the persistent result carries the text
    assert "total: 3" in saved.data["text/plain"] and "✓ syntax" in saved.data["text/plain"]
    record = out.metadata["llmscript"]["record"]
    assert record["code"] == GOOD
    state = nb.metadata["widgets"][STATE_MIME]["state"]
    html = [m["state"].get("value", "") for m in state.values()
            if m["model_name"] == "HTMLModel"]
    joined = "\n".join(html)
    assert "totals.json" in joined  # the code
    assert "llmscript-check llmscript-pass" in joined and "<b>syntax</b>" in joined
    assert "total: 3" in joined  # the run's stdout
    assert out.data[WIDGET_MIME]["model_id"] in state
    assert TEST_ANTHROPIC_KEY not in json.dumps(nb)


def test_stop_button_stops_a_running_cell(anthropic_standin: Any, tmp_path: Path) -> None:
    """A click on Stop reaches the busy kernel (ipykernel >= 7.4) and ends the stream;
    an older ipykernel (the newest on Python 3.10 is 7.3) says to use ■ instead."""
    import ipykernel
    from jupyter_client.manager import start_new_kernel

    live = ipykernel.version_info >= (7, 4)
    tooltip = ""

    anthropic_standin.enqueue(fenced(GOOD) + "slow " * 400, chunk_size=2, chunk_delay=0.02)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kc.execute_interactive("%load_ext llmscript_magic", timeout=60)
        msg_id = kc.execute("%%generate --no-insert\nSum the rows.")
        stop_id, t_click, reply = None, None, None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and reply is None:
            while kc.iopub_channel.msg_ready():
                m = kc.get_iopub_msg(timeout=1)
                data = m["content"].get("data", {})
                if m["msg_type"] == "comm_open" and data.get("state", {}).get(
                        "description") == "Stop":
                    stop_id = m["content"]["comm_id"]
                    tooltip = data["state"].get("tooltip") or ""
                elif (m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == stop_id
                      and "tooltip" in data.get("state", {})):
                    tooltip = data["state"]["tooltip"]
            if "■" in tooltip and not live:
                assert "use ■ interrupt" in tooltip, tooltip
                return
            if stop_id and t_click is None and anthropic_standin.request_count >= 1:
                time.sleep(0.3)  # let a few chunks stream
                click = kc.session.msg("comm_msg", {"comm_id": stop_id, "data": {
                    "method": "custom", "content": {"event": "click"}}})
                kc.shell_channel.send(click)
                t_click = time.monotonic()
            if kc.shell_channel.msg_ready():
                r = kc.get_shell_msg(timeout=1)
                if r["parent_header"].get("msg_id") == msg_id:
                    reply = r
            time.sleep(0.01)
        assert live, f"the Stop button's tooltip does not say to use ■: {tooltip!r}"
        assert reply is not None and t_click is not None
        assert time.monotonic() - t_click < 3  # the full stream would take ~8 s
        assert reply["content"]["status"] == "error"
        assert "Generation stopped" in reply["content"].get("evalue", "")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_widget_headline_shows_the_context_sent(ip: InteractiveShell,
                                                 fake: FakeProvider) -> None:
    import pandas as pd

    from llmscript_magic._pipeline.options import Options
    from llmscript_magic._ui.widget import WidgetView

    ip.user_ns["df"] = pd.DataFrame({"a": [1, 2]})
    fake.enqueue("```python\nprint(1)\n```")
    gm = ip.magics_manager.registry["GenerateMagics"]
    view = WidgetView(gm.session, "Sum {df}.", Options(model="fake:fake"))
    from llmscript_magic import generate

    opts = gm.options(gm.generate.parser.parse_args(["--model", "fake:fake"]), "Sum {df}.")
    gen = generate("Sum {df}.", opts)
    view.start(gen.model)
    view.finish(gen, {})
    assert "context: df (pandas.DataFrame):" in view.status.value


def test_a_reply_without_code_stays_readable_in_full(
        ip: InteractiveShell, wv: dict[str, Any], fake: Any) -> None:
    """A question back is shown whole in the widget, not only its end in the error line."""
    question = ("I can do that, but first: " + "which columns matter? " * 40
                + "Should missing values count as zero?")
    fake.enqueue(question)
    result = gen_cell(ip, "--model fake:fake --no-insert")
    assert not result.success
    code = wv["view"].code.value
    assert "the model's whole reply" in code and "I can do that, but first" in code
    assert "Should missing values count as zero?" in code


def test_course_without_insertion_keeps_the_buttons_from_inserting(
        ip: InteractiveShell, wv: dict[str, Any], fake: FakeProvider, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    course = tmp_path / "course.toml"
    course.write_text('[course]\nname = "Data 101"\ninsert = false\n')
    monkeypatch.setenv("LLMSCRIPT_COURSE", str(course))
    fake.enqueue(fenced(GOOD))
    assert gen_cell(ip, "--model fake:fake --insert").success
    assert ip.rl_next_input is None
    view = wv["view"]
    sent = len(RecordingComm.all)
    view.insert_button.click()
    view.insert_below()
    assert len(RecordingComm.all) == sent  # nothing asked the front end to insert
    assert "this course does not insert generated code" in view.notice.value
