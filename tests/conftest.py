"""Shared fixtures: a real InteractiveShell with the extension loaded, stand-ins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from IPython.core.interactiveshell import InteractiveShell

if TYPE_CHECKING:
    from llmscript_magic.testing import FakeProvider

# fixtures shared by the test files
pytest_plugins = ["standins", "sandbox_fixtures", "browser_helpers", "hub_fixtures"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real key, cache or replay setting leaks into a test."""
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LLMSCRIPT_REPLAY", "LLMSCRIPT_AUDIT_LOG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMSCRIPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm-user"))  # llm's keys and settings


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    """A scripted provider answering ``--model fake:...`` for this test only.

    After simonw/llm's mock model: the test gets the registered instance and calls
    ``fake.enqueue(...)``, ``fake.history``, ``fake.pending()``; it is unregistered after.
    """
    from llmscript_magic.providers import register, unregister
    from llmscript_magic.testing import FakeProvider

    provider = FakeProvider()
    register(provider)
    yield provider
    unregister(provider.name)


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A real IPython shell with a fresh GenerateMagics (default traits) per test."""
    from llmscript_magic._notebook.magics import GenerateMagics, LLMScriptMagics

    shell = InteractiveShell.instance()
    shell.config.pop("GenerateMagics", None)  # %config in an earlier test must not leak
    shell.register_magics(GenerateMagics(shell), LLMScriptMagics(shell))
    gm = shell.magics_manager.registry["GenerateMagics"]
    gm.widgets = False
    monkeypatch.chdir(tmp_path)
    shell.rl_next_input = None
    yield shell
    shell.rl_next_input = None


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Collect, before pytest's own last sweep, what third-party clients left to the garbage
    collector: llm's OpenAI plugin never closes its SDK clients (see test_llm_bridge), and a
    loopback socket of theirs freed only now would fail a run whose every test passed.
    A ResourceWarning raised while a test runs still fails that test."""
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
