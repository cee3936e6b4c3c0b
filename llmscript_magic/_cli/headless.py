"""Headless notebooks: ``llmscript run`` (nbclient) and ``llmscript export``.

What runs where: the notebook's own cells run in the kernel, as papermill runs
them; generated cells (tagged ``llmscript-generated``) are never executed in the
kernel (the same rule as Run All with the extension): their code runs only in
the sandbox, through the ``%%generate`` cell's ``--run``. Each execute request
carries the cell's id, so every ``%%generate`` cell replays its own recording.

Replay needs no key and no network: with ``--replay`` the kernel gets
``LLMSCRIPT_REPLAY`` and answers only from the notebook's recordings; without it,
recordings of unchanged cells are still reused and only changed cells ask the model.
Without ``--trust`` the kernel also gets ``LLMSCRIPT_RUN_POLICY`` (``_pipeline/trust.py``):
the notebook's flags cannot pick a weaker sandbox or read files outside its folder.

The summary reports only what this run did: cells that did not run say so.
"""

from __future__ import annotations

import hashlib
import os
import re
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
from .._pipeline.trust import ENV as POLICY_ENV
from .._pipeline.trust import Policy
from .._pipeline.untrusted import TRUST_ENV
from .._protocol import GENERATED_TAG, INFO_KEY, OUTPUT_KEY
from .._store.recordings import record_of
from .._ui.inert import printable

MAGIC = "%%generate"
EXPECT_FAIL_TAG = "llmscript-expect-fail"  # e.g. a safety demo whose code must be blocked
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class CellSummary:
    index: int
    result: str = "ok"  # ok, FAIL, skipped, not run
    source: str = "-"  # model, cache, replay: where this run's code came from
    checks: str = ""
    run: str = "-"
    duration: float = 0.0  # wall time of the cell in THIS run
    tokens: int = 0  # tokens spent in THIS run (replay and cache spend none)

    @property
    def failed(self) -> bool:
        return self.result == "FAIL"


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


def is_generated(cell: Any) -> bool:
    """A cell the extension inserted: tagged, or carrying a generated cell's metadata."""
    if cell.get("cell_type") != "code" or spec_of(cell.get("source", "")) is not None:
        return False
    meta = cell.get("metadata", {})
    return GENERATED_TAG in meta.get("tags", []) or isinstance(meta.get(INFO_KEY), dict)


def generated_problem(cell: Any, nb: Any) -> str | None:
    """Why a generated cell's code is not the recorded code, or None when it is."""
    info = cell.get("metadata", {}).get(INFO_KEY)
    expected = info.get("code_hash") if isinstance(info, dict) else None
    if not expected:
        return "generated cell without a record to check its code against"
    actual = hashlib.sha256(cell.get("source", "").encode()).hexdigest()
    if actual != expected:
        return "code differs from its record (edited or tampered)"
    source_id = info.get("source_cell")
    for other in nb.cells:
        if source_id and other.get("id") == source_id:
            record = record_of(other)
            if record and record.get("code_hash") not in (None, expected):
                return "code differs from its %%generate cell's record"
    return None


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


def one_line(text: str, limit: int = 300) -> str:
    """An error as one readable line: no colour codes, no line breaks."""
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _client_class() -> type:
    from nbclient import NotebookClient

    class Client(NotebookClient):
        """nbclient that sends each cell's id and never executes generated cells."""

        def __init__(self, nb: Any, *, untrusted: bool, **kwargs: Any) -> None:
            super().__init__(nb, **kwargs)
            self.untrusted = untrusted  # a generated cell that is not its record fails the run
            self.ran: dict[int, float] = {}  # cell index -> seconds, for cells run in THIS run
            self.skipped: dict[int, str | None] = {}  # generated cells -> problem with the code
            self.failed_at: int | None = None

        async def async_execute_cell(self, cell: Any, cell_index: int,
                                     execution_count: int | None = None,
                                     store_history: bool = True) -> Any:
            if is_generated(cell):
                self.skipped[cell_index] = generated_problem(cell, self.nb)
                return cell
            if self.kc is not None:  # JupyterLab sends the same; get_parent() shows it
                self.kc.session.metadata = {"cellId": cell.get("id")} if cell.get("id") else {}
            started = time.monotonic()
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count,
                                                        store_history)
            except BaseException:
                self.failed_at = cell_index
                raise
            finally:
                if cell.cell_type == "code" and cell.source.strip():
                    self.ran[cell_index] = time.monotonic() - started

    return Client


