"""One engine's budget of sandbox containers, shared first come, first served by every kernel.

Each kernel keeps a warm container; twenty students on one server would hold
twenty, and a class that starts at once made the engine time runs out (issue
24). So every container is made under a *lease* on one of ``size`` budget
slots, and a kernel over budget waits in a queue across processes and Unix
users instead of failing or flooding the engine.

The state is files in one folder per engine, in a world-writable sticky folder
(``/tmp`` by default; ``LLMSCRIPT_SANDBOX_QUEUE`` names another), so it needs no
daemon and nothing can go stale:

- ``slot-<i>``: a lease is an exclusive ``flock`` on slot i, taken non-blocking.
  Checking and reserving are one step (the kernel's lock), so no two processes
  can both take the last slot; a process that dies releases its lock with it.
- ``t-<arrival ns>-<pid>-<random>``: a waiter's ticket, locked by its owner for
  as long as it waits. A ticket whose lock another process can take is dead
  (its owner is gone) and is swept. "n ahead" is the live tickets older than
  yours; a waiter may take a free slot only when fewer are ahead of it than
  slots are free, so nobody passes anyone who was waiting before.

Files are 0644 (``flock`` needs only a read-only descriptor), so other users'
kernels share them. Polling (a tenth of a second at the head of the queue)
keeps it standard-library only; the engine's own list is not consulted, since
it cannot be read and reserved in one step.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from .._errors import ConfigurationError, SandboxUnavailableError

BUDGET_ENV = "LLMSCRIPT_SANDBOX_BUDGET"
QUEUE_ENV = "LLMSCRIPT_SANDBOX_QUEUE"
#: Memory gVisor's own processes (sentry, gofer) hold per container, beyond the cgroup's.
GVISOR_MB = 64
#: Share of the engine machine's memory that sandbox containers may hold at most.
MEMORY_SHARE = 0.5
#: Containers per core: more only queue inside the CPU scheduler, unfairly, and each
#: start costs a second or two of CPU under gVisor (issue 24: 87 containers on 2 cores).
PER_CORE = 4
POLL = 0.1  # seconds between looks at the queue, near its head
SLOW_POLL = 0.5  # further back

Reporter = Callable[[int | None], object]
_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "llmscript_sandbox_wait", default=None)


def default_size(cpus: int, memory_mb: int, container_mb: int) -> int:
    """How many sandbox containers an engine machine holds by default.

    Bounded by memory: every container, idle or busy, may use its cgroup cap
    (``container_mb``: a run's memory limit plus the warm interpreter) and
    gVisor's own processes, and half the machine stays for everything else
    (the kernels themselves, the engine). Bounded by cores: PER_CORE per core.
    At least two, so one kernel never waits for a single other one.
    """
    size = PER_CORE * max(1, cpus)
    if memory_mb > 0:  # 0: the engine did not say
        size = min(size, int(memory_mb * MEMORY_SHARE // (container_mb + GVISOR_MB)))
    return max(2, size)


def configured_size(default: int) -> int:
    """LLMSCRIPT_SANDBOX_BUDGET when set (a whole number, at least 1), else default."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ConfigurationError(
            f"{BUDGET_ENV}={raw!r} is not a number of containers: set a whole number >= 1 "
            "or unset it")
    return size


@contextlib.contextmanager
def reporting(callback: Reporter | None) -> Iterator[None]:
    """Tell callback(n ahead) while a run in this context waits; callback(None) once it ends."""
    token = _reporter.set(callback)
    try:
        yield
    finally:
        _reporter.reset(token)


def waiting_text(ahead: int) -> str:
    """What a view shows while a run waits (the same words everywhere)."""
    return f"waiting for a sandbox ({ahead} ahead)"


