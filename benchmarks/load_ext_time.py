"""How light is ``%load_ext llmscript_magic``? Side by side with ``import anthropic``.

Each figure is the median of fresh interpreters (imports are cached per process),
measured in the same run so the ratio is meaningful on a noisy machine.

    python benchmarks/load_ext_time.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

BASE = "from IPython.core.interactiveshell import InteractiveShell as S; ip = S.instance()"
CASES = {
    "IPython shell alone": "",
    "%load_ext llmscript_magic": "ip.run_line_magic('load_ext', 'llmscript_magic')",
    "import anthropic": "import anthropic",
    "import docker": "import docker",
    "import ipywidgets": "import ipywidgets",
}
TIMER = ("import time, sys; {base}; t = time.perf_counter(); {stmt}; "
         "print(time.perf_counter() - t)")


def measure(stmt: str, runs: int) -> float:
    code = TIMER.format(base=BASE, stmt=stmt or "pass")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout.strip().splitlines()[-1])
             for _ in range(runs)]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    results = {name: measure(stmt, runs) for name, stmt in CASES.items()}
    load = results["%load_ext llmscript_magic"]
    for name, seconds in results.items():
        print(f"{name:28} {seconds * 1000:8.1f} ms")
    print(f"ratio  %load_ext / import anthropic = {load / results['import anthropic']:.3f}")


if __name__ == "__main__":
    main()
