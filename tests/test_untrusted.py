"""A notebook from someone else, run with ``llmscript run``: its flags, ``%config`` and
environment tricks cannot pick a weaker sandbox or read host files outside its folder,
and a generated cell whose code is not its record's never runs (issue 14).

The hostile notebook is run for real (a real kernel through ``llmscript run``), without a
key: a cell the policy lets through fails later with the missing-key line, so every cell
shows which of the two stopped it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from standins import closed_port

from llmscript_magic._cli.headless import runner_policy
from llmscript_magic._errors import ConfigurationError
from llmscript_magic._pipeline.options import Options
from llmscript_magic._pipeline.trust import Policy, enforce

WEAKER = "is weaker than the"
OUTSIDE = "is outside the notebook's folder"
NO_KEY = "No API key for anthropic"


def _cell(source: str, *, may_fail: bool = True) -> Any:
    cell = nbformat.v4.new_code_cell(source)
    if may_fail:  # nbclient goes on after this cell's error, so every attack is tried
        cell.metadata["tags"] = ["raises-exception"]
    return cell


def _hostile(folder: Path, marker: Path) -> list[Any]:
    secret = folder.parent / "secret.txt"
    secret.write_text("host secret\n")
    (folder / "data.csv").write_text("a\n1\n")
    (folder / "link.txt").symlink_to("/etc/hostname")
    (folder.parent / "other.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    tampered = _cell(f"open({str(marker)!r}, 'w').write('ran')\n", may_fail=False)
    tampered.metadata["tags"] = ["llmscript-generated"]
    tampered.metadata["llmscript"] = {
        "source_cell": None, "generation_id": "x", "model": "anthropic:x", "validation": "pass",
        "code_hash": hashlib.sha256(b"print('harmless')\n").hexdigest()}
    return [
        _cell("%load_ext llmscript_magic\n%config GenerateMagics.widgets = False",
              may_fail=False),
        _cell("%%generate --run --sandbox local\nPrint hi."),  # 1
        _cell('%config GenerateMagics.sandbox = "local"', may_fail=False),
        _cell("%%generate --run\nPrint hi."),  # 3: the trait, not a flag
        _cell('%config GenerateMagics.sandbox = "docker"\n%env LLMSCRIPT_RUN_POLICY=\n'
              "import os, importlib\nos.environ.pop('LLMSCRIPT_RUN_POLICY', None)\n"
              "import llmscript_magic._pipeline.trust as trust\nimportlib.reload(trust)",
              may_fail=False),
        _cell("%%generate --run --sandbox local\nPrint hi."),  # 5: after trying to unset it
        _cell("%%generate --input /etc/passwd\nCount the lines."),  # 6
        _cell("%%generate --input ../secret.txt\nCount the lines."),  # 7
        _cell("%%generate --input link.txt\nCount the lines."),  # 8: a symlink to /etc
        _cell("%%generate --replay ../other.ipynb\nCount the lines."),  # 9
        _cell("%%generate --input data.csv\nCount the lines."),  # 10: allowed
        tampered,  # 11
        _cell("%%generate --run --isolation container\nPrint hi."),  # 12
        _cell(f"%%generate --run --files-to {folder.parent}\nWrite x.txt."),  # 13
        _cell(f"%config GenerateMagics.audit_log = {str(folder.parent / 'bashrc')!r}",
              may_fail=False),
        _cell("%%generate\nPrint hi."),  # 15: the audit line would land outside the folder
    ]


def _errors(path: Path) -> dict[int, str]:
    nb = nbformat.read(path, as_version=4)
    return {i: f"{o['ename']}: {o['evalue']}" for i, c in enumerate(nb.cells)
            if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"}


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "received"
    folder.mkdir()
    marker = tmp_path / "tampered_cell_ran.txt"
    nb = nbformat.v4.new_notebook()
    nb.cells = _hostile(folder, marker)
    path = folder / "hostile.ipynb"
    nbformat.write(nb, path)
    return path, marker


def _llmscript(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and k not in ("LLMSCRIPT_REPLAY", "LLMSCRIPT_RUN_POLICY")}
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    env["LLMSCRIPT_CACHE_DIR"] = str(cwd / "cache")
    return subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_untrusted_notebook_cannot_weaken_its_sandbox(hostile: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    path, marker = hostile
    proc = _llmscript("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    errors = _errors(path.with_name("hostile.out.ipynb"))
    for index in (1, 3, 5):  # flag, %config trait, and after %env/os.environ/reload
        assert "--sandbox local is weaker than the docker sandbox" in errors[index], index
        assert "llmscript run --trust" in errors[index]
    assert "--input '/etc/passwd' is outside the notebook's folder" in errors[6]
    assert "--input '../secret.txt' is outside" in errors[7]
    assert "--input 'link.txt' is outside" in errors[8]
    assert "--replay '../other.ipynb' is outside" in errors[9]
    assert f"--files-to '{path.parent.parent}' is outside" in errors[13]  # writes, too
    assert "GenerateMagics.audit_log" in errors[15] and OUTSIDE in errors[15]
    assert NO_KEY in errors[10]  # a file next to the notebook is fine
    assert 11 not in errors and not marker.exists()  # the tampered cell never ran
    row = next(line for line in proc.stdout.splitlines()
               if line.split()[:2] == ["hostile.ipynb", "11"])
    assert "FAIL" in row and "code differs from its record" in row
    policy = runner_policy([path], [path])
    if policy.isolation == "gvisor":  # the engine has runsc: container is weaker
        assert "--isolation container is weaker than the gVisor isolation" in errors[12]
    else:
        assert NO_KEY in errors[12]
    assert all(len(e.splitlines()) == 1 for e in errors.values())


def test_trust_lifts_the_limits_but_generated_cells_still_never_run(
        hostile: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = hostile
    proc = _llmscript("run", str(path), "--trust", cwd=tmp_path)
    assert proc.returncode == 1  # no key: the cells that ask the model fail
    errors = _errors(path.with_name("hostile.out.ipynb"))
    for index in (1, 3, 5, 6, 7, 8, 10, 12, 13, 15):
        assert WEAKER not in errors[index] and OUTSIDE not in errors[index], index
        assert NO_KEY in errors[index], index
    assert not marker.exists()
    row = next(line for line in proc.stdout.splitlines()
               if line.split()[:2] == ["hostile.ipynb", "11"])
    assert "skipped" in row and "code differs from its record" in row


# -- the policy itself, in-process ------------------------------------------------------
def test_enforce_raises_auto_isolation_to_the_required_one(tmp_path: Path) -> None:
    policy = Policy(isolation="gvisor", roots=(str(tmp_path),))
    assert enforce(Options(run=True), policy=policy).isolation == "gvisor"
    with pytest.raises(ConfigurationError, match="--isolation container is weaker"):
        enforce(Options(run=True, isolation="container"), policy=policy)
    lenient = Policy(isolation="container", roots=(str(tmp_path),))
    assert enforce(Options(run=True, isolation="container"), policy=lenient).isolation == \
        "container"


def test_enforce_resolves_paths_before_checking(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    inside = tmp_path / "nb"
    (inside / "sub").mkdir(parents=True)
    monkeypatch.chdir(inside)
    policy = Policy(roots=(str(inside),))
    assert enforce(Options(), ["sub/../data.csv", "sub/x.csv"], policy=policy) is not None
    for sneaky in ("sub/../../x.csv", "~/.ssh/id_rsa", str(tmp_path / "x")):
        with pytest.raises(ConfigurationError, match="outside the notebook's folder"):
            enforce(Options(), [sneaky], policy=policy)
    with pytest.raises(ConfigurationError, match="--image evil:latest is not the sandbox image"):
        enforce(Options(image="evil:latest"), policy=policy)
    assert enforce(Options(sandbox="local"), policy=policy).sandbox == "local"  # no --run


# -- the same policy without llmscript run (issue 22) -------------------------------------
def test_ceilings_and_quarantine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    policy = Policy(roots=(str(tmp_path),), fix="set LLMSCRIPT_TRUST=1 for the runner")
    for opts, flag in ((Options(memory_mb=1024), "--memory 1024m is above the 512m"),
                       (Options(timeout=300.0), "--timeout 300s is above the 120s"),
                       (Options(cpus=8.0), "--cpus 8 is above the 2")):
        with pytest.raises(ConfigurationError, match=flag) as err:
            enforce(opts, policy=policy)
        assert str(err.value).endswith("set LLMSCRIPT_TRUST=1 for the runner.")
    from llmscript_magic._notebook.config import CellOptions

    with pytest.raises(ConfigurationError, match="is the notebook's own folder"):
        enforce(CellOptions(files_to="."), policy=policy)
    (tmp_path / "out").mkdir()
    assert enforce(CellOptions(files_to="out"), policy=policy).files_to == "out"


def _front_end_run(folder: Path, data_dir: Path, *, signed: bool) -> dict[int, str]:
    """A kernel started as a Jupyter server starts it for ``folder/nb.ipynb``."""
    from nbclient import NotebookClient
    from nbformat.sign import NotebookNotary

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [_cell("%load_ext llmscript_magic\n%config GenerateMagics.widgets = False",
                      may_fail=False),
                _cell("%%generate --run --sandbox local\nPrint hi.")]
    path = folder / "nb.ipynb"
    nbformat.write(nb, path)
    if signed:
        notary = NotebookNotary(data_dir=str(data_dir))
        notary.sign(nb)
        notary.close()
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and not k.startswith("LLMSCRIPT_")}
    env.update(JPY_SESSION_NAME=str(path), JUPYTER_DATA_DIR=str(data_dir),
               ANTHROPIC_BASE_URL=f"http://127.0.0.1:{closed_port()}",
               LLMSCRIPT_CACHE_DIR=str(folder / "cache"))
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    return {i: f"{o['ename']}: {o['evalue']}" for i, c in enumerate(nb.cells)
            for o in c.outputs if o.get("output_type") == "error"}


def test_a_front_end_with_a_notebook_jupyter_does_not_trust(tmp_path: Path) -> None:
    """Unsigned in this user's notary: the policy binds; signed (``jupyter trust``): not."""
    data_dir = tmp_path / "jupyter-data"
    errors = _front_end_run(tmp_path, data_dir, signed=False)
    assert "--sandbox local is weaker than the docker sandbox" in errors[1]
    assert "jupyter trust NOTEBOOK" in errors[1]
    errors = _front_end_run(tmp_path, data_dir, signed=True)
    assert WEAKER not in errors[1] and NO_KEY in errors[1]
