"""The run protocol's one module (``harness/protocol.py``), on both sides of the sandbox.

The harness programs load it from their own folder, not from the package: these
tests run them the way the sandbox does (outside the package, ``python -I``) on
every Python the harness supports, and check that a run can neither change nor
replace the module the runner and the next run load, at every isolation level.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._sandbox import SHARED, Limits, SandboxSpec, get_sandbox
from llmscript_magic._sandbox.base import Value
from llmscript_magic._sandbox.harness import protocol
from llmscript_magic._sandbox.values import decode_value, encode_value

HARNESS = Path(protocol.__file__).parent
PYENV = Path("/root/.pyenv/versions")
#: The harness's Pythons: the image's (3.11) and every one a kernel or the local backend may use.
PYTHONS = sorted(str(p) for minor in ("3.10", "3.11", "3.12", "3.13")
                 for p in PYENV.glob(f"{minor}.*/bin/python3"))


def test_frame_kinds_are_one_distinct_byte_each() -> None:
    """A kind that reused another's byte would make the host read one frame as another."""
    kinds = {name: value for name, value in vars(protocol).items()
             if name.isupper() and isinstance(value, bytes) and len(value) == 1}
    assert set(kinds) >= {"OUT", "ERR", "FIGURE", "VALUE", "FILES", "REPORT", "EXCEPTION",
                          "CHECK_VALUE", "MISSING", "VERDICT", "WAITING", "STATUS"}
    assert len(set(kinds.values())) == len(kinds), kinds
    assert protocol.RUN_UID_LOW < protocol.RUN_UID_HIGH < protocol.CHECK_UID \
        < protocol.SCRIPT_UID < 65536  # run uids never meet nobody's, and fit a rootless map


def _frames(data: bytes) -> list[tuple[bytes, bytes]]:
    out, head = [], protocol.HEAD_BYTES
    while data:
        size = protocol.HEADER.unpack_from(data, 1)[0]
        out.append((data[:1], data[head:head + size]))
        data = data[head + size:]
    return out


