"""Variables as bytes and back, the same code on both sides of the sandbox.

The host encodes notebook variables with it and the sandbox's harness decodes
them into the script's globals; after the run the harness encodes the
``--output`` variables and the host decodes them. Standard library only at
import; pandas and numpy are imported when a value needs them, so it runs on
the image's Python as well as in the kernel.

Nothing here unpickles. Formats (the ``format`` of a ``Value``):

- ``frame``: a DataFrame or Series, column by column: numbers, booleans,
  datetimes and timedeltas as ``.npy`` (no pickle), text and mixed columns as
  JSON lists, categoricals as codes + categories, nullable columns as values +
  mask. Decoding holds about one extra copy of the data, unlike a row-wise
  JSON table (which costs ~26x the result's size in Python objects).
- ``parquet``: the same, when both sides have pyarrow.
- ``npy`` (numpy arrays, ``allow_pickle=False``), ``json`` (plain data;
  ``json-tuple``/``json-set``/``json-frozenset`` restore the container), ``bytes``.
"""

import io
import json
import re
import struct
import sys
from typing import Any

MAGIC = b"LLMF1\n"
SERIES_COLUMN = "__llmscript_series__"
FORMATS = ("frame", "parquet", "npy", "json", "json-tuple", "json-set", "json-frozenset",
           "bytes")
_HEADER = struct.Struct(">I")
_MAX_HEADER = 64 * 2**20


class CodecError(ValueError):
    """A value that cannot cross, with a phrase saying why (``it is a set``)."""


def kind_of(value: Any) -> str:
    """``set``, ``pandas.DataFrame``: the type as a user would name it."""
    root = type(value).__module__.split(".")[0]
    name = type(value).__name__
    return name if root == "builtins" else f"{root}.{name}"


def a_kind(value: Any) -> str:
    """"a set", "an object": the type with its article, for messages."""
    kind = kind_of(value)
    return ("an " if kind[:1].lower() in "aeiou" else "a ") + kind


def _is(value: Any, module: str, name: str) -> bool:
    mod = sys.modules.get(module)
    return mod is not None and isinstance(value, getattr(mod, name))


