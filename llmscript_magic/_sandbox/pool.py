"""Warm pool of single-use containers, and the reaper that removes used ones.

Each container waits on stdin for its one job, so taking one from the pool
skips create+start. Pools are keyed by engine, image and the limits baked in
at creation; daemon threads refill them as demand asks (see ``Pool``).
Removal happens off the critical path on a reaper thread; both are drained
at interpreter exit so nothing leaks. Containers also remove themselves
(auto-remove) when our end of the attach socket closes, which covers a
killed interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fairshare import Budget, Lease


@dataclass
class Slot:
    """A started container and the attach socket that feeds its stdin.

    One container serves many runs of one kernel (``runs`` so far); each run
    gets uids of its own from ``uid_base``.
    """

    client: Any
    container_id: str
    sock: Any
    wrapper: Any = None  # what attach_socket returned around sock: closed with it
    uid_base: int = 0
    runs: int = 0
    pending: bytearray = field(default_factory=bytearray)  # read between runs (diagnostics)
    lease: Lease | None = None  # its slot of the engine's budget, released once it is removed
    retiring: bool = False  # a few runs from its last: its successor is made ahead (Pool)

    def discard(self, *, now: bool = False) -> None:
        """Close the socket and remove the container (now, or on the reaper).

        Never raises: this runs in ``finally`` blocks, where an engine that went
        away must not replace the real error. A container we could not remove
        goes with the engine's auto-remove once our socket is closed.
        """
        for stream in (self.wrapper, self.sock):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        if now:
            with contextlib.suppress(Exception):
                remove(self.client, self.container_id, patience=10)
            if self.lease is not None:
                self.lease.release()
        else:
            _reaper().put((self.client, self.container_id, self.lease))

    def alive(self) -> bool:
        """False when the engine already closed the attach stream (container gone).

        A waiting runner writes nothing on its report channel; what is readable
        is either the end (the container was removed, or the engine restarted)
        or diagnostics, kept in ``pending`` for the next run's reader.
        """
        import select

        for _ in range(64):
            try:
                readable, _, _ = select.select([self.sock], [], [], 0)
            except (OSError, ValueError):
                return False
            if not readable:
                return True
            try:
                self.sock.settimeout(0.5)
                data = self.sock.recv(65536)
            except (OSError, ValueError):
                return False
            if not data:
                return False
            self.pending += data
        return False


def already_gone(exc: Exception) -> bool:
    """Whether an engine error only says the container or volume is gone (or going).

    Docker answers 404, or 409 while its auto-removal runs; Podman 4.3 at times
    answers 500 "no such container" ("does not exist in database").
    """
    import docker

    if isinstance(exc, docker.errors.NotFound):
        return True
    if not isinstance(exc, docker.errors.APIError):
        return False
    return exc.status_code == 409 or "no such container" in str(exc.explanation or "").lower()


def remove(client: Any, container_id: str, patience: float = 0.0) -> None:
    """Force-remove a container and its anonymous volume; already gone is fine.

    patience: seconds to keep asking while the engine refuses (Podman answers 500 while
    the container is still being created or started, as after an interrupt).
    """
    import docker

    deadline = time.monotonic() + patience
    while True:
        try:
            client.api.remove_container(container_id, force=True, v=True)
            return
        except docker.errors.APIError as exc:
            if already_gone(exc):
                return
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def create_container(client: Any, **config: Any) -> str:
    """The id of a container created with config, none left behind by an interrupt.

    The engine may still be creating when the user's Stop (KeyboardInterrupt) cuts our
    request, and the container it makes then is known to nobody. The request runs in a
    thread instead: an interrupt waits for its id, removes the container, then goes on.
    (Its outcome comes through a queue: an interrupted Thread.join can later report a
    running thread as finished.)
    """
    outcome: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def create() -> None:
        try:
            outcome.put((True, client.api.create_container(**config)["Id"]))
        except BaseException as exc:  # handed to the caller below
            outcome.put((False, exc))

    worker = threading.Thread(target=create, name="llmscript-create", daemon=True)
    try:
        worker.start()  # an interrupt can land here too, once the thread runs
        made, value = outcome.get()
    except BaseException:
        if worker.ident is not None:  # started: wait for what the engine made, remove it
            with contextlib.suppress(Exception):  # the interrupt is what the caller sees
                made, value = outcome.get(timeout=120)
                if made:
                    remove(client, value, patience=10)
        raise
    if not made:
        raise value
    return str(value)


class _ReadyMeanwhile(Exception):
    """Ends a pool's wait in the budget queue: one of its own containers is ready."""


