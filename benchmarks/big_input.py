"""A 1 GiB Parquet grouped through ``--input PATH``: sandbox wall time vs the kernel's.

The file is bound read-only into the sandbox (never copied), so reading it
there should cost about what it costs in the kernel. This writes a Parquet
file of ``--size`` MiB (an int group key and two float columns), then times
the same script (read, group, sum) in this process and in the sandbox at
each isolation level asked for, alternating, and reports the median ratio of
the sandbox's wall time (the whole ``run()``) to the kernel's. Target: <= 1.5x.
One untimed run on each side comes first: it puts the file in the page cache
and starts the container made for this set of bound files, which later runs
with the same file (repairs, re-runs) reuse.

The sandbox image needs pyarrow: by default the image built for this
environment (``llmscript sandbox build --like-kernel`` or ``--packages
pyarrow``). The machine's load average is printed: other work on it slows
both sides, not always equally.

    python benchmarks/big_input.py [--size 1024] [--runs 3] [--isolation container gvisor]
                                   [--image IMAGE] [--target 1.5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llmscript_magic._sandbox import Limits, get_sandbox
from llmscript_magic._sandbox.docker import available_modules
from llmscript_magic._sandbox.layers import env_image

SCRIPT = """\
import json
import pandas as pd
df = pd.read_parquet("sales.parquet")
out = df.groupby("region")[["amount", "qty"]].sum()
print(json.dumps({"rows": len(df), "total": float(out["amount"].sum())}))
"""


def write_parquet(path: Path, mib: int) -> int:
    """About mib MiB of Parquet (random floats barely compress); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = int(mib * 2**20 / 17.5)  # two 8-byte floats a row, the key in under a byte
    rng = np.random.default_rng(1)
    chunk = 4_000_000
    schema = pa.schema([("region", pa.int32()), ("amount", pa.float64()), ("qty", pa.float64())])
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            writer.write_table(pa.table({"region": rng.integers(0, 50, n, dtype=np.int32),
                                         "amount": rng.random(n), "qty": rng.random(n)},
                                        schema=schema))
    return rows


def in_kernel(folder: Path) -> tuple[float, str]:
    """The script in this process, from the file's folder (as a notebook cell runs it)."""
    here = os.getcwd()
    os.chdir(folder)
    out = __import__("io").StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        start = time.perf_counter()
        exec(compile(SCRIPT, "<cell>", "exec"), {"__name__": "__main__"})
        return time.perf_counter() - start, out.getvalue()
    finally:
        sys.stdout = saved
        os.chdir(here)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="Parquet size in MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--isolation", nargs="+", default=["container", "gvisor"])
    parser.add_argument("--image", default="", help="sandbox image with pyarrow")
    parser.add_argument("--target", type=float, default=1.5)
    args = parser.parse_args()
    image = args.image or env_image()
    if not image:
        print("no image built for this environment: run `llmscript sandbox build --like-kernel`"
              " or pass --image", file=sys.stderr)
        return 2
    # --memory caps each process's address space: pyarrow and numpy reserve far more
    # than they touch, so it sits well above the ~1.5 GiB a 1 GiB file takes resident
    limits = Limits(timeout=600, memory_mb=max(2048, args.size * 12), cpus=2.0)
    with tempfile.TemporaryDirectory(prefix="llmscript-big-") as tmp:
        path = Path(tmp) / "sales.parquet"
        t0 = time.perf_counter()
        rows = write_parquet(path, args.size)
        print(f"wrote {path.stat().st_size / 2**20:.0f} MiB of Parquet ({rows:,} rows) in "
              f"{time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")
        sandboxes = {}
        for isolation in args.isolation:
            sandboxes[isolation] = box = get_sandbox("docker", image=image, isolation=isolation)
            if "pyarrow" not in available_modules(image, box):
                print(f"{image} has no pyarrow: `llmscript sandbox build --packages pyarrow`",
                      file=sys.stderr)
                return 2
        kernel: list[float] = []
        walls: dict[str, list[float]] = {k: [] for k in sandboxes}
        in_kernel(path.parent)  # untimed warm-up on each side: the file in the page cache,
        for box in sandboxes.values():  # the container made for this file set started
            box.run(SCRIPT, files={"sales.parquet": path}, limits=limits)
        expected = ""
        for _ in range(args.runs):
            seconds, expected = in_kernel(path.parent)
            kernel.append(seconds)
            for isolation, box in sandboxes.items():
                start = time.perf_counter()
                r = box.run(SCRIPT, files={"sales.parquet": path}, limits=limits)
                walls[isolation].append(time.perf_counter() - start)
                print(f"  kernel {seconds:.2f} s, sandbox ({isolation}) "
                      f"{walls[isolation][-1]:.2f} s", flush=True)
                if r.status != "ok":
                    print(f"{isolation}: {r.status}: {r.reason}\n{r.stderr[-1500:]}",
                          file=sys.stderr)
                    return 1
                got, want = json.loads(r.stdout), json.loads(expected)
                if got["rows"] != want["rows"] or abs(got["total"] - want["total"]) > 1e-6 * \
                        abs(want["total"]):
                    print(f"{isolation}: different result {got} != {want}", file=sys.stderr)
                    return 1
        base = statistics.median(kernel)
        print(f"kernel: median {base:.2f} s over {args.runs} runs "
              f"({', '.join(f'{s:.2f}' for s in kernel)})")
        missed = False
        for isolation, times in walls.items():
            ratio = statistics.median(times) / base
            missed |= ratio > args.target
            print(f"sandbox ({isolation}): median {statistics.median(times):.2f} s "
                  f"({', '.join(f'{s:.2f}' for s in times)}): {ratio:.2f}x the kernel "
                  f"(target <= {args.target}x) {'MISSED' if ratio > args.target else 'ok'}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
