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

A thread's loop, and every connection opened on it, is released when the thread
ends -- not at ``close()``: a facade used from many short-lived threads holds the
connections of the live ones only. The thread's local storage is cleared as it
ends, before ``join()`` returns; the loop's holder is collected then, and its
finalizer closes the loop's connections (a write that returned is committed
already: nothing is lost) on a helper thread and waits for that. A thread still
alive at interpreter exit is not waited for: its connections' threads are daemons.

A blocking call interrupted in its calling thread (Ctrl-C, an exception a signal handler
raises) is cancelled as its awaitable would be and waited for before the interruption is
raised: it never stays pending, to run on at the thread's next call (or on the portal)
after its caller was told it stopped. On the main thread, Ctrl-C is turned into that
cancellation while a call runs (as ``asyncio.run`` does), so it never lands in the middle
of the core's own bookkeeping.
"""

from __future__ import annotations

# The C functions under ``signal.signal`` / ``signal.getsignal``: those wrappers convert to
# and from enums (a ValueError raised and caught per call for a handler that is no enum
# member), 6.5 µs of the 7 µs that swapping the Ctrl-C handler costs every blocking call
# of the main thread (docs/performance.md: facade A/B).
import _signal  # type: ignore[import-not-found]
import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from attune._loop_local import release_loop, set_idle_runner

T = TypeVar("T")

_local = threading.local()
_portal_lock = threading.Lock()
_portal_loop: asyncio.AbstractEventLoop | None = None
#: How long a thread that ends waits for its connections to close (they close in ms).
_RELEASE_WAIT_S = 10.0
#: How long closes handed to a released loop may take before they are cancelled.
_SETTLE_S = 5.0


#: The lock of each thread's loop, held while its thread runs it: whoever else holds it
#: may run the idle loop (to close its connections) without its thread starting it too.
_loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, threading.Lock] = (
    weakref.WeakKeyDictionary()
)


class _ThreadLoop:
    """The event loop of one plain thread, held only by the thread's local storage."""

    __slots__ = ("__weakref__", "lock", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        _loop_locks[self.loop] = self.lock
        finalizer = weakref.finalize(
            self, _release_thread_loop, self.loop, threading.current_thread(), os.getpid()
        )
        finalizer.atexit = False  # at exit, threads are not waited for (see module doc)


def _thread_loop() -> _ThreadLoop:
    own: _ThreadLoop | None = getattr(_local, "own", None)
    if own is None or own.loop.is_closed():
        own = _ThreadLoop()
        _local.own = own
    return own


def _thread_loop_parts() -> tuple[asyncio.AbstractEventLoop, threading.Lock]:
    own = _thread_loop()
    return own.loop, own.lock


async def _run_on_idle_loop(
    loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[None]]
) -> bool:
    """Run ``work()`` on ``loop``, the idle loop of a live thread, from a helper thread;
    False (nothing done) if ``loop`` is not such a loop or its thread is running it."""
    lock = _loop_locks.get(loop)
    if lock is None or not lock.acquire(blocking=False):
        return False
    waiter = asyncio.get_running_loop()
    done: asyncio.Future[None] = waiter.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            if not loop.is_closed():
                with contextlib.suppress(Exception):
                    loop.run_until_complete(work())
        finally:
            lock.release()
            with contextlib.suppress(RuntimeError):  # the waiting loop closed meanwhile
                waiter.call_soon_threadsafe(finish)

    try:
        threading.Thread(target=run, name="attune-release", daemon=True).start()
    except BaseException:
        lock.release()
        raise
    await done
    return True


set_idle_runner(_run_on_idle_loop)


def _release_thread_loop(
    loop: asyncio.AbstractEventLoop, owner: threading.Thread, pid: int
) -> None:
    """The finalizer of a thread's loop: runs in that thread (``owner``) as it ends, or
    where its holder is replaced. The loop is run to close its connections on a helper
    thread: the ending thread's own state is being torn down. The owner waits for it, so
    a thread that ended has released everything. A finalizer that the garbage collector
    runs in another thread does not wait: that thread may be a store's, in the middle of
    a transaction whose lock the close needs (it waited out the busy timeout, 30 s). The
    ident alone does not tell: a new thread reuses a dead one's at once; but the owner is
    alive (its state not yet deleted) while its own finalizers run. In a forked child
    (``pid`` is the parent's), the loop and its connections are the parent's: let go."""
    if sys.is_finalizing() or os.getpid() != pid:
        return
    done = threading.Event()
    helper = threading.Thread(
        target=_close_loop, args=(loop, done), name="attune-release", daemon=True
    )
    try:
        helper.start()
    except RuntimeError:  # the interpreter is shutting down
        return
    if threading.get_ident() != owner.ident or not owner.is_alive():
        return
    # Not helper.join(): it would look up current_thread(), which an ending thread no
    # longer is, and register a dummy thread for it.
    if done.wait(_RELEASE_WAIT_S):
        deadline = time.monotonic() + 1.0
        while helper.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0002)


