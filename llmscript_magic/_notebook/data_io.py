"""Notebook variables into the sandbox as files, and results back as values.

Kept apart from the prompt descriptions because this is the trust boundary:
what comes back from the sandbox is untrusted bytes, decoded strictly, and
never unpickled.

DataFrames and Series go as Parquet when both sides have pyarrow, else as
pandas' "table" JSON, not CSV: it keeps dtypes, the index, missing values
apart from empty strings, and text such as "NA" or "001" as written; and its
loader names no columns, so no column name (which is user data) appears
outside the prompt's data fence. Its cost: floats keep 15 significant digits.
Results come back the same way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .._errors import ConfigurationError
from .context import _cell, _is_scalar, _lookup, _module, _short, _type_name

OUT_DIR = "_llmscript_out"
_UNNAMED = "__llmscript_unnamed__"


# -- data into the sandbox -----------------------------------------------------
def _json_default(value: Any) -> Any:
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    raise TypeError(_type_name(value))


def _frame_file(name: str, value: Any, parquet: bool) -> tuple[str, bytes, str]:
    is_series = _module("pandas", value, "Series")
    frame = value.to_frame(name=_UNNAMED if value.name is None else value.name) \
        if is_series else value
    tail = ""
    if is_series:
        tail = ".iloc[:, 0]" + (".rename(None)" if value.name is None else "")
    if parquet:
        buf = io.BytesIO()
        try:
            frame.to_parquet(buf)
        except Exception:  # e.g. non-string column names: JSON says why, below
            pass
        else:
            return f"{name}.parquet", buf.getvalue(), \
                f'{name} = pd.read_parquet("{name}.parquet"){tail}'
    _check_table(name, frame)
    data = frame.to_json(orient="table", double_precision=15, date_unit="ns")
    return f"{name}.json", data.encode(), \
        f'{name} = pd.read_json("{name}.json", orient="table"){tail}'


def _check_table(name: str, frame: Any) -> None:
    """What pandas' table JSON cannot carry, said before the script fails on it."""
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
            if kind.startswith(("timedelta", "period", "interval", "complex")):
                problem = f"column {_cell(col)} has dtype {kind}: convert it to numbers or text"
            elif kind.rstrip("0123456789") in ("Int", "UInt", "Float", "boolean") \
                    and frame[col].isna().any():
                problem = (f"column {_cell(col)} is nullable {kind} with missing values, which "
                           "the sandbox's pandas cannot read: use .astype('float64')")
            if problem:
                break
    if problem:
        raise ConfigurationError(f"Cannot send {name!r} into the sandbox: it {problem}")


def input_files(names: Sequence[str], namespace: Mapping[str, Any], *,
                available: frozenset[str] | None) -> tuple[dict[str, bytes], str]:
    """Variables as files for the sandbox, plus the prompt note that says how to load them."""
    import importlib.util

    parquet = available is not None and "pyarrow" in available \
        and importlib.util.find_spec("pyarrow") is not None
    files: dict[str, bytes] = {}
    loads: list[str] = []
    imports: set[str] = set()
    for name, value in _lookup(list(dict.fromkeys(names)), namespace):
        if _module("pandas", value, "DataFrame") or _module("pandas", value, "Series"):
            fname, data, load = _frame_file(name, value, parquet)
            imports.add("import pandas as pd")
        elif _module("numpy", value, "ndarray"):
            import numpy as np

            buf = io.BytesIO()
            try:
                np.save(buf, value, allow_pickle=False)
            except ValueError:
                raise ConfigurationError(
                    f"Cannot send {name!r} into the sandbox: a {value.dtype} array needs "
                    "pickle; convert it with .astype(float) or .tolist()") from None
            fname, data = f"{name}.npy", buf.getvalue()
            load = f'{name} = np.load("{name}.npy", allow_pickle=False)'
            imports.add("import numpy as np")
        elif isinstance(value, (str, bytes)):
            fname = f"{name}.txt" if isinstance(value, str) else f"{name}.bin"
            data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
            decode = '.decode("utf-8")' if isinstance(value, str) else ""
            load = f'{name} = Path("{fname}").read_bytes(){decode}'
            imports.add("from pathlib import Path")
        else:
            fname, data, load = _json_file(name, value)
            imports.update(("import json", "from pathlib import Path"))
        files[fname] = data
        loads.append(load)
    if not files:
        return {}, ""
    note = ("Input files: these notebook variables are in the current working folder as files. "
            "Load them at the top of the script exactly like this (they are not defined "
            "otherwise):\n```python\n" + "\n".join([*sorted(imports), *loads]) + "\n```")
    return files, note


