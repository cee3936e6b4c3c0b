"""The contracts between the notebook session and the views that show a generation.

A view is told what happens (``start``, ``chunk``, ``attempt``, ``finish``,
``fail``); the widget's buttons call back into the session through ``Session``.
Both are protocols, so the UI layer never imports the notebook layer.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt, Generation
    from .._pipeline.options import Options


class View(Protocol):
    """What the session tells a view while one cell's generation runs."""

    def start(self, model: str) -> None: ...

    def chunk(self, text: str) -> None: ...

    def thinking(self, text: str) -> None:
        """More of the model's reasoning (extended thinking): shown apart, never code."""

    def attempt(self, attempt: Attempt, number: int) -> None: ...

    def waiting(self, ahead: int | None) -> None:
        """A run waits for a sandbox with ``ahead`` kernels before it (None: it got one).

        Optional: the session asks ``getattr(view, "waiting", None)``.
        """

    def finish(self, gen: Generation, metadata: dict[str, Any]) -> None: ...

    def fail(self, message: str) -> None: ...


class Session(Protocol):
    """What a view may ask of the notebook session (the widget's buttons)."""

    prices: dict[str, tuple[float, float]]

    def generate(self, spec_text: str, opts: Any, view: View,
                 cancel: threading.Event | None = None,
                 cell_id: str | None = None) -> Generation: ...

    def check_code(self, code: str, spec: Any, opts: Any) -> Attempt: ...

    def save_files(self, run: Any, opts: Any, owner: str | None = None,
                   checked: bool = True) -> list[dict[str, Any]]: ...

    def summary(self, gen: Generation, source_cell: str | None = None) -> dict[str, Any]: ...


__all__ = ["Options", "Session", "View"]
