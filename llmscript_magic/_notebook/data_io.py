"""Notebook variables into the sandbox's namespace, and results back as values.

Kept apart from the prompt descriptions because this is the trust boundary:
what comes back from the sandbox is untrusted bytes, decoded strictly, and
never unpickled. Both directions use the harness's own codec
(``_sandbox/values.py``), the same code that runs inside the sandbox:
DataFrames and Series column by column (numbers as ``.npy``, text as JSON
lists; Parquet when both sides have pyarrow), numpy arrays as ``.npy``
without pickle, plain data as JSON, bytes as they are. Decoding a result holds
about one extra copy of it, not the ~26x of a row-wise JSON table.

The script never loads these values: the harness binds them in its globals
before it starts, so the generated code is just the model's code and runs the
same as an ordinary notebook cell over the analyst's live variables.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._errors import ConfigurationError
from .._sandbox.base import Value
from .._sandbox.values import FORMATS, CodecError, a_kind, decode_cost, decode_value, encode_value
from .context import _cell, _lookup, _module, _short, _type_name

#: What the interpreter itself takes in the sandbox before any input is loaded.
BASE_MB = 64


# -- data into the sandbox -----------------------------------------------------
def _check_table(name: str, frame: Any) -> None:
    """What the sandbox's pandas cannot be given, said before any request is made."""
    problem = ""
    columns = list(frame.columns)
    if type(frame.columns).__name__ == "MultiIndex":
        problem = "has MultiIndex columns: flatten them"
    elif not all(isinstance(c, str) for c in columns):
        problem = f"has non-string column names: use {name}.columns = {name}.columns.astype(str)"
    elif len(set(columns)) < len(columns):
        problem = "has duplicate column names: rename them"
    else:
        for col, dtype in zip(columns, frame.dtypes, strict=True):
            kind = str(dtype)
            if kind.startswith(("period", "interval", "sparse", "Sparse")):
                problem = f"column {_cell(col)} has dtype {kind}: convert it to numbers or text"
                break
    if problem:
        raise ConfigurationError(f"Cannot send {name!r} into the sandbox: it {problem}")


def _encode(name: str, value: Any, parquet: bool) -> Value:
    if _module("pandas", value, "DataFrame"):
        _check_table(name, value)
    elif _module("numpy", value, "ndarray") and value.dtype.hasobject:
        raise ConfigurationError(
            f"Cannot send {name!r} into the sandbox: a {value.dtype} array needs pickle; "
            "convert it with .astype(float) or .tolist()")
    try:
        fmt, data = encode_value(value, parquet=parquet)
    except CodecError as err:
        why = str(err)
        if why.startswith(f"it is {a_kind(value)}") and " holding " not in why:
            raise ConfigurationError(
                f"Cannot send {name!r} ({_type_name(value)}) into the sandbox: convert it to a "
                "DataFrame, numpy array, str, bytes or a JSON-compatible list or dict") from None
        if " holding " in why:
            inner = why.rsplit(" holding ", 1)[1]
            raise ConfigurationError(
                f"Cannot send {name!r} into the sandbox: it holds a {inner} value, which JSON "
                "cannot carry; convert it to plain lists, dicts, str and numbers") from None
        raise ConfigurationError(f"Cannot send {name!r} into the sandbox: {why}") from None
    return Value(name, fmt, data)


def _what(value: Any) -> str:
    """How the note names a variable's type: enough for the model to use it right."""
    kind = _type_name(value)
    if _module("pandas", value, "DataFrame"):
        return f"{kind}, {value.shape[0]} rows x {value.shape[1]} columns"
    if _module("pandas", value, "Series"):
        return f"{kind} of {value.dtype}, {len(value)} rows"
    if _module("numpy", value, "ndarray"):
        return f"{kind} of {value.dtype}, shape {tuple(value.shape)}"
    if isinstance(value, Mapping) and not all(isinstance(k, str) for k in value):
        return f"{kind} (its keys are strings in the sandbox)"
    return kind


def needed_mb(value: Any, encoded: Value) -> float:
    """About what loading a value takes in the sandbox: its bytes plus what they decode to.

    A large value goes through a file (``_sandbox/mounts.py``), so the bound is
    the run's memory, not a transport cap.
    """
    size = len(encoded.data)
    if _module("pandas", value, "DataFrame") or _module("pandas", value, "Series"):
        usage = value.memory_usage(deep=False)  # a Series answers an int, a frame a Series
        size += max(len(encoded.data), int(getattr(usage, "sum", lambda: usage)()))
    elif _module("numpy", value, "ndarray"):
        size += int(value.nbytes)
    else:
        size += len(encoded.data)
    return size / 2**20


