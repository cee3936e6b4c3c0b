"""The whole sandbox suite on engines other than the local Docker daemon, each started here.

- a second dockerd behind mutual TLS (certificates made with openssl for this
  session) and, through an sshd on 127.0.0.1, over SSH as an unprivileged user;
- rootless Podman's Docker-compatible API socket, run by a throwaway user.

The image travels with `llmscript sandbox push` (save | load, no registry).
Every test of test_sandbox_docker.py runs unchanged against each engine,
collected from that module (a new test there runs here without a list to keep
up), except the few in EXCLUDED, which say why. Rootless Podman on cgroups v1
cannot cap the memory total, the CPU share or the work dir's size (the runner's
rlimits hold the process count, each process's memory and the file size): for
the tests that rest on those, PODMAN_VARIANTS run the same hostile code there
and assert that the result says the limit is NOT enforced, and what did hold.
A real gap the suite finds on an engine is listed in KNOWN_GAPS (strict xfail).
"""

from __future__ import annotations

import inspect
import io
import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import test_sandbox_docker as suite
from engine_fixtures import (  # noqa: F401  (the *_fixture names register fixtures)
    PodmanEngine,
    TwoDoorEngine,
    make_certs,
    podman_engine_fixture,
    two_door_engine_fixture,
)

from llmscript_magic._errors import SandboxUnavailableError
from llmscript_magic._sandbox import DEFAULT_IMAGE, Limits, get_sandbox, shutdown

pytestmark = pytest.mark.docker

ENGINE_VARS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "LLMSCRIPT_ALLOW_PLAIN_TCP")
ENGINES = ("tls", "ssh", "podman")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`llmscript ARGV` in this process: (exit code, stdout, stderr)."""
    from llmscript_magic._cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _use(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for var in ENGINE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)


def _use_tls(monkeypatch: pytest.MonkeyPatch, engine: TwoDoorEngine) -> None:
    _use(monkeypatch, DOCKER_HOST=engine.tls_url, DOCKER_TLS_VERIFY="1",
         DOCKER_CERT_PATH=str(engine.cert_dir))


def _use_ssh(monkeypatch: pytest.MonkeyPatch, engine: TwoDoorEngine) -> None:
    _use(monkeypatch, DOCKER_HOST=engine.ssh_url, HOME=str(engine.ssh_home))


@pytest.fixture(scope="session")
def tls_engine(two_door_engine: TwoDoorEngine) -> Iterator[TwoDoorEngine]:
    """The two-door engine with the image pushed to it over TLS by the CLI."""
    mp = pytest.MonkeyPatch()
    try:
        _use_tls(mp, two_door_engine)
        code, out, err = run_cli(["sandbox", "push"])
        assert code == 0, err
        assert "MB sent" in err and f"pushed {DEFAULT_IMAGE} to {two_door_engine.tls_url}" in err
        assert out.strip() == "sandbox image ready on the DOCKER_HOST engine"
    finally:
        mp.undo()
    yield two_door_engine


_current_engine: list[str] = []  # the engine the last suite case ran on


def _point_at(request: pytest.FixtureRequest, engine: str) -> None:
    """Set DOCKER_HOST (and TLS or ssh settings) for this test to the engine named.

    Moving on to the next engine removes the previous one's warm pools: three
    engines' worth of warm containers at once would only cost memory.
    """
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    if engine == "podman":
        podman: PodmanEngine = request.getfixturevalue("podman_engine")
        _use(monkeypatch, DOCKER_HOST=podman.url)
    else:
        two_door: TwoDoorEngine = request.getfixturevalue("tls_engine")
        (_use_tls if engine == "tls" else _use_ssh)(monkeypatch, two_door)
    if _current_engine and _current_engine[0] != engine:
        shutdown()
    _current_engine[:] = [engine]


# --- the suite of test_sandbox_docker.py on every engine -------------------------------------

#: What each fixture a suite test asks for is on the engine DOCKER_HOST now names.
#: The client is the one the sandbox itself uses (connect()), over ssh for the ssh engine:
#: pools are keyed by its address (engine_id), which a client made apart would not share.
#: Leftovers are checked by the engine fixtures when they stop (engine_fixtures.py).
FIXTURES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "isolated_sandbox": lambda _: get_sandbox("docker", isolation="container"),  # no runsc
    "docker_sandbox": lambda _: get_sandbox("docker", isolation="container"),
    "docker_client": lambda _: _connect(),
    "docker_leftover_check": lambda _: None,
    "host_canary": lambda request: request.getfixturevalue("host_canary"),
    "monkeypatch": lambda request: request.getfixturevalue("monkeypatch"),
    "wait_gone": lambda request: request.getfixturevalue("wait_gone"),
    "tmp_path": lambda request: request.getfixturevalue("tmp_path"),
}


def _connect() -> Any:
    from llmscript_magic._sandbox.engine import connect

    return connect()


#: Suite tests that do not run here, and why.
EXCLUDED: dict[str, str] = {
    "test_unreachable_engine_is_reported": "sets its own DOCKER_HOST (a closed port)",
    "test_a_socket_left_by_a_stopped_engine_is_one_line_and_leaks_nothing":
        "sets its own DOCKER_HOST (a socket file nobody listens on)",
    "test_unknown_backend_is_a_configuration_error": "touches no engine",
    "test_unknown_isolation_is_a_configuration_error": "touches no engine",
    "test_import_does_not_load_docker": "touches no engine",
    "test_seccomp_profile_ships_with_the_package": "touches no engine",
}

#: The warning of an engine that drops caps reads "<caps> limits are NOT enforced: ..."
_WARNING_SPLIT = " limits are NOT enforced"


def _names_unenforced(warning: str | None, what: str) -> None:
    """The result's warning lists `what` among the limits this engine does not enforce."""
    assert warning is not None and _WARNING_SPLIT in warning, warning
    assert what in warning.partition(_WARNING_SPLIT)[0], warning


