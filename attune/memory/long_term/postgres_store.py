"""The PostgreSQL long-term store, over ``asyncpg`` (``pip install 'attune[postgres]'``).

One connection pool per event loop (:class:`~attune._loop_local.LoopLocal`, as the
SQLite store keeps one connection per loop): asyncpg's connections are bound to the loop
that opened them, and the blocking facade drives one loop per thread. Nothing here
blocks a loop: every statement is awaited.

Writes go through a *group commit* (:mod:`.postgres_commit`): each loop's pool has a
queue, and one drain task runs everything queued in one transaction (one COMMIT, one WAL
flush), then answers every caller. Consecutive inserts are one ``INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO NOTHING RETURNING``: a duplicate id is False for its caller
only. A statement that fails aborts a PostgreSQL transaction, so a batch whose statement
failed is rolled back and its writes are run again one transaction each: a failed write
fails its own caller only. A failed COMMIT (or a lost connection) fails the batch:
nothing of it is retried, since a COMMIT whose answer was lost may have happened.

Audit events: when an :class:`~attune.memory.long_term.protocol.InsertOp`'s journal is
this database's audit table (:class:`~.postgres_audit_log.TableJournal`, what the
pipeline uses with ``ATTUNE_DATABASE_URL``), its event is inserted in the batch's own
transaction, last (:mod:`.postgres_audit`): no second write, and never a record without
its event or an event without its record. Another journal (a log file) gets the events
of the committed records by an awaited ``append`` right after the COMMIT, before the
callers are answered (one call per batch and journal); if that fails, the records are
stored and their callers are told so (:func:`~.batching.committed_error`).

The rest of the PostgreSQL backend, by job: :mod:`.postgres_commit` (the queue and its
drain), :mod:`.postgres_batch` (one batch's transaction), :mod:`.postgres_search`
(search columns, written in the insert's statement, no deferral as in SQLite; find and
count), :mod:`.postgres_schema` (migrations, applied on first use; how a record lies in
a row).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import asyncpg

from attune._loop_local import LoopLocal
from attune.errors import AttuneError, ConfigurationError, LongTermUnavailableError
from attune.memory.long_term import (
    batching,
    postgres_commit,
    postgres_keyring,
    postgres_schema,
    postgres_search,
)
from attune.memory.long_term.postgres_audit_sink import never_sent, session_lost
from attune.memory.long_term.postgres_commit import (
    DB_ERRORS,
    LoopPool,
    describe,
    on_connection,
    usable,
)
from attune.memory.long_term.postgres_schema import (
    SCHEMA_VERSION,
    SELECT_ONE,
    to_record,
)
from attune.memory.long_term.protocol import (
    WRITE_OPS,
    DeleteOp,
    EraseOp,
    IndexOp,
    InsertOp,
    MetaOp,
    PatternRecord,
    PurgeOp,
    RewrapOp,
    RingOp,
    StoredRing,
    SubjectOp,
    WrappedKey,
    WriteOp,
)
from attune.memory.long_term.queries import Found, PatternQuery
from attune.memory.service_urls import redact_url

__all__ = ["SCHEMA_VERSION", "PostgresLongTermStore"]

_T = TypeVar("_T")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pooled connection's reset on release: nothing to send. The store leaves no session
    state behind (no SET, LISTEN, cursor or prepared name of its own; the erasure clean-up
    unlocks its advisory lock before release) and asyncpg still rolls back a transaction
    left open, so asyncpg's default reset query is one round trip per read for nothing
    (recall 0.54x -> see docs/performance.md, PostgreSQL)."""


