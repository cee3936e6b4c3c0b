"""A real JupyterHub for the course tests: one per test session, on loopback.

JupyterHub and its proxy (configurable-http-proxy from npm) run as root with the
local-process spawner; the three students and the teacher are real system users
(``useradd``), so each server and kernel runs under its own uid. Hub-side Python is
``/opt/llmscript-hub`` (``scripts/setup-hub-env``): a venv every user can execute,
with llmscript-magic taken from this checkout through PYTHONPATH. The course's
provider key exists only in a root-only file read by the course service, which
forwards to an in-process Anthropic stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HUB_ENV = Path(os.environ.get("LLMSCRIPT_HUB_ENV", "/opt/llmscript-hub"))
#: the test users' names start with this; another prefix lets a second session run
#: beside one already under way (the users are system-wide)
PREFIX = os.environ.get("LLMSCRIPT_HUB_USER_PREFIX", "lmc")
STUDENTS = (f"{PREFIX}-stu1", f"{PREFIX}-stu2", f"{PREFIX}-stu3")
TEACHER = f"{PREFIX}-teacher"
SERVICE = "llmscript-course"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the hub tests need root (useradd, the local-process spawner)"
    if not (HUB_ENV / "bin" / "jupyterhub-singleuser").exists():
        return f"no hub environment at {HUB_ENV}: run bash scripts/setup-hub-env"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy is missing: npm install -g configurable-http-proxy"
    if shutil.which("useradd") is None:
        return "useradd is missing"
    return None


@dataclass
class Hub:
    url: str
    admin_token: str
    key: str  # the course's provider key: must never reach a student
    base: Path
    service_url: str
    standin: Any
    process: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)
    kernels: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, token: str | None = None,
            body: Any = None) -> Any:
        import httpx2

        resp = httpx2.request(method, self.url + path, json=body, timeout=60,
                              headers={"Authorization": f"token {token or self.admin_token}"})
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def wait_ready(self, user: str) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            model = self.api("GET", f"/hub/api/users/{user}")
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.3)
        raise TimeoutError(f"{user}'s server did not start: see {self.base}/secret/hub.log")

    def kernel(self, user: str) -> str:
        if user not in self.kernels:
            k = self.api("POST", f"/user/{user}/api/kernels", self.tokens[user],
                         {"name": "python3"})
            self.kernels[user] = k["id"]
        return self.kernels[user]

    def run(self, user: str, code: str, timeout: float = 90) -> dict[str, Any]:
        """Execute ``code`` in the user's kernel over the server's websocket, like a front end."""
        return asyncio.run(self._run(user, code, timeout))

    async def _run(self, user: str, code: str, timeout: float) -> dict[str, Any]:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        kid = self.kernel(user)
        ws_url = self.url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kid}/channels"
        req = HTTPRequest(ws_url, headers={"Authorization": f"token {self.tokens[user]}"})
        conn = await websocket_connect(req)
        msg_id = uuid.uuid4().hex
        conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user,
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        out: dict[str, Any] = {"stdout": "", "stderr": "", "error": None, "payload": [],
                               "display": []}
        replied = idle = False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            if raw is None:
                raise ConnectionError("the kernel's websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":
                out["error"] = content
            elif kind in ("display_data", "execute_result"):
                out["display"].append(content["data"])
            elif kind == "execute_reply":
                replied = True
                out["payload"] = content.get("payload", [])
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        conn.close()
        while await asyncio.wait_for(conn.read_message(), 10) is not None:
            pass  # until the close handshake is done and the socket closed
        return out


def _users() -> None:
    """Fresh users with empty homes: nothing cached or spent by an earlier session."""
    for user in (*STUDENTS, TEACHER):
        if subprocess.run(["id", user], capture_output=True).returncode == 0:
            # a process left by an earlier, killed session would make userdel refuse
            subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True, check=False)
            subprocess.run(["userdel", "-r", user], capture_output=True, check=False)
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True)


def _course_toml(base: Path, key_file: Path, usage: Path) -> Path:
    path = base / "public" / "course.toml"
    path.write_text(f"""\
[course]
name = "Data 101"
model = "course:anthropic:claude-haiku-5"
rules = "Use only the standard library. Explain each step in a comment."
sandbox = "course"

[service]
models = ["anthropic:claude-haiku-5"]
daily_budget = 0.025
total_budget = 1.0
rate = 30
teachers = ["{TEACHER}"]
usage_file = "{usage}"
keys = {{ anthropic = "{key_file}" }}
run_timeout = 20
runs = 5
""")
    path.chmod(0o644)
    return path


def _hub_config(base: Path, port: int, hub_port: int, service_port: int, admin: str,
                course: Path, standin_url: str) -> Path:
    secret = base / "secret"
    py = HUB_ENV / "bin" / "python"
    src = base / "public" / "src"  # the package, copied where every user can read it
    service_url = f"http://127.0.0.1:{service_port}"
    config = secret / "jupyterhub_config.py"
    config.write_text(f"""\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{secret}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{secret}/cookie_secret"