def podman_memory_hog(isolated_sandbox: Any) -> None:
    """One hog still ends as "memory" (RLIMIT_DATA); several processes' sum is not capped."""
    suite.test_memory_hog_reports_memory(isolated_sandbox)
    code = ("import os\nready_r, ready_w = os.pipe()\nhold_r, hold_w = os.pipe()\n"
            "for _ in range(5):\n    if os.fork() == 0:\n        os.close(hold_w)\n"
            "        data = b'x' * (120 * 2**20)\n        os.write(ready_w, b'1')\n"
            "        os.read(hold_r, 1)\n        os._exit(0)\n"
            "got = b''\nwhile len(got) < 5:\n    got += os.read(ready_r, 5)\n"
            "print('held', 120 * len(got), 'MB at once', flush=True)\n"
            "os.close(hold_w)\nfor _ in range(5):\n    os.wait()\n")
    r = isolated_sandbox.run(code, limits=Limits(timeout=30, memory_mb=256))
    assert (r.status, r.stdout) == ("ok", "held 600 MB at once\n"), (r.reason, r.stderr)
    _names_unenforced(r.warning, "total-memory")


def podman_profile(isolated_sandbox: Any, docker_client: Any) -> None:
    """Podman reads the seccomp option as a file on its machine: the file holds our profile.

    Its inspect output has no MaskedPaths: the masks are checked by what a script
    reads (test_proc_kcore_gives_nothing, test_proc_does_not_tell_the_host_boot_line).
    """
    from llmscript_magic._sandbox.docker import seccomp_profile
    from llmscript_magic._sandbox.image import OWNER_LABEL, owner_id

    assert isolated_sandbox.run("print(1)", limits=suite.FAST).stdout == "1\n"
    deadline = time.monotonic() + 20
    warm: list[Any] = []
    while not warm and time.monotonic() < deadline:
        time.sleep(0.2)
        warm = suite._inspect_all(docker_client, f"{OWNER_LABEL}={owner_id()}")
    assert warm, "the pool holds no container"
    for c in warm:
        opts = c.attrs["HostConfig"]["SecurityOpt"]
        files = [o[len("seccomp="):] for o in opts if o.startswith("seccomp=")]
        assert "no-new-privileges" in opts and len(files) == 1, opts
        assert Path(files[0]).read_text() == seccomp_profile(False)


#: On Podman these replace the suite test of the same name: it rests on a cap Podman drops
#: or on a detail of Docker's API that Podman's differs in.
PODMAN_VARIANTS: dict[str, Callable[..., None]] = {
    "test_memory_hog_reports_memory": podman_memory_hog,
    "test_every_container_gets_our_profile_and_masks": podman_profile,
}

#: Real gaps the suite finds on an engine, expected to fail (strict: fixed, they fail here
#: until taken out of this list).
KNOWN_GAPS: dict[tuple[str, str], str] = {}


@dataclass
class Case:
    """One suite test with one set of its own parameters (from its parametrize marks)."""

    name: str
    func: Callable[..., None]
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __repr__(self) -> str:  # the test id reads "tls-<label>"
        return self.label


