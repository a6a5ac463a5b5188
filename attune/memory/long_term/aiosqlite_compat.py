"""Every use of aiosqlite's private API, in one place.

The SQLite store runs each transaction as *one* hand-off to the connection's thread: a
whole batch (BEGIN, the statements, the outbox row, COMMIT, the commit hooks) is one
Python function run there. aiosqlite's public methods take one hand-off per statement
(a queue put, a thread wake-up, a ``call_soon_threadsafe`` back: about as much as the
statement itself), so a transaction of five statements would cost five. Its private
primitive does it in one; this module is the only code that touches it.

Private pieces used, and why:

* ``Connection._execute(fn, *args)``: queue ``fn(*args)`` on the connection's thread and
  await its result; every public method is built on it. Handed out by :func:`executor`
  (the recall path awaits it directly: no coroutine of ours on the way).
* ``Connection._conn``: the ``sqlite3.Connection``, passed to those functions (used only
  on the connection's thread).
* ``Connection._connection``, ``Connection._running``: how ``_execute`` tells a closed
  connection (it raises a bare ``ValueError``); :func:`start` checks them the same way
  and raises :class:`LongTermUnavailableError` instead.
* ``Connection._tx``: :func:`start` (and :func:`in_thread`, which awaits it) queues a job
  as ``_execute`` does (a future and a function, put on the thread's ``SimpleQueue``),
  but at once instead of when first awaited, so the event loop can work while the thread
  runs it (the group commit makes search entries during its COMMIT's fsync).
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
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from attune.errors import LongTermUnavailableError

T = TypeVar("T")

#: Runs ``fn(*args)`` on the connection's thread, in one hand-off (``Connection._execute``).
Executor = Callable[..., Awaitable[Any]]


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
    """``fn(*args)``, run on the connection's thread, whose ``repr`` names ``fn`` only.

    aiosqlite logs every job it runs at DEBUG level by its ``repr``, and a job's arguments
    are what attune keeps private: records, search terms, pattern and user ids, whatever
    a caller passed as an id. An application that turns DEBUG logging on must not find
    them in its logs (``tests/test_no_value_leaks.py``)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def __call__(self) -> Any:
        return self.fn(*self.args)

    def __repr__(self) -> str:
        return f"<attune job {getattr(self.fn, '__name__', type(self.fn).__name__)}>"


def executor(db: aiosqlite.Connection) -> Executor:
    """``db``'s one-hop primitive: ``await executor(db)(fn, raw, *args)`` runs
    ``fn(raw, *args)`` on its thread. Raises ``ValueError`` once ``db`` is closed."""
    execute: Callable[[_Job], Awaitable[Any]] = db._execute

    def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        # A plain function handing back aiosqlite's awaitable: no coroutine of ours on
        # the recall path.
        return execute(_Job(fn, args))

    return run


def start(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Queue ``fn(sqlite3_connection, *args)`` on the connection's thread now; await the
    future for its result (:func:`in_thread` waits at once)."""
    if not db._running or getattr(db, "_connection", None) is None:
        raise _closed()
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    db._tx.put_nowait((future, _Job(fn, (db._conn, *args))))
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
    """Close ``db`` and wait for its thread to end."""
    await db.close()
    thread = worker_thread(db)
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
