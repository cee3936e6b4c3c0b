"""Values across the sandbox wall: the public face of the harness's codec.

The layers above the sandbox (the notebook's ``--input``/``--output``, the
pipeline's checks) encode and decode values with the same code the harness
runs inside the sandbox (``harness/codec.py``), so both sides agree byte for
byte. They use these names, never the harness's modules: what runs inside the
sandbox may change its internals with the run protocol, and the import-linter
contract in ``pyproject.toml`` keeps the layers above off ``harness``.
"""

from __future__ import annotations

from typing import Any

from .harness import codec
from .harness.protocol import UNDEFINED

#: The ``format`` a ``Value`` may have; anything else is refused unread.
FORMATS: tuple[str, ...] = codec.FORMATS
#: Why an ``--output`` name did not come back when the script never defined it.
NOT_DEFINED = UNDEFINED
#: A value that cannot cross; its message is a phrase saying why (``it is a set``).
CodecError = codec.CodecError


def encode_value(value: Any, *, parquet: bool = False) -> tuple[str, bytes]:
    """(format, data) for a value; raises ``CodecError`` for one that cannot cross."""
    return codec.encode(value, parquet=parquet)


def decode_value(fmt: str, data: bytes) -> Any:
    """The value that (format, data) holds; the bytes are untrusted and never unpickled."""
    return codec.decode(fmt, data)


def decode_cost(fmt: str, data: bytes) -> int:
    """About how many bytes ``decode_value`` would take in memory, judged before decoding."""
    return codec.decode_cost(fmt, data)


def a_kind(value: Any) -> str:
    """"a set", "an object": the value's type with its article, for messages."""
    return codec.a_kind(value)


__all__ = ["FORMATS", "NOT_DEFINED", "CodecError", "a_kind", "decode_cost", "decode_value",
           "encode_value"]
