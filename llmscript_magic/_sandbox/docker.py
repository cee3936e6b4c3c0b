"""Docker backend: hardened single-use containers, fed over the attach socket.

A container starts `harness/runner.py` (see ``BOOT``) as its main process with no network, a
read-only root, an empty environment and caps on memory (+swap), CPU, pids,
file size and open files. The runner starts a warm interpreter for the script
(importing the image's heavy libraries; uids: ``harness/protocol.py``) before the job exists;
each job runs in a fresh fork of it, under a uid of its own, and a container serves up
to ``MAX_RUNS`` such runs (a ``--session``'s keeps one interpreter). The work dir is
an anonymous tmpfs-backed volume (put_archive/get_archive reach it, unlike a
--tmpfs mount). The host keeps the wall clock and output cap too: it never
trusts the runner to stop on its own.

Two isolation levels: ``gvisor`` (the engine's ``runsc`` runtime: the script
talks to gVisor's own kernel, not the host's) and ``container`` (runc). Both
get our seccomp profile (``seccomp.json``: Docker 20.10's default allow-list
minus io_uring, keyring, bpf, perf, userfaultfd, ptrace, the mount family,
namespaces, kexec and modules; we drop every capability, so the capability-
gated rules are left out) and extra masked ``/proc`` paths that tell the
host's boot line and modules.

Two uids. The runner is the container's pid 1 and starts as root, but with
every capability dropped except SETUID, SETGID (to become the script's uid
(nobody, or the run's own) in a child, before that child executes anything of the script's) and
KILL (to stop the script's processes, which are no longer its own). Without
user namespaces this root is the host's uid 0, which is acceptable because it
holds nothing root usually means: no CAP_DAC_OVERRIDE/READ_SEARCH (it reads
the script's 0755 work dir as anyone may, and what the script closed to others
as the script's uid, in a child), no CAP_SYS_ADMIN, SYS_PTRACE, NET_*, MKNOD,
CHOWN or FOWNER; the root file system is read-only; ``no-new-privileges``
stops any exec from gaining privileges (setuid binaries, file capabilities);
our seccomp profile denies the mount family, namespaces, ptrace, bpf,
keyrings, modules and kexec to root too; the network is gone; and the runner
never runs user code as root: it only parses the job (JSON) and writes the
harness's files. What the second uid buys: the script can neither ptrace nor
signal the runner, nor open ``/proc/1/fd/*`` to write the runner's report
channel, nor change the harness's files (root-owned, read-only to it);
``/proc/1`` of a root process is closed to any other uid, and gVisor enforces the
same rules in its own kernel.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import re
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError, ImageNotFoundError, SandboxError, SandboxUnavailableError
from .base import Limits, RunResult, Sandbox, Value
from .engine import (  # engine_warning, *_option: engine differences (Podman)
    RUNSC,
    _why,
    connect,
    engine_facts,
    engine_id,
    engine_warning,
    fallback_rlimits,
    gvisor_problem,
    mask_option,
    seccomp_option,
    unreachable,
)
from .fairshare import Budget, default_size, engine_budget
from .files import Outputs, outputs_from_tar
from .harness import protocol as proto
from .image import DEFAULT_IMAGE, LABEL, MPL_CACHE, OWNER_LABEL, owner_id
from .mounts import (
    INLINE_VALUE_BYTES,
    check_others_read,
    links,
    spilled,
    split_files,
    target,
)
from .outcome import build_result, child_env, clean_report, harness_job, harness_source, values_from
from .pool import Pool, Slot, close_pools, create_container, forget, get_pool, on_close, remove

WORK = proto.WORK
#: Why --input files are copied, not bound, on an engine reached over TCP or SSH.
FAR = "the Docker engine is on another machine (one on this machine mounts files at any size)"
UID = f"{proto.RUNNER_UID}:{proto.RUNNER_UID}"  # the runner's (module docstring); see SCRIPT_UID
SCRIPT_UID = f"{proto.SCRIPT_UID}:{proto.SCRIPT_UID}"
RUNNER_CAPS = ["SETUID", "SETGID", "KILL"]
#: Imported by the warm interpreter before the job (the image's heavy libraries).
PREIMPORT = ("numpy", "pandas")
#: Imported by the warm interpreter before the first run that plots, and at start in the
#: containers a kernel makes after it plotted: under gVisor a fork pays for every mapping
#: it shares, and matplotlib's cost every pandas run about 30 ms.
PLOTTING = ("matplotlib", "matplotlib.pyplot")
#: Below this memory cap the interpreter starts without them: they take ~90 MB.
PREIMPORT_MIN_MB = 192
GRACE = 1.0  # SIGTERM -> SIGKILL inside the container
HOST_SLACK = 3.0  # the host kills the container this long after the inner deadline
DIAG_CAP = 64 * 1024
MAX_FIGURES = proto.MAX_FIGURES
FIGURE_BUDGET = proto.FIGURE_BYTES  # part of the runner's STATUS_CAP
PNG = proto.PNG
ISOLATIONS = ("auto", "gvisor", "container")
# Docker's defaults (kept: the list replaces them) plus what leaks host facts.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/proc/cmdline", "/proc/modules", "/proc/kallsyms", "/proc/config.gz", "/proc/version",
    "/sys/kernel", "/sys/module",
]


#: Calls a generated script never needs; none is in seccomp.json's allow-list.
DENIED_SYSCALLS = (
    "io_uring_setup", "io_uring_enter", "io_uring_register", "add_key", "keyctl", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "ptrace", "process_vm_readv", "process_vm_writev",
    "kcmp", "pidfd_getfd", "mount", "umount2", "mount_setattr", "pivot_root", "move_mount",
    "fsopen", "fsmount", "fspick", "fsconfig", "open_tree", "unshare", "setns", "chroot",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "fanotify_mark", "quotactl",
    "swapon", "swapoff", "reboot", "acct", "syslog", "iopl", "ioperm", "lookup_dcookie",
    "vhangup", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # System V IPC and POSIX message queues outlive the process that made them, within
    # the container's IPC namespace: the same kernel's next run would find them.
    "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
    "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr",
)


@functools.lru_cache(maxsize=2)
def seccomp_profile(gvisor: bool) -> str:
    """Our profile as the engine wants it (inline JSON), for runc or for runsc.

    Under runc it is the allow-list in seccomp.json. Under gVisor the script's
    calls reach gVisor's own kernel, not the host's, and runsc (2022-12) both
    ignores errnoRet (clone3 -> EPERM: glibc then cannot start threads) and
    drops some allowed names (pselect6, so select() fails); there the profile
    is the deny-list of the same calls, which gVisor does enforce.
    """
    profile = json.loads((Path(__file__).parent / "seccomp.json").read_text())
    if gvisor:
        profile = {"defaultAction": "SCMP_ACT_ALLOW", "archMap": profile["archMap"],
                   "syscalls": [{"names": list(DENIED_SYSCALLS), "action": "SCMP_ACT_ERRNO"}]}
    return json.dumps(profile, separators=(",", ":"))


def resolve_isolation(client: Any, wanted: str) -> str:
    """"gvisor" or "container": what `wanted` means on this engine."""
    if wanted not in ISOLATIONS:
        raise ConfigurationError(
            f"Unknown isolation {wanted!r}: use auto, gvisor or container")
    if wanted == "container":
        return "container"
    problem = gvisor_problem(client)
    if problem is None:
        return "gvisor"
    if wanted == "auto":
        return "container"
    raise ConfigurationError(f"gVisor isolation is not available: {problem}")


_owner: tuple[int, str] | None = None
_prune_due: set[str] = set()  # engines (base URLs) where our orphaned volumes may lie


def _labels() -> dict[str, str]:
    """Ours, and whose: `llmscript sandbox prune` and the tests' leftover check use the owner."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        _owner = (os.getpid(), owner_id())
    return {LABEL: "1", OWNER_LABEL: _owner[1]}