def _expand(name: str, func: Callable[..., None]) -> tuple[list[Case], list[Any]]:
    """The cases of one suite test (its own parametrize marks expanded) and its other marks."""
    marks = list(getattr(func, "pytestmark", []))
    axes = []
    for mark in (m for m in marks if m.name == "parametrize"):
        names = mark.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        values = list(mark.args[1])
        ids = mark.kwargs.get("ids") or ["-".join(map(str, v if len(names) > 1 else [v]))
                                         for v in values]
        axes.append([(dict(zip(names, v if len(names) > 1 else [v], strict=True)), str(i))
                     for v, i in zip(values, ids, strict=True)])
    cases = []
    for combo in itertools.product(*axes):
        params = {k: v for chosen, _ in combo for k, v in chosen.items()}
        label = "-".join([name[len("test_"):], *(i for _, i in combo)])
        cases.append(Case(name, func, params, label))
    return cases, [m for m in marks if m.name != "parametrize"]


def suite_tests() -> dict[str, Callable[..., None]]:
    """Every test function of test_sandbox_docker.py, in file order."""
    return {name: obj for name, obj in vars(suite).items()
            if name.startswith("test_") and inspect.isfunction(obj)}


def _suite_cases() -> list[Any]:
    out = []
    for engine in ENGINES:
        for name, func in suite_tests().items():
            if name in EXCLUDED:
                continue
            cases, marks = _expand(name, func)
            gap = KNOWN_GAPS.get((engine, name))
            if gap is not None:
                marks = [*marks, pytest.mark.xfail(reason=gap, raises=AssertionError, strict=True)]
            out += [pytest.param(engine, case, marks=marks, id=f"{engine}-{case.label}")
                    for case in cases]
    return out


@pytest.mark.parametrize(("engine", "case"), _suite_cases())
def test_suite_on_engine(engine: str, case: Case, request: pytest.FixtureRequest) -> None:
    func = PODMAN_VARIANTS.get(case.name, case.func) if engine == "podman" else case.func
    wanted = [p for p in inspect.signature(func).parameters if p not in case.params]
    unknown = [p for p in wanted if p not in FIXTURES]
    assert not unknown, (f"{case.name} asks for {unknown}: give each an engine equivalent in "
                         "FIXTURES or add the test to EXCLUDED with the reason")
    _point_at(request, engine)
    func(**{p: FIXTURES[p](request) for p in wanted}, **case.params)


def test_every_suite_test_runs_here_or_is_excluded() -> None:
    """A new test in test_sandbox_docker.py runs on every engine unless it is excluded here."""
    tests = suite_tests()
    assert set(EXCLUDED) <= set(tests), "EXCLUDED names a test that no longer exists"
    assert set(PODMAN_VARIANTS) <= set(tests) - set(EXCLUDED)
    assert {name for _, name in KNOWN_GAPS} <= set(tests) - set(EXCLUDED)
    for name, func in tests.items():
        if name in EXCLUDED:
            continue
        cases, _ = _expand(name, func)
        asked = set(inspect.signature(func).parameters) - set(cases[0].params)
        assert asked <= set(FIXTURES), f"{name}: no engine equivalent for {asked - set(FIXTURES)}"
    ran = {p.values[1].name for p in _suite_cases()}
    assert ran == set(tests) - set(EXCLUDED)
    assert len(ran) >= 40  # the collection found the suite (it holds about 50 tests)


# --- what only these engines have ------------------------------------------------------------

def test_run_goes_to_the_tls_engine(tls_engine: TwoDoorEngine, docker_client: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _use_tls(monkeypatch, tls_engine)
    since = time.time()
    r = get_sandbox("docker").run("import socket\nprint(socket.gethostname())")
    assert (r.status, r.isolation, r.warning) == ("ok", "container", None), r.stderr
    time.sleep(1.1)  # event timestamps have one-second resolution
    started = {e["id"] for e in tls_engine.client.events(
        since=int(since) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "start"})}
    assert any(cid.startswith(r.stdout.strip()) for cid in started)