def _plain(value: Any) -> Any:
    """json.dumps default: numpy scalars become Python numbers, pandas' NA becomes null."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    raise TypeError(kind_of(value))


# -- encoding -------------------------------------------------------------------------
def encode(value: Any, *, parquet: bool = False) -> tuple[str, bytes]:
    """(format, data) for value; raises CodecError with a phrase that says why not."""
    if _is(value, "pandas", "DataFrame") or _is(value, "pandas", "Series"):
        if parquet:
            data = _parquet(value)
            if data is not None:
                return "parquet", data
        return "frame", _frame(value)
    if _is(value, "numpy", "ndarray"):
        import numpy as np

        buf = io.BytesIO()
        try:
            np.save(buf, value, allow_pickle=False)
        except ValueError:
            raise CodecError(f"it is a {value.dtype} array, which needs pickle") from None
        return "npy", buf.getvalue()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", bytes(value)
    fmt = "json"
    if isinstance(value, (tuple, set, frozenset)):
        fmt = "json-" + type(value).__name__ if type(value) in (tuple, set, frozenset) else fmt
        value = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
    elif not isinstance(value, (dict, list, str, int, float, bool, type(None))) and not (
            type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0):
        raise CodecError(f"it is {a_kind(value)}")
    try:
        text = json.dumps(value, default=_plain)
    except (TypeError, ValueError) as err:
        raise CodecError(f"it is {a_kind(value)} holding {err}") from None
    return fmt, text.encode("utf-8", "surrogatepass")


def _parquet(value: Any) -> bytes | None:
    frame = value
    if _is(value, "pandas", "Series"):
        frame = value.to_frame(name=SERIES_COLUMN if value.name is None else value.name)
        frame.attrs = {}
    buf = io.BytesIO()
    try:
        frame.to_parquet(buf)
    except Exception:  # e.g. non-string column names: the frame format says why
        return None
    tag = b"S" if frame is not value else b"F"
    return tag + buf.getvalue()


def _frame(value: Any) -> bytes:
    import pandas as pd

    blobs: list[bytes] = []
    offset = [0]

    def blob(data: bytes) -> list[int]:
        blobs.append(data)
        start = offset[0]
        offset[0] += len(data)
        return [start, len(data)]

    series = isinstance(value, pd.Series)
    frame = value.to_frame(name=0) if series else value
    if not series:
        _check_columns(frame)
    columns = [_column(frame.iloc[:, i], blob) for i in range(frame.shape[1])]
    index = frame.index
    if isinstance(index, pd.RangeIndex):
        idx: dict[str, Any] = {"range": [int(index.start), int(index.stop), int(index.step)],
                               "names": [_name(index.name)]}
    else:
        levels = ([index.get_level_values(i) for i in range(index.nlevels)]
                  if isinstance(index, pd.MultiIndex) else [index])
        idx = {"levels": [_column(pd.Series(level, copy=False), blob) for level in levels],
               "names": [_name(n) for n in index.names]}
    header = {"kind": "series" if series else "frame", "columns": columns, "index": idx,
              "names": [_name(c) for c in frame.columns] if not series else [],
              "name": _name(value.name) if series else None}
    head = json.dumps(header).encode()
    return MAGIC + _HEADER.pack(len(head)) + head + b"".join(blobs)


def _name(name: Any) -> Any:
    if name is None or isinstance(name, (str, int, float, bool)):
        return name
    if type(name).__module__ == "numpy":
        return name.item()
    return str(name)


def _check_columns(frame: Any) -> None:
    import pandas as pd

    cols = list(frame.columns)
    if isinstance(frame.columns, pd.MultiIndex):
        raise CodecError("it has MultiIndex columns: flatten them")
    if not all(isinstance(c, str) for c in cols):
        raise CodecError("it has non-string column names")
    if len(set(cols)) < len(cols):
        raise CodecError("it has duplicate column names: rename them")


def _column(s: Any, blob: Any) -> dict[str, Any]:
    """One column (or index level) as {dtype, enc, ...} with its data in blobs."""
    import numpy as np
    import pandas as pd

    dtype = s.dtype
    label = str(dtype)
    col: dict[str, Any] = {"dtype": label}
    if isinstance(dtype, pd.CategoricalDtype):
        codes = np.asarray(s.cat.codes)
        col.update(enc="category", ordered=bool(dtype.ordered), data=_npy(codes, blob),
                   categories=_column(pd.Series(dtype.categories, copy=False), blob))
    elif isinstance(dtype, pd.DatetimeTZDtype):
        utc = s.dt.tz_convert("UTC").dt.tz_localize(None)
        col.update(enc="tz", tz=str(dtype.tz), data=_npy(utc.to_numpy(), blob))
    elif isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        col.update(enc="npy", data=_npy(s.to_numpy(), blob))
    elif label.rstrip("0123456789") in ("Int", "UInt", "Float", "boolean"):
        mask = np.asarray(s.isna())
        base = label.lower() if label != "boolean" else "bool"
        values = s.to_numpy(dtype=base, na_value=0 if base != "bool" else False)
        col.update(enc="masked", data=_npy(values, blob), mask=_npy(mask, blob))
    elif label == "object" or label in ("string", "str") or label.startswith("string["):
        try:
            text = json.dumps(s.tolist(), default=_plain)
        except (TypeError, ValueError) as err:
            raise CodecError(f"its column {_label(s.name)} holds {err} values, which JSON "
                             "cannot carry") from None
        col.update(enc="json", data=blob(text.encode("utf-8", "surrogatepass")))
    else:
        raise CodecError(f"its column {_label(s.name)} has dtype {label}: "
                         "convert it to numbers or text")
    return col


def _label(name: Any) -> str:
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def _npy(array: Any, blob: Any) -> list[int]:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return blob(buf.getvalue())


# -- decoding -------------------------------------------------------------------------
def json_cost(data: Any) -> int:
    """Bytes of Python objects ``json.loads(data)`` may build, counted without parsing.

    Each value costs an object and a pointer (~72 bytes), each dict ~240, each list ~64,
    and text up to twice its UTF-8 size: a row-wise table of small values is ~26x its
    size in memory, long text ~2x.
    """
    raw = bytes(data)
    items = raw.count(b",") + raw.count(b":") + 1
    return 2 * len(raw) + 72 * items + 240 * raw.count(b"{") + 64 * raw.count(b"[")


def _npy_cost(data: Any) -> int:
    """The array's size as its header says; more than the bytes there is refused."""
    import numpy as np

    buf = io.BytesIO(bytes(data[:65536 + 16]))
    version = np.lib.format.read_magic(buf)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(buf)
    count = 1
    for n in shape:
        count *= int(n)
    size = count * dtype.itemsize
    if size > len(data):
        raise CodecError(f"an array claims {size} bytes but carries {len(data)}")
    return len(data) + size


