"""Every use of aiosqlite's private API, in one place.

The SQLite store runs each transaction as *one* hand-off to the connection's thread: a
whole batch (BEGIN, the statements, the outbox row, COMMIT, the commit hooks) is one
Python function run there. aiosqlite's public methods take one hand-off per statement
(a queue put, a thread wake-up, a ``call_soon_threadsafe`` back: about as much as the
statement itself), so a transaction of five statements would cost five. Its private
primitive does it in one; this module is the only code that touches it.

Private pieces used, and why:

* ``Connection._tx``: the thread's job queue. :func:`start_raw` (and :func:`start`,
  :func:`in_thread`, :func:`executor`, built on it) queues a job as aiosqlite's own
  ``_execute`` does, but at once instead of when first awaited, so the event loop can work
  while the thread runs it (the group commit makes search entries during its COMMIT's
  fsync), and as a :class:`_Job` that hands its own result back: aiosqlite's hand-back
  kills the connection's thread when the waiting loop was closed meanwhile.
* ``Connection._conn``: the ``sqlite3.Connection``, passed to those functions (used only
  on the connection's thread).
* ``Connection._connection``, ``Connection._running``: how aiosqlite tells a closed
  connection (``_connection``, what ``_conn`` returns once checked, is None then; :func:`start`
  passes it as it is); :func:`start_raw` checks them the same way and raises
  :class:`LongTermUnavailableError`, and :func:`close` clears them for a connection whose
  thread died.
* The worker thread: aiosqlite 0.20 and 0.21 make the ``Connection`` itself a
  ``threading.Thread``; 0.22 gives it one in ``Connection._thread``. Found by
  :func:`worker_thread`, to mark it daemon before it starts (:func:`daemonize`: a script
  that forgets ``close()`` still exits) and to wait for it to end at close (a closed store
  leaves no thread behind).

Verified on aiosqlite 0.20.0, 0.21.0 and 0.22.1 (the range pyproject.toml allows): the
long-term, outbox, audit-atomicity and facade-resource tests pass on each. A version
without these pieces is refused when a connection opens (:func:`check_api`), with a clear
error, rather than failing later or hanging the interpreter at exit.

Why not an own single-thread executor instead (a thread, a ``queue.SimpleQueue``,
``call_soon_threadsafe`` back)? Measured with ``benchmarks/sqlite_executor.py``, both
interleaved in one run, sequential and with 64 concurrent callers, on each of the three
versions (twice, on a shared 2-CPU machine): own / aiosqlite per hand-off ranged from
0.88 to 1.30, with no consistent winner in either shape (medians about 30-55 us
sequential, 7-28 us concurrent). It is the same mechanism; owning it would add
connection setup, close and error handling to maintain for no measurable gain, so
aiosqlite stays, its private API fenced in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from attune.errors import LongTermUnavailableError

T = TypeVar("T")

#: Runs ``fn(*args)`` on the connection's thread, in one hand-off (:func:`start_raw`).
Executor = Callable[..., Awaitable[Any]]
#: How often a close looks whether the connection's thread is still there to answer.
_WATCH_S = 0.25


async def connect(path: Path, *, busy_timeout_s: float) -> aiosqlite.Connection:
    """An autocommit connection (``isolation_level=None``: the store writes BEGIN and
    COMMIT itself) whose thread is a daemon; refused if this aiosqlite lacks the pieces
    above."""
    pending = aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout_s)
    check_api(pending)
    daemonize(pending)
    db: aiosqlite.Connection = await pending
    return db


def raw_connection(db: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection under ``db``: use it only on ``db``'s thread."""
    raw: sqlite3.Connection = db._conn
    return raw


class _Job:
    """``fn(*args)``, run on the connection's thread, that hands its outcome to ``future``
    itself, and whose ``repr`` names ``fn`` only.

    aiosqlite hands a job's result back with ``call_soon_threadsafe`` on the future's loop;
    if that loop was closed meanwhile (a thread of the blocking facade ended, an
    ``asyncio.run`` returned while a job it started was still queued), the call raises in
    the connection's thread, which dies: every later job on the connection, its close
    included, then waited forever. A job queued here (as ``(None, job)``: aiosqlite hands
    nothing back) delivers its own outcome and drops it if the loop is gone.

    aiosqlite logs every job it runs at DEBUG level by its ``repr``, and a job's arguments
    are what attune keeps private: records, search terms, pattern and user ids, whatever
    a caller passed as an id. An application that turns DEBUG logging on must not find
    them in its logs (``tests/test_no_value_leaks.py``)."""

    __slots__ = ("args", "fn", "future", "name")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Any) -> None:
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] = args
        self.future: Any = future
        self.name: str = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self) -> None:
        # The connection's idle thread keeps the last job it ran: a job lets go of what it
        # holds before running, or that thread would keep the last store (and its memory
        # object) alive, and a memory object dropped without close() would never be
        # collected and closed.
        fn, args, future = self.fn, self.args, self.future
        self.fn, self.args, self.future = None, (), None
        assert fn is not None, "a job runs once"
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the waiter, as aiosqlite does
            _deliver(future, _set_exception, exc)
        else:
            _deliver(future, _set_result, result)

    def __repr__(self) -> str:
        return f"<attune job {self.name}>"


