"""The thread, event loop and connection a :class:`~.postgres_audit_log.DatabaseAuditLogger`
writes and reads its table with.

asyncpg connections belong to an event loop, and an audit logger is driven from threads
(its writer thread, or a caller's: ``AuditLogger.wait``, ``check``, ``verify``), so
:class:`TableSink` runs one private loop on a daemon thread of its own, with one
connection for writes (opened on first use, after the schema's migrations); each call
hands it a coroutine and waits for the result, from any thread, never on a caller's
event loop. A batch is one statement in its own transaction, conditional on the chain
head this sink left (:func:`.postgres_audit.append_alone`: one round trip while no other
writer moved it), else a short transaction that locks the head first; the COMMIT is its
durability.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

import asyncpg

from attune.memory.long_term import postgres_audit, postgres_schema

__all__ = [
    "LOST",
    "HeadHint",
    "NoHeadError",
    "TableSink",
    "never_sent",
    "quietly_close",
    "session_lost",
]

_T = TypeVar("_T")

#: The connection went away mid-statement: what the server did with it is unknown.
#: (asyncpg reports a connection the server ended while it was idle as an internal error
#: on its next use: "cannot switch to state ...; another operation is in progress".)
#: The server's own goodbyes count too: its session ends with them (pg_terminate_backend,
#: a shutdown, idle_in_transaction_session_timeout, idle_session_timeout).
LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    asyncpg.exceptions.IdleSessionTimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def session_lost(exc: BaseException) -> bool:
    """The connection went away (:data:`LOST`), not merely slow: a client-side timeout
    leaves the session, and the statement it waited for, running on the server."""
    return isinstance(exc, LOST) and not isinstance(exc, TimeoutError)


def never_sent(exc: BaseException) -> bool:
    """asyncpg refused to start a statement on a connection whose session the server had
    already ended (while it was idle, before asyncpg saw its socket close): it raises
    before writing anything (``_set_state``), so nothing reached the server."""
    return isinstance(exc, asyncpg.InternalClientError) and str(exc).startswith(
        "cannot switch to state"
    )


#: Connections :meth:`TableSink._again_if_lost` tries a batch on.
_ATTEMPTS = 8


class HeadHint:
    """The chain head as this process last left it (``value``: (seq, hash), or None),
    written by the logger's sink and by a PostgreSQL store's transactions. Only a guess:
    whoever appends on it checks it under the head's row lock (a stale one costs a round
    trip, never a wrong chain). A tuple is read and replaced whole, from any thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: tuple[int, str] | None = None


class TableSink:
    """Writes batches to the table from one private event loop and connection (see the
    module). Used by one thread at a time (the logger's ``_sink_lock``) for writes; reads
    (verify, query) take a connection of their own on the same loop."""

    def __init__(self, dsn: str, timeout_s: float, hint: HeadHint | None = None) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None
        #: The head after this process's last append: a guess (checked by the statement
        #: that appends, see :func:`postgres_audit.append_alone`).
        self._hint = HeadHint() if hint is None else hint
        #: The write connection's ``synchronous_commit`` ("on", "off"; None: not set yet).
        self._commit_mode: str | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="attune-audit-db", daemon=True
        )
        self._thread.start()

    def run(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Run a coroutine on the sink's loop and wait for its result (any thread)."""
        if not self._thread.is_alive():
            raise ConnectionError("the audit database thread has stopped")

        async def call() -> _T:
            return await make()

        future: Future[_T] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return future.result()

    async def connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, timeout=self._timeout_s, command_timeout=None)
        try:
            await postgres_schema.migrate(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _writer(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.connect()
            self._commit_mode = None
        return self._conn

    def _drop(self, conn: asyncpg.Connection) -> None:
        """Forget a lost write connection: the next use opens another."""
        if self._conn is conn:
            self._conn = None
        conn.terminate()

    def commit(self, entries: list[tuple[str, str]], fsync: bool) -> None:
        if not entries:  # a flush with nothing queued
            return

        async def write(conn: asyncpg.Connection, tried: list[tuple[int, str]]) -> None:
            # A batch nobody waits on (reads' events, sync=False) commits without waiting
            # for the WAL flush. Set for the session, and only when it changes: a SET LOCAL
            # needs a transaction of its own (BEGIN, SET, lock, insert, COMMIT: five round
            # trips a batch instead of one, which cost sequential recalls ~1/4 of their
            # rate: docs/performance.md, PostgreSQL).
            mode = "on" if fsync else "off"
            if self._commit_mode != mode:
                await conn.execute(f"SET synchronous_commit = {mode}")
                self._commit_mode = mode
            # One statement, its own transaction, while the head is our last.
            self._hint.value = await postgres_audit.append_alone(
                conn, entries, self._hint.value, tried
            )

        self.run(lambda: self._again_if_lost(write))

    async def _again_if_lost(
        self, call: Callable[[asyncpg.Connection, list[tuple[int, str]]], Awaitable[None]]
    ) -> None:
        """``call`` on the write connection; if that connection is found lost (its session
        ended by the server: a restart, ``pg_terminate_backend``, a timeout), once more on
        a new one, unless what it sent committed after all (:func:`postgres_audit.landed`:
        the batch is then in the table, once); up to :data:`_ATTEMPTS` connections, each
        asked first whether an earlier one's append landed (sessions ended again and again,
        a server going down and up: the new connection may be lost too). Events are never
        dropped for a connection the server closed while it sat idle."""
        tried: list[tuple[int, str]] = []
        for attempt in range(1, _ATTEMPTS + 1):
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._writer()  # (a new one's session may end as it starts)
                if tried:
                    done = await postgres_audit.landed(conn, tried)
                    if done is not None:
                        self._hint.value = done
                        return
                await call(conn, tried)
                return
            except LOST as exc:
                if conn is not None:
                    self._drop(conn)
                if not session_lost(exc) or attempt == _ATTEMPTS:
                    raise

    def check(self) -> None:
        async def probe(conn: asyncpg.Connection, _tried: list[tuple[int, str]]) -> None:
            if await postgres_audit.head(conn) is None:
                raise NoHeadError

        self.run(lambda: self._again_if_lost(probe))

    def sync(self) -> None:
        """Nothing: a batch is durable once its COMMIT returned."""

    def reset(self) -> list[tuple[str, str]]:
        conn, self._conn = self._conn, None
        if conn is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(conn.terminate)
        return []

    def close(self) -> None:
        if not self._thread.is_alive():  # a forked child: the parent's thread is not here
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self.run(conn.close)
            except Exception:
                self._loop.call_soon_threadsafe(conn.terminate)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class NoHeadError(Exception):
    """The chain head row is missing: the chain cannot be extended."""


async def quietly_close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=5)
    except Exception:
        conn.terminate()
