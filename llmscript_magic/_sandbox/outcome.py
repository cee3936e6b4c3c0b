"""From what a run reported to the RunResult a user sees (shared by backends)."""

from __future__ import annotations

import json
from typing import Any

from .base import Limits, OutputFile, RunResult


def child_env(limits: Limits) -> dict[str, str]:
    """The script's whole environment: nothing comes from the host."""
    threads = str(max(1, int(limits.cpus)))
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/.config/matplotlib",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "OPENBLAS_NUM_THREADS": threads,
        "OMP_NUM_THREADS": threads,
    }


def clean_report(body: bytes) -> dict[str, Any]:
    """The runner's report, type-checked: code in the container could forge one."""
    try:
        raw = json.loads(body)
        changed = [[str(n), int(z)] for n, z in raw.get("changed", [])][:10000]
        rc = raw.get("returncode")
        return {
            "returncode": None if rc is None else int(rc),
            "timed_out": bool(raw.get("timed_out")), "capped": bool(raw.get("capped")),
            "oom": bool(raw.get("oom")), "changed": changed,
            "exception": None if raw.get("exception") is None else str(raw["exception"])[:200],
        }
    except (ValueError, TypeError, AttributeError):
        return {"returncode": None, "changed": [], "tampered": True}


def build_result(report: dict[str, Any] | None, out: bytes, err: bytes, figures: list[bytes],
            files: list[OutputFile], limits: Limits, duration: float, image: str | None, *,
            oom: bool, host_timeout: bool, host_capped: bool, diag: bytes) -> RunResult:
    report = report or {}
    rc = report.get("returncode")
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
        elif rc is not None and rc > 128:
            reason = f"The script was killed by signal {rc - 128}"
            if rc - 128 == 25:
                reason += f" (file size limit {limits.file_bytes} bytes)"
        else:
            reason = f"The script exited with code {rc}"
    if status in ("timeout", "memory"):
        stderr += f"\n[sandbox] {reason}\n"
    return RunResult(status=status, exit_code=exit_code, stdout=stdout, stderr=stderr,  # type: ignore[arg-type]
                     duration=duration, truncated=capped, files=files, figures=figures,
                     backend="docker", image=image, reason=reason)
