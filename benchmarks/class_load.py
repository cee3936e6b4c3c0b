"""A class on one server: many kernel-like processes running small pandas scripts (issue 16).

Run: python benchmarks/class_load.py [--kernels 20] [--runs 5] [--deadline 600]

Each "kernel" is its own Python process with its own warm pool (as a Jupyter
kernel is); it runs a small pandas script ``--runs`` times through
``llmscript_magic.run``-style shared sandbox calls and exits. All kernels start at
once against the one engine. The benchmark checks that every run succeeded and
that nothing the kernels made is left on the engine, and compares the class's
wall time with perfect use of the cores:

    perfect = kernels x (CPU seconds one kernel alone uses) / cores

measured in the same run (one kernel alone first). "CPU seconds" counts what the
work costs wherever it runs: the kernel processes (their rusage), everything in
the engine's container cgroups (the scripts, runc's start, gVisor's sentry and
gofer: cgroup v1 ``cpuacct/docker``, which keeps the usage of removed
containers) and the engine daemons (dockerd, containerd). On a machine that
other work also loads, the whole machine's CPU (``/proc/stat``) would count
theirs too; it is printed for comparison, with the load average.
Target: class wall time <= 1.3 x perfect. Counts and time are bounded: at most
40 kernels x 20 runs, and every process is killed at ``--deadline`` seconds.

The kernels share the engine's budget of sandbox containers (``fairshare.py``;
``LLMSCRIPT_SANDBOX_BUDGET`` sets it): a thread samples the engine's list while the
class runs, and the peak of the kernels' containers must never pass the budget
(issue 24: 40 kernels x 5 runs, 200/200 ok, they wait and never fail).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

SCRIPT = ("import pandas as pd\n"
          "df = pd.DataFrame({'region': ['n', 's', 'n', 'e'] * 50, 'amount': range(200)})\n"
          "print(int(df.groupby('region').amount.sum().sum()))\n")
EXPECT = f"{sum(range(200))}\n"


def child(runs: int) -> None:
    """One kernel: `runs` runs on the process's shared sandbox, then a JSON line."""
    from llmscript_magic._sandbox import run
    from llmscript_magic._sandbox.fairshare import reporting
    from llmscript_magic._sandbox.image import owner_id

    durations, failures, ahead = [], [], []
    with reporting(lambda n: ahead.append(n) if n is not None else None):
        for _ in range(runs):
            start = time.perf_counter()
            r = run(SCRIPT)
            durations.append(time.perf_counter() - start)
            if r.status != "ok" or r.stdout != EXPECT:
                failures.append(f"{r.status}: {r.reason}")
    print(json.dumps({"owner": owner_id(), "durations": durations, "failures": failures,
                      "waited_behind": max(ahead, default=None)}), flush=True)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds spent so far by: our kernels, the engine's containers, its daemons."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"kernels": usage.ru_utime + usage.ru_stime, "containers": 0.0, "engine": 0.0}
    try:
        with open("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage") as fh:
            out["containers"] = int(fh.read()) / 1e9
    except (OSError, ValueError):
        pass
    tick = os.sysconf("SC_CLK_TCK")
    for name in ("dockerd", "containerd"):
        for pid in subprocess.run(["pgrep", "-x", name], capture_output=True,
                                  text=True).stdout.split():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                out["engine"] += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
    out["total"] = out["kernels"] + out["containers"] + out["engine"]
    out["machine"] = busy_seconds()
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def kernels(count: int, runs: int, deadline: float) -> tuple[float, list[dict[str, Any]]]:
    """Start `count` kernels at once; (wall seconds until the last ended, their reports)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--runs", str(runs)]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    reports = []
    for proc in procs:
        left = max(1.0, deadline - (time.perf_counter() - start))
        try:
            out, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise SystemExit(f"the class did not finish within {deadline:g} s") from None
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            reports.append({"owner": "", "durations": [],
                            "failures": [f"kernel exited {proc.returncode}: {err[-300:]}"]})
        else:
            reports.append(json.loads(lines[-1]))
    return time.perf_counter() - start, reports


class Peak(threading.Thread):
    """Samples the engine's sandbox containers by owner (every 0.2 s) while the class runs."""

    def __init__(self) -> None:
        from llmscript_magic._sandbox.docker import connect

        super().__init__(daemon=True)
        self.client = connect()
        self.samples: list[list[tuple[str, str]]] = []  # (owner, container id)
        self.stop = threading.Event()

    def run(self) -> None:
        from llmscript_magic._sandbox.image import LABEL, OWNER_LABEL

        while not self.stop.is_set():
            rows = self.client.api.containers(all=True, filters={"label": LABEL})
            self.samples.append([((r.get("Labels") or {}).get(OWNER_LABEL, ""), r["Id"])
                                 for r in rows])
            time.sleep(0.2)

    def most(self, owners: set[str]) -> int:
        return max((sum(1 for o, _ in s if o in owners) for s in self.samples), default=0)

    def made(self, owners: set[str]) -> int:
        """Distinct containers of these owners seen (a lower bound of those made)."""
        return len({c for s in self.samples for o, c in s if o in owners})


