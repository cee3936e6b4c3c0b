"""``llmscript course usage``: the teacher's per-student report.

From the service (with the teacher's hub token, as in a hub terminal) or, on the
server itself, straight from the usage record.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .._errors import ConfigurationError
from .gate import Gate, ServiceSettings, report_text
from .settings import course_path, load_toml


def fetch_report(url: str, token: str | None = None) -> dict[str, Any]:
    import httpx2

    token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        raise ConfigurationError("No hub token: run this in your hub server's terminal, or set "
                                 "JUPYTERHUB_API_TOKEN.")
    try:
        resp = httpx2.get(url.rstrip("/") + "/v1/usage",
                          headers={"Authorization": f"token {token}"}, timeout=30)
    except httpx2.HTTPError as err:
        raise ConfigurationError(f"Could not reach the course service at {url} "
                                 f"({type(err).__name__}): check the address.") from None
    if resp.status_code != 200:
        try:
            message = str(resp.json().get("error", ""))
        except ValueError:
            message = ""
        raise ConfigurationError(message or f"The course service answered {resp.status_code}: "
                                 "is this hub user one of [service] teachers?")
    students: dict[str, Any] = resp.json()["students"]
    return students


def usage_report(url: str | None = None, file: str | None = None,
                 as_json: bool = False) -> str:
    """The report as text (or JSON): from the service at ``url``, else from the record."""
    url = url or os.environ.get("LLMSCRIPT_COURSE_URL")
    if url and not file:
        report = fetch_report(url)
    else:
        path = course_path()
        table = load_toml(path) if path is not None else {}
        settings = ServiceSettings(models=("-",))
        if table.get("service"):
            settings = ServiceSettings.from_table(table)
        if file:
            settings.usage_file = file
        report = Gate(settings).report()
    return json.dumps(report, indent=1) if as_json else report_text(report)


__all__ = ["fetch_report", "usage_report"]
