"""A student's run in the class's shared engine, on the course service's side.

The service holds the Docker socket; students never do (it is root on the host). A
job from a kernel's ``--sandbox course`` (``_sandbox/course_client.py``) runs through the
product's own ``docker`` backend, so with the same hardening and isolation as anyone's
run, under the course's caps (``[service] run_timeout``, ``run_memory_mb``), in
containers labelled ``llmscript.student=NAME``: each student's runs get containers of
their own (the label is part of the warm pool's key), and an operator can see whose a
container is with ``docker ps --filter label=llmscript.student``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from .._errors import SandboxError
from .._sandbox import SHARED, SandboxSpec
from .._sandbox.wire import job_from_json, result_to_json
from .gate import Gate

STUDENT_LABEL = "llmscript.student"


def run_job(gate: Gate, user: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for one job; the gate's run started by the caller ends here."""
    start, status = time.monotonic(), "refused"
    try:
        try:
            code, kwargs = job_from_json(json.loads(body))
        except ValueError as err:
            return 400, {"error": f"Malformed run ({err}): update llmscript-magic in the "
                                  "server's environment."}
        settings = gate.settings
        limits = kwargs["limits"]
        kwargs["limits"] = replace(limits, timeout=min(limits.timeout, settings.run_timeout),
                                   memory_mb=min(limits.memory_mb, settings.run_memory_mb),
                                   cpus=min(limits.cpus, 1.0))
        try:
            sandbox = SHARED.get(SandboxSpec(isolation=settings.isolation,
                                                labels=((STUDENT_LABEL, user),)))
            result = sandbox.run(code, **kwargs)
        except SandboxError as err:
            status = "unavailable"
            return 503, {"error": f"The course's sandbox could not run it: {err}"}
        status = result.status
        if kwargs["limits"] != limits:
            note = (f"course caps: timeout {kwargs['limits'].timeout:g} s, memory "
                    f"{kwargs['limits'].memory_mb} MB")
            result.warning = "; ".join(filter(None, [result.warning, note]))
        return 200, result_to_json(result)
    finally:
        gate.end_run(user, time.monotonic() - start, status)
