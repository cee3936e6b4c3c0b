"""``--sandbox course``: runs go to the course's hub service, into the class's shared engine.

A student's kernel must not hold the Docker socket (that is root on the host). The
course service does: it checks the student's hub token, caps the limits, runs the job
through the ``docker`` backend (same isolation) in containers labelled with the
student's name, and records the run in the student's usage. This side only sends the
job and turns the answer back into a ``RunResult`` (``wire.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import ConfigurationError, SandboxError, SandboxUnavailableError
from .base import Limits, RunResult, Sandbox, Value
from .mounts import split_files
from .wire import job_to_json, result_from_json

URL_ENV = "LLMSCRIPT_COURSE_URL"
TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
#: The service has no view of this host's files: they are sent, never bound.
ON_HUB = "the course's sandbox runs on the hub"
#: time the service may take beyond the run's own timeout (queueing, a container start)
SLACK = 90.0


class CourseSandbox(Sandbox):
    """The course service's ``v1/run``, authenticated with the student's hub token."""

    backend = "course"

    def __init__(self, isolation: str = "auto") -> None:
        if isolation != "auto":
            raise ConfigurationError("--isolation is the course's choice with --sandbox course: "
                                     "drop it.")
        url = os.environ.get(URL_ENV, "")
        if not url:
            raise ConfigurationError(f"--sandbox course needs the course service's address "
                                     f"({URL_ENV}, set by the course's hub): use --sandbox "
                                     "docker or local outside a course.")
        self.url = url.rstrip("/") + "/v1/run"

    def run(self, code: str, *, files: Mapping[str, bytes | os.PathLike[str]] | None = None,
            limits: Limits | None = None, inputs: Sequence[Value] = (),
            outputs: Sequence[str] = (), check: str | None = None,
            session: bool = False) -> RunResult:
        if session:
            raise ConfigurationError("--session keeps state in this kernel's own sandbox; the "
                                     "course's runs are stateless: drop --session")
        import urllib.error
        import urllib.request

        limits = limits or Limits()
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise SandboxUnavailableError(f"No hub token ({TOKEN_ENV}): --sandbox course works "
                                          "in a server started by the course's JupyterHub.")
        sent = split_files(files, limits.file_bytes, ON_HUB)[0]
        body = json.dumps(job_to_json(code, files=sent, limits=limits, inputs=inputs,
                                      outputs=outputs, check=check)).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Authorization": f"token {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=limits.timeout + SLACK) as resp:
                answer: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            with err:  # its response holds the connection: close it, not the collector
                raise SandboxError(_refusal(err.code, err.read())) from None
        except (OSError, ValueError) as err:  # URLError, timeouts, a garbled answer
            raise SandboxUnavailableError(f"Could not run in the course's sandbox at {self.url} "
                                          f"({type(err).__name__}): ask your teacher whether "
                                          "the course service is running.") from None
        return result_from_json(answer)


def _refusal(status: int, body: bytes) -> str:
    """The service's one-line refusal (rate, busy, token), never a page of HTML."""
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = ""
    if not message and status == 403:
        message = ("The course service did not accept your hub token (403): restart your "
                   "server from the hub's control panel, or ask your teacher.")
    return " ".join((message or f"The course's sandbox answered {status}: ask your "
                     "teacher.").split())[:300]
