"""From what a run reported to the RunResult a user sees (shared by backends)."""

from __future__ import annotations

import functools
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from .base import Limits, OutputFile, RunResult, Value
from .harness import protocol as proto
from .harness.codec import FORMATS

_HARNESS = Path(__file__).parent / "harness"


@functools.cache
def harness_source(name: str) -> str:
    """A harness module's text, read once: every job carries it (a container runs this
    version of the harness, whatever its image was built with)."""
    return (_HARNESS / name).read_text(encoding="utf-8")


def child_env(limits: Limits) -> dict[str, str]:
    """The script's whole environment: nothing comes from the host."""
    threads = str(max(1, int(limits.cpus)))
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": proto.TMP,
        "TMPDIR": proto.TMP,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": proto.MPL_SHARED,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        # glibc reserves 64 MiB of address space per thread arena: under a run's
        # RLIMIT_AS a few threads would use up the limit without using the memory
        "MALLOC_ARENA_MAX": "2",
    }


def harness_job(code: str, inputs: Sequence[Value], outputs: Sequence[str],
                check: str | None) -> dict[str, Any]:
    """The part of the runner's job that says what the harness does around the script.

    Input values travel after the JSON as raw bytes (``size`` each); the
    harness's own modules go along so a pooled container runs this version.
    """
    import importlib.util

    names = [v.name for v in inputs]
    if len(set(names)) < len(names) or not all(n.isidentifier() for n in names):
        raise ConfigurationError(f"Input variable names {names!r} must be distinct identifiers")
    return {
        "code": code,
        "inputs": [{"name": v.name, "format": v.format, "size": len(v.data)} for v in inputs],
        "outputs": list(outputs), "check": check or None,
        # the host decodes the outputs: parquet only when it can read it
        "parquet": importlib.util.find_spec("pyarrow") is not None,
        "harness": {name: harness_source(name) for name in ("codec.py", "wrapper.py")},
    }


def clean_report(body: bytes) -> dict[str, Any]:
    """The runner's report, type-checked: code in the container could forge one.

    Anything malformed (not JSON, wrong types, nested deep enough to exhaust
    the parser) is a report that says it was tampered with, never an exception.
    """
    try:
        raw = json.loads(body)
        changed = [[str(n), int(z)] for n, z in raw.get("changed", [])][:10000]
        rc = raw.get("returncode")
        return {
            "returncode": None if rc is None else int(rc),
            "timed_out": bool(raw.get("timed_out")), "capped": bool(raw.get("capped")),
            "oom": bool(raw.get("oom")), "changed": changed,
            "exception": None if raw.get("exception") is None else str(raw["exception"])[:200],
            "check": _verdict(raw.get("check")), "missing": _missing(raw.get("missing")),
            "tampered": bool(raw.get("tampered")),
            # the runner's word that nothing of the run is left (the container may serve
            # another run); a forged one cannot hurt: a later run only meets its own uid's
            "reusable": raw.get("reusable") is True, "left": int(raw.get("left") or 0),
        }
    except (ValueError, TypeError, AttributeError, RecursionError):
        return {"returncode": None, "changed": [], "tampered": True}


def _verdict(raw: Any) -> tuple[bool | None, str] | None:
    if raw is None:
        return None
    ok, why = raw  # a pair, or the report is malformed
    if not isinstance(ok, (bool, type(None))) or not isinstance(why, str):
        raise TypeError("check verdict")
    return ok, _line(why, 300)


def _missing(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 1000:
        raise TypeError("missing outputs")
    return {str(k)[:100]: _line(str(v), 300) for k, v in raw.items()}


def _line(text: str, width: int) -> str:
    return " ".join(text.split())[:width]


def values_from(payloads: list[bytes], wanted: Sequence[str]) -> list[Value]:
    """``v`` frames (a JSON header line, then the data) for the names asked for, first wins."""
    out: dict[str, Value] = {}
    for payload in payloads:
        head, sep, data = payload.partition(b"\n")
        try:
            meta = json.loads(head) if sep and len(head) < 1024 else None
            name, fmt = (str(meta["name"]), str(meta["format"])) if isinstance(meta, dict) \
                else ("", "")
        except (ValueError, KeyError, RecursionError):
            continue
        if name in wanted and fmt in FORMATS and name not in out:
            out[name] = Value(name, fmt, data)
    return [out[n] for n in wanted if n in out]


def signal_name(number: int) -> str:
    """"SIGSEGV" for 11; "signal 99" when the number names none."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def build_result(report: dict[str, Any] | None, out: bytes, err: bytes, figures: list[bytes],
            files: list[OutputFile], limits: Limits, duration: float, image: str | None, *,
            oom: bool, host_timeout: bool, host_capped: bool, diag: bytes,
            values: Sequence[Value] = ()) -> RunResult:
    """The RunResult for what the runner reported and the host saw.

    Values and the check's verdict count only for a run that ended "ok": the
    harness computes them after the script ends without failing.
    """
    report = report or {}
    rc = report.get("returncode")
    if rc is not None and rc < 0:
        rc = 128 - rc  # killed by a signal: the shell's convention, the same on every backend
    exit_code = None if rc is None else (rc - 256 if rc > 255 else rc)
    capped = host_capped or bool(report.get("capped"))
    oom = oom or report.get("exception") == "MemoryError"
    stderr = err.decode("utf-8", "replace")
    stdout = out.decode("utf-8", "replace")
    if capped:
        status, reason = "output_capped", (
            f"Output passed the {limits.output_bytes}-byte limit; the script was stopped")
        marker = f"\n[... output truncated at {limits.output_bytes} bytes ...]\n"
        stdout = stdout[:limits.output_bytes] + marker
    elif oom:
        status, reason = "memory", f"Ran out of memory (limit {limits.memory_mb} MB)"
    elif host_timeout or report.get("timed_out"):
        status, reason = "timeout", f"Stopped at the {limits.timeout:g} s time limit"
    elif report.get("tampered"):
        status, reason = "error", "The script tampered with the sandbox's report channel"
    elif not report:
        status = "error"
        reason = "The sandbox runner ended without a report"
        if diag:
            reason += ": " + diag.decode("utf-8", "replace").strip().splitlines()[-1][:200]
    elif rc == 0:
        status, reason = "ok", ""
    else:
        status = "error"
        exc = report.get("exception")
        if exc:
            reason = f"The script raised {exc}"
        elif rc is not None and 128 < rc < 160:
            reason = f"The script was killed by {signal_name(rc - 128)}"
            if rc - 128 == 25:
                reason += f" (file size limit {limits.file_bytes} bytes)"
        else:
            reason = f"The script exited with code {rc}"
    if status in ("timeout", "memory"):
        stderr += f"\n[sandbox] {reason}\n"
    return RunResult(status=status, exit_code=exit_code, stdout=stdout, stderr=stderr,  # type: ignore[arg-type]
                     duration=duration, truncated=capped, files=files, figures=figures,
                     backend="docker", image=image, reason=reason,
                     values=list(values) if status == "ok" else [],
                     missing=dict(report.get("missing") or {}) if status == "ok" else {},
                     check=report.get("check") if status == "ok" else None)