class _Reaper(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="llmscript-sandbox-reaper", daemon=True)
        self.jobs: queue.Queue[tuple[Any, str, Lease | None] | None] = queue.Queue()

    def put(self, job: tuple[Any, str, Lease | None]) -> None:
        self.jobs.put(job)

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            client, container_id, lease = job
            with contextlib.suppress(Exception):
                remove(client, container_id)
            if lease is not None:  # the slot is free once the engine no longer has it
                lease.release()
            self.jobs.task_done()
        self.jobs.task_done()

    def drain(self) -> None:
        self.jobs.join()


_lock = threading.Lock()
_reaper_thread: _Reaper | None = None
_pools: dict[tuple[Any, ...], Pool] = {}
_close_hooks: dict[str, Callable[[], object]] = {}  # engine -> cleanup once its pools are gone


def on_close(engine: str, hook: Callable[[], object]) -> None:
    """Run hook (best effort) after the pools of engine (its base URL) close."""
    with _lock:
        _close_hooks[engine] = hook


def _run_hooks(engines: list[str]) -> None:
    with _lock:
        hooks = [_close_hooks.pop(e) for e in engines if e in _close_hooks]
    for hook in hooks:
        with contextlib.suppress(Exception):
            hook()


def _reaper() -> _Reaper:
    global _reaper_thread
    with _lock:
        if _reaper_thread is None or not _reaper_thread.is_alive():
            _reaper_thread = _Reaper()
            _reaper_thread.start()
        return _reaper_thread


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


#: Warm containers one pool aims at, at most, when runs overlap (LLMSCRIPT_MAX_WARM).
#: The engine-wide bound is the budget (``fairshare.py``): every container holds a slot.
MAX_WARM = 8
#: Seconds without a run after which a pool shrinks back to its base size.
IDLE_SECONDS = 30.0
#: Seconds without a run after which a kernel gives back even its last container
#: (LLMSCRIPT_SANDBOX_RELEASE); its next run then starts one again.
RELEASE_SECONDS = 300.0
#: Containers one pool creates at the same time (creation mostly waits on the engine).
FILLERS = 2
#: Seconds without a run after which a kernel gives its warm container back to a kernel
#: waiting for the budget (with nobody waiting it keeps it warm).
YIELD_SECONDS = 2.0
#: Seconds a kernel keeps one container while others wait: a kernel running one run after
#: another then queues again behind them, so no one waits for a whole notebook. Long
#: enough that a class's short bursts keep their container (a new one costs seconds of CPU).
TURN_SECONDS = 60.0


