"""Data at real sizes: large --input files read in place (read-only), large frames via a file.

Under every isolation level (gVisor, runc, bubblewrap) a CSV larger than the
sandbox's whole work dir is read where it lies on the host, through a
read-only bind the script cannot write, and a DataFrame over the job's
inline cap arrives intact; a frame the run's --memory cannot hold is refused
in one line that names --memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from sandbox_fixtures import LEVELS, sandbox_at

from llmscript_magic._errors import ConfigurationError
from llmscript_magic._notebook.data_io import encode_inputs
from llmscript_magic._sandbox import Limits, get_sandbox
from llmscript_magic._sandbox.mounts import INLINE_VALUE_BYTES

#: The work dir (and /tmp) hold 64 MiB: a file bigger than that cannot have been copied in.
ROOMY = Limits(timeout=180, memory_mb=1536, disk_mb=64)
ROWS = 6_000_000  # about 100 MiB of CSV


@pytest.fixture(scope="session")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A CSV of about 100 MiB (g in 0..9, v an integer), and its per-group sums."""
    rng = np.random.default_rng(7)
    g = rng.integers(0, 10, ROWS)
    v = rng.integers(10**12, 10**13, ROWS)  # 13 digits: about 17 bytes a row
    path = tmp_path_factory.mktemp("big") / "data.csv"
    frame = pd.DataFrame({"g": g, "v": v})
    frame.to_csv(path, index=False)
    sums = frame.groupby("g")["v"].sum()
    return path, {str(k): int(s) for k, s in sums.items()}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=LEVELS)
def sandbox(request: pytest.FixtureRequest) -> Any:
    return sandbox_at(request)


READ_AND_ATTACK = r'''
import json, os
import pandas as pd
df = pd.read_csv("data.csv")
sums = {str(k): int(s) for k, s in df.groupby("g")["v"].sum().items()}
real = os.path.realpath("data.csv")
mount = [l.split() for l in open("/proc/self/mountinfo") if real in l.split()]
opts = mount[-1][5].split(",") if mount else []
work = os.statvfs("/work")
tries = {}
for name, attempt in {
    "append": lambda: open("data.csv", "a").write("9,9\n"),
    "truncate": lambda: open(real, "r+b").truncate(0),
    "chmod": lambda: os.chmod(real, 0o666),
    "rename": lambda: os.rename(real, real + ".x"),
    "unlink_target": lambda: os.unlink(real),
}.items():
    try:
        attempt()
        tries[name] = "did it"
    except OSError as err:
        tries[name] = type(err).__name__
print(json.dumps({"sums": sums, "link": os.path.islink("data.csv"), "real": real,
                  "ro": "ro" in opts, "rows": len(df), "tries": tries,
                  "work_used": (work.f_blocks - work.f_bfree) * work.f_frsize,
                  "size": os.path.getsize("data.csv")}))
'''


@pytest.mark.docker
def test_big_csv_is_read_in_place_and_cannot_be_written(
        sandbox: Any, big_csv: tuple[Path, dict[str, int]]) -> None:
    path, sums = big_csv
    before = _digest(path)
    r = sandbox.run(READ_AND_ATTACK, files={"data.csv": path}, limits=ROOMY)
    assert r.status == "ok", (r.reason, r.stderr[-2000:])
    seen = json.loads(r.stdout)
    assert seen["sums"] == sums and seen["rows"] == ROWS
    assert seen["size"] == path.stat().st_size > ROOMY.disk_mb * 2**20  # too big for /work
    assert seen["link"] and seen["real"] == "/in/data.csv" and seen["ro"], seen
    assert seen["work_used"] < 8 * 2**20, seen  # never copied into the work dir
    assert "did it" not in seen["tries"].values(), seen["tries"]
    assert _digest(path) == before
    assert not r.files  # the link is not a file the run made
    again = sandbox.run("print(open('data.csv').readline().strip())",
                        files={"data.csv": path}, limits=ROOMY)
    assert (again.status, again.stdout) == ("ok", "g,v\n"), again.stderr[-2000:]