def _generate_row(cell: Any, index: int, took: float) -> CellSummary:
    row = CellSummary(index, duration=took)
    for out in cell.get("outputs", []):
        meta = out.get("metadata", {}).get(OUTPUT_KEY, {})
        if summary := meta.get("summary"):
            row.source = summary.get("source", "-")
            row.checks = summary.get("checks", "")
            row.result = "FAIL" if summary.get("validation") == "fail" else "ok"
            if run := summary.get("run"):
                row.run = f"{run['status']} (exit {run['exit_code']})"
            if row.source == "model":
                usage = meta.get("record", {}).get("usage", {})
                row.tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        if out.get("output_type") == "error":
            row.result = "FAIL"
            row.checks = one_line(f"{out.get('ename')}: {out.get('evalue', '')}", 120)
    if EXPECT_FAIL_TAG in cell.get("metadata", {}).get("tags", []):
        failed = row.result != "FAIL"
        row.checks = ("expected to fail, but passed: " if failed else "failed as expected: "
                      ) + row.checks
        row.result = "FAIL" if failed else "ok"
    return row


def _summarize(nb: Any, client: Any) -> list[CellSummary]:
    """One row per %%generate cell, generated cell and failed cell: only THIS run's facts."""
    rows = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if i in client.skipped:
            problem = client.skipped[i]
            if problem is None:
                rows.append(CellSummary(i, "skipped", checks="generated code: runs only in the "
                                        "sandbox, not in the kernel"))
            else:
                rows.append(CellSummary(i, "FAIL" if client.untrusted else "skipped",
                                        checks=f"{problem}: not executed"))
        elif spec_of(cell.source) is not None:
            if i in client.ran:
                rows.append(_generate_row(cell, i, client.ran[i]))
            else:
                rows.append(CellSummary(i, "not run", checks="the run stopped before this cell"))
        elif i == client.failed_at:
            error: dict[str, Any] = next(
                (o for o in cell.get("outputs", []) if o.get("output_type") == "error"), {})
            rows.append(CellSummary(i, "FAIL", duration=client.ran.get(i, 0.0),
                                    checks=one_line(f"{error.get('ename', 'Error')}: "
                                                    f"{error.get('evalue', '')}", 120)))
    return rows


def runner_policy(paths: Sequence[Path], outputs: Sequence[Path]) -> Policy:
    """The sandbox this machine gives: docker, gVisor where the engine has it."""
    from .._pipeline.untrusted import engine_isolation

    roots = {str(p.resolve().parent) for p in (*paths, *outputs)}
    return Policy(sandbox="docker", isolation=engine_isolation(), roots=tuple(sorted(roots)),
                  audit_log=os.environ.get("LLMSCRIPT_AUDIT_LOG", ""),
                  cache_dir=os.environ.get("LLMSCRIPT_CACHE_DIR", ""))