class Pool:
    """Started containers for one (engine, image, limits) key, as many as demand asks.

    A quiet pool keeps ``size`` ready. When runs overlap (threads, ``-j N``,
    several notebooks) it aims at one more than the most runs seen at once,
    creating up to FILLERS at a time, and it shrinks back to ``size`` after
    IDLE_SECONDS without a run. With a ``budget`` (the engine's, shared by
    every kernel: ``fairshare.py``) each container holds one of its slots: a
    run over budget waits its turn, fillers make containers ahead only from a
    free slot nobody waits for, and an idle pool gives its container back
    within YIELD_SECONDS when someone waits.
    """

    def __init__(self, factory: Callable[[bool], Slot], size: int, *, engine: str = "",
                 cap: int | None = None, budget: Budget | None = None,
                 idle: float | None = None) -> None:
        self.factory = factory
        self.size = size
        self.engine = engine
        self.cap = int(_env_number("LLMSCRIPT_MAX_WARM", MAX_WARM)) if cap is None else cap
        self.idle = _env_number("LLMSCRIPT_POOL_IDLE", IDLE_SECONDS) if idle is None else idle
        self.release = _env_number("LLMSCRIPT_SANDBOX_RELEASE", RELEASE_SECONDS)
        self.budget = budget
        self._ready: list[Slot] = []
        self._cond = threading.Condition()
        self._closed = False
        self._failed = False
        self._creating = 0
        self._asking = 0  # of those being created: still asking the budget for a slot
        self._busy = 0
        self._waiting = 0  # takers waiting for a container being made
        self._peak = 0  # most runs at once since the pool was last quiet
        self._retired = False  # shrunk to nothing while another pool was in use
        self._last_take = self._last_use = time.monotonic()
        self._threads = [threading.Thread(target=self._fill, name="llmscript-sandbox-pool",
                                          daemon=True) for _ in range(FILLERS)]
        if size > 0:
            for thread in self._threads:
                thread.start()

    @property
    def target(self) -> int:
        """How many ready containers the pool aims at now."""
        if self.size <= 0 or self._retired:
            return 0
        return max(self.size, min(self._peak, max(self.cap, self.size)))

    def warm(self) -> int:
        """Ready and being created with a budget slot (what this pool holds that no run uses)."""
        with self._cond:
            return len(self._ready) + self._creating - self._asking

    def take(self) -> Slot:
        """A ready container, or a fresh one if the pool is empty; pair with done()."""
        with self._cond:
            # One being made ahead is nearly there: wait for it rather than make a second
            # (a kernel's first run would otherwise leave it two containers).
            deadline = time.monotonic() + 30
            while not self._ready and self._creating > self._waiting and not self._closed \
                    and not self._failed and time.monotonic() < deadline:
                self._waiting += 1
                self._cond.wait(timeout=1.0)
                self._waiting -= 1
            slot = self._ready.pop(0) if self._ready else None
            self._failed = False
            self._retired = False
            self._busy += 1
            self._peak = max(self._peak, self._busy)
            self._last_take = time.monotonic()
            self._cond.notify_all()
        while slot is None:
            lease = None
            try:
                if self.budget is not None:  # our turn: first come, first served
                    lease = self.budget.take(while_waiting=self._never_wait_on_us)
                slot = self.factory(False)
                slot.lease = lease
            except _ReadyMeanwhile:  # our own filler made one while we queued: take it
                with self._cond:
                    slot = self._ready.pop(0) if self._ready else None
            except BaseException:
                if lease is not None:
                    lease.release()
                self.done()
                raise
        return slot

    def _never_wait_on_us(self) -> None:
        """While queued for a slot: this process's idle containers in other pools go, and a
        container of this pool's that became ready meanwhile (holding the slot we would
        wait for) ends the wait."""
        with self._cond:
            if self._ready:
                raise _ReadyMeanwhile
        while self._evict_one():
            pass

    def drop_dead(self) -> None:
        """Remove ready containers the engine already closed (e.g. after its restart)."""
        with self._cond:
            dead = [s for s in self._ready if not s.alive()]
            self._ready = [s for s in self._ready if s not in dead]
            self._cond.notify_all()
        for slot in dead:
            slot.discard()

    def done(self) -> None:
        """A run ended and its container went: refilling may use the CPU again."""
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def give_back(self, slot: Slot) -> None:
        """A run ended in a container fit for the next one: it is ready again (first in line).

        Unless its turn is over: held TURN_SECONDS while other kernels wait, it goes.
        """
        if slot.lease is not None and time.monotonic() - slot.lease.since > TURN_SECONDS and \
                self._others_wait():
            slot.discard()
            self.done()
            return
        with self._cond:
            self._busy -= 1
            self._last_use = time.monotonic()
            closed = self._closed
            if not closed:
                self._ready.insert(0, slot)
            self._cond.notify_all()
        if closed:
            slot.discard(now=True)

    def _idle(self) -> bool:
        # containers in use come back after their run: they count as held; one that will
        # retire soon does not, so its successor boots while it still serves (no run waits)
        ready = sum(not slot.retiring for slot in self._ready)
        full = ready + self._creating + self._busy >= self.target
        return full or self._failed

    def _shrink(self) -> list[Slot]:
        """After idle seconds without a run: back to the base size (returns the extra).

        Only the kernel's most recently used pool keeps its base size; the others
        (other limits, used earlier) go to zero until their next run, so a quiet
        kernel holds a couple of containers, not a couple per limit set it ever used.
        """
        if self._busy or time.monotonic() - self._last_take < self.idle:
            return []
        self._peak = 0
        quiet_for = time.monotonic() - self._last_take
        keep = self.size if _latest(self.engine) is self and quiet_for < self.release else 0
        self._retired = keep == 0
        self._ready.sort(key=lambda slot: slot.retiring)  # a successor outlives its elder
        extra = self._ready[keep:]
        del self._ready[keep:]
        return extra

    def _yield(self) -> list[Slot]:
        """Idle YIELD_SECONDS while another kernel waits for the budget: our ready ones go."""
        if self.budget is None or self._busy or not self._ready or \
                time.monotonic() - max(self._last_take, self._last_use) < YIELD_SECONDS or \
                not self._others_wait():
            return []
        extra, self._ready = self._ready, []
        return extra

    def _others_wait(self) -> bool:
        """Whether a kernel waits for the budget (a queue we cannot read: no one)."""
        try:
            return self.budget is not None and self.budget.waiting() > 0
        except OSError:
            return False

    def _evict_one(self) -> bool:
        """Take a ready container from a pool of this process used less recently than us."""
        others = [p for p in _engine_pools(self.engine) if p is not self]
        for pool in sorted(others, key=lambda p: p._last_take):
            if pool._last_take >= self._last_take:
                break
            with pool._cond:
                slot = pool._ready.pop(0) if pool._ready else None
            if slot is not None:
                slot.discard()
                return True
        return False

    def _lease_ahead(self) -> Lease | None:
        """A free budget slot for a container made ahead of demand (None: none is free).

        Never one a waiting kernel is owed. With none free, a pool of this process
        used less recently gives up a container (its slot frees once it is removed):
        the limits in use now get the warm ones.
        """
        assert self.budget is not None
        try:
            lease = self.budget.try_take()
            if lease is None and not self.budget.waiting():
                self._evict_one()
        except OSError:
            return None
        return lease

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    extra = self._shrink() or self._yield()
                    if extra:
                        for old in extra:
                            old.discard()
                        continue
                    if not self._idle():
                        break
                    self._cond.wait(timeout=1.0 if self.budget else max(1.0, self.idle / 4))
                if self._closed:
                    return
                self._creating += 1  # a taker waits for it rather than make a second
                self._asking += 1  # until it holds a budget slot, warm() does not count it
            slot: Slot | None = None
            lease = self._lease_ahead() if self.budget is not None else None
            over = self.budget is not None and lease is None
            with self._cond:
                self._asking -= 1
                if over:
                    self._creating -= 1
                    self._cond.notify_all()  # takers waiting for it: none is coming
                    self._cond.wait(timeout=2.0)  # another kernel's run may end meanwhile
                    continue
            try:
                slot = self.factory(True)
            except Exception:
                with self._cond:
                    self._failed = True  # retry on the next take(), not in a hot loop
            if slot is not None:
                slot.lease = lease
            elif lease is not None:
                lease.release()
            with self._cond:
                self._creating -= 1
                if slot is not None:
                    if self._closed:
                        slot.discard(now=True)
                    else:
                        self._ready.append(slot)
                        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            ready, self._ready = self._ready, []
            self._cond.notify_all()
        threads = [threading.Thread(target=s.discard, kwargs={"now": True}) for s in ready]
        for t in threads:
            t.start()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)  # a create in flight is discarded on arrival
        for t in threads:
            t.join()


