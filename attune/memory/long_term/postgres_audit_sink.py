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

__all__ = ["HeadHint", "NoHeadError", "TableSink", "quietly_close"]

_T = TypeVar("_T")


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

    def commit(self, entries: list[tuple[str, str]], fsync: bool) -> None:
        if not entries:  # a flush with nothing queued
            return

        async def write() -> None:
            conn = await self._writer()
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
            self._hint.value = await postgres_audit.append_alone(conn, entries, self._hint.value)

        self.run(write)

    def check(self) -> None:
        async def probe() -> None:
            conn = await self._writer()
            if await postgres_audit.head(conn) is None:
                raise NoHeadError

        self.run(probe)

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
