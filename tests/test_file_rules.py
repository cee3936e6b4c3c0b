"""What a run's files may become on the host: data in llmscript-files/, nothing that runs.

In-process checks of the rules (``_notebook/file_rules.py``, ``save_files.py``); the
same names written by hostile scripts in the real sandboxes, under every runner, are in
``test_boundary.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._notebook.file_rules import (
    MAX_SAVED_FILES,
    destination_problem,
)
from llmscript_magic._notebook.save_files import save_files
from llmscript_magic._sandbox import OutputFile

#: names a script may write that would run on the host, each with the reason's words
HOSTILE = {
    "numpy.py": "importable file (.py)",
    "pandas/__init__.py": "package file",
    "llmscript_magic/__init__.json": "package file",
    "evil.pth": "importable file (.pth)",
    "x.cpython-311-x86_64-linux-gnu.so": "importable file (.so)",
    "mod.pyc": "importable file (.pyc)",
    "__pycache__/x.txt": "package file",
    "other.ipynb": "a notebook",
    ".bashrc": "dot path",
    ".git/config": "dot path",
    ".ipython/profile_default/startup/00.txt": "dot path",
    ".jupyter/jupyter_server_config.json": "dot path",
    ".venv/lib/python3.11/site-packages/x.txt": "dot path",
    "sitecustomize.txt": "run by themselves",
    "usercustomize.json": "run by themselves",
    "jupyter_server_config.json": "run by themselves",
    "Makefile": "run by themselves",
    "package.json": "run by themselves",
    "evil-1.0.dist-info/entry_points.txt": "package metadata",
    "report\u202etxt.exe": "bidi character (U+202E)",
    "two\nlines.txt": "control or bidi character (U+000A)",
    "bell\x07.txt": "control or bidi character (U+0007)",
}


def out(name: str, data: bytes = b"x") -> OutputFile:
    return OutputFile(name, len(data), data)


def test_hostile_names_are_held_back_with_the_reason(tmp_path: Path) -> None:
    entries = save_files([out(n) for n in HOSTILE] + [out("totals.csv", b"a\n1\n")], tmp_path)
    by_name = {e["name"]: e for e in entries}
    for name, words in HOSTILE.items():
        entry = by_name[name]
        assert entry["status"] == "held back" and entry["path"] is None, name
        assert entry["note"].startswith("held back: ") and words in entry["note"], (name, entry)
    assert by_name["totals.csv"]["status"] == "saved"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".llmscript-manifest.json",
                                                          "totals.csv"]


def test_next_to_the_notebook_an_identifier_folder_is_held_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a folder Python imports from, ``numpy/data.txt`` would make a package."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    entries = save_files([out("numpy/data.txt"), out("my-results/data.txt")], tmp_path)
    assert entries[0]["status"] == "held back" and "importable package" in entries[0]["note"]
    assert entries[1]["status"] == "saved"
    # in llmscript-files/ (not importable) a folder may have any name
    [entry] = save_files([out("numpy/data.txt")], tmp_path / "llmscript-files")
    assert entry["status"] == "saved"


def test_count_and_size_caps(tmp_path: Path) -> None:
    entries = save_files([out(f"f{i}.txt") for i in range(MAX_SAVED_FILES + 20)], tmp_path)
    saved = [e for e in entries if e["status"] == "saved"]
    held = [e for e in entries if e["status"] == "held back"]
    assert len(saved) == MAX_SAVED_FILES and len(held) == 20
    assert f"more than {MAX_SAVED_FILES} files" in held[0]["note"]
    big = [out(f"big{i}.bin", bytes(40 * 2**20)) for i in range(2)]
    first, second = save_files(big, tmp_path / "big")
    assert first["status"] == "saved" and second["status"] == "held back"
    assert "MiB in one run" in second["note"]


def test_hidden_and_package_destinations_are_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for folder in (".git", ".venv/lib", "sub/.ipython/profile_default/startup"):
        assert destination_problem(Path(folder)) == "is a hidden folder", folder
    site = next(p for p in sys.path if p.endswith("site-packages"))
    assert destination_problem(Path(site)) == "is a Python package folder"
    assert destination_problem(Path("results")) is None
    assert destination_problem(Path(".")) is None


def test_a_hidden_files_to_is_one_line_before_anything_runs(ip: Any, fake: Any,
                                                            tmp_path: Path) -> None:
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_cell("%%generate --model fake:m --run --files-to .git\nWrite x.txt.")
    assert "--files-to '.git' is a hidden folder: choose a plain folder" in captured.stderr
    assert fake.history == [] and not (tmp_path / ".git").exists()


def test_a_failed_check_saves_nothing_unless_asked(ip: Any, fake: Any, tmp_path: Path) -> None:
    from IPython.utils.capture import capture_output

    code = "open('totals.csv', 'w').write('a\\n1\\n')\n"
    for _ in range(2):
        fake.enqueue(f"```python\n{code}```")
    with capture_output() as captured:
        ip.run_cell("%%generate --model fake:m --run --sandbox local --no-insert --retries 0 "
                    "--check \"False\"\nWrite totals.csv.")
    assert not (tmp_path / "llmscript-files").exists()
    assert "kept in the result only: a check failed" in captured.stdout + "".join(
        o.data.get("text/plain", "") for o in captured.outputs)
    ip.run_cell("%%generate --model fake:m --run --sandbox local --no-insert --retries 0 "
                "--check \"False\" --files-on-failure --no-cache\nWrite totals.csv.")
    assert (tmp_path / "llmscript-files" / "totals.csv").read_text() == "a\n1\n"