@pytest.mark.docker
def test_a_dataframe_over_the_inline_cap_arrives_intact(sandbox: Any) -> None:
    rows = INLINE_VALUE_BYTES // 16 + 400_000  # two 8-byte columns: past the cap
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"a": rng.random(rows), "b": np.arange(rows, dtype=np.int64)})
    values, _ = encode_inputs(["df"], {"df": df}, available=None, memory_mb=ROOMY.memory_mb)
    assert len(values[0].data) > INLINE_VALUE_BYTES
    code = ("import json, os\n"
            "print(json.dumps({'shape': list(df.shape), 'a': float(df['a'].sum()),\n"
            "  'b': int(df['b'].sum()), 'last': int(df['b'].iloc[-1]),\n"
            "  'via_file': os.path.isdir('/in/.values')}))\n"
            "total = df.assign(c=df['a'] * 2)[['c']].tail(5)\n")
    r = sandbox.run(code, inputs=values, outputs=["total"], limits=ROOMY)
    assert r.status == "ok", (r.reason, r.stderr[-2000:])
    seen = json.loads(r.stdout)
    assert seen["shape"] == [rows, 2] and seen["last"] == rows - 1
    assert seen["b"] == int(df["b"].sum()) and seen["a"] == pytest.approx(float(df["a"].sum()))
    if sandbox.backend == "docker":
        assert seen["via_file"]  # not through the job: the sandbox's /tmp is 64 MiB
    from llmscript_magic._notebook.data_io import decode_outputs

    back = decode_outputs(r.values)["total"]
    assert np.allclose(back["c"].to_numpy(), df["a"].tail(5).to_numpy() * 2)


def test_a_frame_the_memory_cannot_hold_is_one_line_naming_memory() -> None:
    df = pd.DataFrame({"a": np.zeros(6_000_000)})  # 46 MiB
    with pytest.raises(ConfigurationError) as err:
        encode_inputs(["df"], {"df": df}, available=None, memory_mb=96)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("df needs about ") and "over --memory 96m" in message
    assert "raise --memory or pass a file" in message
    values, _ = encode_inputs(["df"], {"df": df}, available=None, memory_mb=512)
    assert values[0].name == "df"


@pytest.mark.docker
def test_magic_input_path_binds_a_big_file(
        ip: InteractiveShell, anthropic_standin: Any, big_csv: tuple[Path, dict[str, int]],
        docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sums = big_csv
    monkeypatch.chdir(path.parent)
    anthropic_standin.enqueue(
        "```python\nimport os, pandas as pd\n"
        "sums = {str(k): int(s) for k, s in pd.read_csv('data.csv').groupby('g')['v']"
        ".sum().items()}\n"
        "where = os.path.realpath('data.csv')\n```\n")
    res = ip.run_cell("%%generate --run --input data.csv --output sums,where "
                      "--memory 1536m --timeout 180\nSum v per g.")
    assert res.success, res.error_in_exec
    assert ip.user_ns["sums"] == sums and ip.user_ns["where"] == "/in/data.csv"


@pytest.mark.docker
def test_a_file_only_its_owner_reads_is_one_line(docker_client: Any, tmp_path: Path) -> None:
    private = tmp_path / "private.csv"
    private.write_bytes(b"a\n" + b"1\n" * 5_000_000)
    private.chmod(0o600)
    with pytest.raises(ConfigurationError) as err:
        get_sandbox("docker", isolation="container").run("print(1)",
                                                         files={"private.csv": private})
    assert "\n" not in str(err.value) and f"chmod o+r {private}" in str(err.value)


@pytest.mark.docker
def test_a_file_replaced_under_its_name_is_seen_new(docker_client: Any, tmp_path: Path) -> None:
    box = get_sandbox("docker", isolation="container")
    path = tmp_path / "d.txt"
    for text in ("first", "second"):
        fresh = tmp_path / "next.txt"
        fresh.write_text(text + "\n" * 9_000_000)
        fresh.chmod(0o644)
        fresh.replace(path)  # a new inode, as editors and `mv` leave it
        r = box.run("print(open('d.txt').readline().strip())", files={"d.txt": path})
        assert (r.status, r.stdout) == ("ok", text + "\n"), r.stderr[-2000:]