def _run_one(path: Path, output: Path, replay: bool, timeout: int, kernel: str,
             prefix: str, policy: Policy | None) -> NotebookOutcome:
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    outcome = NotebookOutcome(path, output)
    env = dict(os.environ)
    env.pop(POLICY_ENV, None)
    env["JPY_SESSION_NAME"] = str(path.resolve())  # as a server does: the kernel finds its notebook
    if policy is not None:
        env[POLICY_ENV] = policy.to_env()
    else:  # --trust: the user vouched for it (no implicit policy for its kernel either)
        env[TRUST_ENV] = "1"
    if replay:
        if stale := stale_cells(nb):
            outcome.error = (f"cells {', '.join(map(str, stale))} changed since they were "
                             "recorded (or were never recorded): run without --replay to "
                             "generate them anew")
            return outcome
        env["LLMSCRIPT_REPLAY"] = str(path.resolve())
        for key in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
            env.pop(key, None)  # replay must not depend on, or leak, a key
    total = sum(1 for c in nb.cells
                if c.cell_type == "code" and c.source.strip() and not is_generated(c))
    done = [0]

    def on_done(cell: Any, cell_index: int, **_: Any) -> None:
        done[0] += 1
        bar = "#" * (20 * done[0] // max(total, 1))
        first = (cell.source.strip().splitlines() or [""])[0][:40]
        print(printable(f"{prefix}[{bar:<20}] {done[0]}/{total} cell {cell_index}: {first}"),
              file=sys.stderr, flush=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    # the kernel's own log (e.g. its plain-TCP warning) is noise here
    arguments = ["--IPKernelApp.log_level=ERROR"]
    if policy is not None:  # read before any cell runs (where /proc/self/environ is missing)
        arguments.append("--IPKernelApp.exec_lines=import llmscript_magic._pipeline.trust")
    # cells run in the output's folder, so files they write land beside the result, not the source
    client = _client_class()(nb, untrusted=policy is not None, timeout=timeout,
                             kernel_name=kernel, extra_arguments=arguments,
                             resources={"metadata": {"path": str(output.parent.resolve())}},
                             on_cell_executed=on_done)
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        where = f"cell {client.failed_at}: " if client.failed_at is not None else ""
        outcome.error = where + one_line(f"{err.ename}: {err.evalue}")
    except Exception as err:  # kernel died, timeout, ...
        outcome.error = one_line(f"{type(err).__name__}: {err}", 200)
    outcome.cells = _summarize(nb, client)
    nbformat.write(nb, output)
    return outcome


def _output_for(path: Path, output: str | None, many: bool) -> Path:
    if output is None:
        return path.with_name(path.stem + ".out.ipynb")
    out = Path(output)
    return out / path.name if many or out.is_dir() else out


def print_summary(outcomes: Sequence[NotebookOutcome]) -> None:
    """The table of cells; every name, source and message in it is terminal-safe."""
    print(f"\n{'notebook':24} {'cell':>4}  {'result':8} {'source':7} {'run':16} {'time':>7} "
          f"{'tokens':>7}  checks")
    for o in outcomes:
        for c in o.cells:
            took = f"{c.duration:.2f}s" if c.result not in ("skipped", "not run") else "-"
            print(printable(f"{o.path.name[:24]:24} {c.index:>4}  {c.result:8} "
                            f"{c.source[:7]:7} {c.run[:16]:16} {took:>7} {c.tokens:>7}  "
                            f"{c.checks[:100]}"))
        status = "ok" if not o.failed else f"FAILED: {o.error or 'a cell failed (see above)'}"
        print(printable(f"{o.path.name}: {status} -> {o.output}"))


def run_notebooks(paths: Sequence[str], *, output: str | None = None, replay: bool = False,
                  jobs: int = 1, timeout: int = 600, kernel: str = "python3",
                  trust: bool = False) -> int:
    files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():
            raise ConfigurationError(f"No notebook at {f}: check the path.")
    many = len(files) > 1
    if jobs < 1:
        raise ConfigurationError("-j must be at least 1.")
    outputs = [_output_for(f, output, many) for f in files]
    policy = None if trust else runner_policy(files, outputs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_one, f, out, replay, timeout, kernel,
                               f"{f.stem}: " if many else "", policy)
                   for f, out in zip(files, outputs, strict=True)]
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
