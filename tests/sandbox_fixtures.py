"""Fixtures for the sandbox tests (imported by the test files; conftest is the lead's).

Docker tests skip only when the engine is really missing and CI is not set;
under CI a missing engine or image is a failure, not a skip.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmscript_magic._errors import SandboxError
from llmscript_magic._sandbox import DEFAULT_IMAGE, shutdown
from llmscript_magic._sandbox.image import OWNER_LABEL, owner_id


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


#: ``flags`` for a magic's cell at each isolation level (with the ``engine_for`` fixture)
SANDBOX_FLAGS = [pytest.param("--isolation gvisor", marks=pytest.mark.docker, id="gvisor"),
                 pytest.param("--isolation container", marks=pytest.mark.docker, id="runc"),
                 pytest.param("--sandbox local", id="local")]


@pytest.fixture
def engine_for(request: pytest.FixtureRequest) -> None:
    """The real engine (and gVisor) for a test's ``flags`` param; a skip, or a failure under CI."""
    flags = request.node.callspec.params["flags"]
    if "isolation" in flags:
        client = request.getfixturevalue("docker_client")
        request.getfixturevalue("docker_leftover_check")
        if "gvisor" in flags:
            from llmscript_magic._sandbox.engine import gvisor_problem

            if (problem := gvisor_problem(client)) is not None:
                _unavailable(f"no gVisor: {problem}")


#: The isolation levels a run can have: ``sandbox_at``'s params.
LEVELS = ["gvisor", "container", "local"]


def sandbox_at(request: pytest.FixtureRequest) -> Any:
    """The sandbox at ``request.param``'s level (one of ``LEVELS``), as a kernel holds it
    for all its runs; a skip where that level is missing here (a failure under CI)."""
    from llmscript_magic._sandbox import get_sandbox

    if request.param == "local":
        from llmscript_magic._sandbox.local import bubblewrap_problem

        if (problem := bubblewrap_problem()) is not None:
            _unavailable(f"no bubblewrap: {problem}")
        return get_sandbox("local")
    client = request.getfixturevalue("docker_client")
    request.getfixturevalue("docker_leftover_check")  # no container or volume left behind
    if request.param == "gvisor":
        from llmscript_magic._sandbox.engine import gvisor_problem

        if (problem := gvisor_problem(client)) is not None:
            _unavailable(f"no gVisor: {problem}")
    return get_sandbox("docker", isolation=request.param)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client for the real engine, or a skip (a failure under CI).

    The engine is shared with other test runs and notebooks, whose containers
    count against the per-engine warm cap and budget: the session lifts them,
    so the tests that need a full pool do not depend on what else runs (their
    own tests set them).
    """
    os.environ.setdefault("LLMSCRIPT_MAX_WARM", "64")
    os.environ.setdefault("LLMSCRIPT_SANDBOX_BUDGET", "64")  # the budget's tests set theirs
    try:
        import docker  # noqa: F401
    except ImportError:
        _unavailable("the docker SDK is not installed")
    from llmscript_magic._sandbox.docker import connect

    try:
        client = connect()
    except SandboxError as exc:
        _unavailable(f"no Docker engine: {exc}")
    try:
        client.images.get(DEFAULT_IMAGE)
    except Exception:
        _unavailable(f"image {DEFAULT_IMAGE} missing: run `bash scripts/build-sandbox-image`")
    return client


def leftovers(client: Any) -> list[str]:
    """Sandbox containers/volumes THIS test process made that still exist.

    Only ours: other processes (another test run, a notebook) may use the
    same engine, and an engine restart earlier on the machine is not our leak.
    """
    mine = {"label": f"{OWNER_LABEL}={owner_id()}"}
    found = [f"container {c.short_id}" for c in
             client.containers.list(all=True, sparse=True, filters=mine)]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=mine)]
    return found


@pytest.fixture(scope="session")
def host_canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A host dir with a secret; its content must be the same after the suite."""
    root = tmp_path_factory.mktemp("canary")
    (root / "secret.txt").write_text("canary-secret-7f3a\n")

    def digest() -> str:
        h = hashlib.sha256()
        for path in sorted(root.rglob("*")):
            h.update(str(path).encode())
            if path.is_file():
                h.update(path.read_bytes())
        return h.hexdigest()

    before = digest()
    yield root
    assert digest() == before, "the host canary dir was changed by a sandboxed run"


@pytest.fixture(scope="session")
def docker_leftover_check(docker_client: Any) -> Iterator[None]:
    """At the end of the session no labelled container/volume may remain."""
    yield
    shutdown()
    deadline = time.monotonic() + 15
    while leftovers(docker_client) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(docker_client) == [], "sandbox containers or volumes were left behind"


@pytest.fixture(scope="session")
def docker_sandbox(docker_client: Any, host_canary: Path,
                   docker_leftover_check: None) -> Any:
    """The shared Docker sandbox at the default isolation (auto)."""
    from llmscript_magic._sandbox import get_sandbox

    return get_sandbox("docker")


#: Every isolation level the Docker backend offers; hostile tests run under each.
ISOLATION_LEVELS = ["gvisor", "container"]


@pytest.fixture(scope="session", params=ISOLATION_LEVELS)
def isolated_sandbox(request: pytest.FixtureRequest, docker_client: Any, host_canary: Path,
                     docker_leftover_check: None) -> Any:
    """The Docker sandbox at one isolation level (gVisor missing: skip, a failure under CI)."""
    from llmscript_magic._sandbox import get_sandbox
    from llmscript_magic._sandbox.engine import gvisor_problem

    if request.param == "gvisor":
        problem = gvisor_problem(docker_client)
        if problem is not None:
            _unavailable(f"no gVisor: {problem}")
    return get_sandbox("docker", isolation=request.param)


@pytest.fixture
def wait_gone() -> Callable[[Any, str], bool]:
    """wait_gone(client, id): True once that container no longer exists."""
    return _wait_gone


def _wait_gone(client: Any, container_id: str, seconds: float = 10) -> bool:
    """Removal is off the critical path, so give it a moment."""
    import docker

    from llmscript_magic._sandbox.pool import already_gone

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.containers.get(container_id)
        except docker.errors.APIError as exc:
            if already_gone(exc):  # 404; Podman may say 500 "no such container"
                return True
            raise
        time.sleep(0.1)
    return False