def test_tls_engine_refuses_a_client_its_ca_did_not_sign(
        tls_engine: TwoDoorEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stranger = make_certs(tmp_path)
    shutil.copy(tls_engine.cert_dir / "ca.pem", stranger / "ca.pem")  # trusts the server
    _use(monkeypatch, DOCKER_HOST=tls_engine.tls_url, DOCKER_TLS_VERIFY="1",
         DOCKER_CERT_PATH=str(stranger))
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    msg = str(err.value)
    assert msg.startswith(f"Docker engine not reachable ({tls_engine.tls_url}: "), msg
    assert "\n" not in msg


def test_tls_engine_is_not_reachable_in_plain_tcp(tls_engine: TwoDoorEngine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, DOCKER_HOST=tls_engine.tls_url, LLMSCRIPT_ALLOW_PLAIN_TCP="1")
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    assert str(err.value).startswith(f"Docker engine not reachable ({tls_engine.tls_url}: ")


def test_ssh_engine_runs_as_an_unprivileged_login(tls_engine: TwoDoorEngine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _use_ssh(monkeypatch, tls_engine)
    r = get_sandbox("docker").run("print(sum(range(10)))", files={"in.txt": b"x"})
    assert (r.status, r.stdout, r.warning) == ("ok", "45\n", None), r.stderr
    code, out, _ = run_cli(["sandbox", "list"])
    assert code == 0 and "llmscript-sandbox:1" in out


def test_ssh_without_a_known_host_key_is_refused(tls_engine: TwoDoorEngine, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    shutil.copytree(tls_engine.ssh_home, home)
    (home / ".ssh" / "known_hosts").write_text("")
    _use(monkeypatch, DOCKER_HOST=tls_engine.ssh_url, HOME=str(home))
    with pytest.raises(SandboxUnavailableError) as err:
        get_sandbox("docker")
    msg = str(err.value)
    assert msg.startswith(f"Docker engine not reachable ({tls_engine.ssh_url}: "), msg
    assert "known_hosts" in msg and "\n" not in msg


def test_podman_says_which_limits_it_cannot_enforce(podman_engine: PodmanEngine,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Every result names the caps Podman drops; those the runner's rlimits keep are not named.

    The suite's fork-bomb, file-size and memory-hog tests show the kept ones hold
    there (test_suite_on_engine[podman-...]); PODMAN_VARIANTS what the others allow.
    """
    _use(monkeypatch, DOCKER_HOST=podman_engine.url)
    ok = get_sandbox("docker", isolation="container").run("print(6 * 7)")
    assert (ok.status, ok.stdout) == ("ok", "42\n"), ok.stderr
    for lost in ("total-memory", "CPU-share"):
        _names_unenforced(ok.warning, lost)
    assert ok.warning is not None and "rootless Podman" in ok.warning
    assert "cgroups v1" in ok.warning
    unenforced = ok.warning.partition(_WARNING_SPLIT)[0]
    assert "process-count" not in unenforced and "file-size" not in unenforced
    assert "work-dir-size" not in unenforced  # a tmpfs mount, which Podman honours
    _, out, _ = run_cli(["doctor"])
    assert "rootless Podman" in out and "NOT enforced" in out


def test_podman_pool_leaves_nothing_behind(podman_engine: PodmanEngine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, DOCKER_HOST=podman_engine.url)
    sandbox = get_sandbox("docker", isolation="container")
    for n in range(3):  # warm pool: the later ones start from pre-started containers
        assert sandbox.run(f"print({n})").stdout == f"{n}\n"
    shutdown()
    client = podman_engine.client
    deadline = time.monotonic() + 30
    while client.containers.list(all=True, sparse=True,  # sparse: no inspect race
                                 filters={"label": "llmscript.sandbox=1"}):
        assert time.monotonic() < deadline, "containers left on Podman"
        time.sleep(0.3)


def test_generate_run_and_run_api_use_podman(podman_engine: PodmanEngine, ip: Any,
                                             anthropic_standin: Any,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import llmscript_magic

    _use(monkeypatch, DOCKER_HOST=podman_engine.url)
    r = llmscript_magic.run("import os\nprint(os.getuid() not in (0, 65534), 6 * 7)")
    assert (r.status, r.stdout) == ("ok", "True 42\n")  # a uid of the run's own
    assert r.warning and "NOT enforced" in r.warning
    anthropic_standin.enqueue("```python\nprint(sum(range(5)))\n```")
    res = ip.run_cell("%%generate --run\nPrint the sum of 0..4.")
    assert res.success, res.error_in_exec
    assert "10" in capsys.readouterr().out
    assert ip.rl_next_input == "print(sum(range(5)))"


def test_push_errors_are_one_line_with_the_fix(tls_engine: TwoDoorEngine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _use_tls(monkeypatch, tls_engine)
    code, out, err = run_cli(["sandbox", "push", "--image", "llmscript-nope:0"])
    assert (code, out) == (2, "")
    assert err == ("llmscript: llmscript-nope:0 is not on unix:///var/run/docker.sock: build it "
                   "there with `llmscript sandbox build`\n")
    code, _, err = run_cli(["sandbox", "push", "--engine", "unix:///var/run/docker.sock"])
    assert code == 2 and err.startswith("llmscript: push source and target are the same engine")
    assert err.count("\n") == 1