class PostgresLongTermStore:
    """Long-term patterns in a PostgreSQL database (``dsn``: ``postgresql://...``).

    ``pool_size``: connections per event loop at most (writes of one loop share one
    transaction at a time; reads take the others).
    """

    backend = "postgres"

    def __init__(self, dsn: str, *, pool_size: int = 4, connect_timeout_s: float = 10.0) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                "a PostgreSQL URL starts with postgresql:// or postgres:// "
                "(for example postgresql://attune@localhost:5432/attune)"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigurationError(
                f"pool_size must be a whole number, at least 1 (got {pool_size!r})"
            )
        self._dsn = dsn
        self.url = redact_url(dsn)
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._migrated = False
        # asyncpg's connections belong to their loop: another loop's pool is closed by
        # that loop (LoopLocal hands it over; an idle facade thread's loop is run to close
        # it); a loop closed without releasing it leaves its sockets to be collected.
        self._pools: LoopLocal[LoopPool] = LoopLocal(self._open, self._close)
        self._commit = postgres_commit.GroupCommit(dsn, self._unavailable)

    def __repr__(self) -> str:
        return f"PostgresLongTermStore({self.url!r})"

    # -- connections -----------------------------------------------------------------------

    async def _open(self) -> LoopPool:
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout_s,
                command_timeout=None,
                reset=_keep_session,
            )
        except ValueError as exc:  # a DSN asyncpg cannot parse (ClientConfigurationError)
            raise ConfigurationError(
                f"the PostgreSQL URL {self.url} is not valid ({type(exc).__name__}); "
                "check ATTUNE_DATABASE_URL"
            ) from None
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._unavailable("cannot connect to", exc) from None
        try:
            if not self._migrated:
                async with pool.acquire() as conn:
                    await postgres_schema.migrate(conn)
                self._migrated = True
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, DB_ERRORS) and not isinstance(exc, AttuneError):
                raise self._unavailable("cannot prepare", exc) from None
            raise
        return LoopPool(pool)

    async def _close(self, res: LoopPool) -> None:
        """Close a loop's pool from that loop: queued writes commit first."""
        while res.draining is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(res.draining)
        if res.reader is not None:
            reader, res.reader = res.reader, None
            with contextlib.suppress(Exception):
                await res.pool.release(reader)
        with contextlib.suppress(*DB_ERRORS):
            await res.ring_listener.close()
        await res.pool.close()

    def _unavailable(
        self, what: str, exc: BaseException, hint: str | None = None
    ) -> LongTermUnavailableError:
        if hint is None and isinstance(exc, asyncpg.QueryCanceledError):
            hint = (
                "the server cancelled the statement (its statement_timeout, or an "
                "administrator) and applied nothing of it; raise statement_timeout for "
                "attune's role or database, then retry"
            )
        elif hint is None:
            hint = (
                "check ATTUNE_DATABASE_URL names a reachable server and a database this "
                "user may create tables in"
            )
        return LongTermUnavailableError(
            f"long-term memory unavailable: {what} PostgreSQL at {self.url} "
            f"({describe(exc)}); {hint}"
        )

    # -- group commit ------------------------------------------------------------------------

    @overload
    async def write(self, op: InsertOp | DeleteOp) -> bool: ...

    @overload
    async def write(self, op: IndexOp | PurgeOp | RewrapOp | EraseOp) -> int: ...

    @overload
    async def write(self, op: MetaOp) -> str: ...

    @overload
    async def write(self, op: SubjectOp) -> bytes: ...

    async def write(self, op: WriteOp) -> bool | int | str | bytes:
        """Queue ``op`` for the next group commit and return its result once durable."""
        if not isinstance(op, WRITE_OPS):
            raise TypeError(f"not a long-term write: {type(op).__name__}")
        if isinstance(op, InsertOp) and callable(op.index):
            # Made now, by the caller: the INSERT itself carries the search columns.
            op = dataclasses.replace(op, index=batching.search_entry(op))
        res = await self._pools.get()
        result: bool | int | str | bytes = await self._commit.submit(res, op)
        if isinstance(op, EraseOp):
            await self._vacuum(res)
        return result

    async def _vacuum(self, res: LoopPool) -> None:
        """After an erasure, outside any transaction: VACUUM the tables it deleted from,
        which removes the dead rows and their index entries from the files' pages, and
        rebuild the search indexes (GIN never drops a key once in its entry tree: an
        erased record's words would stay in ``patterns_words`` otherwise). Runs once
        the rows are deleted and committed; what PostgreSQL still holds after it (WAL,
        unlinked files, backups) is in docs/security.md, section 9."""
        try:
            async with res.pool.acquire() as conn:
                # Two sessions rebuilding one table's indexes at once deadlock: one clean-up
                # at a time, across processes (a session lock: no transaction is open). Not
                # waited for inside pg_advisory_lock: REINDEX CONCURRENTLY waits for every
                # statement in progress, so a session blocked there would deadlock with it.
                delay = 0.01
                while not await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", postgres_schema.ERASURE_LOCK
                ):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                try:
                    for name in await conn.fetch(postgres_schema.LEFTOVER_INDEXES):
                        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name[0]}")
                    for statement in postgres_schema.AFTER_ERASURE:
                        await conn.execute(statement)
                finally:
                    await conn.execute(
                        "SELECT pg_advisory_unlock($1)", postgres_schema.ERASURE_LOCK
                    )
        except DB_ERRORS as exc:
            raise self._unavailable(
                "cannot clean up after an erasure in",
                exc,
                "the records ARE erased; erase the user again to retry the VACUUM and REINDEX",
            ) from None

    # -- reads ---------------------------------------------------------------------------------

    async def _read(
        self,
        call: Callable[[Any], Awaitable[_T]],
        what: str = "cannot read",
        *,
        writes: bool = False,
    ) -> _T:
        """``call`` on the loop's reading connection when no other read holds it, else on
        the pool (see :meth:`_read_once`). A connection found lost (its session ended by
        the server: a restart, a failover, ``pg_terminate_backend``) is replaced and
        ``call`` run again on the next, up to one more than the pool holds: a read is
        safe to repeat. A call that ``writes`` is run again only if nothing of it was
        sent; otherwise its error says whether it may have been applied."""
        res = self._pools.current() or await self._pools.get()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._read_once(res, call)
            except DB_ERRORS as exc:
                lost = session_lost(exc)
                again = never_sent(exc) or (lost and not writes)
                if again and attempt <= self.pool_size:
                    continue
                hint = None
                if writes and lost and not never_sent(exc):
                    hint = (
                        "whether the change was made is unknown: read it back before trying again"
                    )
                raise self._unavailable(what, exc, hint) from None

    async def _read_once(self, res: LoopPool, call: Callable[[Any], Awaitable[_T]]) -> _T:
        """Sequential reads (a recall after a recall) share one held connection, skipping
        the pool's acquire and release (about 60 µs of a 230 µs read: docs/performance.md,
        PostgreSQL); a read while it is busy takes the pool. A pool of one connection
        holds none: writes would wait for it forever."""
        if res.reading or self.pool_size < 2:  # never hold a pool's only connection
            return await call(res.pool)
        res.reading = True
        try:
            if res.reader is not None and not usable(res.reader):
                # Its session ended while it was held (a server restart, a failover,
                # idle_session_timeout): not this read's failure; it takes a live one.
                stale, res.reader = res.reader, None
                with contextlib.suppress(Exception):
                    await res.pool.release(stale)
            if res.reader is None:
                res.reader = await res.pool.acquire()
            conn = res.reader
            try:
                return await call(conn)
            except BaseException:  # a lost or cancelled query: the pool judges it
                res.reader = None
                with contextlib.suppress(Exception):
                    await res.pool.release(conn)
                raise
        finally:
            res.reading = False

    async def get(self, pattern_id: str, now_ms: int) -> PatternRecord | None:
        row = await self._read(lambda db: db.fetchrow(SELECT_ONE, pattern_id, now_ms))
        return None if row is None else to_record(row)

    async def existing(self, pattern_ids: list[str]) -> set[str]:
        rows = await self._read(
            lambda db: db.fetch(
                "SELECT pattern_id FROM patterns WHERE pattern_id = ANY($1::text[])",
                list(pattern_ids),
            )
        )
        return {str(r[0]) for r in rows}

    async def wrapped_keys(self, after_id: str, limit: int) -> list[WrappedKey]:
        rows = await self._read(
            lambda db: db.fetch(
                "SELECT pattern_id, classification, key_id, wrapped_key FROM patterns "
                "WHERE encrypted AND pattern_id > $1 ORDER BY pattern_id LIMIT $2",
                after_id,
                limit,
            )
        )
        return [WrappedKey(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    async def find(self, query: PatternQuery) -> list[Found]:
        if query.match is not None and query.match.is_empty:
            return []
        built = postgres_search.find_sql(query)
        if built is None:
            return []
        sql, args = built
        rows = await self._read(lambda db: db.fetch(sql, *args))
        return [
            Found(to_record(row), None if row["score"] is None else float(row["score"]))
            for row in rows
        ]

    async def count(self, query: PatternQuery | None = None) -> int:
        args: list[Any]
        if query is None:
            sql, args = "SELECT count(*) FROM patterns", []
        else:
            if query.match is not None and query.match.is_empty:
                return 0
            built = postgres_search.count_sql(query)
            if built is None:
                return 0
            sql, args = built
        value = await self._read(lambda db: db.fetchval(sql, *args))
        return int(value)

    async def unindexed(self, after_id: str, limit: int) -> list[PatternRecord]:
        rows = await self._read(
            lambda db: db.fetch(
                f"SELECT {postgres_schema.RECORD} FROM patterns p "  # noqa: S608
                "WHERE NOT p.indexed AND p.pattern_id > $1 ORDER BY p.pattern_id LIMIT $2",
                after_id,
                limit,
            )
        )
        return [to_record(row) for row in rows]

    async def subject_secret(self, user_id: str) -> bytes | None:
        value = await self._read(
            lambda db: db.fetchval("SELECT secret FROM audit_subjects WHERE user_id = $1", user_id)
        )
        return None if value is None else bytes(value)

    # -- the key ring of every host (postgres_keyring) ------------------------------------------

    async def key_ring(self, on_change: Callable[[], None] | None = None) -> StoredRing:
        """The ring in the database (``root_key_id`` None until the first process with a
        master key creates it). With ``on_change``: called after any process changes it
        (LISTEN/NOTIFY, one session per event loop) or when that session ends. A session
        that cannot listen is logged and done without: the core still reads the ring again
        when a record names a key it lacks, and the next such read tries to listen again."""
        res = self._pools.current() or await self._pools.get()
        if on_change is not None:  # listening first: a change right after the read is heard
            await res.ring_listener.watch(on_change, self._dsn, self.connect_timeout_s)
        return await self._read(
            lambda db: on_connection(db, postgres_keyring.read), "cannot read the key ring in"
        )

    async def change_key_ring(self, op: RingOp) -> StoredRing:
        """Apply ``op`` (see :mod:`.postgres_keyring`); the ring as stored afterwards."""
        return await self._read(
            lambda db: on_connection(db, lambda conn: postgres_keyring.change(conn, op)),
            "cannot change the key ring in",
            writes=True,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": self.backend, "url": self.url}
        try:
            report["patterns"] = await self.count()
        except Exception as exc:  # health never raises
            report.update(available=False, error=str(exc))
        else:
            report.update(available=True, schema_version=SCHEMA_VERSION)
        return report

    async def aclose(self) -> None:
        await self._pools.aclose()
