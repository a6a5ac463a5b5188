"""Per-event-loop resources.

Network clients of ``redis.asyncio`` are bound to the event loop that opened
them. The async core may be awaited from several loops over its life (each
thread of the sync facade drives its own loop, a test framework makes one per
test, an application may run several), so every tier keeps one resource per
loop, created lazily on first use in that loop. Nothing in the core ever
waits on a loop other than the one it runs in, which is what makes the sync
facade deadlock-free.

Every :class:`LoopLocal` is registered here, so the resources of one loop can be
released together when the loop's owner is done with it
(:func:`release_loop`: the blocking facade calls it for the loop of a thread
that ended), without waiting for ``close()``. A LoopLocal collected with resources still
open (its store dropped without ``close()``) closes them then, on a helper thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Every LoopLocal alive, to release one loop's resources in all of them.
_registry: weakref.WeakSet[LoopLocal[Any]] = weakref.WeakSet()
_registry_lock = threading.Lock()
#: Close tasks handed to other loops (a loop keeps only a weak reference to its tasks).
_handed_off: set[asyncio.Task[None]] = set()
#: Runs a coroutine on another loop if that loop is idle and may be run from here (the
#: blocking facade's per-thread loops; see :func:`set_idle_runner`), else returns False.
IdleRunner = Callable[[asyncio.AbstractEventLoop, Callable[[], Awaitable[None]]], Awaitable[bool]]
_idle_runner: IdleRunner | None = None


def set_idle_runner(runner: IdleRunner) -> None:
    """Let :meth:`LoopLocal.aclose` close a loop-bound resource of an idle loop by running
    that loop (the blocking facade registers this for the loops of its threads)."""
    global _idle_runner
    _idle_runner = runner


class LoopLocal(Generic[T]):
    """Holds one ``T`` per running event loop.

    ``create`` makes the resource inside the loop that needs it; ``close``
    releases it there. ``close_elsewhere``, if given, releases it from any other
    loop (for a resource whose own loop cannot run it: closed, or blocked by the
    caller); without it, the close is handed to the resource's own loop and not
    waited for. Concurrent first uses in the same loop share one creation.
    """

    def __init__(
        self,
        create: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[None]],
        *,
        close_elsewhere: Callable[[T], Awaitable[None]] | None = None,
    ) -> None:
        self._create = create
        self._close = close
        self._close_elsewhere = close_elsewhere
        self._lock = threading.Lock()
        # Values refer to their loop (futures, transports), so an entry keeps its loop
        # alive: entries leave by release_running_loop / aclose, not by collection.
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[T]] = (
            weakref.WeakKeyDictionary()
        )
        #: The last loop served and its resource: the hot path skips the lock and the dict.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], T] | None = None
        # Collected with resources open (its owner was dropped without being closed): they
        # are closed then, with the closes that do not hold the owner (a bound method
        # would keep it, and so this, alive for good).
        self._orphans = _Orphans(self._items)
        unbound = [None if inspect.ismethod(fn) else fn for fn in (close, close_elsewhere)]
        finalizer = weakref.finalize(self, _release_orphans, self._orphans, *unbound)
        finalizer.atexit = False  # at exit, nothing is waited for (see attune._runner)
        with _registry_lock:
            _registry.add(self)

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        stale: list[asyncio.AbstractEventLoop] = []
        with self._lock:
            fut = self._items.get(loop)
            owner = fut is None
            if fut is None:
                fut = loop.create_future()
                self._items[loop] = fut
                stale = [other for other in self._items if other.is_closed()]
        if not owner:
            value = await asyncio.shield(fut)
            self._last = (weakref.ref(loop), value)
            return value
        try:
            if stale:  # loops closed by their owners (asyncio.run): release theirs first
                await self._release_closed(stale)
            value = await self._create()
        except BaseException as exc:
            with self._lock:
                if self._items.get(loop) is fut:
                    del self._items[loop]
            if not fut.done():
                # Wake concurrent waiters with the same error, then let them retry later.
                fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
                fut.exception()  # mark retrieved: the owner re-raises it below
            raise
        fut.set_result(value)
        with self._lock:
            taken = self._items.get(loop) is not fut
        if taken:
            # Released (aclose, the loop's release) while it was being made: nobody else
            # will close it, so close it here, at once; the caller's use of it then fails
            # as any use of a closed resource does.
            with contextlib.suppress(Exception):
                await self._close(value)
            return value
        self._last = (weakref.ref(loop), value)
        return value

    def current(self) -> T | None:
        """The resource of the loop served last, if that loop is the running one: the hot
        path of :meth:`get` without a coroutine (None: await :meth:`get`). Loop only."""
        last = self._last
        if last is not None and last[0]() is asyncio.get_running_loop():
            return last[1]
        return None

    def peek(self) -> T | None:
        """The resource of the running loop if it exists already (no creation)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            fut = self._items.get(loop)
        if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
            return None
        return fut.result()

    def _take(
        self, loop: asyncio.AbstractEventLoop | None = None
    ) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Remove the entries of ``loop`` (None: of every loop); return those that hold a
        resource. Whoever takes an entry closes it: nobody else sees it any more."""
        with self._lock:
            if loop is None:
                items = list(self._items.items())
                self._items.clear()
                self._last = None
            else:
                fut = self._items.pop(loop, None)
                items = [] if fut is None else [(loop, fut)]
                last = self._last
                if last is not None and last[0]() in (loop, None):
                    self._last = None
        return _made(items)

    async def _release(self, owner: asyncio.AbstractEventLoop, value: T) -> None:
        """Close ``value`` of loop ``owner`` from the running loop, never waiting on another."""
        await _release_one(owner, value, self._close, self._close_elsewhere)

    async def _release_closed(self, loops: list[asyncio.AbstractEventLoop]) -> None:
        """Release the resources of loops that were closed (a closed loop cannot run its
        own close; its entry would otherwise keep it, and its resource, alive)."""
        for loop in loops:
            for owner, value in self._take(loop):
                with contextlib.suppress(Exception):  # not this caller's failure
                    await self._release(owner, value)

    async def aclose(self) -> None:
        """Close every resource, from this loop, without waiting on any other loop.

        This loop's resources close here. Another loop's close here too if the resource
        can be closed from elsewhere (``close_elsewhere``); else the close is handed to
        that loop, which runs it when it next runs: a loop that is busy, or blocked by
        the caller (a blocking ``close()`` inside ``async def``), never stalls this.
        """
        errors: list[BaseException] = []
        for owner, value in self._take():
            try:
                await self._release(owner, value)
            except Exception as exc:  # close what we can, report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


#: What a forked child inherited from its parent and must never use, close or collect:
#: connections whose sockets, threads and locks are the parent's (see :func:`_forget_in_child`).
_parents: list[Any] = []


def _forget_in_child() -> None:
    """(In a forked child) forget every loop's resources, without closing them.

    They belong to the parent: their event loops, sockets and SQLite connections are the
    parent's (the threads that drove the SQLite ones do not exist here), and closing one
    would end the parent's Redis connection or touch its database locks. The child opens
    its own on first use. They are kept referenced, so no finalizer runs on them here."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for local in list(_registry):
        local._lock = threading.Lock()
        _parents.append(list(local._items.items()))
        local._items = weakref.WeakKeyDictionary()
        local._orphans.items = local._items
        local._last = None
    _parents.append(set(_handed_off))
    _handed_off.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def _made(
    items: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[T]]],
) -> list[tuple[asyncio.AbstractEventLoop, T]]:
    """The entries of ``items`` that hold a resource (made, not failed or cancelled)."""
    return [
        (owner, fut.result())
        for owner, fut in items
        if fut.done() and not fut.cancelled() and fut.exception() is None
    ]


