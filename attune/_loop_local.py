"""Per-event-loop resources.

Network clients of ``redis.asyncio`` are bound to the event loop that opened
them. The async core may be awaited from several loops over its life (each
thread of the sync facade drives its own loop, a test framework makes one per
test, an application may run several), so every tier keeps one resource per
loop, created lazily on first use in that loop. Nothing in the core ever
waits on a loop other than the one it runs in, which is what makes the sync
facade deadlock-free.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """Holds one ``T`` per running event loop.

    ``create`` makes the resource inside the loop that needs it; ``close``
    releases it. Concurrent first uses in the same loop share one creation.
    """

    def __init__(
        self,
        create: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[None]],
    ) -> None:
        self._create = create
        self._close = close
        self._lock = threading.Lock()
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[T]] = (
            weakref.WeakKeyDictionary()
        )
        #: The last loop served and its resource: the hot path skips the lock and the dict.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], T] | None = None

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        with self._lock:
            fut = self._items.get(loop)
            owner = fut is None
            if fut is None:
                fut = loop.create_future()
                self._items[loop] = fut
        if not owner:
            value = await asyncio.shield(fut)
            self._last = (weakref.ref(loop), value)
            return value
        try:
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

    async def aclose(self) -> None:
        """Close every resource: directly in this loop, by hand-off in other running loops.

        A resource of a loop that is closed already, or idle in another thread,
        is dropped (its sockets close when it is collected).
        """
        current = asyncio.get_running_loop()
        with self._lock:
            items = list(self._items.items())
            self._items.clear()
            self._last = None
        errors: list[BaseException] = []
        for loop, fut in items:
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                continue
            value = fut.result()
            try:
                if loop is current:
                    await self._close(value)
                elif loop.is_running() and not loop.is_closed():
                    handoff = asyncio.run_coroutine_threadsafe(_call(self._close, value), loop)
                    await asyncio.wait_for(asyncio.wrap_future(handoff), timeout=5)
            except Exception as exc:  # close what we can, report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


async def _call(fn: Callable[[T], Awaitable[None]], value: T) -> None:
    await fn(value)
