"""SDK clients shared for the life of the process.

Building an ``anthropic``/``openai`` client costs about 85 ms (mostly an SSL
context), and a new client also throws away the keep-alive connection, so every
generation would pay a fresh TLS handshake. Clients are therefore kept per
(provider, key, base URL, timeout, retries) and reused; the SDK clients are
thread-safe (one connection pool each). The key is kept only as a hash here, so
nothing in this module can print it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

#: distinct settings kept at once; an evicted client closes itself once unused
MAX_CLIENTS = 16

_lock = threading.Lock()
_clients: OrderedDict[tuple[Hashable, ...], Any] = OrderedDict()


def shared_client(kind: str, make: Callable[..., T], options: dict[str, Any],
                  base_url_env: str | None = None) -> T:
    """The client ``make(**options)`` would build, built once and reused afterwards.

    ``base_url_env`` names the variable the SDK falls back to when no base URL is
    given, so a changed variable gets its own client instead of a stale one.
    """
    key = options.get("api_key")
    fingerprint = hashlib.sha256(key.encode()).hexdigest() if key else None
    base = options.get("base_url") or (os.environ.get(base_url_env) if base_url_env else None)
    ident = (kind, fingerprint, base, options.get("timeout"), options.get("max_retries"))
    with _lock:
        client = _clients.get(ident)
        if client is None:
            client = make(**options)
            _clients[ident] = client
            while len(_clients) > MAX_CLIENTS:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(ident)
        return client


def client_count() -> int:
    """How many clients are kept (for tests and diagnostics)."""
    with _lock:
        return len(_clients)


def close_clients() -> None:
    """Close and forget every shared client (their connections with them)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        close = getattr(client, "close", None)
        if close is not None:
            close()