def _engine_pools(engine: str) -> list[Pool]:
    """This process's pools on one engine (base URL)."""
    with _lock:
        return [p for k, p in _pools.items() if k[0] == engine]


def _latest(engine: str) -> Pool | None:
    """This process's most recently used pool on one engine."""
    return max(_engine_pools(engine), key=lambda p: p._last_take, default=None)


def warm_containers(engine: str) -> int:
    """Warm containers this process's pools hold on one engine (base URL)."""
    return sum(p.warm() for p in _engine_pools(engine))


def get_pool(key: tuple[Any, ...], factory: Callable[[bool], Slot], size: int,
             budget: Budget | None = None) -> Pool:
    """The shared pool for key (key[0] is the engine's base URL), created on first use.

    factory(ahead) makes one container; ahead is False for a run already waiting.
    """
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            if not _pools:
                atexit.register(shutdown_all)
            pool = _pools[key] = Pool(factory, size, engine=str(key[0]), budget=budget)
        return pool


def forget(key: tuple[Any, ...]) -> None:
    """Drop and close one pool (a single-use one, whose key names a run's own files)."""
    with _lock:
        pool = _pools.pop(key, None)
    if pool is not None:
        pool.close()


def close_pools(engine: str) -> None:
    """Close the pools of one engine (key[0] is its base URL)."""
    with _lock:
        keys = [k for k in _pools if k[0] == engine]
        pools = [_pools.pop(k) for k in keys]
    for pool in pools:
        pool.close()
    if _reaper_thread is not None and _reaper_thread.is_alive():
        _reaper_thread.drain()
    _run_hooks([engine])


def shutdown_all() -> None:
    """Close every pool and finish pending removals."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
    if _reaper_thread is not None and _reaper_thread.is_alive():
        _reaper_thread.drain()
    with _lock:
        engines = list(_close_hooks)
    _run_hooks(engines)
