"""A class on a real JupyterHub: three students and a teacher, the course service
holding the key, budgets, the teacher's report, tutor mode and the course's settings.

One hub for the whole session (``hub_fixtures.py``); each student's cells run in a
kernel of their own server, under their own uid, driven over the server's websocket.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hub_fixtures import STUDENTS, TEACHER, Hub

pytestmark = pytest.mark.hub

CODE = "# Step 1: add the numbers up\ntotal = sum([1, 2, 3])\nprint(total)\n"
SOLUTION = "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([1, 2, 3]))\n"
#: each reply is billed 1000 in / 1000 out at haiku's $1/$5: $0.006
BILLED = {"input_tokens": 1000, "output_tokens": 1000}


def inserted(result: dict[str, Any]) -> str | None:
    texts = [p["text"] for p in result["payload"] if p.get("source") == "set_next_input"]
    return texts[-1].rstrip("\n") if texts else None


def error_line(result: dict[str, Any]) -> str:
    err = result["error"]
    assert err is not None, result
    assert len(err["traceback"]) == 1, err["traceback"]  # one line, no traceback
    return str(err["evalue"])


def generate(hub: Hub, user: str, line: str, spec: str) -> dict[str, Any]:
    return hub.run(user, f"%%generate {line}\n{spec}")


@pytest.fixture(scope="module")
def loaded(hub: Hub) -> Hub:
    from concurrent.futures import ThreadPoolExecutor

    def load(user: str) -> dict[str, Any]:  # the four kernels start side by side
        return hub.run(user, "%load_ext llmscript_magic\n%config GenerateMagics.widgets = False")

    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(load, (*STUDENTS, TEACHER)):
            assert result["error"] is None, result
    return hub


def test_students_generate_through_the_service(loaded: Hub) -> None:
    hub = loaded
    before = hub.standin.request_count
    for n, user in enumerate(STUDENTS):
        hub.standin.enqueue(f"```python\n{CODE}```", usage=BILLED)
        result = generate(hub, user, "", f"Print the total of 1, 2 and {n + 3}.")
        assert result["error"] is None, result
        assert inserted(result) == CODE.rstrip("\n")
        assert "course:anthropic:claude-haiku-5" in result["stdout"]
        assert "course: Data 101's rules were added to the prompt" in json.dumps(
            result["display"])
    new = hub.standin.requests[before:]
    assert len(new) == 3
    for request in new:  # the service sent them with the course's key, to the course's model
        assert request.sent_key(hub.key)
        assert request.body["model"] == "claude-haiku-5"
        assert "Use only the standard library" in json.dumps(request.body["system"])
        assert hub.key not in json.dumps(request.body)  # nor in the prompt


def test_student_cannot_override_the_course(loaded: Hub) -> None:
    hub = loaded
    user = STUDENTS[0]
    hub.standin.enqueue(f"```python\n{CODE}```", usage={"input_tokens": 10,
                                                        "output_tokens": 10})
    before = hub.standin.request_count
    result = hub.run(user, "%config GenerateMagics.model = 'anthropic:claude-opus-5'\n"
                     "%config GenerateMagics.api_key = 'sk-mine'")
    result = generate(hub, user, "--model anthropic:claude-opus-5 --retries 0 --max-tokens 1000",
                      "Print 6.")
    assert result["error"] is None, result
    assert hub.standin.last.body["model"] == "claude-haiku-5"
    assert hub.standin.last.sent_key(hub.key)
    assert "model course:anthropic:claude-haiku-5 (set by Data 101; anthropic:claude-opus-5 " \
           "was not used)" in json.dumps(result["display"])
    # going around the kernel's settings does not help: the service checks again
    raw = hub.run(user, """
