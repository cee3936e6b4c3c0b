"""Nothing a sandboxed script writes runs on the host (issue 22), under every runner.

A hostile script, run for real in the sandbox (gVisor, runc and bubblewrap), writes
files that would run on the host if saved where they used to land: ``numpy.py`` and
``pandas.py`` (imported by the kernel's own decoding of ``--output`` and by the next
cell), a package ``llmscript_magic/``, ``sitecustomize.py``, a ``.pth``, dot files for
bash, git, IPython and Jupyter, a ``Makefile``, a notebook, and names with a bidi
override and a newline. Each planted file appends to a marker outside the folder when
it runs. After the notebook has run (in a kernel through nbclient, with ``llmscript
run``, papermill and ``jupyter nbconvert --execute``), a FRESH kernel started in the
same folder loads the extension and imports the planted names; the marker must not
exist, the folder must hold no planted name, and the result must list every file held
back with its reason.
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
from standins import TEST_ANTHROPIC_KEY

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent
FILES = "llmscript-files"

HOSTILE = '''\
import pathlib

import numpy as np

MARK = {marker!r}
plant = "open(%r, 'a').write(__name__ + '\\\\n')\\n" % MARK
files = {{
    "numpy.py": plant, "pandas.py": plant, "llmscript_magic/__init__.py": plant,
    "sitecustomize.py": plant, "usercustomize.py": plant, "conftest.py": plant,
    "evil.pth": "import os; " + plant,
    ".bashrc": "echo bashrc >> %s\\n" % MARK,
    ".git/config": "[core]\\n\\tfsmonitor = echo git >> %s\\n" % MARK,
    ".ipython/profile_default/startup/00-pwn.py": plant,
    ".jupyter/jupyter_server_config.py": plant,
    "Makefile": "all:\\n\\techo make >> %s\\n" % MARK,
    "other.ipynb": "{{}}",
    "bidi\\u202eexe.csv": "x\\n",
    "new\\nline.csv": "x\\n",
    "totals.csv": "region,total\\nnorth,3\\n",
}}
for name, text in files.items():
    path = pathlib.Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
result = np.arange(3)
print("planted", len(files))
'''
#: what the result must say about each planted name
HELD = {"numpy.py": "importable file (.py)", "pandas.py": "importable file (.py)",
        "llmscript_magic/__init__.py": "package file", "evil.pth": "importable file (.pth)",
        "sitecustomize.py": "importable file", ".bashrc": "dot path",
        ".git/config": "dot path", ".jupyter/jupyter_server_config.py": "dot path",
        "Makefile": "run by themselves", "other.ipynb": "a notebook",
        "bidi\u202eexe.csv": "bidi character (U+202E)", "new\nline.csv": "U+000A"}
PLANTED_NAMES = ("numpy.py", "pandas.py", "llmscript_magic", "sitecustomize.py",
                 "usercustomize.py", "conftest.py", "evil.pth", ".bashrc", ".git", ".ipython",
                 ".jupyter", "Makefile", "other.ipynb")

NEXT_CELL = ("import importlib\n"
             "for name in ('numpy', 'pandas', 'sitecustomize', 'usercustomize'):\n"
             "    try:\n"
             "        importlib.import_module(name)\n"
             "    except ImportError:\n"
             "        pass\n"
             "print('next cell', result.tolist())")
FRESH_KERNEL = ("%load_ext llmscript_magic\n"
                "import importlib, numpy, pandas\n"
                "for name in ('sitecustomize', 'usercustomize', 'conftest'):\n"
                "    try:\n"
                "        importlib.import_module(name)\n"
                "    except ImportError:\n"
                "        pass\n"
                "print('fresh kernel', numpy.__file__, pandas.__file__)")


def _reply(marker: Path) -> str:
    return "Here you go.\n\n```python\n" + HOSTILE.format(marker=str(marker)) + "```\n"


def _notebook(flags: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext llmscript_magic\n"
                                          "%config GenerateMagics.widgets = False"),
                nbformat.v4.new_code_cell(f"%%generate --run --output result --retries 0 "
                                          f"{flags}\nWrite the report files."),
                nbformat.v4.new_code_cell(NEXT_CELL)]
    return nb


def _env(standin: Any, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and k not in ("LLMSCRIPT_REPLAY", "JPY_SESSION_NAME",
                                                       "LLMSCRIPT_RUN_POLICY", "LLMSCRIPT_TRUST")}
    env.update(ANTHROPIC_BASE_URL=standin.url, ANTHROPIC_API_KEY=TEST_ANTHROPIC_KEY,
               NO_PROXY="127.0.0.1", LLMSCRIPT_CACHE_DIR=str(folder.parent / "cache"),
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def _index(nb: Any, start: str) -> int:
    """The cell whose source starts with ``start`` (papermill may add cells of its own)."""
    return next(i for i, c in enumerate(nb.cells) if c.source.startswith(start))


def _text(nb: Any, index: int) -> str:
    out = []
    for o in nb.cells[index].get("outputs", []):
        out.append(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                   or f"{o.get('ename', '')}: {o.get('evalue', '')}")
    return "\n".join(out)


def _files(nb: Any) -> dict[str, dict[str, Any]]:
    """The saved-file entries the %%generate cell's result carries, by name."""
    for o in nb.cells[_index(nb, "%%generate --run --output")].get("outputs", []):
        meta = o.get("metadata", {}).get("llmscript", {})
        if "files" in meta:
            return {e["name"]: e for e in meta["files"]}
    raise AssertionError("the result lists no files: " + _text(nb, 2)[-2000:])


