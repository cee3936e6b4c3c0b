"""Round-trip latency of a trivial script: local python, cold docker run, our pool.

Run: python benchmarks/sandbox_latency.py [--runs N]. Prints medians and the
ratios (target: pooled <= 0.25 x cold). Noise between machines is large, so
only ratios measured in one run are meaningful.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from llmscript_magic._sandbox import DEFAULT_IMAGE, Limits, get_sandbox, shutdown
from llmscript_magic._sandbox.docker import _host_config, connect
from llmscript_magic._sandbox.image import LABEL

CODE = "print(sum(range(1000)))"


def timed(fn: Callable[[], object], runs: int, pause: float = 0.0) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
        time.sleep(pause)  # let the pool refill, as between two notebook cells
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    client = connect()
    limits = Limits()

    def local() -> None:
        subprocess.run(["python3", "-c", CODE], check=True, capture_output=True)

    def cold() -> None:
        c = client.api.create_container(
            DEFAULT_IMAGE, command=["python3", "-c", CODE], user="65534:65534",
            environment={}, labels={LABEL: "1"}, use_config_proxy=False,
            host_config=_host_config(client, limits) | {"AutoRemove": False,
                                                       "LogConfig": {"Type": "json-file"}})
        client.api.start(c)
        client.api.wait(c)
        assert client.api.logs(c).strip() == b"499500"
        client.api.remove_container(c, force=True, v=True)

    sandbox = get_sandbox("docker")

    def pooled() -> None:
        assert sandbox.run(CODE, limits=limits).stdout == "499500\n"

    pooled()  # warm the pool
    time.sleep(1.0)
    results = {
        "bare local python3 -c": timed(local, runs),
        "cold docker run (SDK, hardened)": timed(cold, runs),
        "pooled sandbox run": timed(pooled, runs, pause=0.4),
    }
    shutdown()
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    for name, ms in med.items():
        print(f"{name:34s} median {ms:7.1f} ms  (min {min(results[name]) * 1000:.1f})")
    cold_ms, pool_ms = med["cold docker run (SDK, hardened)"], med["pooled sandbox run"]
    print(f"pooled / cold docker run  = {pool_ms / cold_ms:.3f}  (target <= 0.25)")
    print(f"pooled / bare local       = {pool_ms / med['bare local python3 -c']:.2f}")
    print(f"cold docker / bare local  = {cold_ms / med['bare local python3 -c']:.2f}")
    sys.exit(0 if pool_ms <= 0.25 * cold_ms else 1)


if __name__ == "__main__":
    main()
