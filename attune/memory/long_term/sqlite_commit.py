"""The SQLite store's group commit: one queue per connection, one transaction per batch.

Each connection (one per event loop) has a queue; :meth:`GroupCommit.submit` puts a write
in it and one drain task commits everything queued in one transaction on the connection's
thread (:func:`~.sqlite_batch.run_batch`: one fsync), then answers every caller with its
own result or error. Concurrent writers therefore share the cost of a commit, and writers
on one connection never see each other's transactions. New records' search rows wait in
the connection's :class:`~.sqlite_search.PendingIndex` and ride along with a later batch
(at most :data:`~.sqlite_search.FLUSH_S` later, or before a search).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from attune.memory.long_term import aiosqlite_compat, batching, sqlite_batch, sqlite_search
from attune.memory.long_term.batching import Queued
from attune.memory.long_term.protocol import IndexOp, InsertOp, WriteOp
from attune.memory.long_term.queries import SearchEntry
from attune.memory.long_term.sqlite_batch import Unavailable
from attune.memory.long_term.sqlite_outbox import Pending

#: A queued write that only asks for the pending search rows to be written.
_FLUSH: Any = IndexOp(())


@dataclass
class Connection:
    """One aiosqlite connection of one event loop, with its group-commit queue."""

    db: aiosqlite.Connection
    #: Its sqlite3 connection, used only on ``db``'s thread (:func:`aiosqlite_compat.in_thread`).
    raw: sqlite3.Connection
    #: ``db``'s one-hop primitive (:func:`aiosqlite_compat.executor`), for the recall path.
    execute: aiosqlite_compat.Executor
    queue: list[Queued] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None
    commits: int = 0
    #: This connection's outbox rows not yet known durable in their journal (read and
    #: changed on its thread only).
    outbox: Pending = field(default_factory=list)
    #: New records' search rows, written by a later transaction (on the event loop).
    index: sqlite_search.PendingIndex = field(default_factory=sqlite_search.PendingIndex)
    index_timer: asyncio.TimerHandle | None = None


class GroupCommit:
    """The group commit of one store's connections; ``unavailable`` makes its errors."""

    def __init__(self, unavailable: Unavailable) -> None:
        self._unavailable = unavailable
        self._index_tasks: set[asyncio.Task[None]] = set()

    async def submit(self, conn: Connection, op: WriteOp) -> Any:
        """Queue ``op`` on ``conn`` for the next batch; its result once durable."""
        return await batching.enqueue(conn, op, self._commit_batch)

    async def _commit_batch(self, conn: Connection, batch: list[Queued]) -> None:
        """Run a batch in one transaction (one fsync) and answer every caller.

        The whole transaction is one hand-off to the connection's thread (not one per
        statement): each hand-off costs two thread wake-ups, as much as a statement.
        """
        batch = batching.runnable(conn, batch)  # the rest: their own transaction, next
        flushes = [fut for op, fut in batch if op is _FLUSH]
        indexing = conn.index.take(force=bool(flushes))
        live = [item for item in batch if item[0] is not _FLUSH]
        try:
            await self._run_batch(conn, batch, live, indexing)
        finally:
            for fut in flushes:
                if not fut.done():
                    fut.set_result(None)

    async def _run_batch(
        self,
        conn: Connection,
        batch: list[Queued],
        live: list[Queued],
        indexing: IndexOp | None,
    ) -> None:
        if not live and indexing is None:
            return
        if indexing is not None:  # earlier records' search rows ride along
            flushed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            live.append((indexing, flushed))
        try:
            committing = aiosqlite_compat.start(
                conn.db,
                sqlite_batch.run_batch,
                conn.outbox,
                [op for op, _fut in live],
                self._unavailable,
            )
            # The new records' search entries (terms, an encrypted record's tokens) are
            # made while the thread commits (an fsync): they are only needed after the
            # COMMIT (docs/performance.md: 64 SENSITIVE callers 1.11x).
            entries = [_entry(op) for op, _fut in live]
            outcomes, after = await committing
        except Exception as exc:  # rolled back: nothing of the batch was written
            error: BaseException = exc
            if isinstance(exc, sqlite3.Error | OSError):
                error = self._unavailable("cannot commit to", exc)
            if indexing is not None:
                conn.index.restore(indexing)
            for _op, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            return
        conn.commits += 1
        if indexing is not None:
            if outcomes[-1][1] is not None:  # that statement failed alone: pending again
                conn.index.restore(indexing)
            live, outcomes, entries = live[:-1], outcomes[:-1], entries[:-1]
        for (result, _error), entry in zip(outcomes, entries, strict=True):
            if result is True and entry is not None:
                conn.index.add(*entry)
        self._schedule_index(conn)
        if after:  # events whose journal keeps no outbox: appended now, awaited
            await batching.append_events([op for op, _fut in live], after, outcomes)
        batching.answer(live, outcomes)

    def _schedule_index(self, conn: Connection) -> None:
        """Write pending search rows a flush interval from now if no write takes them (a
        timer of rows written meanwhile is dropped)."""
        if not conn.index.entries and conn.index_timer is not None:
            conn.index_timer.cancel()
            conn.index_timer = None
        if conn.index.entries and conn.index_timer is None:
            loop = asyncio.get_running_loop()
            conn.index_timer = loop.call_later(sqlite_search.FLUSH_S, self._index_due, conn, loop)

    def _index_due(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        conn.index_timer = None
        if conn.index.entries:
            task = loop.create_task(self.flush_index(conn))
            self._index_tasks.add(task)
            task.add_done_callback(self._index_tasks.discard)

    async def flush_index(self, conn: Connection) -> None:
        """Write this connection's pending search rows now (a search reads them next)."""
        if not conn.index.entries:
            return
        fut = batching.enqueue(conn, _FLUSH, self._commit_batch)
        with contextlib.suppress(Exception):  # the rows stay pending; the next write retries
            await fut


def _entry(op: WriteOp) -> tuple[str, SearchEntry] | None:
    """(id, search entry) of a new record, or None (see :func:`.batching.search_entry`)."""
    if not isinstance(op, InsertOp) or op.index is None:
        return None
    entry = batching.search_entry(op)
    return None if entry is None else (op.record.pattern_id, entry)