async def _release_one(
    owner: asyncio.AbstractEventLoop,
    value: T,
    close: Callable[[T], Awaitable[None]] | None,
    close_elsewhere: Callable[[T], Awaitable[None]] | None,
) -> None:
    """Close ``value`` of loop ``owner`` from the running loop, never waiting on another
    (with neither close, nothing is done)."""
    if close is not None and owner is asyncio.get_running_loop():
        await close(value)
    elif close_elsewhere is not None:
        await close_elsewhere(value)
    elif close is not None:
        # Bound to its loop. The idle loop of a facade thread is run here to close it;
        # any other loop closes it when it next runs (at once if it is running). A
        # closed loop cannot: the resource is dropped, its sockets close when collected.
        bound = close
        if _idle_runner is not None and await _idle_runner(owner, lambda: bound(value)):
            return
        with contextlib.suppress(RuntimeError):
            owner.call_soon_threadsafe(_start_close, close, value)


class _Orphans:
    """The entries of one LoopLocal, for its finalizer (which must not hold the LoopLocal)."""

    __slots__ = ("items",)

    def __init__(self, items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]) -> None:
        self.items = items


def _release_orphans(
    orphans: _Orphans,
    close: Callable[[Any], Awaitable[None]] | None,
    close_elsewhere: Callable[[Any], Awaitable[None]] | None,
) -> None:
    """(Finalizer of a LoopLocal collected with resources open, in whatever thread the
    garbage collector runs) close them on a helper thread of their own: never here, where
    a store's lock may be held, and never waited for."""
    if sys.is_finalizing() or (close is None and close_elsewhere is None):
        return
    entries = _made(list(orphans.items.items()))
    orphans.items.clear()
    if not entries:
        return

    async def release_all() -> None:
        for owner, value in entries:
            with contextlib.suppress(Exception):  # nobody to report to
                await _release_one(owner, value, close, close_elsewhere)

    work = release_all()
    try:
        threading.Thread(
            target=asyncio.run, args=(work,), name="attune-release", daemon=True
        ).start()
    except RuntimeError:  # the interpreter is shutting down
        work.close()


def _start_close(close: Callable[[T], Awaitable[None]], value: T) -> None:
    """(On the resource's own loop) run a close handed over from another loop."""
    task = asyncio.get_running_loop().create_task(_call(close, value))
    _handed_off.add(task)
    task.add_done_callback(_handed_off.discard)


async def _call(fn: Callable[[T], Awaitable[None]], value: T) -> None:
    with contextlib.suppress(Exception):  # nobody waits for it to report to
        await fn(value)


def _instances() -> list[LoopLocal[Any]]:
    with _registry_lock:
        return list(_registry)


async def release_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Close the resources of ``loop`` (default: the running loop) in every LoopLocal,
    from the running loop, as their owner is done with that loop (the thread that drove
    it ended). Failures are not raised: nobody is left to report them to, and every write
    that returned was committed already."""
    running = asyncio.get_running_loop()
    for local in _instances():
        for owner, value in local._take(running if loop is None else loop):
            with contextlib.suppress(Exception):
                await local._release(owner, value)
