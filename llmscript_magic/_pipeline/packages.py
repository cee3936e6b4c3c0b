"""Which package provides a module, what optional engines a call needs, how to add one.

An import the sandbox lacks, or a pandas call whose engine it lacks, is reported
with the exact command that adds the package (``%llmscript sandbox require NAME``),
so the advice leads somewhere. The tables are small on purpose: the usual data
stack, where the import name and the package name differ, or a call needs an engine.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

#: import name -> the package pip installs it from, where the two differ
DISTRIBUTIONS = {
    "sklearn": "scikit-learn", "cv2": "opencv-python-headless", "PIL": "pillow",
    "yaml": "pyyaml", "bs4": "beautifulsoup4", "skimage": "scikit-image",
    "dateutil": "python-dateutil", "docx": "python-docx", "pptx": "python-pptx",
    "Bio": "biopython", "attr": "attrs", "google": "protobuf", "jwt": "pyjwt",
    "serial": "pyserial", "fitz": "pymupdf", "dotenv": "python-dotenv",
}

#: method name -> (what it reads or writes, packages any one of which serves, the default)
ENGINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "read_excel": ("Excel files", ("openpyxl", "calamine", "xlrd", "odfpy")),
    "to_excel": ("Excel files", ("openpyxl", "xlsxwriter")),
    "read_parquet": ("Parquet files", ("pyarrow", "fastparquet")),
    "to_parquet": ("Parquet files", ("pyarrow", "fastparquet")),
    "read_feather": ("Feather files", ("pyarrow",)),
    "to_feather": ("Feather files", ("pyarrow",)),
    "read_orc": ("ORC files", ("pyarrow",)),
    "to_orc": ("ORC files", ("pyarrow",)),
    "read_xml": ("XML", ("lxml",)),
    "to_xml": ("XML", ("lxml",)),
    "read_html": ("HTML tables", ("lxml", "bs4")),
    "to_markdown": ("Markdown tables", ("tabulate",)),
    "read_spss": ("SPSS files", ("pyreadstat",)),
}
#: import names of the packages above, where they differ
_ENGINE_MODULES = {"odfpy": "odf", "calamine": "python_calamine"}


def distribution(module: str) -> str:
    """The package to install for a top-level import name."""
    return DISTRIBUTIONS.get(module, module.replace("_", "-").lower())


def add_command(*packages: str) -> str:
    """The exact command that adds packages to this environment's sandbox image."""
    return "%llmscript sandbox require " + " ".join(packages)


def engine_needs(tree: ast.AST, available: frozenset[str]
                 ) -> Iterable[tuple[str, str, tuple[str, ...], int, int]]:
    """(call, what it handles, packages, line, col) for each engine call none of whose
    packages the image has; an explicit ``engine="..."`` names the one needed."""
    seen: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        if name not in ENGINES or name in seen:
            continue
        what, packages = ENGINES[name]
        for kw in node.keywords:
            if kw.arg == "engine" and isinstance(kw.value, ast.Constant) \
                    and isinstance(kw.value.value, str):
                packages = (kw.value.value,)
        if any(_ENGINE_MODULES.get(p, p) in available for p in packages):
            continue
        seen.add(name)
        yield name, what, packages, node.lineno, node.col_offset + 1


_MISSING = re.compile(r"(?:ModuleNotFoundError: No module named '([A-Za-z0-9_]+)"
                      r"|Missing optional dependency '([A-Za-z0-9_.-]+)')")


def missing_hint(stderr: str) -> str:
    """'; add it: <command>' when a run failed on a missing package, else ''."""
    found = _MISSING.findall(stderr[-4000:])
    if not found:
        return ""
    module, optional = found[-1]
    package = distribution(module) if module else optional
    return f"; add it with `{add_command(package)}`"