import json, os, urllib.request, urllib.error
def post(model, token=os.environ["JUPYTERHUB_API_TOKEN"]):
    req = urllib.request.Request(os.environ["LLMSCRIPT_COURSE_URL"] + "v1/generate",
        data=json.dumps({"model": model, "system": "", "max_tokens": 10,
                         "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": "token " + token})
    try:
        urllib.request.urlopen(req)
    except urllib.error.HTTPError as err:
        print(err.code, err.read().decode())
post("anthropic:claude-opus-5")
post("anthropic:claude-haiku-5", token="not-a-hub-token")
""")
    assert "403" in raw["stdout"] and "anthropic:claude-opus-5 is not allowed in this " \
           "course" in raw["stdout"], raw
    assert raw["stdout"].count("403 ") == 2  # an unknown token is refused too
    assert hub.standin.request_count == before + 1


def test_budget_refusal_sends_nothing(loaded: Hub) -> None:
    hub = loaded
    user = STUDENTS[2]  # has spent $0.006 of the course's $0.025 a day
    before = hub.standin.request_count
    result = generate(hub, user, "--max-tokens 4000", "Print 7.")  # worst ~$0.021 > $0.019
    message = error_line(result)
    assert "Not sent: this request could cost up to $0.02" in message
    assert "your daily budget in this course leaves $0.019 of $0.025" in message
    assert "ask your teacher to raise it" in message
    assert hub.standin.request_count == before  # nothing reached the provider
    assert inserted(result) is None
    usage = hub.run(user, "%llmscript usage")["stdout"]
    assert "Course service: $0.006 spent today, $0.006 in all (1 requests, 1 refused); " \
           "daily budget $0.025, $0.019 left; total budget $1.00, $0.994 left" in usage


def test_tutor_mode_inserts_no_full_solution(loaded: Hub) -> None:
    hub = loaded
    user = STUDENTS[1]
    for _ in range(2):
        hub.standin.enqueue(f"Here you go:\n```python\n{SOLUTION}```",
                            usage={"input_tokens": 10, "output_tokens": 10})
    result = generate(hub, user, "--tutor --retries 1 --max-tokens 1000",
                      "Write mean(xs); print mean([1,2,3]).")
    assert "Tutor mode: the model wrote a full solution, so it was not inserted" in \
        error_line(result)
    assert inserted(result) is None
    assert "return sum(xs) / len(xs)" not in json.dumps(result)
    assert "Do NOT write the full solution" in json.dumps(hub.standin.last.body["system"])


RUN_CODE = "import os\nprint('sum is', sum(range(5)), 'uid', os.getuid())\n"


@pytest.mark.docker
def test_student_runs_in_the_shared_engine(loaded: Hub, docker_client: Any) -> None:
    hub = loaded
    user = STUDENTS[1]
    # the student's kernel cannot reach the engine itself: that socket is root on the host
    probe = hub.run(user, """
import os, socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("/var/run/docker.sock")
    print("CONNECTED")
except OSError as err:
    print("socket:", type(err).__name__)
print("DOCKER_HOST" in os.environ)
""")
    assert probe["stdout"].split() == ["socket:", "PermissionError", "False"], probe
    hub.standin.enqueue(f"```python\n{RUN_CODE}```", usage={"input_tokens": 10,
                                                            "output_tokens": 10})
    result = generate(hub, user, "--run --retries 0 --max-tokens 1000 --timeout 90",
                      "Print the sum of range(5).")
    assert result["error"] is None, result
    shown = json.dumps(result)
    assert "sum is 10 uid" in shown, result  # it ran, and its output came back
    assert "the code runs in the course sandbox (set by Data 101" in shown
    # the run was the service's: in a container labelled with the student's name
    labelled = docker_client.containers.list(
        filters={"label": f"llmscript.student={user}"})
    assert labelled, "no container carries the student's label"
    assert all(c.labels.get("llmscript.sandbox") == "1" for c in labelled)
    # the teacher's report counts it (and the course caps the run's timeout at 20 s)
    import httpx2

    report = httpx2.get(hub.service_url + "v1/usage", timeout=30, headers={
        "Authorization": f"token {hub.tokens[TEACHER]}"}).json()["students"]
    assert report[user]["runs"] == 1 and report[user]["run_seconds"] > 0
    assert "course caps: timeout 20 s" in shown
    assert all(report[s]["runs"] == 0 for s in STUDENTS if s != user)


def test_key_is_absent_from_student_processes_and_files(loaded: Hub) -> None:
    hub = loaded
    for user in STUDENTS:
        uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True,
                                 check=True).stdout)
        pids = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) == uid]
        assert len(pids) >= 2, f"{user}: expected the server and a kernel"
        for pid in pids:
            for name in ("environ", "cmdline"):
                try:
                    data = (pid / name).read_bytes()
                except OSError:
                    continue  # the process ended meanwhile
                assert hub.key.encode() not in data, f"{user}: key in /proc/{pid.name}/{name}"
        env = hub.run(user, "import os; print('\\n'.join(os.environ.values()))")["stdout"]
        assert hub.key not in env and "JUPYTERHUB_API_TOKEN" not in hub.key
        # every file the student can read where a leak could land, searched as the student
        places = [str(Path("~" + user).expanduser()), str(hub.base), "/etc", "/var/tmp",
                  "/dev/shm", "/run", *_shallow_tmp()]
        found = subprocess.run(
            ["runuser", "-u", user, "--", "grep", "-rlsF", hub.key, *places],
            capture_output=True, text=True, timeout=120)
        assert found.stdout == "" and found.returncode != 0, f"{user} can read the key in: " \
            + found.stdout  # 1: no match; 2: no match, and some files were unreadable
        denied = subprocess.run(["runuser", "-u", user, "--", "cat",
                                 str(hub.base / "secret" / "anthropic.key")],
                                capture_output=True, text=True)
        assert denied.returncode != 0 and hub.key not in denied.stdout


def _shallow_tmp() -> list[str]:
    """/tmp's own files and folders but not other projects' image builds deep below."""
    return [str(p) for p in Path("/tmp").iterdir() if not p.name.startswith("llmscript-rootfs")]


def _uid(proc: Path) -> int | None:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def test_teacher_reads_the_usage_report(loaded: Hub) -> None:
    hub = loaded
    code = ("from llmscript_magic._cli.main import main\n"
            "main(['course', 'usage'])\nmain(['course', 'usage', '--json'])")
    result = hub.run(TEACHER, code)
    assert result["error"] is None, result
    table, _, raw = result["stdout"].partition("{")
    report = json.loads("{" + raw)
    assert set(STUDENTS) <= set(report)
    assert report[STUDENTS[0]]["requests"] == 2
    assert report[STUDENTS[2]]["refused"] >= 1
    assert report[STUDENTS[2]]["cost_today"] == pytest.approx(0.006)
    for user in STUDENTS:
        assert user in table
    denied = hub.run(STUDENTS[0], code)  # a student may not read it
    assert "Only the course's teachers" in denied["stderr"]
    # the page under the hub, through the proxy, as the hub's users would open it
    import httpx2

    page = httpx2.get(f"{hub.url}/services/llmscript-course/", timeout=30,
                      headers={"Authorization": f"token {hub.tokens[TEACHER]}"})
    assert page.status_code == 200 and f"<td>{STUDENTS[2]}</td><td>1</td><td>1</td>" in page.text
    page = httpx2.get(f"{hub.url}/services/llmscript-course/", timeout=30,
                      headers={"Authorization": f"token {hub.tokens[STUDENTS[0]]}"})
    assert page.status_code == 403