def _assert_nothing_ran(folder: Path, marker: Path, nb: Any, env: dict[str, str]) -> None:
    entries = _files(nb)
    for name, words in HELD.items():
        assert entries[name]["status"] == "held back" and words in entries[name]["note"], \
            (name, entries[name])
    assert entries["totals.csv"]["status"] == "saved"
    assert (folder / FILES / "totals.csv").read_text() == "region,total\nnorth,3\n"
    # --output came back, and the next cell ran
    assert "next cell [0, 1, 2]" in _text(nb, _index(nb, "import importlib"))
    for name in PLANTED_NAMES:
        assert not list(folder.rglob(name)), name
    assert not [p for p in folder.rglob("*") if p.suffix in (".py", ".pth")]
    # a fresh kernel in the same folder imports the planted names
    fresh = nbformat.v4.new_notebook()
    fresh.cells = [nbformat.v4.new_code_cell(FRESH_KERNEL)]
    NotebookClient(fresh, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    shown = _text(fresh, 0)
    assert "fresh kernel" in shown and "site-packages" in shown, shown
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize("flags", ["--isolation gvisor", "--isolation container",
                                   "--sandbox local"],
                         ids=["gvisor", "runc", "bubblewrap"])
def test_kernel_through_nbclient(flags: str, tmp_path: Path, anthropic_standin: Any,
                                 docker_client: Any, host_canary: Path) -> None:
    if "gvisor" in flags:
        from llmscript_magic._sandbox.engine import gvisor_problem

        if gvisor_problem(docker_client) is not None and not os.environ.get("CI"):
            pytest.skip("no gVisor on this engine")
    folder, marker = tmp_path / "project", tmp_path / "PLANTED_RAN"
    folder.mkdir()
    anthropic_standin.enqueue(_reply(marker))
    nb = _notebook(flags)
    env = _env(anthropic_standin, folder)
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    _assert_nothing_ran(folder, marker, nb, env)


@pytest.mark.parametrize("runner", ["llmscript run", "papermill", "nbconvert"])
def test_headless_runners(runner: str, tmp_path: Path, anthropic_standin: Any,
                          docker_client: Any, host_canary: Path) -> None:
    """Each runner applies the untrusted-notebook policy: the notebook's weaker flags are
    refused, and the default (the engine's strongest isolation) runs the hostile script."""
    folder, marker = tmp_path / "project", tmp_path / "PLANTED_RAN"
    folder.mkdir()
    anthropic_standin.enqueue(_reply(marker))
    path = folder / "hostile.ipynb"
    nb = _notebook("")
    nb.cells.append(nbformat.v4.new_code_cell(
        "%%generate --run --sandbox local --memory 1g --files-to ..\nWrite it elsewhere."))
    nb.cells[3].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, path)
    out = folder / "hostile.out.ipynb"
    env = _env(anthropic_standin, folder)
    argv = {"llmscript run": [sys.executable, "-m", "llmscript_magic._cli.main", "run",
                              str(path), "-o", str(out)],
            "papermill": [str(BIN / "papermill"), str(path), str(out)],
            "nbconvert": [str(BIN / "jupyter"), "nbconvert", "--execute", "--to", "notebook",
                          "--allow-errors", "--output", out.name, str(path)]}[runner]
    proc = subprocess.run(argv, env=env, cwd=folder, capture_output=True, text=True,
                          timeout=400)
    done = nbformat.read(out, as_version=4)
    refused = _text(done, _index(done, "%%generate --run --sandbox local"))
    assert "--sandbox local is weaker than the docker sandbox" in refused, \
        (refused, proc.stdout[-2000:], proc.stderr[-2000:])
    assert anthropic_standin.request_count == 1  # the refused cell never asked the model
    _assert_nothing_ran(folder, marker, done, env)
    assert not (tmp_path / "llmscript-files").exists()  # nothing outside the folder