_reaped: set[str] = set()
#: Orphans younger than this are left alone: a killed kernel's sandbox ends by itself
#: within seconds, and `llmscript sandbox prune` is there for the impatient.
ORPHAN_AGE = 120.0


def _reap_orphans_once(client: Any) -> None:
    """On a process's first sandbox for an engine: remove old sandboxes whose owner died.

    A kernel killed mid-run has its container end by itself (the runner exits
    when its stdin closes); this takes what an older version or an engine
    restart left, in the background, off the first run's path.
    """
    url = engine_id(client)
    if url in _reaped:
        return
    _reaped.add(url)
    import threading

    from .image import owner_gone

    def reap() -> None:
        with contextlib.suppress(Exception):
            for row in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
                labels = row.get("Labels") or {}
                if time.time() - float(row.get("Created") or 0) > ORPHAN_AGE and \
                        owner_gone(labels.get(OWNER_LABEL)):
                    remove(client, row["Id"])

    threading.Thread(target=reap, name="llmscript-sandbox-reap", daemon=True).start()


def sandbox_budget(client: Any) -> Budget:
    """The engine's budget of sandbox containers, shared by every kernel (``fairshare.py``).

    Its default comes from the engine machine's cores and memory (``docker info``),
    each container counted at a default run's cap plus the warm interpreter.
    """
    facts = engine_facts(client)
    default = default_size(int(facts.get("cpus") or os.cpu_count() or 1),
                           int(facts.get("memory_mb") or 0),
                           container_memory_mb(Limits(), preimport=True))
    return engine_budget(engine_id(client), default)