@pytest.mark.skipif(not PYTHONS, reason="no pyenv Pythons 3.10-3.13 on this machine")
@pytest.mark.parametrize("python", PYTHONS or ["none"])
def test_the_wrapper_runs_outside_the_package_on_every_python(python: str,
                                                              tmp_path: Path) -> None:
    """The wrapper as the sandbox starts it: a copy of the harness folder, ``-I``, any Python.

    Its value comes back as a ``VALUE`` frame the host decodes, and its exception's
    name as an ``EXCEPTION`` frame: both sides read the frame kinds from one module.
    """
    folder = tmp_path / "harness"
    folder.mkdir()
    for name in ("wrapper.py", "protocol.py", "codec.py"):
        shutil.copy(HARNESS / name, folder / name)
    fmt, data = encode_value({"n": 6})
    (tmp_path / "in-0").write_bytes(data)
    (tmp_path / "script.py").write_text("x = [n['n'] * 7]\nraise KeyError('late')\n")
    (tmp_path / "ok.py").write_text("x = [n['n'] * 7]\n")
    sent: dict[str, list[tuple[bytes, bytes]]] = {}
    for script in ("ok.py", "script.py"):
        shutil.copy(tmp_path / "in-0", tmp_path / "in-1")  # the wrapper deletes what it binds
        job = {"script": str(tmp_path / script), "outputs": ["x"], "check": None,
               "parquet": False,
               "inputs": [{"name": "n", "format": fmt, "path": str(tmp_path / "in-1")}]}
        (tmp_path / "job.json").write_text(json.dumps(job))
        read, write = os.pipe()
        proc = subprocess.run([python, "-B", "-I", str(folder / "wrapper.py"),
                               str(tmp_path / "job.json"), str(write)],
                              pass_fds=(write,), cwd=tmp_path, capture_output=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin"})
        os.close(write)
        with os.fdopen(read, "rb") as fh:
            sent[script] = _frames(fh.read())
        assert proc.returncode == (0 if script == "ok.py" else 1), proc.stderr
    kind, payload = sent["ok.py"][0]
    head, _, body = payload.partition(b"\n")
    assert kind == protocol.VALUE and json.loads(head)["name"] == "x"
    assert decode_value(json.loads(head)["format"], body) == [42]
    assert sent["script.py"] == [(protocol.EXCEPTION, b"KeyError")]  # a failed run sends no values


@pytest.mark.skipif(not PYTHONS, reason="no pyenv Pythons 3.10-3.13 on this machine")
@pytest.mark.parametrize("python", PYTHONS or ["none"])
def test_the_runner_loads_its_modules_from_its_folder_on_every_python(python: str,
                                                                     tmp_path: Path) -> None:
    """The runner as a program (``-I``, outside the package) imports protocol and supervisor
    from its own folder, and from nowhere else: without them there it does not start."""
    folder = tmp_path / "harness"
    folder.mkdir()
    for name in ("runner.py", "protocol.py", "supervisor.py"):
        shutil.copy(HARNESS / name, folder / name)
    probe = ("import runpy, sys; found = runpy.run_path(sys.argv[1], run_name='probe'); "
             "print(found['relay'].__module__, found['proto'].REPORT, found['HEADER'].size)")
    got = subprocess.run([python, "-B", "-I", "-S", "-c", probe, str(folder / "runner.py")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (got.returncode, got.stdout) == (0, "supervisor b'r' 4\n"), got.stderr
    (folder / "supervisor.py").unlink()
    got = subprocess.run([python, "-B", "-I", "-S", "-c", probe, str(folder / "runner.py")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert got.returncode != 0 and "supervisor" in got.stderr


TAMPER = '''\
import os
def attempt(what, fn):
    try:
        fn()
        print(what, "DONE")
    except OSError as err:
        print(what, "blocked", err.errno in (1, 13, 30))
here = os.environ.get("HARNESS") or "/tmp/.llmscript"
for name in ("protocol.py", "runner.py", "wrapper.py"):
    path = os.path.join(here, name)
    if os.path.exists(path):
        attempt("change " + name, lambda: open(path, "a").write("OUT = b'r'\\n"))
        attempt("replace " + name, lambda: os.rename(path, path + ".old"))
attempt("add a module", lambda: open(os.path.join(here, "evil.py"), "w").write("x = 1"))
'''


@pytest.fixture(params=["bubblewrap", pytest.param("gvisor", marks=pytest.mark.docker),
                        pytest.param("container", marks=pytest.mark.docker)])
def walled(request: pytest.FixtureRequest) -> Any:
    """The sandbox at every isolation level."""
    if request.param == "bubblewrap":
        return get_sandbox("local")
    request.getfixturevalue("docker_sandbox")  # the engine, the image, the leftover check
    return SHARED.get(SandboxSpec(isolation=request.param))  # one engine client per level


def test_a_run_cannot_change_the_protocol_the_next_run_uses(walled: Any) -> None:
    """The harness's modules are read-only to a run; the next run's frames read as before."""
    harness = protocol.LOCAL_HARNESS if walled.backend == "local" else protocol.HARNESS_TMP
    code = f"import os\nos.environ['HARNESS'] = {harness!r}\n" + TAMPER
    first = walled.run(code, limits=Limits(timeout=30))
    assert first.status == "ok", first.stderr
    lines = first.stdout.splitlines()
    assert {"change protocol.py blocked True", "replace protocol.py blocked True"} <= set(lines)
    assert all(line.endswith("blocked True") for line in lines), lines
    then = walled.run("import sys\nprint('out'); print('err', file=sys.stderr); y = {'a': 1}\n",
                      outputs=["y"], check="y['a'] == 1", limits=Limits(timeout=30),
                      inputs=[Value("z", *encode_value(3))])
    assert (then.status, then.stdout, then.stderr) == ("ok", "out\n", "err\n")
    assert then.check == (True, "")
    assert [(v.name, decode_value(v.format, v.data)) for v in then.values] == [("y", {"a": 1})]
