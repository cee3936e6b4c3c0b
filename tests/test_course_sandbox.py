"""Students' runs through the course service (``_course/sandbox_run.py``) without a hub:
the job and its result cross as JSON, the course caps the limits, each container carries
the student's label. The whole path on a real hub is in ``test_course_hub.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._course.gate import Gate, ServiceSettings
from llmscript_magic._course.sandbox_run import STUDENT_LABEL, run_job
from llmscript_magic._errors import ConfigurationError
from llmscript_magic._sandbox import Limits, get_sandbox
from llmscript_magic._sandbox.base import Value
from llmscript_magic._sandbox.wire import job_to_json, result_from_json

CODE = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.plot([1, 2]); plt.show()
open("out.txt", "w").write(open("in.txt").read() * 2)
y = x + 1
print("x is", x)
"""


def test_course_sandbox_outside_a_course_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMSCRIPT_COURSE_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"LLMSCRIPT_COURSE_URL.*use --sandbox docker"):
        get_sandbox("course")


@pytest.mark.docker
def test_a_students_run_in_the_shared_engine(tmp_path: Path, docker_client: Any,
                                             docker_leftover_check: None) -> None:
    table = {"service": {"models": ["anthropic:claude-haiku-5"], "run_timeout": 15,
                         "usage_file": str(tmp_path / "usage.jsonl")}}
    gate = Gate(ServiceSettings.from_table(table))
    job = job_to_json(CODE, files={"in.txt": b"ab"}, limits=Limits(timeout=120),
                      inputs=[Value("x", "json", b"41")], outputs=["y"], check="y == 42")
    gate.start_run("ann")
    status, answer = run_job(gate, "ann", json.dumps(job).encode())
    assert status == 200, answer
    result = result_from_json(json.loads(json.dumps(answer)))
    assert result.ok and result.stdout == "x is 41\n"
    assert [(f.name, f.data) for f in result.files] == [("out.txt", b"abab")]
    assert result.figures and result.figures[0].startswith(b"\x89PNG")
    assert [(v.name, v.data) for v in result.values] == [("y", b"42")]
    assert result.check == (True, "")
    assert "course caps: timeout 15 s" in (result.warning or "")
    labelled = docker_client.containers.list(filters={"label": f"{STUDENT_LABEL}=ann"})
    assert labelled, "the student's container does not carry the label"
    assert gate.report()["ann"]["runs"] == 1
    gate.start_run("ann")  # the gate's run ended with the job, even a malformed one
    status, answer = run_job(gate, "ann", b'{"limits": {"timeout": -1}}')
    assert status == 400 and "Malformed run" in answer["error"]
