"""Real JupyterLab + Debian Chromium for the browser tests.

``LabServer`` runs ``jupyter lab`` (or Notebook 7) on 127.0.0.1 in a temp root
folder with its own config, data and IPython dirs; ``launch_chromium`` starts
/usr/bin/chromium through playwright (never a downloaded browser). When a
prerequisite is missing the tests skip locally but FAIL under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXTENSION_NAME = "llmscript-magic"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip locally; fail in CI, where every prerequisite must be installed."""
    if in_ci():
        pytest.fail(f"browser test prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def require_browser_stack(app_module: str = "jupyterlab") -> None:
    if not Path(CHROMIUM).is_file():
        missing(f"{CHROMIUM} not found (apt-get install -y chromium; scripts/setup --test)")
    for module in ("playwright.sync_api", app_module):
        try:
            __import__(module)
        except ImportError:
            missing(f"python module {module} is not installed")
    if not (ROOT / "llmscript_magic" / "labextension" / "static" / "style.js").is_file():
        missing("the extension is not built (scripts/build-labextension or pip install -e .)")


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if pytest itself is killed (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def labextension_list(env: Mapping[str, str]) -> str:
    """What ``jupyter labextension list`` prints (it writes to stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True, text=True, env=dict(env), timeout=120, check=True,
    )
    return done.stdout + done.stderr


class LabServer:
    """``jupyter lab`` / ``jupyter notebook`` on 127.0.0.1 without a token."""

    def __init__(self, home: Path, env: Mapping[str, str], app: str = "lab") -> None:
        self.home = home
        self.root = home / "root"
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / f"jupyter-{app}.log"
        self.env = self.isolated_env(home, env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @staticmethod
    def isolated_env(home: Path, extra: Mapping[str, str]) -> dict[str, str]:
        # JUPYTER_PATH stays: it may point at a worktree's own extension build
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("JUPYTER") or k == "JUPYTER_PATH"}
        for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
            (home / name).mkdir(parents=True, exist_ok=True)
        env.update({
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
            "IPYTHONDIR": str(home / "ipython"),
            "PYTHONUNBUFFERED": "1",
        })
        # No "get notified about Jupyter news?" toast over the page.
        news = home / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        env.update(extra)
        return env

    def start(self, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        app_flags = (
            ["--LabApp.expose_app_in_browser=True"] if self.app == "lab"
            else ["--JupyterNotebookApp.expose_app_in_browser=True"]
        )
        cmd = [
            sys.executable, "-m", "jupyter", self.app, "--no-browser", "--allow-root",
            "--IdentityProvider.token=", "--ServerApp.password=",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.root}",
            *app_flags,
        ]
        self._log = log = self.log_path.open("wb")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited: {self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"{self.url}/api/status", timeout=2
            ) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"jupyter {self.app} did not start in {timeout} s: {self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            if self._log is not None:
                self._log.close()

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Only this server's own process group (it started its kernels).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def write_notebook(self, name: str, cells: list[dict[str, Any]] | None = None) -> str:
        notebook = {
            "cells": cells or [],
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3",
                               "language": "python"},
                "language_info": {"name": "python"},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        for i, cell in enumerate(notebook["cells"]):  # nbformat 4.5: every cell has an id
            cell.setdefault("id", f"cell-{i}")
        (self.root / name).write_text(json.dumps(notebook), encoding="utf-8")
        self.sign(name)
        return name

    def sign(self, name: str) -> None:
        """Trust the notebook as the user's own (the server signs what its user saves):
        without a signature the kernel applies the untrusted-notebook policy."""
        import nbformat
        from nbformat.sign import NotebookNotary

        notary = NotebookNotary(data_dir=str(self.home / "data"))
        notary.sign(nbformat.read(str(self.root / name), as_version=4))
        notary.close()


TEST_KEY = "sk-ant-test-key-0000"  # the stand-in's; never a real key
KERNEL_IDLE_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


def start_server(home: Path, standin: StandIn, app: str = "lab") -> LabServer:
    """A started JupyterLab (or Notebook 7) whose kernels talk to ``standin``."""
    server = LabServer(home, {"ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": TEST_KEY,
                              "LLMSCRIPT_CACHE_DIR": str(home / "cache")}, app=app)
    server.start()
    return server


class StandIn:
    """``python tests/standins.py anthropic`` out of process, scripted from a JSON file."""

    def __init__(self, home: Path, replies: list[dict[str, Any]]) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.script = home / "replies.json"
        self.script.write_text(json.dumps({"replies": replies}), encoding="utf-8")
        self.log = home / "requests.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "standins.py"), "anthropic", "--port", "0",
             "--script", str(self.script), "--log", str(self.log)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=die_with_parent,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"stand-in did not print its port: {line!r}")
        self.url = f"http://127.0.0.1:{int(line)}"

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A playwright Browser on Debian's Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


# -- fixtures shared by the browser test files (each defines its own ``standin``, with
# -- its scripted replies; conftest registers this module as a plugin) ------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Iterator[LabServer]:
    server = start_server(tmp_path_factory.mktemp("lab"), standin)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Iterator[LabServer]:
    require_browser_stack("notebook")
    server = start_server(tmp_path_factory.mktemp("nb7"), standin, app="notebook")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser_stack()
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    screenshot(pg, f"{request.node.name}-end")
    context.close()
    assert not [e for e in errors if "llmscript" in e], errors