c.JupyterHub.pid_file = "{secret}/hub.pid"
c.ConfigurableHTTPProxy.pid_file = "{secret}/proxy.pid"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{_free_port()}"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {set((*STUDENTS, TEACHER))!r}
c.JupyterHub.cleanup_servers = True
# spawn and stop the four side by side
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0, "slow_stop_timeout": 0}}
c.Spawner.cmd = ["{HUB_ENV}/bin/jupyterhub-singleuser"]
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.Spawner.environment = {{
    "PYTHONPATH": "{src}",
    "LLMSCRIPT_COURSE": "{course}",
    "LLMSCRIPT_COURSE_URL": "{service_url}/services/{SERVICE}/",
}}
c.Spawner.server_token_scopes = ["users:activity!user", "access:services!service={SERVICE}"]
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}},
    {{"name": "admin", "services": ["test-admin"]}},
]
c.JupyterHub.services = [
    {{"name": "test-admin", "api_token": "{admin}"}},
    {{"name": "{SERVICE}", "url": "{service_url}",
      "command": ["{py}", "-m", "llmscript_magic._course.service"],
      "environment": {{"PYTHONPATH": "{src}", "LLMSCRIPT_COURSE": "{course}",
                       "ANTHROPIC_BASE_URL": "{standin_url}"}}}},
]
""")
    config.chmod(0o600)
    return config


@pytest.fixture(scope="session")
def hub() -> Iterator[Hub]:
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    from standins import AnthropicStandIn

    _users()
    key = "sk-ant-course-" + secrets.token_hex(20)
    # not under pytest's temp root: that one is private to root, and pruned by other runs
    base = Path(tempfile.mkdtemp(prefix="llmscript-hub-"))
    base.chmod(0o711)  # students may reach public/, never list or enter secret/
    (base / "public").mkdir(mode=0o755)
    # the students' kernels and the service import this checkout's package from a copy
    # every user can read, wherever the checkout itself lies (CI may clone under /root)
    shutil.copytree(ROOT / "llmscript_magic", base / "public" / "src" / "llmscript_magic",
                    ignore=shutil.ignore_patterns("__pycache__", "labextension"))
    subprocess.run(["chmod", "-R", "a+rX", str(base / "public")], check=True)
    secret = base / "secret"
    secret.mkdir(mode=0o700)
    key_file = secret / "anthropic.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    standin = AnthropicStandIn(api_key=key).start()
    course = _course_toml(base, key_file, secret / "usage.jsonl")
    port, hub_port, service_port = _free_port(), _free_port(), _free_port()
    admin = secrets.token_hex(16)
    config = _hub_config(base, port, hub_port, service_port, admin, course, standin.url)
    env = {"PATH": f"{HUB_ENV}/bin:" + os.environ.get("PATH", ""), "HOME": str(secret),
           "LANG": "C.UTF-8"}
    log = open(secret / "hub.log", "wb")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen([str(HUB_ENV / "bin" / "jupyterhub"), "-f", str(config)],
                               cwd=secret, env=env, stdout=log, stderr=subprocess.STDOUT)
    h = Hub(f"http://127.0.0.1:{port}", admin, key, base,
            f"http://127.0.0.1:{service_port}/services/{SERVICE}/", standin, process)
    try:
        _wait_for(h)
        for user in (*STUDENTS, TEACHER):
            h.tokens[user] = h.api("POST", f"/hub/api/users/{user}/tokens",
                                   body={"note": "course test"})["token"]
        for user in (*STUDENTS, TEACHER):
            h.api("POST", f"/hub/api/users/{user}/server")
        for user in (*STUDENTS, TEACHER):
            h.wait_ready(user)
        yield h
    finally:
        for user in (*STUDENTS, TEACHER):  # the hub also stops them when it exits
            with contextlib.suppress(Exception):
                h.api("DELETE", f"/hub/api/users/{user}/server")
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        _stop_proxy(secret / "proxy.pid", port)
        standin.stop()
        if os.environ.get("LLMSCRIPT_KEEP_HUB"):
            print(f"hub files kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _stop_proxy(pid_file: Path, port: int) -> None:
    """The proxy the hub started, if the hub could not stop it (killed mid-start-up);
    only that process: its command line names the proxy and this hub's port."""
    import signal

    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"configurable-http-proxy" in b" ".join(cmdline) and str(port).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)


def _wait_for(h: Hub) -> None:
    import httpx2

    deadline = time.monotonic() + 180  # generous: a loaded CI machine starts it slowly
    while time.monotonic() < deadline:
        if h.process.poll() is not None:
            raise RuntimeError("the hub exited: "
                               + (h.base / "secret" / "hub.log").read_text()[-3000:])
        try:
            if httpx2.get(h.url + "/hub/api/", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.3)
    log = (h.base / "secret" / "hub.log").read_text()[-3000:]
    raise TimeoutError("the hub did not answer: " + log)