def _close_loop(loop: asyncio.AbstractEventLoop, done: threading.Event) -> None:
    """(Helper thread) Close every resource of ``loop``, then the loop itself."""
    lock = _loop_locks.get(loop)
    # A close() elsewhere may be running the loop (see _run_on_idle_loop): wait for it.
    locked = lock is not None and lock.acquire(timeout=_RELEASE_WAIT_S)
    try:
        if loop.is_closed():  # closed by its owner: release what can be from elsewhere
            with contextlib.closing(asyncio.new_event_loop()) as other:
                other.run_until_complete(release_loop(loop))
            return
        try:
            loop.run_until_complete(release_loop())
            loop.run_until_complete(_settle_tasks())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    except Exception:  # noqa: S110 -- nobody to report to; writes that returned are committed
        pass
    finally:
        if locked:
            assert lock is not None
            lock.release()
        done.set()


async def _settle_tasks() -> None:
    """Let what still runs on a released loop finish (closes handed to it), bounded."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=_SETTLE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


#: A forked child's copies of its parent's loops: never run, closed or collected there.
_parents: list[Any] = []


def _forget_in_child() -> None:
    """(In a forked child) start without the parent's loops: the calling thread's loop and
    the portal are the parent's (their selectors are shared with it, the portal's thread
    does not exist here). The next blocking call makes a loop of the child's own; the
    connections of the parent's loops are let go by :mod:`attune._loop_local`."""
    global _portal_loop, _portal_lock
    _portal_lock = threading.Lock()
    _parents.append((getattr(_local, "own", None), _portal_loop))
    _local.own = None
    _portal_loop = None


os.register_at_fork(after_in_child=_forget_in_child)


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
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        # The thread's loop is released when its holder (_ThreadLoop) dies with the
        # thread. An error raised by the call keeps this frame alive in a reference cycle
        # (asyncio's task holds the error, whose traceback holds the frames), so the frame
        # holds the loop, never its holder: else the holder would be freed by the garbage
        # collector, in whatever thread it runs (once a store's thread inside a
        # transaction, which deadlocked until the busy timeout). For the same reason this
        # runs outside the except block: the error would chain its RuntimeError.
        loop, lock = _thread_loop_parts()
        with lock:
            return _run_here(loop, coro)
    if running is _portal_loop:  # called from the portal itself: it cannot wait on itself
        return _in_new_thread(coro)
    return _on_portal(coro)


_SIGINT = int(signal.SIGINT)


class _CtrlC:
    """SIGINT handler of the main thread while it runs a call on its own loop, as
    ``asyncio.run`` has: Ctrl-C cancels the call at its next ``await`` (as cancelling its
    awaitable does) instead of raising KeyboardInterrupt wherever the thread is, which
    could be in the middle of the core's own bookkeeping. A second Ctrl-C raises at once."""

    __slots__ = ("loop", "pressed", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task, self.pressed = loop, task, False

    def __call__(self, signum: int, frame: object) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        self.loop.call_soon_threadsafe(self.task.cancel)


def _run_here(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop``, this thread's idle loop. An interruption of this thread
    (Ctrl-C, an exception raised by a signal handler or another thread in it) never
    leaves the call pending on the loop, to run on at the thread's next call: the call is
    cancelled and settles first (a write already under way completes, one not yet sent is
    dropped). After Ctrl-C, KeyboardInterrupt is raised once it has settled."""
    task = loop.create_task(coro)
    ctrl_c = None
    try:
        if threading.current_thread() is threading.main_thread() and (
            _signal.getsignal(_SIGINT) is signal.default_int_handler
        ):
            ctrl_c = _CtrlC(loop, task)
            _signal.signal(_SIGINT, ctrl_c)
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done() and (ctrl_c is None or not ctrl_c.pressed):
            _settle(loop, task)
        raise
    finally:
        if ctrl_c is not None:
            _signal.signal(_SIGINT, signal.default_int_handler)
            if ctrl_c.pressed:
                raise KeyboardInterrupt  # in place of the outcome of the call


def _settle(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Cancel ``task``, an interrupted call, and run ``loop`` until it has ended."""
    task.cancel()
    with contextlib.suppress(BaseException):  # its outcome, or an interruption again
        loop.run_until_complete(task)


class _PortalCall(Generic[T]):
    """A call handed to the portal, and whether it has ended (``done``)."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.task: asyncio.Task[T] | None = None
        self.cancelled = False
        self.done = threading.Event()

    def start(self) -> None:
        """(On the portal) start the call, unless it was cancelled before."""
        if self.cancelled:
            self.coro.close()
            self.done.set()
            return
        self.task = asyncio.get_running_loop().create_task(self.coro)
        self.task.add_done_callback(lambda _: self.done.set())

    def cancel(self) -> None:
        """(On the portal) cancel the call, started or not."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


def _on_portal(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal and wait for it. Interrupted while waiting (Ctrl-C under
    a loop that does not catch it, an exception raised in this thread), the call is
    cancelled and waited for: it never runs on after the caller was told it stopped."""
    call = _PortalCall(coro)
    portal = _portal()
    portal.call_soon_threadsafe(call.start)
    try:
        call.done.wait()
    except BaseException:
        portal.call_soon_threadsafe(call.cancel)
        call.done.wait()  # a write under way completes, one not yet sent is dropped
        raise
    assert call.task is not None
    return call.task.result()


def _in_new_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a thread of its own (its loop is released when it ends)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, run_sync(coro)))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="attune-call", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result
