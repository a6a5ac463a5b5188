"""How the blocking facade runs the async core.

Three callers must work and never deadlock:

* a plain script or worker thread with no event loop: the coroutine runs on an
  event loop private to the calling thread, driven right there
  (``run_until_complete``) -- no thread hop, so a blocking call costs little
  more than the awaitable it wraps;
* several threads at once: each has its own loop, so they run in parallel;
* code that is already inside a running event loop (an ``async def`` calling
  the blocking API): that loop cannot be re-entered, so the coroutine is handed
  to one process-wide *portal* thread whose loop runs forever.

The async core keeps its connections per event loop (see
:mod:`attune._loop_local`) and never waits on another loop, so none of these
paths can raise "attached to a different loop" or wait on a blocked loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()
_portal_lock = threading.Lock()
_portal_loop: asyncio.AbstractEventLoop | None = None


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def _portal() -> asyncio.AbstractEventLoop:
    global _portal_loop
    with _portal_lock:
        if _portal_loop is None or _portal_loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="attune-portal", daemon=True).start()
            ready.wait()
            _portal_loop = loop
        return _portal_loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from any calling context."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_loop().run_until_complete(coro)
    return asyncio.run_coroutine_threadsafe(coro, _portal()).result()
