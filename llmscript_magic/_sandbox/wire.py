"""A run's job and its ``RunResult`` as JSON, for a sandbox that runs elsewhere.

The course's hub service runs students' code in the class's shared engine
(``course_client.py`` is the kernel's side). Bytes (files, figures, encoded values) travel as
base64; nothing is unpickled or executed on either side: values stay in the
harness's own formats (``Value``), decoded later by the notebook as usual.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from .._errors import ConfigurationError
from .base import Limits, OutputFile, RunResult, Value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(text: Any) -> bytes:
    return base64.b64decode(str(text), validate=True)


def job_to_json(code: str, *, files: Mapping[str, bytes] | None, limits: Limits,
                inputs: Sequence[Value], outputs: Sequence[str],
                check: str | None) -> dict[str, Any]:
    return {"code": code, "files": {k: _b64(bytes(v)) for k, v in (files or {}).items()},
            "limits": {f.name: getattr(limits, f.name) for f in fields(limits)},
            "inputs": [{"name": v.name, "format": v.format, "data": _b64(v.data)}
                       for v in inputs],
            "outputs": list(outputs), "check": check}


def job_from_json(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(code, keyword arguments of Sandbox.run)``; malformed input raises ValueError."""
    try:
        limits = Limits(**dict(body.get("limits") or {}))
        check = body.get("check")
        return str(body["code"]), {
            "files": {str(k): _bytes(v) for k, v in dict(body.get("files") or {}).items()},
            "limits": limits,
            "inputs": tuple(Value(str(v["name"]), str(v["format"]), _bytes(v["data"]))
                            for v in body.get("inputs") or ()),
            "outputs": tuple(str(n) for n in body.get("outputs") or ()),
            "check": None if check is None else str(check)}
    except (KeyError, TypeError, ConfigurationError) as err:
        raise ValueError(f"malformed run job ({err})") from None


def result_to_json(result: RunResult) -> dict[str, Any]:
    out = {f.name: getattr(result, f.name) for f in fields(result)}
    out["files"] = [{"name": f.name, "size": f.size, "data": _b64(f.data)} for f in result.files]
    out["figures"] = [_b64(f) for f in result.figures]
    out["values"] = [{"name": v.name, "format": v.format, "data": _b64(v.data)}
                     for v in result.values]
    out["check"] = list(result.check) if result.check is not None else None
    return out


def result_from_json(data: Mapping[str, Any]) -> RunResult:
    """The service's answer as a ``RunResult``; unknown keys (a newer service) are dropped."""
    known = {f.name for f in fields(RunResult)}
    kw = {k: v for k, v in data.items() if k in known}
    kw["files"] = [OutputFile(str(f["name"]), int(f["size"]), _bytes(f["data"]))
                   for f in data.get("files") or ()]
    kw["figures"] = [_bytes(f) for f in data.get("figures") or ()]
    kw["values"] = [Value(str(v["name"]), str(v["format"]), _bytes(v["data"]))
                    for v in data.get("values") or ()]
    check = data.get("check")
    kw["check"] = (check[0], str(check[1])) if check else None
    kw["missing"] = {str(k): str(v) for k, v in dict(data.get("missing") or {}).items()}
    kw["limit_scope"] = {str(k): str(v) for k, v in dict(data.get("limit_scope") or {}).items()}
    return RunResult(**kw)