class Lease:
    """One budget slot, held (by its lock) until release() or the process's end."""

    def __init__(self, fd: int, index: int) -> None:
        self._fd = fd
        self.index = index
        self.since = time.monotonic()
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the slot back (idempotent: a descriptor number is never closed twice)."""
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)  # the lock goes with the last descriptor of its file

    @property
    def held(self) -> bool:
        return self._fd >= 0


class Budget:
    """The slots of one engine's queue folder; see the module docstring."""

    def __init__(self, folder: str, size: int) -> None:
        self.folder = folder
        self.size = size
        _shared_folder(folder)

    def try_take(self) -> Lease | None:
        """A slot now, or None; never one a waiting kernel is owed (pool fillers use it)."""
        if self._live_tickets():
            return None
        lease = self._grab()
        if lease is not None and self._live_tickets():  # someone queued meanwhile: theirs
            lease.release()
            return None
        return lease

    def take(self, while_waiting: Callable[[], object] | None = None) -> Lease:
        """A slot, waiting first come, first served; Ctrl-C while waiting leaves nothing.

        while_waiting runs at each look (the pool gives back this process's idle
        containers there, so a kernel never waits for itself); what it raises ends the
        wait, the ticket withdrawn.
        """
        report = _reporter.get()
        try:
            ticket, fd = self._enqueue()
        except OSError as exc:
            raise self._broken(exc) from None
        told: int | None = None
        try:
            while True:
                live = self._live_tickets()
                ahead = sum(1 for t in live if t < ticket)
                if ahead < self.free():  # all ahead of us can have one, and one is left
                    lease = self._grab()
                    if lease is not None:
                        return lease
                if report is not None and ahead != told:
                    report(ahead)
                told = ahead
                if while_waiting is not None:
                    while_waiting()
                time.sleep(POLL if ahead < self.size else SLOW_POLL)
        except OSError as exc:
            raise self._broken(exc) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.folder, ticket))
            os.close(fd)
            if report is not None and told is not None:
                report(None)

    def waiting(self) -> int:
        """How many kernels wait for a slot now."""
        return len(self._live_tickets())

    def _broken(self, exc: OSError) -> SandboxUnavailableError:
        return SandboxUnavailableError(
            f"The sandbox queue in {self.folder} failed ({exc.strerror or exc}): check that "
            f"folder (free space, permissions), or set {QUEUE_ENV} to another folder")

    # -- files ---------------------------------------------------------------------------
    def _enqueue(self) -> tuple[str, int]:
        """A locked ticket under its final name (locked before it is visible: never "dead")."""
        name = f"t-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        temp = os.path.join(self.folder, f".new-{name}")
        fd = os.open(temp, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.fchmod(fd, 0o644)
            os.rename(temp, os.path.join(self.folder, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            os.close(fd)
            raise
        return name, fd

    def _live_tickets(self) -> list[str]:
        """Tickets whose owner still waits, oldest first (dead ones swept when we may)."""
        live = []
        for name in sorted(os.listdir(self.folder)):
            if not name.startswith("t-"):
                continue
            path = os.path.join(self.folder, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # gone meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                live.append(name)
            else:  # nobody holds it: its owner died (or just left)
                with contextlib.suppress(OSError):
                    os.unlink(path)  # only its own user may, in a sticky folder
            finally:
                os.close(fd)
        return live

    def _slot(self, index: int) -> int:
        """A read-only descriptor of slot index, made 0644 by whoever comes first.

        Opened without O_CREAT first: Linux's protected_regular refuses O_CREAT on
        another user's file in a sticky folder, even one that exists.
        """
        path = os.path.join(self.folder, f"slot-{index}")
        while True:
            try:
                return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                continue
            os.fchmod(fd, 0o644)
            return fd

    def _grab(self) -> Lease | None:
        for index in range(self.size):
            fd = self._slot(index)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return Lease(fd, index)
        return None

    def free(self) -> int:
        """Slots nobody holds now (a moment's look)."""
        free = 0
        for index in range(self.size):
            fd = self._slot(index)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                free += 1
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        return free


def _shared_folder(path: str) -> None:
    """Make path a folder every user can queue in (1777), or say how to fix it."""
    try:
        os.mkdir(path, 0o1777)
        os.chmod(path, 0o1777)  # mkdir's mode passed through the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot make the sandbox queue folder {path} ({exc.strerror or exc}): "
            f"set {QUEUE_ENV} to a folder you may write") from None
    deadline = time.monotonic() + 2
    while True:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            break
        if stat.S_IMODE(st.st_mode) == 0o1777:
            return
        if st.st_uid == os.getuid():
            os.chmod(path, 0o1777)
            continue
        if time.monotonic() > deadline:  # not its creator's chmod still to come
            break
        time.sleep(0.05)
    raise ConfigurationError(
        f"The sandbox queue folder {path} is not a folder every user may write (mode 1777): "
        f"remove it, or set {QUEUE_ENV} to another folder")


def queue_folder(engine: str) -> str:
    """The queue folder of one engine (its address), under LLMSCRIPT_SANDBOX_QUEUE or /tmp."""
    base = os.environ.get(QUEUE_ENV) or tempfile.gettempdir()
    digest = hashlib.sha256(engine.encode()).hexdigest()[:16]
    return os.path.join(base, f"llmscript-sandboxes-{digest}")


_budgets: dict[tuple[str, int], Budget] = {}
_lock = threading.Lock()


def engine_budget(engine: str, default: int) -> Budget:
    """The budget of one engine for this process (the size: LLMSCRIPT_SANDBOX_BUDGET or default)."""
    key = (queue_folder(engine), configured_size(default))
    with _lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = Budget(*key)
        return budget
