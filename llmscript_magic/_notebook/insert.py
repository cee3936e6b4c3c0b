"""Putting generated code into the notebook as a new cell below.

Kernel front ends (JupyterLab 4, Notebook 7, VS Code) act on a
``set_next_input`` payload on the execute reply; we write it ourselves with
one extra ``llmscript`` key that our JupyterLab extension reads to tag the cell,
replace an earlier generated cell instead of stacking, and keep the record.
Front ends without the extension ignore the extra key. A terminal IPython
gets the code as its next input. Widget callbacks, where payloads are ignored
(jupyterlab#8893), insert through a comm to ``COMM_TARGET`` instead
(``WidgetView.insert_below``).
"""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from .._protocol import COMM_TARGET as COMM_TARGET  # re-exported: callers import it from here


def parent_cell_id(shell: InteractiveShell) -> str | None:
    """The running cell's id, which JupyterLab sends in every execute request."""
    get_parent = getattr(shell, "get_parent", None)
    if get_parent is None:
        return None
    try:
        parent = get_parent() or {}
    except Exception:
        return None
    cell_id = parent.get("metadata", {}).get("cellId")
    return str(cell_id) if cell_id else None


def insert_below(shell: InteractiveShell, code: str, meta: dict[str, Any]) -> None:
    payloads = getattr(shell, "payload_manager", None)
    if payloads is not None and getattr(shell, "kernel", None) is not None:
        payloads.write_payload(
            {"source": "set_next_input", "text": code, "replace": False, "llmscript": meta},
            single=True,
        )
    else:
        shell.set_next_input(code.rstrip("\n"), replace=False)
