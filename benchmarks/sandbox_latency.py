"""Round-trip latency of a trivial script: local python, cold docker run, our pool.

Run: python benchmarks/sandbox_latency.py [--runs N]. Prints medians and the
ratios against a cold hardened runc `docker run` (target: a pooled run, under
plain containers AND under gVisor where the engine has runsc, <= 0.25 x cold).
gVisor starts slower than runc; the warm pool is what hides it. Noise between
machines is large, so only ratios measured side by side in one run mean much.
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
from llmscript_magic._sandbox.engine import gvisor_problem
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

    levels = ["container"] + (["gvisor"] if gvisor_problem(client) is None else [])
    pooled = {}
    for level in levels:
        sandbox = get_sandbox("docker", isolation=level)

        def run(sandbox: object = sandbox) -> None:
            r = sandbox.run(CODE, limits=limits)  # type: ignore[attr-defined]
            assert r.stdout == "499500\n", r

        run()  # warm the pool
        pooled[level] = run
    time.sleep(1.0)
    cold_name = "cold docker run (runc, hardened)"
    results = {"bare local python3 -c": timed(local, runs), cold_name: timed(cold, runs)}
    for level, fn in pooled.items():
        results[f"pooled sandbox run ({level})"] = timed(fn, runs, pause=0.4)
    shutdown()
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    for name, ms in med.items():
        print(f"{name:36s} median {ms:7.1f} ms  (min {min(results[name]) * 1000:.1f})")
    cold_ms, ok = med[cold_name], True
    for level in pooled:
        ratio = med[f"pooled sandbox run ({level})"] / cold_ms
        ok = ok and ratio <= 0.25
        print(f"pooled {level} / cold runc docker run = {ratio:.3f}  (target <= 0.25)")
    if "gvisor" not in pooled:
        print(f"gVisor not measured: {gvisor_problem(client)}")
    print(f"cold docker / bare local  = {cold_ms / med['bare local python3 -c']:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
