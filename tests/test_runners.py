"""Scheduled and headless runs as users start them: papermill, ``jupyter nbconvert
--execute``, plain nbclient and ``llmscript run`` replay what the notebook recorded, each
cell its own answer, with no key and no network; what cannot be replayed fails with one
readable line in the runner's own log.

The notebook is recorded once, for real, against the Anthropic stand-in: two cells with
the SAME spec got DIFFERENT answers (a teacher showing that the same prompt can give
different code). Replays then run with no key and with ANTHROPIC_BASE_URL pointing at a
port nobody listens on, so a request would fail loudly.
"""

from __future__ import annotations

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
SPEC = "Print a greeting for the class."
CODE_A = "print('hello from answer A')\n"
CODE_B = "print('good morning from answer B')\n"


def _reply(code: str) -> str:
    return f"Here you go.\n\n```python\n{code}```\n"


def _offline_env(cwd_cache: Path, **extra: str) -> dict[str, str]:
    """No key, no replay variable, and an API address where nothing answers."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and k not in ("LLMSCRIPT_REPLAY", "JPY_SESSION_NAME",
                                                       "LLMSCRIPT_RUN_POLICY")}
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    env["LLMSCRIPT_CACHE_DIR"] = str(cwd_cache)  # an empty cache: only the recording can answer
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _new_notebook(*cells: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext llmscript_magic\n"
                                          "%config GenerateMagics.widgets = False")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cells, one spec, two different recorded answers (recorded for real, once)."""
    folder = tmp_path_factory.mktemp("recorded")
    # the teacher asks again with --no-cache to show that the answer changes
    nb = _new_notebook(f"%%generate\n{SPEC}", f"%%generate --no-cache\n{SPEC}")
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(_reply(CODE_A))
        standin.enqueue(_reply(CODE_B))
        env = _offline_env(folder / "cache", ANTHROPIC_BASE_URL=standin.url,
                           ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY, NO_PROXY="127.0.0.1")
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute(env=env)
        assert standin.request_count == 2
    path = folder / "lesson.ipynb"
    nbformat.write(nb, path)
    return path


