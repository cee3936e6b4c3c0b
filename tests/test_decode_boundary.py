"""Decoding ``--output`` values in the kernel: the script's bytes are data (issue 22).

Nothing is imported from the working folder while they are decoded, what they would
take in memory is judged before decoding, and a name in them never makes the kernel
open a file. The values are built the way a hostile script's harness would send them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmscript_magic._errors import ConfigurationError
from llmscript_magic._notebook.data_io import DECODE_RATIO, decode_outputs
from llmscript_magic._sandbox.base import Value
from llmscript_magic._sandbox.harness import codec

PLANT = "open({marker!r}, 'a').write({name!r} + '\\n')\nraise SystemExit('planted {name} ran')\n"


def test_decoding_never_imports_from_the_working_folder(tmp_path: Path) -> None:
    """A fresh Python whose working folder holds numpy.py, pandas.py and pyarrow/: decoding
    a frame and an array imports the real ones, and none of the planted files runs."""
    marker = tmp_path / "ran.txt"
    for name in ("numpy", "pandas"):
        (tmp_path / f"{name}.py").write_text(PLANT.format(marker=str(marker), name=name))
    (tmp_path / "pyarrow").mkdir()
    (tmp_path / "pyarrow" / "__init__.py").write_text(PLANT.format(marker=str(marker),
                                                                   name="pyarrow"))
    frame = pd.DataFrame({"a": [1.5, 2.5], "t": pd.to_datetime(["2026-01-01", "2026-01-02"]
                                                                ).tz_localize("Europe/Paris")})
    values = [Value("frame", *codec.encode(frame)),
              Value("array", *codec.encode(np.arange(3))),
              Value("table", *codec.encode(frame, parquet=True))]
    blob = tmp_path.parent / f"{tmp_path.name}-values.json"
    blob.write_text(json.dumps([[v.name, v.format, v.data.hex()] for v in values]))
    script = textwrap.dedent(f"""
        import json, sys
        assert sys.path[0] == '', sys.path[:2]  # like a kernel: the working folder first
        from llmscript_magic._notebook.data_io import decode_outputs
        from llmscript_magic._sandbox.base import Value
        assert 'numpy' not in sys.modules and 'pandas' not in sys.modules
        raw = json.load(open({str(blob)!r}))
        got = decode_outputs([Value(n, f, bytes.fromhex(d)) for n, f, d in raw])
        print(got['frame']['a'].sum(), got['array'].tolist(), str(got['table']['t'].dt.tz))
        print(sys.modules['numpy'].__file__)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    lines = proc.stdout.splitlines()
    assert lines[0] == "4.0 [0, 1, 2] Europe/Paris"
    assert str(tmp_path) not in lines[1] and "site-packages" in lines[1]


def test_decoding_a_table_starts_no_thread_and_exits_cleanly(tmp_path: Path) -> None:
    """`llmscript run --output` decodes a Parquet table and exits at once. A read that
    started pyarrow's thread pools aborted about one such process in a hundred at exit
    ("terminate called without an active exception"): decoding starts no thread, and
    24 processes that decode and exit all exit 0."""
    blob = tmp_path / "table.bin"
    blob.write_bytes(codec.encode(pd.DataFrame({"a": [1.5, 2.5]}), parquet=True)[1])
    script = ("import os, pyarrow.parquet\nfrom llmscript_magic._sandbox.harness import codec\n"
              "before = len(os.listdir('/proc/self/task'))\n"
              f"total = codec.decode('parquet', open({str(blob)!r}, 'rb').read())['a'].sum()\n"
              "print(total, len(os.listdir('/proc/self/task')) - before)")
    results, errors = [], []
    for _ in range(4):
        procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            results.append((proc.returncode, out))
            errors.append(err[-300:])
    assert results == [(0, "4.0 0\n")] * 24, errors


def test_a_value_that_would_blow_up_in_memory_is_refused_in_one_line() -> None:
    rows = json.dumps([{"a": i % 10, "b": "x"} for i in range(1_600_000)]).encode()
    assert len(rows) > 30 * 2**20  # the attack: 30 MiB of small rows (~26x as objects)
    with pytest.raises(ConfigurationError) as err:
        decode_outputs([Value("rows", "json", rows)])
    message = str(err.value)
    assert message.startswith("--output rows: the script left") and "nothing was assigned" \
        in message and "\n" not in message
    # text-heavy JSON of the same size is fine, and its decoding stays within the bound
    text = json.dumps(["y" * 4000] * 8000).encode()
    tracemalloc.start()
    try:
        got = decode_outputs([Value("text", "json", text)])["text"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got) == 8000 and peak < DECODE_RATIO * len(text)


def test_an_array_whose_header_lies_about_its_size_is_refused() -> None:
    forged = _npy_with_shape(10**12)  # 8 TB claimed, 32 bytes carried
    with pytest.raises(ConfigurationError, match=r"claims \d+ bytes but carries \d+"):
        decode_outputs([Value("a", "npy", forged)])


def _npy_with_shape(n: int) -> bytes:
    header = {"descr": "<f8", "fortran_order": False, "shape": (n,)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + bytes(32)


@pytest.mark.parametrize("zone", ["dateutil//etc/passwd", "/etc/passwd",
                                  "../../../../etc/passwd", "tzlocal()"])
def test_a_time_zone_never_names_a_file_to_open(zone: str, tmp_path: Path) -> None:
    frame = pd.DataFrame({"t": pd.to_datetime(["2026-01-01"]).tz_localize("UTC")})
    fmt, data = codec.encode(frame)
    forged = data.replace(b'"tz": "UTC"', json.dumps({"tz": zone})[1:-1].encode())
    fixed = len(forged) - len(data)  # the header's length field follows the change
    head = int.from_bytes(forged[len(codec.MAGIC):len(codec.MAGIC) + 4], "big") + fixed
    forged = codec.MAGIC + head.to_bytes(4, "big") + forged[len(codec.MAGIC) + 4:]
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        decode_outputs([Value("frame", fmt, forged)])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"t": pa.array([0], type=pa.timestamp("ns", tz=zone))})
    out = io.BytesIO()
    pq.write_table(table, out)
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        decode_outputs([Value("table", "parquet", b"F" + out.getvalue())])
