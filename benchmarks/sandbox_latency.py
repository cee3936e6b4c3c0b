"""Round-trip latency of the sandbox, side by side in one run (issues 14 and 16).

Run: python benchmarks/sandbox_latency.py [--runs N] [--pause S] [--no-preimport]

Prints medians and two ratios:

- a trivial script (``print(sum(range(1000)))``) through our warm pool, under plain
  containers (runc) and gVisor (where the engine has runsc), against a cold hardened
  runc ``docker run`` (target: pooled gVisor <= 0.25 x cold);
- ``import pandas as pd`` plus a one-line sum in a pooled sandbox whose warm
  interpreter imported the image's libraries ahead of the job, against the same
  script in one that did not (today's way: the script pays for the import; target
  <= 0.25 x). ``--no-preimport`` (or LLMSCRIPT_PREIMPORT=0) measures only the old way.

It also prints what ``--check`` over the script's DataFrame adds (``len(s) == 100``,
judged by an evaluator the script cannot reach; no target): the same pandas run
with and without the check.

Between runs the benchmark pauses (``--pause``, as between two notebook cells) so
the pool can refill; gVisor starts slower than runc and the warm pool is what
hides it. Noise between machines is large: only ratios measured in one run mean much.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from llmscript_magic._sandbox import DEFAULT_IMAGE, Limits, get_sandbox, shutdown
from llmscript_magic._sandbox.docker import SCRIPT_UID, _host_config, connect, preimport_wanted
from llmscript_magic._sandbox.engine import gvisor_problem
from llmscript_magic._sandbox.image import LABEL
from llmscript_magic._sandbox.pool import close_pools

CODE = "print(sum(range(1000)))"
PANDAS = "import pandas as pd\nprint(int(pd.Series(range(100)).sum()))\n"
CHECKED = "import pandas as pd\ns = pd.Series(range(100))\nprint(int(s.sum()))\n"


def timed(fn: Callable[[], object], runs: int, pause: float = 0.0) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
        time.sleep(pause)  # let the pool refill, as between two notebook cells
    return out


def pooled(level: str, code: str, expect: str, preimport: bool,
           check: str | None = None) -> Callable[[], None]:
    sandbox = get_sandbox("docker", isolation=level, preimport=preimport)
    limits = Limits()

    def run() -> None:
        r = sandbox.run(code, limits=limits, check=check)
        assert r.stdout == expect, r
        assert check is None or r.check == (True, ""), r.check

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds between pooled runs (default 2.0)")
    parser.add_argument("--no-preimport", action="store_true",
                        help="measure only the old way: no libraries imported ahead")
    args = parser.parse_args()
    runs, pause = max(1, min(args.runs, 200)), max(0.0, min(args.pause, 10.0))
    preimport = preimport_wanted() and not args.no_preimport
    client = connect()
    limits = Limits()

    def local() -> None:
        subprocess.run(["python3", "-c", CODE], check=True, capture_output=True)

    def cold() -> None:
        c = client.api.create_container(
            DEFAULT_IMAGE, command=["python3", "-c", CODE], user=SCRIPT_UID,
            environment={}, labels={LABEL: "1"}, use_config_proxy=False,
            host_config=_host_config(client, limits)  # no runner here: no capability
            | {"CapAdd": None, "AutoRemove": False, "LogConfig": {"Type": "json-file"}})
        client.api.start(c)
        client.api.wait(c)
        assert client.api.logs(c).strip() == b"499500"
        client.api.remove_container(c, force=True, v=True)

    levels = ["container"] + (["gvisor"] if gvisor_problem(client) is None else [])
    cases: dict[str, Callable[[], None]] = {}
    for level in levels:
        cases[f"pooled trivial ({level})"] = pooled(level, CODE, "499500\n", preimport)
    pandas_modes = [False] + ([True] if preimport else [])
    for level in levels:
        for mode in pandas_modes:
            how = "pre-imported" if mode else "imported by the script"
            cases[f"pooled pandas, {how} ({level})"] = pooled(level, PANDAS, "4950\n", mode)
        cases[f"pooled pandas, --check over it ({level})"] = pooled(
            level, CHECKED, "4950\n", preimport, check="len(s) == 100")
    cold_name = "cold docker run (runc, hardened)"
    results = {"bare local python3 -c": timed(local, runs), cold_name: timed(cold, runs)}
    for name, fn in cases.items():
        fn()  # start this case's pool, then let it fill
        time.sleep(3.0)
        results[name] = timed(fn, runs, pause=pause)
        close_pools(client.api.base_url)  # one case's warm containers at a time
    shutdown()
    med = {k: statistics.median(v) * 1000 for k, v in results.items()}
    for name, ms in med.items():
        print(f"{name:48s} median {ms:7.1f} ms  (min {min(results[name]) * 1000:.1f})")
    cold_ms, ok = med[cold_name], True
    for level in levels:
        ratio = med[f"pooled trivial ({level})"] / cold_ms
        ok = ok and (ratio <= 0.25 or level == "container")
        print(f"pooled {level} / cold runc docker run = {ratio:.3f}  (target <= 0.25)")
    if "gvisor" not in levels:
        print(f"gVisor not measured: {gvisor_problem(client)}")
    if preimport:
        for level in levels:
            ratio = (med[f"pooled pandas, pre-imported ({level})"]
                     / med[f"pooled pandas, imported by the script ({level})"])
            ok = ok and ratio <= 0.25
            print(f"pandas pre-imported / imported by the script ({level}) = {ratio:.3f}"
                  "  (target <= 0.25)")
    for level in levels:
        base = "pre-imported" if preimport else "imported by the script"
        added = med[f"pooled pandas, --check over it ({level})"] - med[
            f"pooled pandas, {base} ({level})"]
        print(f"--check over the script's Series adds {added:.1f} ms ({level})")
    print(f"cold docker / bare local  = {cold_ms / med['bare local python3 -c']:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