def encode_inputs(names: Sequence[str], namespace: Mapping[str, Any], *,
                  available: frozenset[str] | None,
                  memory_mb: int | None = None) -> tuple[list[Value], str]:
    """Variables for the sandbox's namespace, plus the prompt note that says they exist.

    ``available`` is what the sandbox image imports (None when unknown):
    Parquet is used only when it and this kernel both have pyarrow.
    ``memory_mb`` (the run's ``--memory``) bounds what the values may take there.
    """
    parquet = available is not None and "pyarrow" in available \
        and importlib.util.find_spec("pyarrow") is not None
    values: list[Value] = []
    lines: list[str] = []
    total = 0.0
    for name, value in _lookup(list(dict.fromkeys(names)), namespace):
        encoded = _encode(name, value, parquet)
        total += needed_mb(value, encoded)
        if memory_mb is not None and total + BASE_MB > memory_mb:
            raise ConfigurationError(
                f"{name} needs about {total + BASE_MB:.0f} MiB in the sandbox, over --memory "
                f"{memory_mb}m: raise --memory or pass a file with --input PATH")
        values.append(encoded)
        lines.append(f"- `{name}`: {_what(value)}")
    if not values:
        return [], ""
    note = ("Input variables: these notebook variables ALREADY EXIST in the script's namespace "
            "when it starts. Use them directly by name; do not load them from files, do not "
            "define or assign them again, and do not modify them in place (the same code also "
            "runs in the user's notebook on their live variables): put results in new "
            "variables.\n" + "\n".join(lines))
    return values, note


# -- results back --------------------------------------------------------------
def _check_names(names: Sequence[str]) -> list[str]:
    for name in names:
        if not name.isidentifier():
            raise ConfigurationError(f"{name!r} is not a Python variable name: fix --output")
    return list(dict.fromkeys(names))


def output_note(names: Sequence[str]) -> str:
    """The prompt line asking the model to leave results in named globals."""
    names = _check_names(names)
    if not names:
        return ""
    listed = ", ".join(f"`{n}`" for n in names)
    first = (f"Leave the final result in a variable named {listed}" if len(names) == 1 else
             f"Leave the results in variables named {listed}")
    return (first + " at the top level of the script (not inside a function or "
            "`if __name__` block); they are copied back into the user's notebook. Each must be "
            "a pandas DataFrame or Series (unique string column names), a numpy array of "
            "numbers or text, bytes, or plain JSON data (dict, list, str, int, float, bool, None).")


#: decoding one value may take this many times its size, or DECODE_FLOOR, whichever is more
DECODE_RATIO = 8
DECODE_FLOOR = 256 * 2**20


@contextlib.contextmanager
def imports_not_from_here() -> Iterator[None]:
    """No import from the working folder while untrusted values are decoded.

    The working folder is first on ``sys.path`` in a kernel; decoding imports numpy,
    pandas or pyarrow (and they import more on first use), so a ``numpy.py`` there
    would run. The site-packages copies are what decoding gets.
    """
    here = os.path.realpath(os.getcwd())
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if os.path.realpath(p or os.curdir) != here]
    try:
        yield
    finally:
        kept = [p for p in sys.path if p not in saved]  # paths added meanwhile stay
        sys.path[:] = saved + kept


def _decode_one(value: Value) -> Any:
    cost = decode_cost(value.format, value.data)
    allowed = max(DECODE_RATIO * len(value.data), DECODE_FLOOR)
    if cost > allowed:
        raise ConfigurationError(
            f"--output {value.name}: the script left {len(value.data) / 2**20:.1f} MiB that "
            f"would take about {cost / 2**20:.0f} MiB to load (more than "
            f"{allowed / 2**20:.0f} MiB); return a DataFrame or numpy array, or write a "
            "file instead; nothing was assigned")
    return decode_value(value.format, value.data)


def decode_outputs(values: Sequence[Value]) -> dict[str, Any]:
    """The variables the harness returned, decoded; all or nothing.

    The bytes are untrusted (the script made them): they are never unpickled,
    nothing is imported from the working folder while they are decoded, what
    they would take in memory is judged before decoding (``DECODE_RATIO``), a
    path they name is never opened, and any failure raises for the whole set, so
    a partial result never overwrites a notebook variable.
    """
    out: dict[str, Any] = {}
    for value in values:
        if not value.name.isidentifier() or value.format not in FORMATS:
            raise ConfigurationError(
                f"The sandbox returned {_short(repr(value.name), 60)} in a form that is not "
                "accepted; nothing was assigned")
        try:
            with imports_not_from_here():
                out[value.name] = _decode_one(value)
        except ConfigurationError:
            raise
        except Exception as err:  # untrusted bytes: any decoding failure is the script's
            raise ConfigurationError(
                f"The script did not leave a variable {value.name!r} that can be read "
                f"({type(err).__name__}: {_short(str(err), 120)}); nothing was assigned"
            ) from None
    return out


__all__ = ["BASE_MB", "decode_outputs", "encode_inputs", "output_note"]
