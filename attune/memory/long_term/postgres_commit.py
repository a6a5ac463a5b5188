"""The PostgreSQL store's group commit: one queue per event loop's pool, one transaction
per batch.

Each loop's pool (:class:`LoopPool`) has a queue; :meth:`GroupCommit.submit` puts a write
in it and one drain task runs everything queued in one transaction
(:func:`~.postgres_batch.transaction`: one COMMIT, one WAL flush), then answers every
caller with its own result or error. A batch whose statement failed is run again one
transaction per write, so a failed write fails its own caller only; a failed COMMIT or a
lost connection fails the batch (a COMMIT whose answer was lost may have happened), except
where the audit table settles it: a batch that appended audit lines committed if and only
if its last line is in the table (checked on a new connection, :func:`.postgres_batch.settle`),
so its callers get their results, or it is run again (nothing of it was applied).
The SQLite store's counterpart is :mod:`.sqlite_commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from attune.errors import LongTermUnavailableError
from attune.memory.long_term import batching, postgres_keyring
from attune.memory.long_term.batching import Outcome, Queued
from attune.memory.long_term.postgres_audit_log import TableJournal, table_journal
from attune.memory.long_term.postgres_audit_sink import LOST
from attune.memory.long_term.postgres_batch import (
    STATEMENT_ERRORS,
    Failed,
    NotStored,
    Unsettled,
    settle,
    transaction,
)
from attune.memory.long_term.protocol import InsertOp, WriteOp

_T = TypeVar("_T")

#: Every error of the database or the way to it (what becomes LongTermUnavailableError).
DB_ERRORS = (*STATEMENT_ERRORS, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError)
#: What a write whose connection was lost before anything of it committed is told.
_NOT_STORED = "nothing of it was stored; it is safe to write it again"
#: ... and one whose COMMIT (or lone statement) was under way.
_UNKNOWN = (
    "whether the write was stored is unknown (a COMMIT may have been under way): read it "
    "back before writing it again"
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
        except Exception as exc:  # nothing of the batch was written, or it is unknown
            error: BaseException = exc
            if isinstance(exc, NotStored):
                error = self._lost(exc.cause, stored=False)
            elif isinstance(exc, LOST):
                error = self._lost(exc, stored=None)
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

    def _lost(self, exc: BaseException, *, stored: bool | None) -> LongTermUnavailableError:
        """The error of a write whose connection was lost: ``stored`` False (nothing of it
        committed) or None (unknown)."""
        if isinstance(exc, OSError | TimeoutError) and stored is False:
            what = "cannot connect to"  # a new connection failed: the server is away
        else:
            what = "lost the connection while writing to"
        return self._unavailable(what, exc, _NOT_STORED if stored is False else _UNKNOWN)

    async def _run(
        self, res: LoopPool, ops: list[WriteOp], journal: TableJournal | None
    ) -> list[Outcome]:
        """The batch on a connection of the pool; on another one if the connection was found
        lost before anything of it committed (a session the server ended while it was
        idle in the pool), on up to one more connection than the pool holds (after a
        restart, every pooled one may be dead, and a dead one fails at once). Raises
        :class:`~.postgres_batch.NotStored` if none took it, the lost connection's error
        if its COMMIT was under way."""
        tries = res.pool.get_max_size() + 1
        for attempt in range(1, tries + 1):
            try:
                conn = await res.pool.acquire()
            except (*DB_ERRORS, TimeoutError) as exc:  # no connection: nothing was sent
                raise NotStored(exc) from None
            try:
                return await self._on(res, conn, ops, journal)
            except NotStored:
                _terminate(conn)
                if attempt == tries:
                    raise
            except Unsettled as lost:
                _terminate(conn)
                outcomes = await self._settle(res, lost, journal)
                if outcomes is not None:
                    return outcomes
                if attempt == tries:  # it did not commit: nothing of it was stored
                    raise NotStored(lost.cause) from None
            except LOST:
                _terminate(conn)  # never back into the pool: the next write opens another
                raise
            finally:
                with contextlib.suppress(Exception):
                    await res.pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _settle(
        self, res: LoopPool, lost: Unsettled, journal: TableJournal | None
    ) -> list[Outcome] | None:
        """Whether ``lost`` committed, asked on a new connection (:func:`.postgres_batch.settle`):
        its outcomes, or None (nothing of it was applied). A pooled connection found dead
        is replaced, as for a batch; raises the lost connection's error (unknown) if no
        connection answers."""
        for _attempt in range(res.pool.get_max_size() + 1):
            try:
                conn = await res.pool.acquire()
            except (*DB_ERRORS, TimeoutError):
                break
            try:
                return await settle(conn, lost, journal)
            except DB_ERRORS:
                _terminate(conn)
            finally:
                with contextlib.suppress(Exception):
                    await res.pool.release(conn)
        raise lost.cause

    async def _on(
        self,
        res: LoopPool,
        conn: asyncpg.Connection,
        ops: list[WriteOp],
        journal: TableJournal | None,
    ) -> list[Outcome]:
        """The batch as one transaction; if one of its statements fails, each write again
        in a transaction of its own (the failed one fails its caller alone). A connection
        lost part way through those: the writes committed before keep their outcome, the
        one under way is unknown (or not stored), the rest were never sent."""
        try:
            return await transaction(conn, ops, journal)
        except Failed:
            pass
        outcomes: list[Outcome] = []
        for n, op in enumerate(ops):
            try:
                outcomes += await transaction(conn, [op], journal)
            except Failed as failed:
                error = self._unavailable("cannot write to", failed.cause)
                outcomes.append((None, error))
            except (NotStored, Unsettled, *LOST) as exc:
                if n == 0 and isinstance(exc, NotStored | Unsettled):
                    raise  # nothing of the batch committed, or the table tells
                _terminate(conn)
                cause = exc.cause if isinstance(exc, NotStored | Unsettled) else exc
                this: list[Outcome] = [(None, self._lost(cause, stored=None))]
                if isinstance(exc, NotStored):
                    this = [(None, self._lost(cause, stored=False))]
                elif isinstance(exc, Unsettled):
                    with contextlib.suppress(*DB_ERRORS):
                        done = await self._settle(res, exc, journal)
                        this = done or [(None, self._lost(cause, stored=False))]
                rest = self._lost(cause, stored=False)
                return outcomes + this + [(None, rest)] * (len(ops) - n - 1)
        return outcomes


def _terminate(conn: asyncpg.Connection) -> None:
    """Close a lost connection at once (asyncpg may already have detached it from the
    pool's proxy, which then raises)."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


#: PostgreSQL's SQLSTATE classes whose message names only the server's configuration
#: (connection, authentication, database name): shown in full. Others show their code.
CONFIG_CLASSES = ("08", "28", "3D", "42501", "53", "57")


async def on_connection(db: Any, call: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
    """``call`` on one connection: ``db`` itself (the held reader), or one of the pool's."""
    if not isinstance(db, asyncpg.Pool):
        return await call(db)
    async with db.acquire() as conn:
        return await call(conn)


def usable(conn: Any) -> bool:
    """Whether a held pool connection still has its session: asyncpg closes one the
    server ended (and detaches it from its proxy, whose every method then raises)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # released by the pool when its connection was lost
        return False


def describe(exc: BaseException) -> str:
    """An error as its kind and code: a server message can quote a row's values, so only
    those about the connection and configuration are shown in full."""
    name = type(exc).__name__
    code = getattr(exc, "sqlstate", None)
    if isinstance(exc, OSError | TimeoutError):
        return f"{name}: {exc.strerror or exc}" if isinstance(exc, OSError) else name
    if code is None:
        return name
    if str(code).startswith(CONFIG_CLASSES):
        return f"{name}, SQLSTATE {code}: {exc}"
    return f"{name}, SQLSTATE {code}"
