"""Warm pool of single-use containers, and the reaper that removes used ones.

Each container waits on stdin for its one job, so taking one from the pool
skips create+start. Pools are keyed by engine, image and the limits baked in
at creation; a daemon thread refills them. Removal happens off the critical
path on a reaper thread; both are drained at interpreter exit so nothing leaks.
Containers also remove themselves (auto-remove) when our end of the attach
socket closes, which covers a killed interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Slot:
    """A started container and the attach socket that feeds its stdin."""

    client: Any
    container_id: str
    sock: Any
    wrapper: Any = None  # what attach_socket returned around sock: closed with it

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
                remove(self.client, self.container_id)
        else:
            _reaper().put((self.client, self.container_id))

    def alive(self) -> bool:
        """False when the engine already closed the attach stream (container gone).

        A waiting runner writes nothing, so anything readable on the socket
        means EOF or a reset: the container was removed, or the engine restarted.
        """
        import select

        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


def remove(client: Any, container_id: str) -> None:
    """Force-remove a container and its anonymous volume; already gone is fine."""
    import docker

    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: auto-removal already in progress
            raise


class _Reaper(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="llmscript-sandbox-reaper", daemon=True)
        self.jobs: queue.Queue[tuple[Any, str] | None] = queue.Queue()

    def put(self, job: tuple[Any, str]) -> None:
        self.jobs.put(job)

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            with contextlib.suppress(Exception):
                remove(*job)
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


class Pool:
    """Keeps `size` started containers for one (engine, image, limits) key."""

    def __init__(self, factory: Callable[[], Slot], size: int) -> None:
        self.factory = factory
        self.size = size
        self._ready: list[Slot] = []
        self._cond = threading.Condition()
        self._closed = False
        self._failed = False
        self._creating = 0
        self._busy = 0
        self._thread = threading.Thread(target=self._fill, name="llmscript-sandbox-pool",
                                        daemon=True)
        if size > 0:
            self._thread.start()

    def take(self) -> Slot:
        """A ready container, or a fresh one if the pool is empty; pair with done()."""
        with self._cond:
            slot = self._ready.pop(0) if self._ready else None
            self._failed = False
            self._busy += 1
            self._cond.notify_all()
        if slot is not None:
            return slot
        try:
            return self.factory()
        except BaseException:
            self.done()
            raise

    def drop_dead(self) -> None:
        """Remove ready containers the engine already closed (e.g. after its restart)."""
        with self._cond:
            dead = [s for s in self._ready if not s.alive()]
            self._ready = [s for s in self._ready if s not in dead]
            self._cond.notify_all()
        for slot in dead:
            slot.discard()

    def done(self) -> None:
        """A run ended: refilling may use the CPU again."""
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def _idle(self) -> bool:
        # With a container still ready, wait for the running script to finish before
        # refilling: on a small machine, container creation would slow that run down.
        full = len(self._ready) + self._creating >= self.size
        return full or self._failed or (self._busy > 0 and bool(self._ready))

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._idle():
                    self._cond.wait()
                if self._closed:
                    return
                self._creating += 1
            slot: Slot | None = None
            try:
                slot = self.factory()
            except Exception:
                with self._cond:
                    self._failed = True  # retry on the next take(), not in a hot loop
            with self._cond:
                self._creating -= 1
                if slot is not None:
                    if self._closed:
                        slot.discard(now=True)
                    else:
                        self._ready.append(slot)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            ready, self._ready = self._ready, []
            self._cond.notify_all()
        threads = [threading.Thread(target=s.discard, kwargs={"now": True}) for s in ready]
        for t in threads:
            t.start()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # a create in flight is discarded on arrival
        for t in threads:
            t.join()


def get_pool(key: tuple[Any, ...], factory: Callable[[], Slot], size: int) -> Pool:
    """The shared pool for key, created on first use."""
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            if not _pools:
                atexit.register(shutdown_all)
            pool = _pools[key] = Pool(factory, size)
        return pool


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
