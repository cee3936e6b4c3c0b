"""Content-addressed reply store (recorded generations for replay: ``recordings.py``).

The key covers everything that shapes a reply (provider, model, system
prompt, messages, max tokens, temperature), so an unchanged cell makes no
request. Writes go to a temp file then ``os.replace``: two kernels writing the
same key at once both leave a whole, valid file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._protocol import OUTPUT_KEY as OUTPUT_KEY  # re-exported: callers import them from here
from .._protocol import RECORD_KEY as RECORD_KEY
from ..providers.base import Reply, Request, Usage
from .recordings import Recordings as Recordings  # recorded generations live in recordings.py
from .recordings import record_of as record_of
from .recordings import records_in_notebook as records_in_notebook


def request_key(provider: str, request: Request) -> str:
    payload = {
        "provider": provider,
        "model": request.model,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.thinking_tokens:  # absent otherwise, so keys recorded before it still match
        payload["thinking_tokens"] = request.thinking_tokens
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def reply_to_entry(key: str, reply: Reply) -> dict[str, Any]:
    entry = {"key": key, "reply": reply.text, "stop_reason": reply.stop_reason,
             "model": reply.model, "usage": asdict(reply.usage)}
    if reply.thinking:
        entry["thinking"] = reply.thinking
    return entry


def entry_to_reply(entry: Mapping[str, Any]) -> Reply:
    return Reply(text=entry["reply"], usage=Usage(**entry.get("usage", {})),
                 stop_reason=entry.get("stop_reason"), model=entry.get("model"),
                 thinking=entry.get("thinking", ""))


def default_cache_dir() -> Path:
    if env := os.environ.get("LLMSCRIPT_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "llmscript-magic" / "replies"


class DiskCache:
    """One JSON file per key, sharded by the key's first two hex digits."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if data.get("key") == key else None

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(dict(entry), f, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot write must never break a generation