def _prune_volumes(client: Any) -> bool:
    """Remove this process's unused work volumes; False when the engine did not answer.

    One by one: `volume prune` with a label filter removes nothing on Docker 20.10.
    A volume still in use refuses (409) and stays.
    """
    import docker

    try:
        volumes = client.volumes.list(filters={"label": f"{OWNER_LABEL}={_labels()[OWNER_LABEL]}"})
    except Exception:
        return False
    for volume in volumes:
        with contextlib.suppress(docker.errors.APIError):
            volume.remove()
    return True


_HEAVY_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+(?:[\w.]+\s*,\s*)*(?:numpy|pandas|matplotlib)\b|"
    r"__import__|import_module", re.MULTILINE)


def uses_preimported(code: str) -> bool:
    """Whether a script (likely) imports what the zygote imports ahead.

    Such a run waits a little for a zygote still importing rather than import
    the same libraries again in a fresh interpreter (CPU spent twice); others
    start at once.
    """
    return bool(_HEAVY_IMPORT.search(code))


def plots(code: str, check: str | None = None) -> bool:
    """Whether a script (likely) plots: its container's warm interpreter then imports
    matplotlib before it forks the run, once (a miss only costs the run that import)."""
    return any(_PLOTS.search(text) for text in filter(None, (code, check)))


_PLOTS = re.compile(r"matplotlib|seaborn|\bplt\b|\.plot\b|\.(?:hist|boxplot)\(")


def stdlib_only(code: str, check: str | None = None) -> bool:
    """Whether a script (and its check) imports nothing but the standard library.

    Such a run is forked from the container's lean interpreter, which has none of
    the heavy imports: under gVisor a fork pays for the memory it shares (about
    150 MB in the warm one: ~100 ms a run), so a HumanEval-sized function or a
    classroom exercise runs in a third of the time. Anything else, dynamic
    imports included, goes to the warm one; either runs any script correctly.
    """
    names: set[str] = set()
    for text in filter(None, (code, check)):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level or not node.module:
                    return False
                names.add(node.module.partition(".")[0])
            elif (isinstance(node, ast.Name) and node.id in _DYNAMIC) or \
                    (isinstance(node, ast.Attribute) and node.attr in _DYNAMIC):
                return False
    return names <= _STDLIB


_STDLIB = frozenset(sys.stdlib_module_names)
_DYNAMIC = frozenset(("__import__", "import_module", "exec", "eval", "compile", "runpy",
                      "__builtins__", "builtins"))


def preimport_wanted() -> bool:
    """LLMSCRIPT_PREIMPORT=0 turns the warm interpreter's imports off (e.g. to compare)."""
    return os.environ.get("LLMSCRIPT_PREIMPORT", "1").strip().lower() not in ("0", "no", "false")


#: Memory the container holds beyond a run's own limit: the runner and the zygote
#: with its imports (about 90 MB resident under runc, 150 MB counted under gVisor).
ZYGOTE_MB = 176  # and the lean interpreter beside it (stdlib_only), about 12 MB
LEAN_ZYGOTE_MB = 48  # without the heavy imports


def container_memory_mb(limits: Limits, preimport: bool) -> int:
    """The container's memory cap: a run's own limit plus what the container itself holds."""
    heavy = preimport and limits.memory_mb >= PREIMPORT_MIN_MB
    return limits.memory_mb + (ZYGOTE_MB if heavy else LEAN_ZYGOTE_MB)