def _json_file(name: str, value: Any) -> tuple[str, bytes, str]:
    plain = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
    if not (_is_scalar(plain) or isinstance(plain, (list, tuple, Mapping))):
        raise ConfigurationError(
            f"Cannot send {name!r} ({_type_name(value)}) into the sandbox: convert it to a "
            "DataFrame, numpy array, str, bytes or a JSON-compatible list or dict")
    try:
        text = json.dumps(plain, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ConfigurationError(
            f"Cannot send {name!r} into the sandbox: it holds a {err} value, which JSON cannot "
            "carry; convert it to plain lists, dicts, str and numbers") from None
    comment = ""
    if isinstance(value, (tuple, set, frozenset)):
        comment = f"  # a {type(value).__name__} in the notebook, a list here"
    elif isinstance(value, Mapping) and not all(isinstance(k, str) for k in value):
        comment = "  # dict keys are strings here"
    return f"{name}.json", text.encode(), \
        f'{name} = json.loads(Path("{name}.json").read_text(encoding="utf-8")){comment}'


# -- results back --------------------------------------------------------------
_SNIPPET = '''
def _llmscript_save(_ns, _names, _parquet):
    """Write each named global to {out}/ in a pickle-free format, or <name>.error."""
    import json, os, shutil, sys
    shutil.rmtree({out!r}, ignore_errors=True)
    os.makedirs({out!r})
    pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")

    def kindof(o):
        root = type(o).__module__.split(".")[0]
        return type(o).__name__ if root == "builtins" else root + "." + type(o).__name__

    def plain(o):
        if np is not None and isinstance(o, np.generic):
            return o.item()
        raise TypeError(kindof(o))

    for name in _names:
        path = os.path.join({out!r}, name)
        if name not in _ns:
            with open(path + ".error", "w") as f:
                f.write("missing")
            continue
        value, target = _ns[name], None
        kind = kindof(value)
        try:
            if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
                frame, ext = value, ".table.json"
                if isinstance(value, pd.Series):
                    frame, ext = value.to_frame(
                        name={unnamed!r} if value.name is None else value.name), ".series.json"
                if _parquet:
                    target = path + ext.replace(".json", ".parquet")
                    frame.to_parquet(target)
                else:
                    target = path + ext
                    frame.to_json(target, orient="table", double_precision=15, date_unit="ns")
            elif np is not None and isinstance(value, np.ndarray):
                target = path + ".npy"
                np.save(target, value, allow_pickle=False)
            elif isinstance(value, bytes):
                target = path + ".bin"
                with open(target, "wb") as f:
                    f.write(value)
            else:
                try:
                    text = json.dumps(value, default=plain)
                except (TypeError, ValueError) as err:
                    inner = "" if str(err) == kind else " holding " + str(err)[:100]
                    with open(path + ".error", "w") as f:
                        f.write("type:" + kind + inner)
                    continue
                target = path + ".json"
                with open(target, "w", encoding="utf-8") as f:
                    f.write(text)
        except Exception as err:
            if target and os.path.exists(target):
                os.remove(target)
            with open(path + ".error", "w") as f:
                f.write("failed:" + kind + ": " + type(err).__name__ + ": " + str(err)[:200])


_llmscript_save(_ns, {names!r}, {parquet!r})
del _llmscript_save
'''


def _check_names(names: Sequence[str]) -> list[str]:
    for name in names:
        if not name.isidentifier():
            raise ConfigurationError(f"{name!r} is not a Python variable name: fix --output")
    return list(dict.fromkeys(names))


def output_snippet(names: Sequence[str], *, parquet: bool = False) -> str:
    """Source to run after the script (its globals in ``_ns``) that saves ``names`` to files.

    ``parquet=True`` only when the sandbox and the host both have pyarrow.
    """
    return _SNIPPET.format(out=OUT_DIR, unnamed=_UNNAMED, names=_check_names(names),
                           parquet=parquet).lstrip("\n")


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


class _File(Protocol):
    name: str
    data: bytes


def _decode(name: str, ext: str, data: bytes) -> Any:
    if ext == ".json":
        return json.loads(data.decode("utf-8"))
    if ext == ".bin":
        return data
    if ext == ".npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    import pandas as pd

    if ext.endswith(".parquet"):
        frame = pd.read_parquet(io.BytesIO(data))
    else:
        frame = pd.read_json(io.BytesIO(data), orient="table")
    if not ext.startswith(".series"):
        return frame
    series = frame.iloc[:, 0]
    return series.rename(None) if series.name == _UNNAMED else series


_EXTS = (".table.json", ".series.json", ".table.parquet", ".series.parquet", ".npy", ".bin",
         ".json")


def load_outputs(names: Sequence[str], files: Sequence[_File]) -> dict[str, Any]:
    """Decode what ``output_snippet`` wrote; raises unless every name came back."""
    by_name = {f.name.replace("\\", "/"): f.data for f in files}
    out: dict[str, Any] = {}
    for name in _check_names(names):
        prefix = f"{OUT_DIR}/{name}"
        missing = f"The script did not leave a variable {name!r}"
        error = by_name.get(prefix + ".error")
        if error is not None:
            reason = " ".join(error.decode("utf-8", "replace").split())[:240]
            if reason.startswith("type:"):
                raise ConfigurationError(
                    f"{missing} that can be copied back: it is a {reason[5:]}; make it a "
                    "DataFrame, Series, numpy array or JSON data (nothing was assigned)")
            if reason.startswith("failed:"):
                raise ConfigurationError(f"{missing} that can be copied back ({reason[7:]}); "
                                         "nothing was assigned")
            raise ConfigurationError(f"{missing}: say in the spec what {name!r} should hold "
                                     "(nothing was assigned)")
        found = [(ext, by_name[prefix + ext]) for ext in _EXTS if prefix + ext in by_name]
        if not found:
            raise ConfigurationError(f"{missing}: no result came back (did the script fail "
                                     "before its end?); nothing was assigned")
        ext, data = found[0]
        try:
            out[name] = _decode(name, ext, data)
        except Exception as err:  # untrusted bytes: any decoding failure is the script's
            raise ConfigurationError(
                f"{missing} that can be read ({type(err).__name__}: {_short(str(err), 120)}); "
                "nothing was assigned") from None
    return out


__all__ = ["OUT_DIR", "input_files", "load_outputs", "output_note", "output_snippet"]
