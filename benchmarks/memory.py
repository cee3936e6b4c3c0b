"""Memory of one kernel over 1,000 generations: growth must level off.

A notebook of ``--cells`` cells (50), each a ``%%generate`` with notebook data in its
spec, re-run until 1,000 generations have been made, through the scripted
``FakeProvider`` (no network, no sandbox) in one IPython shell. Python's heap
(tracemalloc) and the process's RSS are read after a warm-up, after 200 and after
1,000 generations. The session keeps every ``%llmscript usage`` row (a few hundred
bytes each, by design) but not every reply, prompt and run output forever: over the
second half of the generations the heap may grow by at most ``--per-generation``
bytes (1024) per generation. (The first half is not used for that bound: CPython
grows some tables of its own once, e.g. about 0.4 MB in ``ast.parse`` somewhere
between 200 and 1,000 parsed scripts, which is not the session's.) The ratio of growth
after 1,000 to growth after 200 is printed too.

    python benchmarks/memory.py [--generations 1000] [--cells 50] [--per-generation 1024]
"""

from __future__ import annotations

import argparse
import gc
import os
import tracemalloc
from typing import Any

from _bench import fenced, verdict

WARMUP = 20


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reply(n: int) -> str:
    """About 3 KB, like a model's answer: a short script with a few helpers."""
    body = "\n".join(
        f"def step_{i}(rows):\n    \"\"\"Step {i} of run {n}.\"\"\"\n"
        f"    return [r for r in rows if r.get('amount', 0) > {i + n % 7}]\n"
        for i in range(25))
    return fenced(f"import json\n\n{body}\nprint(json.dumps({{'run': {n}}}))")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--per-generation", type=float, default=1024,
                        help="bytes of heap a generation may add over the second half")
    parser.add_argument("--keep", type=int, default=0,
                        help="full generations the session keeps (default: its own "
                             "KEEP_GENERATIONS; a huge number shows the unbounded history)")
    parser.add_argument("--top", type=int, default=0, help="show the N biggest growth sites")
    args = parser.parse_args()

    from IPython.core.interactiveshell import InteractiveShell

    from llmscript_magic._notebook import session
    from llmscript_magic.providers import register
    from llmscript_magic.testing import FakeProvider

    if args.keep:
        session.KEEP_GENERATIONS = args.keep
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llmscript_magic")
    shell.run_line_magic("config", 'GenerateMagics.model = "fake:fake"')
    shell.run_line_magic("config", "GenerateMagics.cache = False")
    shell.user_ns["sales"] = [{"region": f"r{i % 5}", "amount": i * 1.5} for i in range(200)]
    fake = FakeProvider()
    register(fake)
    current: dict[str, Any] = {"metadata": {}}
    shell.get_parent = lambda: current  # type: ignore[attr-defined]  # the cell id JupyterLab sends
    gm = shell.magics_manager.registry["GenerateMagics"]

    def one(n: int) -> None:
        current["metadata"] = {"cellId": f"cell-{n % args.cells}"}
        fake.enqueue(reply(n))
        shell.execution_count += 1
        shell.run_cell_magic("generate", "--no-insert",
                             f"Cell {n % args.cells}: total amount per region of {{sales}}, "
                             "as JSON.\nConstraints:\n- skip rows without an amount\n")
        # IPython 9's plain shell keeps every displayed bundle for its own history;
        # a kernel does not (ipykernel's store_display_history is off by default)
        if shell.history_manager is not None:
            shell.history_manager.outputs.clear()
        fake.history.clear()  # the test double's own log of requests, not the kernel's

    def reading() -> tuple[float, float]:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] / 2**20, rss_mb()

    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):  # the text view prints each generation
        for n in range(WARMUP):
            one(n)
        tracemalloc.start(8 if args.top else 1)
        base = reading()
        marks = {}
        for n in range(WARMUP, WARMUP + args.generations):
            one(n)
            done = n - WARMUP + 1
            if done in (200, args.generations // 2, args.generations):
                marks[done] = reading()
                if args.top and done == 200:
                    snap = tracemalloc.take_snapshot()
            out.seek(0)
            out.truncate()
        shell.run_line_magic("llmscript", "usage")
    rows = len(gm.session.log)
    if args.top:
        grown = tracemalloc.take_snapshot().compare_to(snap, "traceback")
        for stat in grown[:args.top]:
            print(f"{stat.size_diff / 1024:8.0f} KiB  {stat.count_diff:6d} blocks")
            for line in stat.traceback.format()[-8:]:
                print("     ", line)
    tracemalloc.stop()
    (h200, r200), (hall, rall) = marks[200], marks[args.generations]
    heap200, heapall = h200 - base[0], hall - base[0]
    print(f"{args.generations} generations in {args.cells} cells (fake provider, no sandbox)")
    print(f"  Python heap growth: after 200 {heap200:6.2f} MB, after {args.generations} "
          f"{heapall:6.2f} MB ({heapall / max(heap200, 1e-6):.2f}x)")
    print(f"  RSS growth:         after 200 {r200 - base[1]:6.2f} MB, after {args.generations} "
          f"{rall - base[1]:6.2f} MB (RSS {rall:.0f} MB)")
    half = args.generations // 2
    per_gen = (hall - marks[half][0]) * 2**20 / (args.generations - half)
    print(f"  heap per generation over the last {args.generations - half}: {per_gen:.0f} bytes "
          f"(%llmscript usage keeps {rows} rows)")
    return verdict([
        ("usage rows missing", float(WARMUP + args.generations - rows), 0, ""),
        ("heap growth per generation, second half", per_gen, args.per_generation, "B"),
    ])


if __name__ == "__main__":
    raise SystemExit(main())