def _host_config(client: Any, limits: Limits, runtime: str | None = None,
                 preimport: bool = True, binds: Mapping[str, str] | None = None) -> Any:
    """The hardened host config: the runner keeps RUNNER_CAPS, the runs get none.

    /work, /tmp and /dev/shm are root's, world-writable and sticky: each run
    (a uid of its own) writes there, and the runner, owning the folders,
    removes what a run left at their top (see ``harness/runner.py``'s ``sweep``).
    """
    from docker.types import Ulimit

    size = f"{limits.disk_mb}m"
    memory = container_memory_mb(limits, preimport)
    config = client.api.create_host_config(
        # single host files, read-only (sandbox path -> host path; see mounts.py)
        binds={host: {"bind": inside, "mode": "ro"} for inside, host in (binds or {}).items()},
        network_mode="none",
        runtime=runtime,
        cap_drop=["ALL"],
        cap_add=RUNNER_CAPS,
        security_opt=["no-new-privileges",
                      *filter(None, [seccomp_option(client, seccomp_profile(runtime == RUNSC)),
                                     mask_option(client, MASKED_PATHS)])],
        read_only=True,
        tmpfs={proto.TMP: f"rw,nosuid,nodev,noexec,size={size},mode=1777",
               WORK: f"rw,exec,nosuid,nodev,size={size},mode=1777"},
        shm_size=f"{min(limits.disk_mb, 64)}m",
        mem_limit=f"{memory}m",
        memswap_limit=f"{memory}m",
        nano_cpus=int(limits.cpus * 1e9),
        pids_limit=limits.pids + 16 if runtime != RUNSC else limits.pids * 10 + 256,
        ulimits=[
            Ulimit(name="fsize", soft=limits.file_bytes, hard=limits.file_bytes),
            Ulimit(name="nofile", soft=256, hard=256),
            Ulimit(name="core", soft=0, hard=0),
            # gVisor's own host threads count in the host pids cgroup (about 6-9 per
            # process of the script), and hitting that cap kills the whole sandbox: there
            # the host cap gets headroom and gVisor enforces the run's limit as
            # RLIMIT_NPROC (per uid, so per run: each run has a uid of its own).
            *([Ulimit(name="nproc", soft=limits.pids, hard=limits.pids)]
              if runtime == RUNSC else []),
        ],
        log_config={"type": "none", "config": {}},
        auto_remove=True,
    )
    config["MaskedPaths"] = MASKED_PATHS  # the SDK has no argument for it; the API does
    return config


#: Runs one container serves before it is replaced (each uses two uids from its base).
MAX_RUNS = 50
#: this many runs before its last, a container's successor is started (Slot.retiring)
RENEW_AHEAD = 5
UID_LOW, UID_HIGH = proto.RUN_UID_LOW, proto.RUN_UID_HIGH  # run uids (see protocol.py)
#: The container's first program (``-c``): the runner and the protocol module it
#: imports, from its arguments into ``HARNESS_TMP`` (the image carries no harness),
#: then the runner, with its own arguments after them.
RUNNER_FILES = ("runner.py", "protocol.py", "supervisor.py")  # runner.py first
BOOT = ("import os, runpy, sys\n"
        f"os.makedirs({proto.HARNESS_TMP!r}, mode=0o755, exist_ok=True)\n"
        f"for name in {RUNNER_FILES!r}:\n"
        f"    with open(os.path.join({proto.HARNESS_TMP!r}, name), 'w', encoding='utf-8') as fh:\n"
        "        fh.write(sys.argv.pop(1))\n"
        f"runpy.run_path({proto.HARNESS_TMP + '/runner.py'!r}, run_name='__main__')\n")


