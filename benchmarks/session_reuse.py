"""A large CSV read once (``--session``) against read in every cell (stateless runs).

An analyst's follow-up cells on one data set: each stateless run is handed the
file and reads it again; in a session the first cell reads it into ``df`` and
the later ones use ``df``. Per isolation level, the follow-up cells alternate
(stateless, session, stateless, ...) and the median wall time of each (the
whole ``run()``) is printed with their ratio. Target: a session follow-up
costs at most 0.25x a stateless one for the default 40 MiB file.

    python benchmarks/session_reuse.py [--mb 40] [--cells 5] [--isolation gvisor container local]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import verdict

from llmscript_magic._sandbox import Limits, get_sandbox, sessions

READ = "import pandas as pd\ndf = pd.read_csv('data.csv')\n"
WORK = "print(int(df.b.sum()))\n"


def csv_of(mb: int) -> bytes:
    row = "".join(f"{i},{i % 97},{i * 7 % 1000}\n" for i in range(50_000)).encode()
    head = b"a,b,c\n"
    return head + row * max(1, mb * 2**20 // len(row))


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def level(name: str, data: bytes, cells: int) -> tuple[float, float]:
    """Median seconds of a follow-up cell: (stateless, session)."""
    box = get_sandbox("local") if name == "local" else get_sandbox("docker", isolation=name)
    limits = Limits(timeout=120, memory_mb=1024, disk_mb=512)
    folder = Path(tempfile.mkdtemp(prefix="llmscript-bench-"))
    (folder / "data.csv").write_bytes(data)
    (folder / "data.csv").chmod(0o644)
    files = {"data.csv": folder / "data.csv"}  # bound read-only, as --input PATH does
    sessions.reset()
    try:
        first = box.run(READ + WORK, files=files, limits=limits, session=True)  # reads it once
        box.run(READ + WORK, files=files, limits=limits)  # the pool's container, warm
        assert first.ok, first.stderr[-500:]
        plain, kept = [], []
        for _ in range(cells):
            seconds, result = timed(lambda: box.run(READ + WORK, files=files, limits=limits))
            assert result.ok, result.stderr[-500:]
            plain.append(seconds)
            seconds, result = timed(lambda: box.run(WORK, limits=limits, session=True))
            assert result.ok and result.stdout == first.stdout, result.stderr[-500:]
            kept.append(seconds)
        return statistics.median(plain), statistics.median(kept)
    finally:
        sessions.reset()
        box.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=40)
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument("--isolation", nargs="+", default=["gvisor", "container", "local"])
    parser.add_argument("--target", type=float, default=0.25)
    args = parser.parse_args()
    data = csv_of(args.mb)
    print(f"{len(data) / 2**20:.0f} MiB CSV, {args.cells} follow-up cells per side")
    rows = []
    for name in args.isolation:
        plain, kept = level(name, data, args.cells)
        print(f"  {name:10s} stateless {plain * 1000:8.0f} ms   session {kept * 1000:8.0f} ms")
        rows.append((f"{name}: session / stateless follow-up cell", kept / plain,
                     args.target, "x"))
    return verdict(rows)


if __name__ == "__main__":
    raise SystemExit(main())
