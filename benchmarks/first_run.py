"""The first ``%%generate --run`` of a kernel against the next one, in real kernels.

Each kernel (``--kernels`` of them, fresh processes through jupyter_client) loads the
extension, then, with ``--think`` seconds between cells as a user typing a spec would
take, runs the same ``%%generate --run --no-cache`` cell three times against the
Messages-API stand-in (out of process, answering at once). Printed side by side:
``%load_ext``, the first, second and third generation (medians over the kernels) and
the ratio first / second, with the background preparation on (the default) and off
(``LLMSCRIPT_WARMUP=0``, how a first generation was before). Target: first <= 1.5x
second with it on.

    python benchmarks/first_run.py [--kernels 3] [--think 2.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from _bench import ROOT, fenced, standin, verdict

CELL = ("%%generate --run --no-cache --no-insert\n"
        "Print the sum of the numbers from 0 to 9.\n")


def one_kernel(env: dict[str, str], think: float) -> list[float]:
    """Seconds for %load_ext, then each of three generations (cell sent to kernel idle)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)
    try:
        times = []
        for n, code in enumerate(["%load_ext llmscript_magic", CELL, CELL, CELL]):
            if n:
                time.sleep(think)
            errors: list[str] = []

            def hook(msg: dict[str, Any], errors: list[str] = errors) -> None:
                if msg["msg_type"] == "error":
                    errors.append(msg["content"]["evalue"])

            start = time.perf_counter()
            reply = kc.execute_interactive(code, timeout=180, output_hook=hook)
            times.append(time.perf_counter() - start)
            if reply["content"]["status"] != "ok" or errors:
                raise SystemExit(f"cell {n} failed in the kernel: {errors}")
        return times
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", type=int, default=3)
    parser.add_argument("--think", type=float, default=5.0,
                        help="seconds between cells (the user typing the next one)")
    args = parser.parse_args()
    results: dict[str, list[list[float]]] = {"on": [], "off": []}
    with standin([], default=fenced("print(sum(range(10)))")) as served:
        for _ in range(args.kernels):
            for mode in ("on", "off"):  # interleaved: machine noise hits both alike
                env = {**os.environ, **served, "LLMSCRIPT_WARMUP": "1" if mode == "on" else "0"}
                results[mode].append(one_kernel(env, args.think))
    medians = {}
    for mode, runs in results.items():
        med = [statistics.median(r[i] for r in runs) * 1000 for i in range(4)]
        medians[mode] = med
        label = "background preparation " + mode
        print(f"{label:27s} %load_ext {med[0]:6.0f} ms | 1st {med[1]:6.0f} ms | "
              f"2nd {med[2]:6.0f} ms | 3rd {med[3]:6.0f} ms | 1st/2nd {med[1] / med[2]:.2f}x")
    on, off = medians["on"], medians["off"]
    print(f"  ({args.kernels} kernels each, median; {args.think:g} s between cells; "
          "stand-in answering at once)")
    return verdict([("first / second generation (preparation on)", on[1] / on[2], 1.5, "x"),
                    ("%load_ext with / without preparation", on[0] / off[0], 1.5, "x")])


if __name__ == "__main__":
    raise SystemExit(main())
