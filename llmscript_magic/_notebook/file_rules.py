"""Which file names a sandboxed script may have saved on the host, and where.

What the sandbox writes is data: it must land where nothing executes it. Python
imports from the kernel's working folder (first on ``sys.path``), shells read dot
files, git runs hooks from ``.git/``, Jupyter and IPython run config and startup
files, ``site`` runs ``.pth`` files, ``make`` and ``pytest`` run files by name. So a
name is held back, wherever it would go, when it is a dot path, importable, a
notebook, a well-known auto-run name, or carries control or bidi characters that
would make it read as another name. The default folder (``FILES_FOLDER``) has a
name that is not a Python identifier, so ``import`` never finds anything in it.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from pathlib import Path, PurePosixPath

#: the default folder for saved files, beside the notebook: the hyphen keeps it (and
#: everything in it) out of reach of ``import``
FILES_FOLDER = "llmscript-files"
MAX_SAVED_FILES = 100
MAX_SAVED_BYTES = 64 * 2**20

#: suffixes Python (or the dynamic loader) imports or runs from a folder on sys.path
IMPORTABLE = frozenset({".py", ".pyc", ".pyo", ".pyw", ".pyi", ".pyd", ".pyz", ".pth", ".so",
                        ".dylib", ".dll", ".egg", ".egg-link", ".whl"})
#: folders that make the names inside them metadata of an installed package
METADATA_DIRS = (".dist-info", ".egg-info", ".egg")
#: names tools run or load by name from the folder they work in (``setup.py``,
#: ``conftest.py`` and the like are ``.py`` files, never saved anyway)
AUTO_RUN = frozenset(n.lower() for n in (
    "Makefile", "GNUmakefile", "justfile", "Rakefile", "Taskfile.yml", "Taskfile.yaml",
    "setup.cfg", "pyproject.toml", "tox.ini", "pytest.ini", "package.json", "Dockerfile",
    "Vagrantfile", "Procfile", "desktop.ini", "autorun.inf"))
#: stems of files loaded whatever their suffix (``jupyter_server_config.json`` too)
AUTO_RUN_STEMS = frozenset({"sitecustomize", "usercustomize", "ipython_config",
                            "ipython_kernel_config", "jupyter_config"})
#: characters that are not what they look like in a name: controls, bidi overrides,
#: zero-width joiners (format), line and paragraph separators, unassigned code points
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp")


def _hidden_character(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in _HIDDEN_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def held_back(rel: PurePosixPath, *, importable_folder: bool = False) -> str | None:
    """Why a file at ``rel`` (inside the target folder) is not saved, or None.

    ``importable_folder``: the target folder is on ``sys.path`` (the notebook's own
    folder), so a first-level folder with an identifier name would be a package.
    """
    text = str(rel)
    if (char := _hidden_character(text)) is not None:
        return f"its name has a control or bidi character ({char})"
    parts = rel.parts
    if any(p.startswith(".") for p in parts):
        return "a dot path (like .git or .bashrc) is never saved"
    if any(p.startswith("__init__") or p == "__pycache__" for p in parts):
        return "a Python package file is never saved"
    if any(p.lower().endswith(METADATA_DIRS) for p in parts[:-1]):
        return "package metadata is never saved"
    name = parts[-1]
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    if set(suffixes) & IMPORTABLE:
        return f"an importable file ({next(s for s in suffixes if s in IMPORTABLE)}) is " \
               "never saved"
    if suffixes[-1:] == [".ipynb"]:
        return "a notebook is never saved"
    stem = name.lower().split(".", 1)[0]
    if name.lower() in AUTO_RUN or stem in AUTO_RUN_STEMS or (
            stem.startswith("jupyter_") and stem.endswith("_config")):
        return f"{name} is a name tools run by themselves"
    if importable_folder and len(parts) > 1 and parts[0].isidentifier():
        return f"a folder {parts[0]}/ next to the notebook would be an importable package"
    return None


def on_sys_path(folder: Path) -> bool:
    """The folder is one Python imports from (the kernel's working folder among them)."""
    for entry in sys.path:
        try:
            if Path(entry or os.getcwd()).resolve() == folder:
                return True
        except OSError:
            continue
    return folder == Path.cwd().resolve()


def destination_problem(folder: Path) -> str | None:
    """Why ``folder`` may not receive saved files at all, or None.

    A hidden folder (``.git``, ``.venv``, ``.ipython``, ``~/.config``) or a package
    folder (``site-packages``) holds what tools run; neither is a place for data.
    """
    resolved = folder.expanduser().resolve()
    for base in (Path.cwd().resolve(), Path.home().resolve()):
        if resolved.is_relative_to(base):
            if any(p.startswith(".") for p in resolved.relative_to(base).parts):
                return "is a hidden folder"
            break
    if any(p in ("site-packages", "dist-packages") for p in resolved.parts):
        return "is a Python package folder"
    return None


__all__ = ["FILES_FOLDER", "MAX_SAVED_BYTES", "MAX_SAVED_FILES", "destination_problem",
           "held_back", "on_sys_path"]