def _factory(client: Any, image: str, limits: Limits, runtime: str | None,
             preimport: bool = True, labels: Mapping[str, str] | None = None,
             binds: Mapping[str, str] | None = None, plotting: bool = False) -> Slot:
    """Create, attach and start one container whose runner waits for its runs.

    detach=False + stdin_open sets StdinOnce: closing our socket (or our process
    dying) ends the runner, even mid-run, and the engine removes the container.
    preimport: its zygote imports PREIMPORT once, for every run it forks, and PLOTTING
    before the first run that plots (at start with ``plotting``: the kernel has plotted).
    labels: extra container labels (the course service's ``llmscript.student``).
    """
    import secrets

    runner = [harness_source(name) for name in RUNNER_FILES]
    wrapper = harness_source("wrapper.py")
    heavy = preimport and limits.memory_mb >= PREIMPORT_MIN_MB
    warm = {"env": child_env(limits),
            "preimport": [*PREIMPORT, *(PLOTTING if plotting else ())] if heavy else [],
            "later": list(PLOTTING) if heavy and not plotting else [],
            "rlimits": fallback_rlimits(client, limits)}
    cid = create_container(
        client, image=image,
        command=["python3", "-I", "-S", "-c", BOOT, *runner, wrapper, MPL_CACHE, json.dumps(warm)],
        user=UID, working_dir=WORK, environment={}, labels={**(labels or {}), **_labels()},
        stdin_open=True, detach=False, network_disabled=True, use_config_proxy=False,
        host_config=_host_config(client, limits, runtime, preimport, binds),
    )
    slot = None
    try:
        raw = client.api.attach_socket(
            cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        sock = getattr(raw, "_sock", raw)
        # Over TLS (an https:// engine) raw is the SSL socket itself; the HTTP response
        # docker-py hangs on it still holds a reference, so it is closed with the socket.
        base = UID_LOW + 2 * secrets.randbelow((UID_HIGH - UID_LOW) // 2 - 2 * MAX_RUNS)
        slot = Slot(client, cid, sock,
                    raw if raw is not sock else getattr(raw, "_response", None), uid_base=base)
        client.api.start(cid)
    except BaseException:  # e.g. the user's Stop: neither the container nor its socket stays
        if slot is not None:
            slot.discard(now=True)
        else:
            remove(client, cid, patience=10)
        raise
    return slot


class _Stream:
    """Splits the attach stream into runner frames (stdout) and diagnostics."""

    def __init__(self) -> None:
        self.mux = bytearray()
        self.proto = bytearray()
        self.diag = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.mux += data
        while len(self.mux) >= 8:
            kind, size = self.mux[0], struct.unpack_from(">I", self.mux, 4)[0]
            if len(self.mux) < 8 + size:
                break
            payload = bytes(self.mux[8:8 + size])
            del self.mux[:8 + size]
            if kind == 1:
                self.proto += payload
            elif len(self.diag) < DIAG_CAP:
                self.diag += payload[:DIAG_CAP - len(self.diag)]
        frames = []
        head = proto.HEAD_BYTES  # our frames: kind, length, payload
        while len(self.proto) >= head:
            size = proto.HEADER.unpack_from(self.proto, 1)[0]
            if len(self.proto) < head + size:
                break
            frames.append((bytes(self.proto[:1]), bytes(self.proto[head:head + size])))
            del self.proto[:head + size]
        return frames


class DockerSandbox(Sandbox):
    """The default backend; see the module docstring for what it enforces."""

    backend = "docker"

    def __init__(self, image: str = DEFAULT_IMAGE, *, pool_size: int = 1,
                 isolation: str = "auto", preimport: bool | None = None,
                 labels: tuple[tuple[str, str], ...] = ()) -> None:
        import docker

        #: extra labels on every container (part of the pool's key: a container serves
        #: the runs of one label set only, e.g. one student's in a course)
        self.labels = tuple(sorted(labels))
        self.client = connect()
        #: "gvisor" or "container": what `isolation` resolved to on this engine
        self.isolation = resolve_isolation(self.client, isolation)
        self.runtime = RUNSC if self.isolation == "gvisor" else None
        #: what this engine cannot enforce (rootless on cgroups v1), told in every result
        self.engine_warning = engine_warning(self.client)
        self.image = image
        self.pool_size = pool_size
        #: the warm interpreter imports numpy and pandas, and matplotlib once a run plots
        #: (None: LLMSCRIPT_PREIMPORT)
        self.preimport = preimport_wanted() if preimport is None else preimport
        #: a run of this sandbox plotted: its next containers import PLOTTING at start
        self.plotted = False
        _reap_orphans_once(self.client)
        try:
            self.image_id = self.client.images.get(image).id
        except docker.errors.ImageNotFound:
            raise ImageNotFoundError(
                f"Sandbox image {image} is not built: run `llmscript sandbox build`") from None
        except Exception as exc:  # requests' errors too: the engine went away meanwhile
            raise unreachable(exc) from None

    def _plots(self, code: str, check: str | None) -> bool:
        """Whether this run plots; once one has, containers made later start with PLOTTING
        imported (ahead, not on the run), so only a kernel's first plot waits for it."""
        wanted = plots(code, check)
        self.plotted = self.plotted or wanted
        return wanted

    def _key(self, limits: Limits, binds: Mapping[str, str] | None = None) -> tuple[Any, ...]:
        return (engine_id(self.client), self.image_id, self.runtime, limits.container_key(),
                self.preimport, self.labels,
                tuple(sorted((inside, host, _identity(host))
                             for inside, host in (binds or {}).items())))

    def _pool(self, limits: Limits, binds: Mapping[str, str] | None = None,
              size: int | None = None) -> Pool:
        """The pool for limits and the host files bound in (a set of its own: mounts.py)."""
        key = self._key(limits, binds)

        def factory(ahead: bool) -> Slot:
            return _factory(self.client, self.image, limits, self.runtime,
                            preimport=self.preimport, labels=dict(self.labels), binds=binds,
                            plotting=self.plotted)

        return get_pool(key, factory, self.pool_size if size is None else size,
                        budget=sandbox_budget(self.client))

    def warm(self, limits: Limits | None = None) -> None:
        """Have this kernel's sandbox container for limits started (or starting) now."""
        self._pool(limits or Limits())

    def run(self, code: str, *, files: Mapping[str, bytes | os.PathLike[str]] | None = None,
            limits: Limits | None = None, inputs: Sequence[Value] = (),
            outputs: Sequence[str] = (), check: str | None = None,
            session: bool = False) -> RunResult:
        limits = limits or Limits()
        if session:
            from .docker_session import run_in_session

            return run_in_session(self, code, files, limits, inputs, outputs, check)
        near = engine_id(self.client).startswith(("unix://", "npipe://"))
        placed, mounted = split_files(files, limits.file_bytes, "" if near else FAR)
        check_others_read(mounted)
        with spilled(inputs, None if not near else INLINE_VALUE_BYTES) as (
                inline, entries, value_binds):
            job = harness_job(code, inputs, outputs, check)
            job["inputs"] = [i for i in job["inputs"] if i["name"] in {v.name for v in inline}]
            job["mounted_inputs"], job["links"] = entries, links(mounted)
            binds = {**{target(rel): host for rel, host in mounted.items()}, **value_binds}
            # a value's file exists for this run only: its container is made for it, not kept
            if not value_binds:
                return self._run(self._pool(limits, binds), job, inline, placed, limits,
                                 outputs, single_use=False)
            try:
                return self._run(self._pool(limits, binds, 0), job, inline, placed, limits,
                                 outputs, single_use=True)
            finally:
                forget(self._key(limits, binds))

    def _run(self, pool: Pool, job: dict[str, Any], inputs: Sequence[Value],
             placed: dict[str, bytes], limits: Limits, outputs: Sequence[str],
             single_use: bool) -> RunResult:
        """One run in a container of pool (retried on another when a warm one was lost)."""
        start, wall_start = time.monotonic(), time.time()
        for attempt in (1, 2, 3):
            slot = self._take(pool)
            keep = False
            try:
                if attempt < 3 and not slot.alive():
                    # Lost while warm (engine restart, a prune elsewhere): not the code's
                    # fault, so take another one instead of reporting a failed run.
                    self._drop_stale(pool)
                    continue
                try:
                    self._hand_over(slot, job, inputs, placed, limits)
                except (OSError, self._docker_error) as exc:
                    if attempt == 3:
                        raise self._engine_failed(exc) from None
                    self._drop_stale(pool)
                    continue
                try:
                    result, fit = self._collect(slot, placed, limits, start, outputs)
                except (OSError, self._docker_error) as exc:
                    raise self._engine_failed(exc) from None
                slot.runs += 1
                keep = fit and slot.runs < MAX_RUNS and not single_use
                slot.retiring = slot.runs >= MAX_RUNS - RENEW_AHEAD
                self._prune_volumes()
                result.isolation = self.isolation
                result.limit_scope = limit_scope(self.runtime)
                if self.engine_warning:  # a limit this engine cannot enforce: never silently
                    result.warning = "; ".join(filter(None, [result.warning,
                                                             self.engine_warning]))
                if result.status == "error" and result.exit_code is None:
                    self._explain_lost_runner(result, slot.container_id, limits, wall_start)
                cut = getattr(result.files, "cut", "")  # files.Outputs: what did not come back
                if cut:
                    result.stderr += f"\n[sandbox] {cut}\n"
                return result
            finally:
                if keep:
                    pool.give_back(slot)
                else:  # unfit, used up, or an error / Ctrl-C: removed before we return
                    slot.discard(now=not keep)
                    pool.done()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Remove this engine's warm containers and close the engine client."""
        close_pools(engine_id(self.client))
        with contextlib.suppress(Exception):
            self.client.close()

    @property
    def _docker_error(self) -> type[Exception]:
        import docker

        return docker.errors.DockerException

    def _explain_lost_runner(self, result: RunResult, cid: str, limits: Limits,
                             since: float) -> None:
        """A runner gone without a report: was it the memory cap? Ask the engine's events.

        Under gVisor the OOM killer takes the whole sandbox (its kernel too), and
        the auto-removed container can no longer be inspected; the event stays.
        """
        try:
            # the event can trail the sandbox's death under load: wait a little for it
            # (only this failure path pays)
            events = self.client.api.events(
                since=int(since) - 1, until=int(time.time()) + 3, decode=True,
                filters={"container": cid, "event": "oom"})
            oom = sum(1 for _ in events) > 0  # read to the end: the stream then closes
        except Exception:
            return
        if oom:
            result.status = "memory"
            result.reason = f"Ran out of memory (limit {limits.memory_mb} MB)"
            result.stderr += f"\n[sandbox] {result.reason}\n"

    def _drop_stale(self, pool: Pool) -> None:
        """After a lost container: drop the other dead warm ones and our orphaned volumes."""
        pool.drop_dead()
        _prune_due.add(engine_id(self.client))
        self._prune_volumes()
        # The engine may still be removing the lost containers: once more at the end.
        on_close(engine_id(self.client), functools.partial(_prune_volumes, self.client))

    def _prune_volumes(self) -> None:
        """Remove our unused work volumes (an engine restart leaves its containers' behind).

        Due after a container was lost; retried after each run until the engine
        answers, since it may be down when the loss is noticed.
        """
        url = engine_id(self.client)
        if url in _prune_due and _prune_volumes(self.client):
            _prune_due.discard(url)

    @staticmethod
    def _engine_failed(exc: Exception) -> SandboxUnavailableError:
        import requests

        if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
            return unreachable(exc)
        reason = _why(exc)
        return SandboxUnavailableError(
            f"Docker engine failed during the run ({reason}): check it with `docker info` "
            "or use --sandbox local")

    def _take(self, pool: Pool) -> Slot:
        return self._take_new(pool.take)

    def _take_new(self, make: Callable[[], Slot]) -> Slot:
        """A started container from make (the pool's, or a session's own), or one line why not."""
        import docker

        try:
            return make()
        except docker.errors.ImageNotFound:
            raise ImageNotFoundError(
                f"Sandbox image {self.image} is not built: run `llmscript sandbox build`"
            ) from None
        except docker.errors.APIError as exc:
            if exc.is_client_error():  # e.g. more CPUs than the engine has
                raise ConfigurationError(
                    f"The engine refused the sandbox limits ({_why(exc)}): lower them") from None
            raise self._engine_failed(exc) from None
        except (OSError, self._docker_error) as exc:
            raise self._engine_failed(exc) from None

    def _hand_over(self, slot: Slot, job: dict[str, Any], inputs: Sequence[Value],
                   files: dict[str, bytes], limits: Limits) -> None:
        """The job (the go-signal), then the input values' and files' bytes after it.

        The run's uids come from the container's base: two per run, never reused
        within the container. The harness's own modules go with a container's
        first run only: its runner keeps them for the later ones.
        """
        uid = slot.uid_base + 2 * slot.runs
        if slot.runs:
            job = {k: v for k, v in job.items() if k != "harness"}
        payload = json.dumps({**job, "timeout": limits.timeout, "grace": GRACE,
                              "output_bytes": limits.output_bytes,
                              "env": child_env(limits), "uid": uid,
                              "wait_warm": uses_preimported(job["code"]),
                              "plots": self._plots(job["code"], job.get("check")),
                              "lean": not inputs and stdlib_only(job["code"],
                                                                  job.get("check")),
                              "memory": limits.memory_mb * 2**20,
                              "disk_bytes": limits.disk_mb * 2**20,
                              "rlimits": {"nproc": limits.pids},
                              "files": [{"name": n, "size": len(d)} for n, d in files.items()],
                              }).encode()
        slot.sock.sendall(proto.HEADER.pack(len(payload)) + payload)
        for value in inputs:
            slot.sock.sendall(value.data)
        for data in files.values():
            slot.sock.sendall(data)

    def _collect(self, slot: Slot, files: dict[str, bytes], limits: Limits,
                 start: float, outputs: Sequence[str] = ()) -> tuple[RunResult, bool]:
        """Read the capped stream until the report (or the host deadline): (result, fit).

        fit: the runner said the container may serve another run (nothing of
        this one is left, no limit was breached).
        """
        api, cid = self.client.api, slot.container_id
        deadline = time.monotonic() + limits.timeout + GRACE + HOST_SLACK
        stream = _Stream()
        out, err = bytearray(), bytearray()
        figures: list[bytes] = []
        values: list[bytes] = []
        tar: list[bytes] = []
        report: dict[str, Any] | None = None
        host_capped = host_timeout = False
        # Code in the container can reach the runner's stdout (/proc/1/fd/1) and forge
        # frames, so the host bounds everything it buffers, not just stdout+stderr.
        budget = limits.output_bytes + FIGURE_BUDGET + DIAG_CAP + 2**20
        budget += limits.disk_mb * 2**20 + 2**20  # the changed files' tar
        budget, received = budget + (proto.VALUE_CAP if outputs else 0), 0
        data = bytes(slot.pending)
        slot.pending.clear()
        while report is None:
            if not data:
                left = deadline - time.monotonic()
                if left <= 0:
                    host_timeout = True
                    break
                slot.sock.settimeout(min(left, 1.0))
                try:
                    data = slot.sock.recv(262144)
                except TimeoutError:
                    continue
                if not data:
                    break
            received += len(data)
            if received > budget:
                host_capped = True
                break
            for kind, body in stream.feed(data):
                if kind in (proto.OUT, proto.ERR):
                    (out if kind == proto.OUT else err).extend(body)
                    if len(out) + len(err) > limits.output_bytes:
                        host_capped = True
                elif kind == proto.FIGURE and body.startswith(PNG) and len(figures) < MAX_FIGURES:
                    figures.append(body)
                elif kind == proto.VALUE and outputs:
                    values.append(body)
                elif kind == proto.FILES:
                    tar.append(body)
                elif kind == proto.REPORT:
                    report = clean_report(body)
                    break  # the first report counts; nothing after it is trusted
            data = b""
            if host_capped:
                break
        output_files: Outputs = Outputs()
        if report is not None and report.get("changed"):
            wanted = {str(n) for n, size in report["changed"]}
            output_files = outputs_from_tar(tar, limits, files, wanted)
        oom = bool(report and report.get("oom"))
        if report is None and not host_capped:
            _kill(api, cid)
            oom = _oom_killed(api, cid)
        result = build_result(report, bytes(out), bytes(err), figures, output_files, limits,
                              time.monotonic() - start, self.image, oom=oom,
                              host_timeout=host_timeout, host_capped=host_capped,
                              diag=bytes(stream.diag), values=values_from(values, outputs))
        fit = bool(report and report.get("reusable")) and not stream.mux and not stream.proto
        return result, fit


def _identity(host: str) -> tuple[int, ...]:
    """Which file a bind holds: a file replaced under its name (a new inode) needs a new
    container, since a bind keeps the inode it was made with."""
    st = os.stat(host)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def limit_scope(runtime: str | None) -> dict[str, str]:
    """Which limits hold for each run and which for the container it shares with the
    same kernel's other runs (one after another), for ``RunResult.limit_scope``."""
    return {
        "timeout": "run", "output_bytes": "run", "file_bytes": "run",
        "pids": "run",  # RLIMIT_NPROC of the run's own uid (and the container's pids cgroup)
        "memory_mb": "run",  # each process's address space; the container's cgroup adds the
        # zygote's share on top, and a run that reaches it ends the container too
        "cpus": "container", "disk_mb": "container",  # emptied after every run
    }


def _kill(api: Any, cid: str) -> None:
    import docker

    with contextlib.suppress(docker.errors.APIError):
        api.kill(cid)


def _oom_killed(api: Any, cid: str) -> bool:
    try:
        return bool(api.inspect_container(cid)["State"].get("OOMKilled"))
    except Exception:
        return False


_modules_cache: dict[str, frozenset[str]] = {}
_LIST_MODULES = ("import json, pkgutil, sys\n"
                 "names = {m.name for m in pkgutil.iter_modules()}\n"
                 "names |= set(sys.builtin_module_names)\n"
                 "print(json.dumps(sorted(names)))\n")


def available_modules(image: str = DEFAULT_IMAGE,
                      sandbox: DockerSandbox | None = None) -> frozenset[str]:
    """Ask the image once which top-level modules import; cache per image id.

    Pass the process's shared sandbox: a new one would open another engine client.
    """
    sandbox = sandbox or DockerSandbox(image, pool_size=0)
    cached = _modules_cache.get(sandbox.image_id)
    if cached is not None:
        return cached
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmscript"
    cache_file = cache_dir / f"modules-{sandbox.image_id.replace(':', '-')}.json"
    try:
        names = frozenset(json.loads(cache_file.read_text()))
    except (OSError, ValueError):
        result = sandbox.run(_LIST_MODULES, limits=Limits(timeout=60))
        if result.status != "ok":
            raise SandboxError(
                f"Could not list the image's modules: {result.reason}") from None
        names = frozenset(json.loads(result.stdout))
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(sorted(names)))
        except OSError:
            pass
    _modules_cache[sandbox.image_id] = names
    return names