def _deliver(future: asyncio.Future[Any], setter: Callable[..., None], value: Any) -> None:
    """(On the connection's thread) hand ``value`` to ``future`` on its loop; nothing if
    that loop is closed (nobody waits any more; what the job did stays done)."""
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def executor(db: aiosqlite.Connection) -> Executor:
    """``db``'s one-hop primitive: ``await executor(db)(fn, raw, *args)`` runs
    ``fn(raw, *args)`` on its thread (:func:`start`, handed out as a plain function: no
    coroutine of ours on the recall path)."""

    def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return start_raw(db, fn, *args)

    return run


def start(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Queue ``fn(sqlite3_connection, *args)`` on the connection's thread now; await the
    future for its result (:func:`in_thread` waits at once). The sqlite3 connection is
    read as ``_connection``: None once closed, which :func:`start_raw` refuses."""
    return start_raw(db, fn, getattr(db, "_connection", None), *args)


def start_raw(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Queue ``fn(*args)`` on the connection's thread now (:class:`_Job`); its future.
    :class:`LongTermUnavailableError` if ``db`` is closed, or its thread is gone."""
    if not db._running or getattr(db, "_connection", None) is None:
        raise _closed()
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    db._tx.put_nowait((None, _Job(fn, args, future)))
    return future


async def in_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3_connection, *args)`` on the connection's own thread, in one hop;
    :class:`LongTermUnavailableError` if ``db`` was closed meanwhile (:func:`start` checks:
    a job queued before ``close()`` still runs first)."""
    return await start(db, fn, *args)


def _closed() -> LongTermUnavailableError:
    return LongTermUnavailableError(
        "long-term memory is closed: its connection was closed by close() while this "
        "operation waited; create a new memory object"
    )


async def close(db: aiosqlite.Connection) -> None:
    """Close ``db`` and wait for its thread to end; a connection whose thread is gone
    (it died: nothing would answer) is let go instead of waited for."""
    thread = worker_thread(db)
    closing = asyncio.ensure_future(db.close())
    while not closing.done():
        await asyncio.wait({closing}, timeout=_WATCH_S)
        if not closing.done() and thread is not None and not thread.is_alive():
            closing.cancel()
            db._connection = None  # later calls see a closed connection
            db._running = False
            return
    closing.result()
    # Its last job is done: it ends within microseconds (waited for, so a closed store
    # leaves no thread behind; bounded, in case it is stuck in a callback).
    for _ in range(4000):  # 2 s at most
        if thread is None or not thread.is_alive():
            break
        await asyncio.sleep(0.0005)


def worker_thread(db: aiosqlite.Connection) -> threading.Thread | None:
    """The thread a connection runs on: aiosqlite 0.20 and 0.21 make the connection a
    thread, 0.22 gives it one (``_thread``)."""
    if isinstance(db, threading.Thread):
        return db
    thread = getattr(db, "_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


def check_api(db: aiosqlite.Connection) -> None:
    """Refuse, at open, an aiosqlite without ``_execute``, its job queue or a worker
    thread (see the module docstring), rather than fail later or hang the interpreter at
    exit."""
    if (
        not callable(getattr(db, "_execute", None))
        or not callable(getattr(getattr(db, "_tx", None), "put_nowait", None))
        or not hasattr(db, "_running")
        or worker_thread(db) is None
    ):
        raise LongTermUnavailableError(
            f"aiosqlite {aiosqlite.__version__} lacks Connection._execute, _tx or its thread, "
            "which attune's SQLite store runs its transactions on; install a supported "
            "aiosqlite (see pyproject.toml)"
        )


def daemonize(db: aiosqlite.Connection) -> None:
    """Let a script that never closes its memory still exit.

    aiosqlite runs each connection on a non-daemon thread, which the interpreter joins
    at exit before any ``atexit`` hook could close it: a forgotten ``close()`` would hang
    the process. Every write that returned is committed and fsynced already, so ending
    that idle thread with the process loses nothing. Only before the thread starts.
    """
    thread = worker_thread(db)
    if thread is not None and not thread.is_alive():
        thread.daemon = True
