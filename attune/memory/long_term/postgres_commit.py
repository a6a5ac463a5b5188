"""The PostgreSQL store's group commit: one queue per event loop's pool, one transaction
per batch.

Each loop's pool (:class:`LoopPool`) has a queue; :meth:`GroupCommit.submit` puts a write
in it and one drain task runs everything queued in one transaction
(:func:`~.postgres_batch.transaction`: one COMMIT, one WAL flush), then answers every
caller with its own result or error. A batch whose statement failed is run again one
transaction per write, so a failed write fails its own caller only; a failed COMMIT or a
lost connection fails the batch (a COMMIT whose answer was lost may have happened).
The SQLite store's counterpart is :mod:`.sqlite_commit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from attune.errors import LongTermUnavailableError
from attune.memory.long_term import batching, postgres_keyring
from attune.memory.long_term.batching import Outcome, Queued
from attune.memory.long_term.postgres_audit_log import TableJournal, table_journal
from attune.memory.long_term.postgres_batch import STATEMENT_ERRORS, Failed, transaction
from attune.memory.long_term.protocol import InsertOp, WriteOp

#: Every error of the database or the way to it (what becomes LongTermUnavailableError).
DB_ERRORS = (*STATEMENT_ERRORS, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
#: The connection went away mid-write: what the server did with it is unknown.
#: (asyncpg reports a connection the server ended while it was idle as an internal error
#: on its next use: "cannot switch to state ...; another operation is in progress".)
LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

#: ``unavailable(what, exc, hint=None)``: the store's error for a failed database call.
Unavailable = Callable[..., LongTermUnavailableError]


@dataclass
class LoopPool:
    """One asyncpg pool of one event loop, with its group-commit queue."""

    pool: asyncpg.Pool
    queue: list[Queued] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None
    commits: int = 0
    #: The connection sequential reads use (held from the pool; see ``_read``).
    reader: asyncpg.Connection | None = None
    reading: bool = False
    #: The session that hears key ring changes (opened on the first watched read).
    ring_listener: postgres_keyring.Listener = field(default_factory=postgres_keyring.Listener)


class GroupCommit:
    """The group commit of one store's pools (``dsn``: whose audit table is a journal);
    ``unavailable`` makes its errors."""

    def __init__(self, dsn: str, unavailable: Unavailable) -> None:
        self._dsn = dsn
        self._unavailable = unavailable

    async def submit(self, res: LoopPool, op: WriteOp) -> Any:
        """Queue ``op`` on ``res`` for the next batch; its result once durable."""
        return await batching.enqueue(res, op, self._commit_batch)

    async def _commit_batch(self, res: LoopPool, batch: list[Queued]) -> None:
        live = batching.runnable(res, batch)
        if not live:
            return
        ops = [op for op, _fut in live]
        journal = table_journal(ops, self._dsn)
        try:
            outcomes = await self._run(res, ops, journal)
        except Exception as exc:  # nothing of the batch was written
            error: BaseException = exc
            if isinstance(exc, LOST):
                error = self._unavailable(
                    "lost the connection while writing to",
                    exc,
                    "whether the write was stored is unknown (a COMMIT may have been under "
                    "way): read it back before writing it again",
                )
            elif isinstance(exc, DB_ERRORS):
                error = self._unavailable("cannot commit to", exc, "nothing of it was stored")
            for _op, fut in live:
                if not fut.done():
                    fut.set_exception(error)
            return
        res.commits += 1
        audited = [
            i
            for i, op in enumerate(ops)
            if isinstance(op, InsertOp) and op.audit is not None and outcomes[i] == (True, None)
        ]
        if audited and journal is not None:  # committed with their records: mirror them
            journal.kept([ops[i] for i in audited])
        elif audited:
            await batching.append_events(ops, audited, outcomes)
        batching.answer(live, outcomes)

    async def _run(
        self, res: LoopPool, ops: list[WriteOp], journal: TableJournal | None
    ) -> list[Outcome]:
        """The batch as one transaction; if one of its statements fails, each write again
        in a transaction of its own (the failed one fails its caller alone)."""
        async with res.pool.acquire() as conn:
            try:
                try:
                    return await transaction(conn, ops, journal)
                except Failed:
                    pass
                outcomes: list[Outcome] = []
                for op in ops:
                    try:
                        outcomes += await transaction(conn, [op], journal)
                    except Failed as failed:
                        error = self._unavailable("cannot write to", failed.cause)
                        outcomes.append((None, error))
                return outcomes
            except LOST:
                conn.terminate()  # never back into the pool: the next write opens another
                raise