def budget() -> int:
    """The engine's budget the kernels share (LLMSCRIPT_SANDBOX_BUDGET, else the default)."""
    from llmscript_magic._sandbox.docker import connect, sandbox_budget

    return sandbox_budget(connect()).size


def leftovers(owners: set[str]) -> list[str]:
    """Containers and volumes on the engine that one of these kernels made."""
    from llmscript_magic._sandbox.docker import connect
    from llmscript_magic._sandbox.image import LABEL, OWNER_LABEL

    client = connect()
    found = [c["Id"][:12] for c in client.api.containers(all=True, filters={"label": LABEL})
             if (c.get("Labels") or {}).get(OWNER_LABEL) in owners]
    found += [v.name[:12] for v in client.volumes.list(filters={"label": LABEL})
              if (v.attrs.get("Labels") or {}).get(OWNER_LABEL) in owners]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = max(1, min(args.runs, 20))
    if args.child:
        child(runs)
        return
    count, deadline = max(1, min(args.kernels, 40)), max(10.0, min(args.deadline, 1800.0))
    cores = os.cpu_count() or 1

    load = os.getloadavg()[0]
    cpu0 = cpu_seconds()
    alone_wall, alone = kernels(1, runs, deadline)
    alone_use = _delta(cpu_seconds(), cpu0)
    alone_cpu = alone_use["total"]
    perfect = count * alone_cpu / cores

    time.sleep(2.0)
    cpu0 = cpu_seconds()
    peak = Peak()
    peak.start()
    wall, reports = kernels(count, runs, deadline)
    class_use = _delta(cpu_seconds(), cpu0)
    peak.stop.set()
    peak.join()
    class_cpu = class_use["total"]
    owners = {r["owner"] for r in reports + alone if r["owner"]}
    end = time.monotonic() + 20
    left = leftovers(owners)
    while left and time.monotonic() < end:
        time.sleep(0.5)
        left = leftovers(owners)

    durations = sorted(d for r in reports for d in r["durations"])
    failures = [f for r in reports for f in r["failures"]]
    done = len(durations) - len(failures)
    p95 = durations[int(0.95 * (len(durations) - 1))] if durations else float("nan")
    print(f"load average before: {load:.1f} on {cores} cores")
    print(f"one kernel alone: {runs} runs in {alone_wall:.1f} s, {alone_cpu:.1f} CPU s "
          f"({alone_cpu / runs:.2f} CPU s per run: kernel {alone_use['kernels']:.1f}, "
          f"containers {alone_use['containers']:.1f}, engine {alone_use['engine']:.1f}; "
          f"whole machine {alone_use['machine']:.1f})")
    print(f"class: {count} kernels x {runs} runs = {done}/{count * runs} ok in {wall:.1f} s "
          f"({class_cpu:.1f} CPU s ours, {class_use['machine']:.1f} whole machine, "
          f"{class_cpu / (wall * cores):.0%} of the cores ours); per run median "
          f"{statistics.median(durations) if durations else float('nan'):.2f} s, p95 {p95:.2f} s")
    print(f"perfect use of {cores} cores = {count} x {alone_cpu:.1f} / {cores} = {perfect:.1f} s;"
          f" class / perfect = {wall / perfect:.2f}  (target <= 1.3)")
    class_owners = {r["owner"] for r in reports if r["owner"]}
    most, size = peak.most(class_owners), budget()
    waited = [r["waited_behind"] for r in reports if r.get("waited_behind") is not None]
    print(f"sandbox containers at the peak: {most} (budget {size}), {peak.made(class_owners)} "
          f"made; {len(waited)} of {count} kernels waited, behind at most "
          f"{max(waited, default=0)}")
    print(f"left behind on the engine: {len(left)} {left[:5]}")
    for failure in failures[:5]:
        print("failure:", failure)
    sys.exit(0 if not failures and not left and done == count * runs and most <= size
             and wall <= 1.3 * perfect else 1)


if __name__ == "__main__":
    main()