def _copy(recorded: Path, folder: Path, name: str = "lesson.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_bytes(recorded.read_bytes())
    return target


def _codes(path: Path) -> list[str | None]:
    """The code each %%generate cell of a saved notebook got in its run."""
    nb = nbformat.read(path, as_version=4)
    codes = []
    for cell in nb.cells:
        if cell.source.startswith("%%generate"):
            records = [o["metadata"]["llmscript"]["record"] for o in cell.outputs
                       if "llmscript" in o.get("metadata", {})]
            codes.append(records[0]["code"] if records else None)
    return codes


def _sources(path: Path) -> list[str | None]:
    """Where each %%generate cell's answer came from in this run (model, cache, replay)."""
    nb = nbformat.read(path, as_version=4)
    return [next((o["metadata"]["llmscript"]["summary"]["source"] for o in c.outputs
                  if "llmscript" in o.get("metadata", {})), None)
            for c in nb.cells if c.source.startswith("%%generate")]


def _run(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_recording_holds_two_different_answers_for_one_spec(recorded: Path) -> None:
    assert _codes(recorded) == [CODE_A, CODE_B]


# -- papermill ----------------------------------------------------------------------
def test_papermill_replays_each_cell_without_key_or_network(recorded: Path,
                                                            tmp_path: Path) -> None:
    nb = _copy(recorded, tmp_path / "job")
    out = tmp_path / "job" / "lesson.out.ipynb"
    proc = _run(str(BIN / "papermill"), str(nb), str(out), env=_offline_env(tmp_path / "c"),
                cwd=tmp_path)  # papermill's kernel runs in tmp_path: it finds nb from argv
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _codes(out) == [CODE_A, CODE_B]
    assert _sources(out) == ["replay", "replay"]


def test_papermill_without_key_or_recording_prints_one_readable_line(recorded: Path,
                                                                      tmp_path: Path) -> None:
    nb = nbformat.read(recorded, as_version=4)
    nb.cells[2].source = "%%generate\nPrint a farewell for the class."  # never recorded
    path = tmp_path / "changed.ipynb"
    nbformat.write(nb, path)
    proc = _run(str(BIN / "papermill"), str(path), str(tmp_path / "out.ipynb"),
                env=_offline_env(tmp_path / "c"), cwd=tmp_path)
    assert proc.returncode != 0
    log = proc.stderr
    assert 'Exception encountered at "In [3]":\nUsageError: No API key for anthropic' in log
    line = log.split('Exception encountered at "In [3]":\n')[1].splitlines()[0]
    assert "ANTHROPIC_API_KEY" in line and "changed.ipynb" in line  # says where it looked
    # the cells before it replayed their own answers; the changed one made no request
    assert _codes(tmp_path / "out.ipynb")[:1] == [CODE_A]


def test_papermill_with_key_generates_only_the_changed_cell(recorded: Path,
                                                             tmp_path: Path) -> None:
    nb = nbformat.read(recorded, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("%%generate\nPrint the date of the lesson."))
    path = tmp_path / "grown.ipynb"
    nbformat.write(nb, path)
    code_c = "import datetime\nprint(datetime.date(2026, 1, 5))\n"
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(_reply(code_c))
        env = _offline_env(tmp_path / "c", ANTHROPIC_BASE_URL=standin.url,
                           ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY, NO_PROXY="127.0.0.1")
        proc = _run(str(BIN / "papermill"), str(path), str(tmp_path / "out.ipynb"), env=env,
                    cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert standin.request_count == 1  # only the new spec asked the model
    assert _codes(tmp_path / "out.ipynb") == [CODE_A, CODE_B, code_c]
    assert _sources(tmp_path / "out.ipynb") == ["replay", "replay", "model"]


def test_papermill_api_elsewhere_needs_llmscript_replay(recorded: Path, tmp_path: Path) -> None:
    """A runner that does not name the notebook to its kernel: the documented variable."""
    nb = _copy(recorded, tmp_path / "store")
    empty = tmp_path / "empty"
    empty.mkdir()
    # like a scheduler that reads its jobs from a database: no path on its command line
    script = ("import os, papermill\n"
              "papermill.execute_notebook(os.environ['JOB_IN'], os.environ['JOB_OUT'], "
              "kernel_name='python3', cwd='.', progress_bar=False)\n")
    paths = {"JOB_IN": str(nb), "JOB_OUT": str(tmp_path / "out.ipynb")}
    argv = [sys.executable, "-c", script]
    proc = _run(*argv, env=_offline_env(tmp_path / "c", **paths), cwd=empty)
    assert proc.returncode != 0
    assert "set LLMSCRIPT_REPLAY=NOTEBOOK" in proc.stderr
    proc = _run(*argv, env=_offline_env(tmp_path / "c", LLMSCRIPT_REPLAY=str(nb), **paths),
                cwd=empty)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _codes(tmp_path / "out.ipynb") == [CODE_A, CODE_B]


# -- nbconvert and nbclient ----------------------------------------------------------
def test_nbconvert_execute_to_notebook_replays(recorded: Path, tmp_path: Path) -> None:
    _copy(recorded, tmp_path / "job")
    # a path relative to the runner's folder; the kernel runs in job/ and resolves it there
    proc = _run(str(BIN / "jupyter"), "nbconvert", "--execute", "--to", "notebook",
                "--output", "executed", "job/lesson.ipynb", env=_offline_env(tmp_path / "c"),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _codes(tmp_path / "job" / "executed.ipynb") == [CODE_A, CODE_B]


def test_nbconvert_execute_to_html_shows_each_cells_own_code(recorded: Path,
                                                             tmp_path: Path) -> None:
    nb = _copy(recorded, tmp_path / "job")
    proc = _run(str(BIN / "jupyter"), "nbconvert", "--execute", "--to", "html", str(nb),
                env=_offline_env(tmp_path / "c"), cwd=tmp_path / "job")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (tmp_path / "job" / "lesson.html").read_text()
    a, b = html.find("hello from answer A"), html.find("good morning from answer B")
    assert 0 < a < b  # both answers, in the cells' order


def test_nbconvert_without_key_or_recording_shows_the_line(recorded: Path,
                                                           tmp_path: Path) -> None:
    nb = nbformat.read(recorded, as_version=4)
    nb.cells[1].source = "%%generate\nPrint a farewell for the class."
    path = tmp_path / "changed.ipynb"
    nbformat.write(nb, path)
    proc = _run(str(BIN / "jupyter"), "nbconvert", "--execute", "--to", "notebook",
                str(path), env=_offline_env(tmp_path / "c"), cwd=tmp_path)
    assert proc.returncode != 0
    assert "UsageError: No API key for anthropic: set the ANTHROPIC_API_KEY" in proc.stderr


def test_plain_nbclient_in_the_notebooks_folder_replays(recorded: Path, tmp_path: Path) -> None:
    """Schedulers run a copy in a staging folder with nbclient: found in the working folder."""
    _copy(recorded, tmp_path / "staging", "input.ipynb")
    runner = ("from nbclient import NotebookClient\nimport nbformat, sys\n"
              "nb = nbformat.read(sys.argv[1], 4)\n"
              "NotebookClient(nb, kernel_name='python3', "
              "resources={'metadata': {'path': sys.argv[3]}}).execute()\n"
              "nbformat.write(nb, sys.argv[2])\n")
    proc = _run(sys.executable, "-c", runner, "input.ipynb", str(tmp_path / "done.ipynb"),
                str(tmp_path / "staging"), env=_offline_env(tmp_path / "c"),
                cwd=tmp_path / "staging")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _codes(tmp_path / "done.ipynb") == [CODE_A, CODE_B]


# -- llmscript run --------------------------------------------------------------------
def _llmscript(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "llmscript_magic._cli.main", *args, env=env, cwd=cwd)


def test_llmscript_run_replays_by_cell_id_not_by_order(recorded: Path, tmp_path: Path) -> None:
    """Swap the two cells: order would give the first cell A; its id says B."""
    nb = nbformat.read(recorded, as_version=4)
    nb.cells[1], nb.cells[2] = nb.cells[2], nb.cells[1]
    path = tmp_path / "swapped.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out.ipynb"
    proc = _llmscript("run", str(path), "--replay", "-o", str(out),
                      env=_offline_env(tmp_path / "c"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert _codes(out) == [CODE_B, CODE_A]
    assert _sources(out) == ["replay", "replay"]


def test_llmscript_run_reports_a_changed_spec_by_cell(recorded: Path, tmp_path: Path) -> None:
    nb = nbformat.read(recorded, as_version=4)
    nb.cells[2].source = "%%generate\nPrint a farewell for the class."
    path = tmp_path / "changed.ipynb"
    nbformat.write(nb, path)
    proc = _llmscript("run", str(path), "--replay", env=_offline_env(tmp_path / "c"),
                      cwd=tmp_path)
    assert proc.returncode == 1
    assert "cells 2 changed since they were recorded" in proc.stdout
    # without --replay the unchanged cell replays and the changed one needs the key
    proc = _llmscript("run", str(path), env=_offline_env(tmp_path / "c"), cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stdout.strip().splitlines()[-1]
    assert "FAILED: cell 2: UsageError: No API key for anthropic" in last
    assert "\n" not in last and "\x1b[" not in last


def _generated_cell(code: str, source_cell: str, code_hash: str) -> Any:
    cell = nbformat.v4.new_code_cell(code)
    cell.metadata["tags"] = ["llmscript-generated"]
    cell.metadata["llmscript"] = {"source_cell": source_cell, "generation_id": "g1",
                                  "code_hash": code_hash, "model": "anthropic:x",
                                  "validation": "pass"}
    return cell


def test_llmscript_run_summary_is_only_this_run(recorded: Path, tmp_path: Path) -> None:
    """Generated cells never run in the kernel; cells after a failure say they did not run."""
    nb = nbformat.read(recorded, as_version=4)
    first, second = nb.cells[1], nb.cells[2]
    record = next(o["metadata"]["llmscript"]["record"] for o in first.outputs
                  if "llmscript" in o.get("metadata", {}))
    marker = tmp_path / "ran_in_kernel.txt"
    sneaky = f"open({str(marker)!r}, 'w').write('x')\n"
    nb.cells = [nb.cells[0], first,
                _generated_cell(CODE_A, first.id, record["code_hash"]),  # the real one
                _generated_cell(sneaky, first.id, record["code_hash"]),  # edited/tampered
                nbformat.v4.new_code_cell("1 / 0"), second]
    path = tmp_path / "mixed.ipynb"
    nbformat.write(nb, path)
    proc = _llmscript("run", str(path), "--replay", "-o", str(tmp_path / "out.ipynb"),
                      env=_offline_env(tmp_path / "c"), cwd=tmp_path)
    assert proc.returncode == 1
    assert not marker.exists()  # neither generated cell ran in the kernel
    rows = {int(line.split()[1]): line for line in proc.stdout.splitlines()
            if line.startswith("mixed.ipynb ")}
    assert rows[1].split()[2:4] == ["ok", "replay"]
    assert "skipped" in rows[2] and "runs only in the sandbox" in rows[2]
    assert "FAIL" in rows[3] and "code differs from its record" in rows[3]
    assert "FAIL" in rows[4] and "ZeroDivisionError" in rows[4]
    # not "ok", no time and no tokens from the recording: it did not run
    assert rows[5].split()[2:8] == ["not", "run", "-", "-", "-", "0"]
    assert "FAILED: cell 4: ZeroDivisionError: division by zero" in proc.stdout



# -- which recording answers, in-process ---------------------------------------------------
def test_terminal_replay_without_cell_ids_follows_cell_order(recorded: Path, ip: Any) -> None:
    """IPython sends no cell id: the k-th run of a spec replays the k-th recording of it."""
    import contextlib
    import io

    shown = []
    for _ in range(2):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ip.run_cell_magic("generate", f"--replay {recorded} --no-insert", SPEC)
        shown.append(out.getvalue())
    assert "hello from answer A" in shown[0] and "answer B" not in shown[0]
    assert "good morning from answer B" in shown[1] and "answer A" not in shown[1]


def test_a_cell_id_never_takes_another_cells_answer(recorded: Path) -> None:
    from llmscript_magic._pipeline.spec import parse_spec
    from llmscript_magic._store.recordings import Recordings, ReplayScope, lookup

    nb = nbformat.read(recorded, as_version=4)
    spec_hash = parse_spec(SPEC).hash()
    ids = [c.id for c in nb.cells[1:]]
    answers = Recordings.from_notebook(recorded)
    assert [(answers.find(spec_hash, i).record or {}).get("code") for i in reversed(ids)] == \
        [CODE_B, CODE_A]
    changed = answers.find(parse_spec("Print a farewell.").hash(), ids[0])
    assert changed.record is None and "cell 1 changed since it was recorded" in changed.problem
    # without --replay, a new (unsaved) cell with the same spec asks the model
    assert lookup(spec_hash, ReplayScope("new-cell-id", (str(recorded),))) is None
    found = lookup(spec_hash, ReplayScope(ids[1], (str(recorded),)))
    assert found is not None and found[0]["code"] == CODE_B


@pytest.mark.docker
def test_papermill_replays_a_run_cell_in_the_real_sandbox(tmp_path: Path,
                                                          docker_client: Any) -> None:
    """Recorded with --run; replayed by papermill with no key, the code runs in Docker again."""
    code = "import platform\nprint('squares', [n * n for n in range(5)], platform.node() != '')\n"
    nb = _new_notebook("%%generate --run\nPrint the squares of 0..4.")
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(_reply(code))
        env = _offline_env(tmp_path / "c1", ANTHROPIC_BASE_URL=standin.url,
                           ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY, NO_PROXY="127.0.0.1")
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "run.out.ipynb"
    proc = _run(str(BIN / "papermill"), str(path), str(out), env=_offline_env(tmp_path / "c2"),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    replayed = nbformat.read(out, as_version=4).cells[1]
    summary = next(o["metadata"]["llmscript"]["summary"] for o in replayed.outputs
                   if "llmscript" in o.get("metadata", {}))
    assert summary["source"] == "replay"
    assert summary["run"]["status"] == "ok" and summary["run"]["exit_code"] == 0
    text = "".join(o.get("data", {}).get("text/plain", "") for o in replayed.outputs)
    assert "squares [0, 1, 4, 9, 16] True" in text  # printed by this run, in the sandbox


def test_a_strangers_notebook_in_the_folder_never_answers(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a named notebook, the folder counts only when it holds exactly one."""
    from llmscript_magic._store.recordings import kernel_notebooks

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    (tmp_path / "mine.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, '
                                         '"nbformat_minor": 5}')
    assert kernel_notebooks() == (str((tmp_path / "mine.ipynb").resolve()),)
    (tmp_path / "from-a-stranger.ipynb").write_text((tmp_path / "mine.ipynb").read_text())
    assert kernel_notebooks() == ()


# -- two notebooks side by side (week3.ipynb and its week3.out.ipynb) ------------------
_RUNNER = ("from nbclient import NotebookClient\nimport nbformat\n"
           "nb = nbformat.read('week3.ipynb', 4)\n"
           "NotebookClient(nb, kernel_name='python3', allow_errors=True).execute()\n"
           "nbformat.write(nb, 'done.ipynb')\n")


def _nbclient_in(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """A scheduler's script: the notebook's name is in the script, not on its command line."""
    (folder / "run.py").write_text(_RUNNER)
    return _run(sys.executable, "run.py", env=_offline_env(tmp_path / "c"), cwd=folder)


def _errors(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [f"{o['ename']}: {o['evalue']}" for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def _change_record(cell: Any, **changes: str) -> None:
    for output in cell.outputs:
        if "llmscript" in output.get("metadata", {}):
            output["metadata"]["llmscript"]["record"].update(changes)


def test_nbclient_picks_the_notebook_whose_cells_match(recorded: Path, tmp_path: Path) -> None:
    folder = tmp_path / "course"
    _copy(recorded, folder, "week3.ipynb")
    _copy(recorded, folder, "week3.out.ipynb")  # a papermill output beside its source
    other = nbformat.read(recorded, as_version=4)  # a stranger: other cells, other answers
    other.cells[0].source = "%load_ext llmscript_magic\n%config GenerateMagics.widgets = False\n1"
    _change_record(other.cells[1], id="another", code="print('evil')\n")
    nbformat.write(other, folder / "week4.ipynb")
    proc = _nbclient_in(folder, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _errors(folder / "done.ipynb") == []
    assert _codes(folder / "done.ipynb") == [CODE_A, CODE_B]
    assert _sources(folder / "done.ipynb") == ["replay", "replay"]


def test_two_matching_notebooks_that_disagree_say_how_to_choose(recorded: Path,
                                                                 tmp_path: Path) -> None:
    folder = tmp_path / "course"
    _copy(recorded, folder, "week3.ipynb")
    twin = nbformat.read(recorded, as_version=4)  # same cells, answers recorded elsewhere
    for cell in twin.cells[1:]:
        _change_record(cell, id=cell.id + "-twin")
    nbformat.write(twin, folder / "week3-copy.ipynb")
    proc = _nbclient_in(folder, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = _errors(folder / "done.ipynb")
    assert len(errors) == 2 and all(e == errors[0] for e in errors)
    assert errors[0] == ("UsageError: Several notebooks here could be this one and recorded "
                         "different answers (week3-copy.ipynb, week3.ipynb): set "
                         "LLMSCRIPT_REPLAY=NOTEBOOK to choose one.")


def test_a_changed_cell_names_the_notebook_it_ran(recorded: Path, tmp_path: Path) -> None:
    """week3.ipynb changed since week3.out.ipynb was made: its cells pick week3.ipynb."""
    folder = tmp_path / "course"
    _copy(recorded, folder, "week3.ipynb")
    nb = nbformat.read(recorded, as_version=4)
    nb.cells[1].source = nb.cells[2].source = "%%generate\nPrint a farewell for the class."
    nbformat.write(nb, folder / "week3.ipynb")  # changed since recording, as week3.out is not
    _copy(recorded, folder, "week3.out.ipynb")
    (folder / "week3.out.ipynb").write_text((folder / "week3.out.ipynb").read_text()
                                            .replace("Print a greeting", "Print a welcome"))
    proc = _nbclient_in(folder, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = _errors(folder / "done.ipynb")
    assert len(errors) == 2 and "No API key for anthropic" in errors[0]
    assert errors[0].endswith("(no recording of this cell with this spec in week3.ipynb).")
