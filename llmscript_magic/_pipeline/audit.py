"""Audit log: one JSON line per generation and per sandbox run.

Hashes and statuses only: no spec text, no data values, no code, no secrets,
so the file can be shared with whoever reviews what ran.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .generate import Generation
    from .options import Options


def _write(path: str, event: dict[str, Any]) -> None:
    line = json.dumps(event, sort_keys=True) + "\n"
    # O_APPEND keeps lines whole when two kernels log at once
    fd = os.open(os.path.expanduser(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def log_generation(path: str, gen: Generation, opts: Options) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    base = {"time": now, "generation": gen.id, "model": gen.model, "spec_hash": gen.spec.hash()}
    for n, attempt in enumerate(gen.attempts, 1):
        _write(path, {**base, "event": "generation", "attempt": n, "source": attempt.source,
                      "code_hash": gen.code_hash() if attempt.code == gen.code else None,
                      "checks": {c.name: c.status for c in attempt.report.checks},
                      "usage": {"input": attempt.usage.input_tokens,
                                "output": attempt.usage.output_tokens}})
        if attempt.run is not None:
            r = attempt.run
            _write(path, {**base, "event": "run", "attempt": n, "backend": r.backend,
                          "status": r.status, "exit_code": r.exit_code,
                          "duration": round(r.duration, 3),
                          "limits": {"timeout": opts.timeout, "memory_mb": opts.memory_mb,
                                     "cpus": opts.cpus}})
