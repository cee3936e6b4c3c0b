"""What do extraction and validation of a long reply cost, next to one ``ast.parse``?

The pipeline parses a script once: extraction keeps the tree of the code it
chose, and validation (syntax, imports, risks) reuses that tree and one import
resolver. This prints both timings, measured side by side in one process (CPU
time, the best of many runs), and their ratio; it exits non-zero when extraction
+ validation of a 500-line reply cost more than ``--limit`` (2x) one parse of its
script. For information it also prints the ratio for other shapes of the same
script: step-by-step blocks (compared before they are joined), an artifact
wrapper, after a reasoning trace holding a full draft, beside a pytest file
(whose block is parsed too), and unfenced between prose.

    python benchmarks/extract_validate.py [--lines 500] [--runs 30] [--rounds 9] [--limit 2.0]
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from collections.abc import Callable

from llmscript_magic._pipeline.extract import extract_code
from llmscript_magic._pipeline.validate import validate

IMAGE = frozenset({"argparse", "csv", "json", "math", "os", "pathlib", "statistics", "sys",
                   "collections", "dataclasses", "datetime", "typing", "pandas", "re"})

HEADER = '''#!/usr/bin/env python3
"""Summarise the orders export: totals per region, month and product."""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable

DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m-%d-%Y")
'''

# One section per step of a typical data script; numbered copies make the length.
SECTION = '''

@dataclass
class Order{n}:
    """One row of the export, cleaned."""

    order_id: str
    region: str
    product: str
    quantity: int
    price: float
    when: date
    tags: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(self.quantity * self.price, 2)


def parse_date_{n}(text: str) -> date:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise ValueError(f"unknown date format: {{text!r}}")


def read_orders_{n}(path: Path) -> list[Order{n}]:
    orders = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row.get("order_id"):
                continue
            qty = int(row.get("quantity") or 0)
            price = float(re.sub(r"[^0-9.]", "", row.get("price", "0")) or 0)
            orders.append(Order{n}(row["order_id"], row.get("region", "?").title(),
                                   row.get("product", "").strip(), qty, price,
                                   parse_date_{n}(row["date"]),
                                   [t for t in row.get("tags", "").split(";") if t]))
    return orders


def summarise_{n}(orders: Iterable[Order{n}]) -> dict[str, object]:
    by_region: dict[str, float] = defaultdict(float)
    by_month: dict[str, float] = defaultdict(float)
    products: Counter[str] = Counter()
    totals = []
    for order in orders:
        by_region[order.region] += order.total
        by_month[order.when.strftime("%Y-%m")] += order.total
        products[order.product] += order.quantity
        totals.append(order.total)
    spread = statistics.pstdev(totals) if len(totals) > 1 else 0.0
    return {{
        "regions": dict(sorted(by_region.items(), key=lambda kv: -kv[1])),
        "months": dict(sorted(by_month.items())),
        "top_products": products.most_common(5),
        "mean": statistics.fmean(totals) if totals else math.nan,
        "spread": spread,
    }}


def print_report_{n}(summary: dict[str, object]) -> None:
    print(f"{{'Region':<20}}{{'Total':>12}}")
    for region, total in summary["regions"].items():  # type: ignore[attr-defined]
        print(f"{{region:<20}}{{total:>12,.2f}}")
    print(json.dumps(summary, indent=2, default=str))
'''

FOOTER = '''

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path, nargs="?", default=Path("orders.csv"))
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    summary = summarise_0(read_orders_0(args.path))
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print_report_0(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''


def sections(lines: int) -> list[str]:
    """The parts of a realistic script of about ``lines`` lines."""
    parts, n = [HEADER], 0
    while sum(p.count("\n") for p in parts) + FOOTER.count("\n") < lines:
        parts.append(SECTION.format(n=n))
        n += 1
    return [*parts, FOOTER]


def reply(code: str) -> str:
    """The script as a model sends it: intro, the fenced script, how to run it, sample output."""
    return (
        "I'll write a script that reads `orders.csv` and summarises it by region, month and "
        "product.\n\n## The script\n\n```python\n" + code + "```\n\n## How to run\n\n"
        "```bash\npython report.py orders.csv --json\n```\n\n## Example output\n\n"
        "```\nRegion                     Total\nNorth                  1,520.00\n```\n\n"
        "**Notes:** rows without an `order_id` are skipped; prices may carry a currency sign.\n")


def steps_reply(parts: list[str]) -> str:
    """The same script as a tutorial writes it: one block per step, joined by extraction."""
    return "".join(f"Step {i + 1}:\n\n```python\n{p.strip()}\n```\n\n"
                   for i, p in enumerate(parts))


def other_shapes(code: str) -> dict[str, str]:
    """The same script in the other shapes current models answer in (for information)."""
    tests = "".join(f"def test_{i}():\n    assert summarise_0([])[\"spread\"] == 0.0\n\n\n"
                    for i in range(40))
    return {
        "in an <antArtifact> wrapper": (
            'I\'ll write it as an artifact.\n\n<antArtifact identifier="report" '
            'type="application/vnd.ant.code" language="python" title="report.py">\n'
            + code + "</antArtifact>\n\nRun it on your export.\n"),
        "after a <think> trace with a draft": (
            "<think>\nA first draft:\n```python\n" + code + "```\nGood enough.\n</think>\n\n"
            + reply(code)),
        "beside a pytest file": (
            reply(code) + "\nAnd `test_report.py`:\n\n```python\nimport pytest\n\n"
            "from report import summarise_0\n\n\n" + tests + "```\n"),
        "unfenced between prose": "Here is the script.\n\n" + code + "\nRun it with python.\n",
    }


def best(fn: Callable[[], object], runs: int) -> float:
    """The least CPU time of ``runs`` calls.

    CPU time of this thread, not wall time: on a busy machine a longer call is
    preempted more often, which would make the ratio depend on the load.
    """
    times = []
    for _ in range(runs):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return min(times)


def ratio(text: str, expect: str, runs: int, rounds: int) -> tuple[float, float, str]:
    """(one parse of the script, extraction + validation of the reply, the rule used)."""
    how = extract_code(text).how

    def pipeline() -> None:
        found = extract_code(text)
        report = validate(found.code, tree=found.tree, available=IMAGE)
        assert found.code == expect and report.ok, report.as_text()

    pipeline()  # warm up imports and caches, and check the result is right
    parse_s, pipe_s = [], []
    for _ in range(rounds):  # interleaved, so drift hits both sides alike
        parse_s.append(best(lambda: ast.parse(expect), runs))
        pipe_s.append(best(pipeline, runs))
    return min(parse_s), min(pipe_s), how


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--limit", type=float, default=2.0)
    args = parser.parse_args()
    parts = sections(args.lines)
    code = "".join(parts)
    one_parse, both, how = ratio(reply(code), code, args.runs, args.rounds)
    print(f"script: {code.count(chr(10))} lines, in one fenced block ({how})")
    print(f"one ast.parse of the script      {one_parse * 1000:8.2f} ms")
    print(f"extraction + validation          {both * 1000:8.2f} ms")
    print(f"ratio = {both / one_parse:.2f}x (limit {args.limit:.1f}x)")
    joined = "\n\n".join(p.strip() for p in parts) + "\n"
    s_parse, s_both, s_how = ratio(steps_reply(parts), joined, args.runs, max(args.rounds // 3, 1))
    print(f"same script in {len(parts)} step blocks ({s_how}): {s_both / s_parse:.2f}x "
          "(for information: each block is parsed, then their names are compared)")
    for shape, text in other_shapes(code).items():
        o_parse, o_both, o_how = ratio(text, code, args.runs, max(args.rounds // 3, 1))
        print(f"same script {shape} ({o_how}): {o_both / o_parse:.2f}x (for information)")
    if both / one_parse > args.limit:
        print(f"FAIL: over {args.limit:.1f}x one parse", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