def _frame_cost(view: memoryview) -> int:
    header, body = _frame_parts(view)
    cost = json_cost(view[len(MAGIC) + _HEADER.size:len(view) - len(body)])

    def col(c: Any) -> int:
        if not isinstance(c, dict):
            raise CodecError("a column must be an object")
        total = 0
        for key in ("data", "mask"):
            if key in c:
                offset, length = (int(x) for x in c[key])
                part = body[max(0, offset):max(0, offset) + max(0, length)]
                total += json_cost(part) if c.get("enc") == "json" else _npy_cost(part)
        return total + (col(c["categories"]) if "categories" in c else 0)

    idx = header.get("index") or {}
    for c in [*header.get("columns", []), *idx.get("levels", [])]:
        cost += col(c)
    return cost


def _parquet_cost(data: Any) -> int:
    """Uncompressed size as the file's metadata states, plus an object per text value."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(bytes(data[1:]))).metadata
    size = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(group.num_columns):
            size += int(group.column(j).total_uncompressed_size)
    return len(data) + 2 * size + 72 * meta.num_rows * max(meta.num_columns, 1)


def decode_cost(fmt: str, data: Any) -> int:
    """About how many bytes decoding (fmt, data) may take, judged before decoding."""
    if fmt.startswith("json"):
        return json_cost(data)
    if fmt == "npy":
        return _npy_cost(data)
    if fmt == "frame":
        return _frame_cost(memoryview(data))
    if fmt == "parquet":
        return _parquet_cost(data)
    return len(data)


_TZ_OFFSET = re.compile(r"[+-]\d{2}:\d{2}\Z")
_ZONES: Any = None


def safe_tz(name: Any) -> str:
    """A time zone name from untrusted data, only when it names a zone of the tz database.

    pandas resolves other strings through dateutil, which opens any path it is given
    (``dateutil//etc/passwd``): the data never picks a file to open.
    """
    global _ZONES
    text = str(name)
    if text == "UTC" or _TZ_OFFSET.match(text):
        return text
    if _ZONES is None:
        import zoneinfo

        _ZONES = zoneinfo.available_timezones()
    if text not in _ZONES:
        raise CodecError(f"unknown time zone {text[:40]!r}")
    return text


def decode(fmt: str, data: bytes) -> Any:
    """The value back from (format, data); data is untrusted: never unpickled."""
    if fmt == "bytes":
        return bytes(data)
    if fmt.startswith("json"):
        value = json.loads(bytes(data).decode("utf-8", "surrogatepass"))
        kind = fmt[5:]
        if kind:
            if not isinstance(value, list):
                raise CodecError(f"a {kind} must come as a list")
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[kind](value)
        return value
    if fmt == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        view = memoryview(data)
        # No thread of pyarrow's: a process that exits soon after a read that started its
        # pools (read_table starts them even with use_threads=False) aborts at exit now
        # and then ("terminate called without an active exception"), as `llmscript run`
        # may. ParquetFile.read, unbuffered and on one thread, starts none.
        table = pq.ParquetFile(pa.BufferReader(bytes(view[1:])), pre_buffer=False
                               ).read(use_threads=False)
        for field in table.schema:
            if getattr(field.type, "tz", None):
                safe_tz(field.type.tz)
        pandas_meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
        for col in [*pandas_meta.get("columns", []), *pandas_meta.get("column_indexes", [])]:
            if isinstance(col, dict) and isinstance(col.get("metadata"), dict) \
                    and col["metadata"].get("timezone"):
                safe_tz(col["metadata"]["timezone"])
        frame = table.to_pandas(use_threads=False)
        if bytes(view[:1]) != b"S":
            return frame
        s = frame.iloc[:, 0]
        return s.rename(None) if s.name == SERIES_COLUMN else s
    if fmt == "frame":
        return _unframe(memoryview(data))
    raise CodecError(f"unknown format {fmt[:40]!r}")


def _frame_parts(view: memoryview) -> tuple[dict[str, Any], memoryview]:
    """The frame's header (a dict) and the body its columns point into."""
    if bytes(view[:len(MAGIC)]) != MAGIC or len(view) < len(MAGIC) + _HEADER.size:
        raise CodecError("not a frame")
    size = _HEADER.unpack_from(view, len(MAGIC))[0]
    start = len(MAGIC) + _HEADER.size
    if size > _MAX_HEADER or start + size > len(view):
        raise CodecError("frame header is cut or too large")
    header = json.loads(bytes(view[start:start + size]))
    if not isinstance(header, dict):
        raise CodecError("frame header is not an object")
    return header, view[start + size:]


def _unframe(view: memoryview) -> Any:
    import pandas as pd

    header, body = _frame_parts(view)

    def part(ref: Any) -> memoryview:
        offset, length = (int(x) for x in ref)
        if offset < 0 or length < 0 or offset + length > len(body):
            raise CodecError("frame data is cut")
        return body[offset:offset + length]

    idx = header["index"]
    names = idx.get("names") or [None]
    if "range" in idx:
        index = pd.RangeIndex(*(int(x) for x in idx["range"]), name=names[0])
    else:
        levels = [_uncolumn(c, part) for c in idx["levels"]]
        index = (pd.Index(levels[0], name=names[0]) if len(levels) == 1 else
                 pd.MultiIndex.from_arrays(levels, names=names))
    columns = [_uncolumn(c, part) for c in header["columns"]]
    if header.get("kind") == "series":
        if len(columns) != 1:
            raise CodecError("a series needs one column")
        return pd.Series(columns[0], index=index, name=header.get("name"), copy=False)
    labels = header.get("names") or []
    if len(labels) != len(columns):
        raise CodecError("column names and columns differ in number")
    frame = pd.DataFrame({i: col for i, col in enumerate(columns)}, index=index, copy=False)
    if not columns:
        frame = pd.DataFrame(index=index)
    if labels:
        frame.columns = pd.Index(labels)
    return frame


def _uncolumn(col: dict[str, Any], part: Any) -> Any:
    import numpy as np
    import pandas as pd

    enc = col.get("enc")
    label = str(col.get("dtype", ""))
    if enc in ("npy", "tz", "masked", "category"):
        values = np.load(io.BytesIO(part(col["data"])), allow_pickle=False)
    if enc == "npy":
        return values
    if enc == "tz":
        return pd.Series(values).dt.tz_localize("UTC").dt.tz_convert(safe_tz(col["tz"])).array
    if enc == "masked":
        mask = np.load(io.BytesIO(part(col["mask"])), allow_pickle=False).astype(bool)
        if label == "boolean":
            return pd.arrays.BooleanArray(values.astype(bool), mask)
        if label.startswith("Float"):
            return pd.arrays.FloatingArray(values, mask)
        return pd.arrays.IntegerArray(values, mask)
    if enc == "category":
        categories = _uncolumn(col["categories"], part)
        return pd.Categorical.from_codes(values, categories=categories,
                                         ordered=bool(col.get("ordered")))
    if enc == "json":
        items = json.loads(bytes(part(col["data"])).decode("utf-8", "surrogatepass"))
        if not isinstance(items, list):
            raise CodecError("a text column must be a list")
        array = np.empty(len(items), dtype=object)
        array[:] = items
        if label in ("string", "str") or label.startswith("string["):
            return _text(array, label)
        return array
    raise CodecError(f"unknown column encoding {str(enc)[:40]!r}")


def _text(array: Any, label: str) -> Any:
    """A text column in this pandas' own text dtype (pandas 3 "str"; 1.x object)."""
    import pandas as pd

    if label == "str" and int(pd.__version__.split(".")[0]) < 3:
        return array  # pandas 1.x and 2.x keep text as object
    try:
        return pd.array(array, dtype=label)
    except (TypeError, ValueError, ImportError):  # e.g. string[pyarrow] without pyarrow
        return array
