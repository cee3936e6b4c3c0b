"""Headless notebooks: ``llmscript run`` (nbclient) and ``llmscript export``.

Replay needs no key and no network: the kernel gets ``LLMSCRIPT_REPLAY``
pointing at the notebook being run, and every ``%%generate`` cell answers from
the generations recorded in it. Cells whose spec changed since recording are
named before the run starts.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .._errors import ConfigurationError
from .._pipeline.spec import parse_spec
from .._store.cache import OUTPUT_KEY, record_of

MAGIC = "%%generate"
EXPECT_FAIL_TAG = "llmscript-expect-fail"  # e.g. a safety demo whose code must be blocked


@dataclass
class CellSummary:
    index: int
    checks: str = ""
    run: str = "-"
    duration: float = 0.0
    tokens: int = 0
    failed: bool = False


@dataclass
class NotebookOutcome:
    path: Path
    output: Path
    cells: list[CellSummary] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c.failed for c in self.cells)


def spec_of(source: str) -> str | None:
    """The spec text of a ``%%generate`` cell, or None for other cells."""
    lines = source.lstrip("\n").split("\n", 1)
    if not lines[0].startswith(MAGIC):
        return None
    return lines[1] if len(lines) > 1 else ""


def stale_cells(nb: Any) -> list[int]:
    """%%generate cells whose spec no longer matches their recording (or have none)."""
    stale = []
    for i, cell in enumerate(nb.cells):
        spec = spec_of(cell.source) if cell.cell_type == "code" else None
        if spec is None:
            continue
        rec = record_of(cell)
        if rec is None or rec.get("spec_hash") != parse_spec(spec).hash():
            stale.append(i)
    return stale


def _summarize(nb: Any) -> list[CellSummary]:
    rows = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or spec_of(cell.source) is None:
            continue
        row = CellSummary(i)
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get(OUTPUT_KEY, {})
            if summary := meta.get("summary"):
                row.checks = summary.get("checks", "")
                row.failed = summary.get("validation") == "fail"
                if run := summary.get("run"):
                    row.run = f"{run['status']} (exit {run['exit_code']})"
                    row.duration = run.get("duration", 0.0)
                usage = meta.get("record", {}).get("usage", {})
                row.tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
            if out.get("output_type") == "error":
                row.failed, row.checks = True, f"{out.get('ename')}: {out.get('evalue', '')}"[:70]
        if not cell.get("outputs"):
            row.failed, row.checks = True, "not executed"
        elif EXPECT_FAIL_TAG in cell.get("metadata", {}).get("tags", []):
            row.failed = not row.failed
            row.checks = ("expected to fail, but passed: " if row.failed else "failed as expected: "
                          ) + row.checks
        rows.append(row)
    return rows


def _run_one(path: Path, output: Path, replay: bool, timeout: int, kernel: str,
             prefix: str) -> NotebookOutcome:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    outcome = NotebookOutcome(path, output)
    env = dict(os.environ)
    if replay:
        if stale := stale_cells(nb):
            outcome.error = (f"cells {', '.join(map(str, stale))} changed since they were "
                             "recorded (or were never recorded): run without --replay to "
                             "generate them anew")
            return outcome
        env["LLMSCRIPT_REPLAY"] = str(path.resolve())
        for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
            env.pop(key, None)  # replay must not depend on, or leak, a key
    total = sum(1 for c in nb.cells if c.cell_type == "code")
    started: dict[int, float] = {}
    done = [0]

    def on_start(cell: Any, cell_index: int) -> None:
        started[cell_index] = time.monotonic()

    def on_done(cell: Any, cell_index: int, **_: Any) -> None:
        done[0] += 1
        bar = "#" * (20 * done[0] // max(total, 1))
        first = (cell.source.strip().splitlines() or [""])[0][:40]
        took = time.monotonic() - started.get(cell_index, time.monotonic())
        print(f"{prefix}[{bar:<20}] {done[0]}/{total} cell {cell_index}: {first} "
              f"({took:.1f}s)", file=sys.stderr, flush=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    # cells run in the output's folder, so files they write land beside the result, not the source
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            # the kernel's own log (e.g. its plain-TCP warning) is noise here
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(output.parent.resolve())}},
                            on_cell_execute=on_start, on_cell_executed=on_done)
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        outcome.error = f"{err.ename}: {err.evalue}"[:300]
    except Exception as err:  # kernel died, timeout, ...
        outcome.error = f"{type(err).__name__}: {err}".splitlines()[0][:200]
    outcome.cells = _summarize(nb)
    nbformat.write(nb, output)
    return outcome


def _output_for(path: Path, output: str | None, many: bool) -> Path:
    if output is None:
        return path.with_name(path.stem + ".out.ipynb")
    out = Path(output)
    return out / path.name if many or out.is_dir() else out


def print_summary(outcomes: Sequence[NotebookOutcome]) -> None:
    print(f"\n{'notebook':28} {'cell':>4}  {'checks':32} {'run':16} {'time':>6} {'tokens':>7}")
    for o in outcomes:
        for c in o.cells:
            mark = "FAIL" if c.failed else "ok"
            print(f"{o.path.name[:28]:28} {c.index:>4}  {c.checks[:32]:32} {c.run[:16]:16} "
                  f"{c.duration:>5.2f}s {c.tokens:>7}  {mark}")
        status = "ok" if not o.failed else f"FAILED: {o.error or 'a cell failed (see above)'}"
        print(f"{o.path.name}: {status} -> {o.output}")


def run_notebooks(paths: Sequence[str], *, output: str | None = None, replay: bool = False,
                  jobs: int = 1, timeout: int = 600, kernel: str = "python3") -> int:
    files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():
            raise ConfigurationError(f"No notebook at {f}: check the path.")
    many = len(files) > 1
    if jobs < 1:
        raise ConfigurationError("-j must be at least 1.")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_one, f, _output_for(f, output, many), replay, timeout,
                               kernel, f"{f.stem}: " if many else "") for f in files]
        outcomes = [fut.result() for fut in futures]
    print_summary(outcomes)
    return 1 if any(o.failed for o in outcomes) else 0


def export_notebook(path: str, directory: str | None = None) -> list[Path]:
    """One standalone script per generated cell, headed by its spec and model."""
    src = Path(path)
    nb = nbformat.read(src, as_version=4)
    out_dir = Path(directory) if directory else src.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, cell in enumerate(nb.cells):
        spec = spec_of(cell.source) if cell.cell_type == "code" else None
        rec = record_of(cell) if spec is not None else None
        if spec is None or not rec or not rec.get("code"):
            continue
        header = [f"# Generated by llmscript-magic from {src.name}, cell {i}",
                  f"# Model: {rec.get('model')}  ·  spec {rec.get('spec_hash')}  ·  "
                  f"{rec.get('created', '')}", "# Spec:"]
        header += [f"#   {line}" if line else "#" for line in spec.strip().splitlines()]
        target = out_dir / f"{src.stem}_cell{i}.py"
        target.write_text("\n".join(header) + "\n\n" + rec["code"], encoding="utf-8")
        written.append(target)
    if not written:
        raise ConfigurationError(f"{src} has no recorded generations to export: run its "
                                 "%%generate cells first and save the notebook.")
    return written
