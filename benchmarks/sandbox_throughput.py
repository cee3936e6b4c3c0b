"""Throughput of the sandbox with runs in parallel against one after another (issue 16).

Run: python benchmarks/sandbox_throughput.py [--runs N] [--threads T] [--isolation auto]

The same N small runs (a HumanEval-sized script) go through one shared sandbox
twice: back to back on one thread, then on T threads at once (as `llmscript run
-j T` or several notebooks on one kernel do). Each phase starts from a freshly
filled quiet pool. Prints runs per second and the ratio (target: >= 1.5 with 4
threads on a 2-core machine), and how many warm containers the pool held at the
end of the parallel phase and after it went quiet.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from llmscript_magic._sandbox import Limits, get_sandbox, shutdown
from llmscript_magic._sandbox.pool import _pools, close_pools

CODE = ("def f(n):\n    return sum(i * i for i in range(n))\n"
        "assert f(3) == 5\nprint(f(20000))\n")
EXPECT = f"{sum(i * i for i in range(20000))}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--isolation", default="auto")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds to watch the pool shrink after the parallel phase")
    args = parser.parse_args()
    runs, threads = max(1, min(args.runs, 200)), max(1, min(args.threads, 16))
    sandbox = get_sandbox("docker", isolation=args.isolation)
    limits = Limits()

    def one(_: int = 0) -> float:
        start = time.perf_counter()
        r = sandbox.run(CODE, limits=limits)
        assert r.status == "ok" and r.stdout == EXPECT, r
        return time.perf_counter() - start

    def fresh_pool() -> None:
        close_pools(sandbox.client.api.base_url)  # type: ignore[attr-defined]
        one()
        time.sleep(4.0)  # a quiet pool, filled

    fresh_pool()
    start = time.perf_counter()
    for _ in range(runs):
        one()
    sequential = runs / (time.perf_counter() - start)

    fresh_pool()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        latencies = sorted(ex.map(one, range(runs)))
    parallel = runs / (time.perf_counter() - start)
    pools = list(_pools.values())
    held = sum(p.warm() for p in pools)
    time.sleep(max(0.0, min(args.idle, 120.0)))
    after = sum(p.warm() for p in pools)
    shutdown()
    ratio = parallel / sequential
    print(f"isolation {sandbox.isolation}, {runs} runs")  # type: ignore[attr-defined]
    print(f"sequential          {sequential:5.2f} runs/s")
    print(f"{threads} threads           {parallel:5.2f} runs/s  "
          f"(median latency {latencies[len(latencies) // 2] * 1000:.0f} ms)")
    print(f"parallel / sequential = {ratio:.2f}  (target >= 1.5)")
    print(f"warm containers: {held} right after the parallel phase, {after} after "
          f"{args.idle:g} s quiet (shrinks after LLMSCRIPT_POOL_IDLE seconds)")
    sys.exit(0 if ratio >= 1.5 else 1)


if __name__ == "__main__":
    main()
