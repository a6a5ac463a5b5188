"""The SQLite long-term store, over ``aiosqlite``.

One database file under ``storage_dir`` in WAL mode with ``synchronous=FULL``:
a write that returned has been fsynced and survives the process being killed
(or the machine losing power) right after.

Writes go through a *group commit* (:mod:`~attune.memory.long_term.sqlite_commit`):
concurrent writers share one transaction and one fsync.

This module holds the store: its connections (one per event loop), their opening and
closing, and the reads. The rest of the SQLite backend, by job:

* :mod:`~attune.memory.long_term.sqlite_commit`: the group commit (a queue per
  connection, one transaction per batch, new records' search rows riding along);
* :mod:`~attune.memory.long_term.sqlite_schema`: :data:`MIGRATIONS` (which upgrade a
  file in place) and how a record lies in a row;
* :mod:`~attune.memory.long_term.sqlite_batch`: one batch's transaction, run on the
  connection's thread;
* :mod:`~attune.memory.long_term.sqlite_outbox`: the audit outbox's rows;
* :mod:`~attune.memory.long_term.aiosqlite_compat`: every use of aiosqlite's private API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

import aiosqlite

from attune._loop_local import LoopLocal
from attune.errors import ConfigurationError, ErasureNotCompactedError, LongTermUnavailableError
from attune.memory import store_marker
from attune.memory.long_term import (
    aiosqlite_compat,
    sqlite_commit,
    sqlite_outbox,
    sqlite_schema,
    sqlite_search,
)
from attune.memory.long_term.aiosqlite_compat import in_thread
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
from attune.memory.long_term.sqlite_commit import Connection
from attune.memory.long_term.sqlite_outbox import OutboxReplay
from attune.memory.long_term.sqlite_schema import (
    ID_CHUNK,
    MIGRATIONS,
    SCHEMA_VERSION,
    SELECT_ONE,
    to_record,
)

__all__ = [
    "DB_FILENAME",
    "DEFAULT_CACHE_MIB",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "OutboxReplay",
    "SQLiteLongTermStore",
]


_T = TypeVar("_T")

DB_FILENAME = "patterns.db"
#: Page cache per connection, in MiB (SQLite's own default is 2 MiB). Recalls pick records
#: at random: with the default, a store past a few thousand patterns reads most of its
#: leaves back from the OS on every recall. 64 MiB holds about 130,000 patterns; the
#: memory is taken as pages are read, never up front.
DEFAULT_CACHE_MIB = 64


class SQLiteLongTermStore:
    """Long-term patterns in one SQLite file (``<storage_dir>/patterns.db``).

    ``cache_mib``: each connection's page cache (one connection per event loop).
    """

    backend = "sqlite"

    def __init__(
        self,
        storage_dir: Path | str,
        *,
        busy_timeout_s: float = 30.0,
        cache_mib: int = DEFAULT_CACHE_MIB,
        outbox_replay: OutboxReplay | None = None,
    ) -> None:
        if isinstance(cache_mib, bool) or not isinstance(cache_mib, int) or cache_mib < 1:
            raise ConfigurationError(
                f"cache_mib must be a whole number of MiB, at least 1 (got {cache_mib!r})"
            )
        self.path = Path(storage_dir).expanduser() / DB_FILENAME
        self.busy_timeout_s = busy_timeout_s
        self.cache_mib = cache_mib
        self._outbox_replay = outbox_replay
        self._commit = sqlite_commit.GroupCommit(self._unavailable)
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self._conns: LoopLocal[Connection] = LoopLocal(
            self._open, self._close, close_elsewhere=self._close_elsewhere
        )
        self._file = os.path.realpath(self.path)
        with _STORES_LOCK:
            for gone in [file for file, stores in _STORES.items() if not stores]:
                del _STORES[gone]
            _STORES.setdefault(self._file, weakref.WeakSet()).add(self)

    # -- connections -----------------------------------------------------------------------

    async def _open(self) -> Connection:
        # A file missing or empty where a database existed is refused (ConfigurationError,
        # the file untouched) before connecting could create it: never a silent fresh store.
        store_marker.check_database(self.path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = await aiosqlite_compat.connect(self.path, busy_timeout_s=self.busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable("cannot open", exc) from None
        try:
            await self._prepare(db)
            await sqlite_outbox.replay_left_rows(db, self._outbox_replay)
        except (OSError, sqlite3.Error) as exc:
            await db.close()
            raise self._unavailable("cannot prepare", exc) from None
        except BaseException:
            await db.close()
            raise
        return Connection(db, aiosqlite_compat.raw_connection(db), aiosqlite_compat.executor(db))

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        """Pragmas and schema; retried while other connections hold the file's lock.

        Switching a new file to WAL needs an exclusive lock, and SQLite reports a busy
        file there at once instead of waiting for ``busy_timeout``: several agents that
        open a fresh store together would otherwise fail.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                await db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=FULL")
                # Deleted rows are overwritten, so deleting a record's wrapped key shreds it.
                await db.execute("PRAGMA secure_delete=ON")
                await db.execute(f"PRAGMA cache_size=-{self.cache_mib * 1024}")  # KiB
                self.path.chmod(0o600)
                if not self._migrated:
                    await self._migrate(db)
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await sqlite_schema.migrate(db, self.path)
        with self._migrate_lock:
            self._migrated = True

    async def _close(self, conn: Connection) -> None:
        """Close a connection from its own loop: its queued writes and pending search rows
        commit first."""
        if conn.index_timer is not None:
            conn.index_timer.cancel()
            conn.index_timer = None
        await self._commit.flush_index(conn)
        while conn.draining is not None:
            await asyncio.shield(conn.draining)
        await _close_connection(conn)

    @staticmethod
    async def _close_elsewhere(conn: Connection) -> None:
        """Close a connection from another loop than its own (closed, or blocked by the
        caller). aiosqlite's thread runs what it is given in order, so a batch in flight
        commits before the close; writes queued on the other loop after it fail. Its
        pending search rows are written first, on its thread, as a batch of their own."""
        pending = conn.index.take(force=True)
        if pending is not None:
            with contextlib.suppress(sqlite3.Error, LongTermUnavailableError):
                # Lost only if this fails: the backfill indexes those records later.
                await in_thread(conn.db, sqlite_search.write_rows, pending)
        await _close_connection(conn)

    def _unavailable(self, what: str, exc: BaseException) -> LongTermUnavailableError:
        return LongTermUnavailableError(
            f"long-term memory unavailable: {what} {self.path} ({type(exc).__name__}: {exc}); "
            "check ATTUNE_STORAGE_DIR points to a writable local directory"
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
        conn = await self._conns.get()
        result: bool | int | str | bytes = await self._commit.submit(conn, op)
        if isinstance(op, EraseOp):
            assert isinstance(result, int)
            await self._leave_no_trace(conn, result)
        return result

    async def _leave_no_trace(self, conn: Connection, erased: int) -> None:
        """After an erasure: what its deleted rows left in the file goes too (see
        :func:`sqlite_search.compact`). If other connections hold it back, the erasure
        stands (it is committed): :class:`ErasureNotCompactedError` says so."""
        try:
            await in_thread(conn.db, sqlite_search.compact, self.busy_timeout_s)
        except sqlite3.Error as exc:
            raise ErasureNotCompactedError(
                f"the erasure WAS committed ({erased} records deleted, with the user's "
                f"pseudonym secret), but {self.path} could not be compacted ({exc}): its "
                "WAL or search index may still hold the deleted data. Run erase_user again "
                "once other connections' readers (a backup, a sqlite3 shell) have finished; "
                "it completes the cleanup",
                erased,
            ) from None

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        conn = await self._conns.get()
        try:
            return await in_thread(conn.db, _fetch_all, sql, params)
        except sqlite3.Error as exc:
            raise self._unavailable("cannot read", exc) from None

    # -- records ------------------------------------------------------------------------------

    async def get(self, pattern_id: str, now_ms: int) -> PatternRecord | None:
        # Every recall pays for this: one hand-off (aiosqlite's primitive, as in_thread
        # uses it), no coroutine on the way but its own.
        conn = self._conns.current() or await self._conns.get()
        try:
            row = await conn.execute(_select_one, conn.raw, pattern_id, now_ms)
        except sqlite3.Error as exc:
            raise self._unavailable("cannot read", exc) from None
        return None if row is None else to_record(row)

    async def existing(self, pattern_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(pattern_ids), ID_CHUNK):
            chunk = pattern_ids[start : start + ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self._read(
                f"SELECT pattern_id FROM patterns WHERE pattern_id IN ({marks})",  # noqa: S608
                tuple(chunk),
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def wrapped_keys(self, after_id: str, limit: int) -> list[WrappedKey]:
        rows = await self._read(
            "SELECT pattern_id, classification, key_id, wrapped_key FROM patterns "
            "WHERE encrypted = 1 AND pattern_id > ? ORDER BY pattern_id LIMIT ?",
            (after_id, limit),
        )
        return [WrappedKey(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    async def find(self, query: PatternQuery) -> list[Found]:
        await self._index_for(query)
        return await self._on_thread(sqlite_search.find, query)

    async def count(self, query: PatternQuery | None = None) -> int:
        if query is None:
            rows = await self._read("SELECT count(*) FROM patterns", ())
            return int(rows[0][0])
        await self._index_for(query)
        counted: int = await self._on_thread(sqlite_search.count, query)
        return counted

    async def _index_for(self, query: PatternQuery) -> None:
        """A query that uses the search index first writes this loop's pending rows."""
        if query.match is not None or query.facets:
            await self._flush_pending()

    async def _flush_pending(self) -> None:
        """Write the pending search rows of this loop's connections to this file: this
        store's and those of every other store of the same file in the process (two agents'
        memory objects on one loop each have a store), so a search sees every record written
        before it on this loop, whichever object wrote it."""
        await self._commit.flush_index(await self._conns.get())
        with _STORES_LOCK:
            peers = list(_STORES.get(self._file, ()))
        for other in peers:
            conn = other._conns.peek() if other is not self else None
            if conn is not None:
                await other._commit.flush_index(conn)

    async def unindexed(self, after_id: str, limit: int) -> list[PatternRecord]:
        # This loop's pending rows are about to be written, not missing: write them first.
        await self._flush_pending()
        return await self._on_thread(sqlite_search.unindexed, after_id, limit)

    async def subject_secret(self, user_id: str) -> bytes | None:
        rows = await self._read("SELECT secret FROM audit_subjects WHERE user_id = ?", (user_id,))
        return bytes(rows[0][0]) if rows else None

    async def key_ring(self, on_change: Callable[[], None] | None = None) -> StoredRing | None:
        """None: a store of one host keeps no key ring (the key file beside it is the ring)."""
        return None

    async def change_key_ring(self, op: RingOp) -> StoredRing:
        raise ConfigurationError(
            f"the SQLite store {self.path} keeps no key ring: its master keys are in the key "
            "file (or ATTUNE_MASTER_KEY); rotate_keys() adds keys there"
        )

    async def _on_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """A read run as one function on the connection's thread (one hand-off)."""
        conn = await self._conns.get()
        try:
            return await in_thread(conn.db, fn, *args)
        except sqlite3.Error as exc:
            raise self._unavailable("cannot read", exc) from None

    # -- lifecycle ------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": self.backend, "path": str(self.path)}
        try:
            report["patterns"] = await self.count()
        except Exception as exc:  # health never raises
            report.update(available=False, error=str(exc))
        else:
            report.update(available=True, schema_version=SCHEMA_VERSION)
        return report

    async def aclose(self) -> None:
        await self._conns.aclose()


async def _close_connection(conn: Connection) -> None:
    """Settle the outbox, close the connection and wait for its thread to end."""
    try:
        # Only cleanup: the rows' lines are in the log; rows left here are replayed
        # (found, not repeated) by the next open, so a busy file must not fail close.
        # conn.outbox is read on the connection's thread, behind any batch in flight.
        with contextlib.suppress(sqlite3.Error):
            await in_thread(conn.db, sqlite_outbox.settle, conn.outbox)
    finally:
        await aiosqlite_compat.close(conn.db)


def _select_one(db: sqlite3.Connection, pattern_id: str, now_ms: int) -> Any:
    """The live record's row, or None (on the connection's thread)."""
    return db.execute(SELECT_ONE, (pattern_id, now_ms)).fetchone()


def _fetch_all(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Every row of one query (on the connection's thread)."""
    return db.execute(sql, params).fetchall()


#: The stores of each database file open in this process (by real path), so a search
#: through one writes the others' pending search rows first (see ``_flush_pending``).
_STORES: dict[str, weakref.WeakSet[SQLiteLongTermStore]] = {}
_STORES_LOCK = threading.Lock()
