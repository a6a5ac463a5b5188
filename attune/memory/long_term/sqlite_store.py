"""The SQLite long-term store, over ``aiosqlite``.

One database file under ``storage_dir`` in WAL mode with ``synchronous=FULL``:
a write that returned has been fsynced and survives the process being killed
(or the machine losing power) right after.

Writes go through a *group commit*: each connection has a queue, and one
drain task commits everything queued in one transaction (one fsync), then
answers every caller. Concurrent writers therefore share the cost of a commit,
and writers on one connection never see each other's transactions.

The schema carries a version table; :data:`MIGRATIONS` upgrades a file in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from attune._loop_local import LoopLocal
from attune.errors import (
    AuditLogError,
    ConfigurationError,
    CorruptRecordError,
    LongTermUnavailableError,
)
from attune.memory import store_marker
from attune.memory.long_term import aiosqlite_compat
from attune.memory.long_term.aiosqlite_compat import in_thread
from attune.memory.long_term.protocol import (
    CommitHook,
    JournalWrite,
    OutboxHook,
    PatternRecord,
    WrappedKey,
)

T = TypeVar("T")

DB_FILENAME = "patterns.db"
#: Page cache per connection, in MiB (SQLite's own default is 2 MiB). Recalls pick records
#: at random: with the default, a store past a few thousand patterns reads most of its
#: leaves back from the OS on every recall. 64 MiB holds about 130,000 patterns; the
#: memory is taken as pages are read, never up front.
DEFAULT_CACHE_MIB = 64

#: version -> statements that bring the schema from version-1 to version.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE patterns (
            pattern_id     TEXT PRIMARY KEY,
            pattern_type   TEXT NOT NULL,
            classification TEXT NOT NULL,
            created_by     TEXT NOT NULL,
            created_at_ms  INTEGER NOT NULL,
            expires_at_ms  INTEGER,
            metadata       TEXT NOT NULL,
            content        BLOB NOT NULL,
            encrypted      INTEGER NOT NULL DEFAULT 0,
            key_id         TEXT,
            wrapped_key    BLOB,
            nonce          BLOB
        ) WITHOUT ROWID
        """,
        "CREATE INDEX patterns_expiry ON patterns (expires_at_ms) WHERE expires_at_ms IS NOT NULL",
    ),
    2: (
        # Audit lines committed with the records they describe (see OutboxHook); a row
        # lives until the audit log has fsynced its lines. Ids are random 63-bit numbers,
        # never max+1: a deleted id is not handed to a later writer, so deleting "my
        # delivered rows" cannot hit someone else's (and no sqlite_sequence page to write).
        """
        CREATE TABLE audit_outbox (
            id      INTEGER PRIMARY KEY,
            payload TEXT NOT NULL
        )
        """,
    ),
    3: (
        # How each record was laid out and sealed (attune.memory.types.RECORD_FORMAT):
        # rows written before this column existed are format 1, whose ciphertext does not
        # authenticate the format; new rows bind it (and the encrypted flag) into theirs.
        "ALTER TABLE patterns ADD COLUMN format INTEGER NOT NULL DEFAULT 1",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

#: The ``patterns`` column of each :class:`PatternRecord` field whose name differs.
_COLUMN_OF = {"metadata_json": "metadata", "record_format": "format"}
#: The record's fields as columns, in the record's order: rows selected with them are
#: records field by field (:func:`_to_record`), and :func:`_params` binds them.
_COLUMNS = ", ".join(_COLUMN_OF.get(name, name) for name in PatternRecord._fields)

WriteOp = Callable[[sqlite3.Connection], Any]
#: What a writer queues: a record to insert (batched with its neighbours into one
#: ``executemany``), or any other write as a function of the connection. Either runs
#: on the connection's thread, inside the batch's transaction.
Queued = tuple["_Insert | WriteOp", "asyncio.Future[Any]"]
#: A queued write's outcome: its result, or the error that failed it alone.
Outcome = tuple[Any, BaseException | None]
_INSERT = (
    f"INSERT INTO patterns ({_COLUMNS}) "  # noqa: S608 (constant columns)
    f"VALUES ({','.join('?' * len(PatternRecord._fields))})"
)
_INSERT_CHUNK = 500  # ids per "already there?" query (SQLite caps bound parameters)
#: Replays an outbox's payloads into their journals (default: the audit log's replay).
OutboxReplay = Callable[[list[str]], None]


@dataclass(frozen=True, slots=True)
class _Insert:
    """A queued insert and what to run once its transaction committed."""

    record: PatternRecord
    on_commit: CommitHook | None = None


@dataclass
class _Connection:
    """One aiosqlite connection of one event loop, with its group-commit queue."""

    db: aiosqlite.Connection
    #: Its sqlite3 connection, used only on ``db``'s thread (see :func:`in_thread`).
    raw: sqlite3.Connection
    #: ``db``'s one-hop primitive (:func:`aiosqlite_compat.executor`), for the recall path.
    execute: aiosqlite_compat.Executor
    queue: list[Queued] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None
    commits: int = 0
    #: This connection's outbox rows (id) not yet known durable in their journal.
    outbox: list[tuple[JournalWrite, int]] = field(default_factory=list)


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
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self._conns: LoopLocal[_Connection] = LoopLocal(
            self._checked_open, self._close, close_elsewhere=self._close_elsewhere
        )

    # -- connections -----------------------------------------------------------------------

    async def _checked_open(self) -> _Connection:
        """:meth:`_open`, unless the file is missing or empty where a database existed
        (:class:`ConfigurationError`, the file untouched): never a silent fresh store."""
        store_marker.check_database(self.path)
        return await self._open()

    async def _open(self) -> _Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = await aiosqlite_compat.connect(self.path, busy_timeout_s=self.busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable("cannot open", exc) from None
        try:
            await self._prepare(db)
            await self._replay_outbox(db)
        except (OSError, sqlite3.Error) as exc:
            await db.close()
            raise self._unavailable("cannot prepare", exc) from None
        except BaseException:
            await db.close()
            raise
        return _Connection(db, aiosqlite_compat.raw_connection(db), aiosqlite_compat.executor(db))

    async def _replay_outbox(self, db: aiosqlite.Connection) -> None:
        """Rows left by a writer that died (or lost its journal's unsynced tail): replay
        them into their journal, then delete them. Rows of live writers replay harmlessly
        (their lines are found, not repeated)."""
        rows = list(await db.execute_fetchall("SELECT id, payload FROM audit_outbox ORDER BY id"))
        if not rows:
            return
        replay = self._outbox_replay or _audit_replay()
        payloads = [str(row[1]) for row in rows]
        await in_thread(db, lambda _db: replay(payloads))
        await in_thread(db, _delete_outbox_rows, [int(row[0]) for row in rows])

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
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = list(await db.execute_fetchall("SELECT version FROM schema_version"))
            current = int(rows[0][0]) if rows else 0
            if not rows:  # a new database: not where the directory says one existed
                store_marker.refuse_schemaless_database(self.path)
            if current > SCHEMA_VERSION:
                raise LongTermUnavailableError(
                    f"{self.path} has schema version {current}, newer than this attune "
                    f"understands ({SCHEMA_VERSION}); upgrade attune"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    await _apply(db, statement)
            if not rows:
                await db.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                )
            elif current != SCHEMA_VERSION:
                await db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        store_marker.note(self.path.parent, long_term=True)
        with self._migrate_lock:
            self._migrated = True

    @staticmethod
    async def _close(conn: _Connection) -> None:
        """Close a connection from its own loop: its queued writes commit first."""
        while conn.draining is not None:
            await asyncio.shield(conn.draining)
        await _close_connection(conn)

    @staticmethod
    async def _close_elsewhere(conn: _Connection) -> None:
        """Close a connection from another loop than its own (closed, or blocked by the
        caller). aiosqlite's thread runs what it is given in order, so a batch in flight
        commits before the close; writes queued on the other loop after it fail."""
        await _close_connection(conn)

    def _unavailable(self, what: str, exc: BaseException) -> LongTermUnavailableError:
        return LongTermUnavailableError(
            f"long-term memory unavailable: {what} {self.path} ({type(exc).__name__}: {exc}); "
            "check ATTUNE_STORAGE_DIR points to a writable local directory"
        )

    # -- group commit ------------------------------------------------------------------------

    async def _write(self, op: _Insert | WriteOp) -> Any:
        conn = await self._conns.get()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.queue.append((op, fut))
        if conn.draining is None:
            conn.draining = asyncio.create_task(self._drain(conn))
        return await fut

    async def _drain(self, conn: _Connection) -> None:
        try:
            while conn.queue:
                while conn.queue:
                    batch, conn.queue = conn.queue, []
                    await self._commit_batch(conn, batch)
                # Callers just answered often write again at once (a sequential writer
                # does): one more loop iteration takes those into this same task instead
                # of ending it and starting a new one per write.
                await asyncio.sleep(0)
        finally:
            conn.draining = None

    async def _commit_batch(self, conn: _Connection, batch: list[Queued]) -> None:
        """Run a batch in one transaction (one fsync) and answer every caller.

        The whole transaction is one hand-off to the connection's thread (not one per
        statement): each hand-off costs two thread wake-ups, as much as a statement.
        """
        live = [item for item in batch if not item[1].cancelled()]  # gave up before it ran
        live, later = _one_journal(live)
        if later:  # their own transaction, right after this one (see _one_journal)
            conn.queue[:0] = later
            batch = live
        try:
            outcomes = await in_thread(conn.db, self._run_batch, conn, [op for op, _fut in live])
        except Exception as exc:  # rolled back: nothing of the batch was written
            error: BaseException = exc
            if isinstance(exc, sqlite3.Error | OSError):
                error = self._unavailable("cannot commit to", exc)
            for _op, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            return
        conn.commits += 1
        for (_op, fut), (result, exc2) in zip(live, outcomes, strict=True):
            if fut.done():
                continue
            if exc2 is None:
                fut.set_result(result)
            else:
                fut.set_exception(exc2)

    def _run_batch(
        self, db: sqlite3.Connection, conn: _Connection, ops: list[_Insert | WriteOp]
    ) -> list[Outcome]:
        """The batch's transaction, on the connection's thread.

        Consecutive inserts go to SQLite as one ``executemany``; other writes run one by
        one, in queue order. A failed statement fails its own callers; a failed commit
        fails the whole batch (nothing of it was written), raised from here. New records'
        audit events go into the outbox in the same transaction (one fsync for both).
        """
        outcomes: list[Outcome] = []
        write: JournalWrite | None = None
        journaled: set[int] = set()
        row: int | None = None
        try:
            db.execute("BEGIN IMMEDIATE")
            delivered = _delete_delivered(db, conn.outbox)
            start = 0
            while start < len(ops):
                end = start
                while end < len(ops) and isinstance(ops[end], _Insert):
                    end += 1
                if end > start:
                    run = [op.record for op in ops[start:end] if isinstance(op, _Insert)]
                    outcomes += self._insert_run(db, run)
                    start = end
                    continue
                op = ops[start]
                assert not isinstance(op, _Insert)
                try:
                    outcomes.append((op(db), None))
                except sqlite3.Error as exc:
                    if not db.in_transaction:
                        raise
                    outcomes.append((None, self._unavailable("cannot write to", exc)))
                start += 1
            write, journaled, refusal = _begin_journal(ops, outcomes)
            if refusal is not None:
                # The journal cannot take their events (the audit log is garbled or cannot
                # be written): their records are taken out again before COMMIT, so nothing
                # of those writes is stored, and their callers hear the journal's error.
                error, refused = refusal
                ids = {_inserted_id(ops[i]) for i in refused}
                _delete_records(db, sorted(ids))
                for i, op in enumerate(ops):
                    # A later insert of one of those ids lost to it inside this transaction
                    # ("exists"): it is refused too, or a promotion told its pattern was
                    # promoted already would drop the staged entry.
                    duplicate = isinstance(op, _Insert) and op.record.pattern_id in ids
                    if i in refused or (duplicate and outcomes[i] == (False, None)):
                        outcomes[i] = (None, error)
            if write is None:
                db.execute("COMMIT")
            else:
                try:
                    row = secrets.randbits(63)  # once per batch
                    db.execute(
                        "INSERT INTO audit_outbox (id, payload) VALUES (?, ?)", (row, write.payload)
                    )
                    db.execute("COMMIT")
                except BaseException:
                    write.finish(committed=False)
                    raise
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
        if delivered:
            conn.outbox = [item for item in conn.outbox if item[1] not in delivered]
        if write is not None:
            try:
                write.finish(committed=True)
            except Exception as exc:  # the row stays: replayed when the store next opens
                held = _committed_error(exc)
                for i in journaled:
                    outcomes[i] = (True, held)
            else:
                assert row is not None
                conn.outbox.append((write, row))
        _run_commit_hooks(ops, outcomes, journaled)
        return outcomes

    def _insert_run(self, db: sqlite3.Connection, records: list[PatternRecord]) -> list[Outcome]:
        """Insert consecutive records; each caller learns whether its id was new.

        Inside the IMMEDIATE transaction nobody else writes, so "which ids exist" stays
        true until the insert; a duplicate within the run (two promotions of one staged
        pattern) loses to the first.
        """
        try:
            if len(records) == 1:  # the sequential case: one statement
                rows = db.execute(
                    f"{_INSERT} ON CONFLICT (pattern_id) DO NOTHING RETURNING pattern_id",
                    _params(records[0]),
                ).fetchall()
                return [(bool(rows), None)]
            taken: set[str] = set()
            for chunk in range(0, len(records), _INSERT_CHUNK):
                ids = [r.pattern_id for r in records[chunk : chunk + _INSERT_CHUNK]]
                marks = ",".join("?" * len(ids))
                rows = db.execute(
                    f"SELECT pattern_id FROM patterns WHERE pattern_id IN ({marks})",  # noqa: S608
                    ids,
                ).fetchall()
                taken.update(row[0] for row in rows)
            fresh: list[tuple[Any, ...]] = []
            results: list[bool] = []
            for record in records:
                new = record.pattern_id not in taken
                taken.add(record.pattern_id)
                results.append(new)
                if new:
                    fresh.append(_params(record))
            if fresh:
                db.executemany(_INSERT, fresh)
        except sqlite3.Error as exc:
            if not db.in_transaction:
                raise
            error = self._unavailable("cannot write to", exc)
            return [(None, error) for _r in records]
        return [(new, None) for new in results]

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        conn = await self._conns.get()
        try:
            return list(await conn.db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._unavailable("cannot read", exc) from None

    # -- records ------------------------------------------------------------------------------

    async def insert(self, record: PatternRecord, on_commit: CommitHook | None = None) -> bool:
        inserted: bool = await self._write(_Insert(record, on_commit))
        return inserted

    async def get(self, pattern_id: str, now_ms: int) -> PatternRecord | None:
        # Every recall pays for this: one hand-off (aiosqlite's primitive, as in_thread
        # uses it), no coroutine on the way but its own.
        conn = self._conns.current() or await self._conns.get()
        try:
            row = await conn.execute(_select_one, conn.raw, pattern_id, now_ms)
        except sqlite3.Error as exc:
            raise self._unavailable("cannot read", exc) from None
        return None if row is None else _to_record(row)

    async def existing(self, pattern_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(pattern_ids), _INSERT_CHUNK):
            chunk = pattern_ids[start : start + _INSERT_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self._read(
                f"SELECT pattern_id FROM patterns WHERE pattern_id IN ({marks})",  # noqa: S608
                tuple(chunk),
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def delete(self, pattern_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            rows = db.execute(
                "DELETE FROM patterns WHERE pattern_id = ? RETURNING pattern_id", (pattern_id,)
            ).fetchall()
            return bool(rows)

        deleted: bool = await self._write(op)
        return deleted

    async def purge_expired(self, now_ms: int) -> int:
        def op(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "DELETE FROM patterns WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ? "
                "RETURNING pattern_id",
                (now_ms,),
            ).fetchall()
            return len(rows)

        purged: int = await self._write(op)
        return purged

    async def wrapped_keys(self, after_id: str, limit: int) -> list[WrappedKey]:
        rows = await self._read(
            "SELECT pattern_id, classification, key_id, wrapped_key FROM patterns "
            "WHERE encrypted = 1 AND pattern_id > ? ORDER BY pattern_id LIMIT ?",
            (after_id, limit),
        )
        return [WrappedKey(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    async def replace_wrapped_keys(self, updates: list[WrappedKey]) -> int:
        def op(db: sqlite3.Connection) -> int:
            changed = 0
            for u in updates:
                cursor = db.execute(
                    "UPDATE patterns SET key_id = ?, wrapped_key = ? "
                    "WHERE pattern_id = ? AND encrypted = 1",
                    (u.key_id, u.wrapped_key, u.pattern_id),
                )
                changed += cursor.rowcount
            return changed

        changed: int = await self._write(op)
        return changed

    async def count(self) -> int:
        rows = await self._read("SELECT count(*) FROM patterns", ())
        return int(rows[0][0])

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


async def _apply(db: aiosqlite.Connection, statement: str) -> None:
    """One migration statement; a column it adds that a file has already (its version row
    was set back, or a later attune ran on it) is left as it is."""
    try:
        await db.execute(statement)
    except sqlite3.OperationalError as exc:
        if not ("ADD COLUMN" in statement and "duplicate column name" in str(exc)):
            raise


async def _close_connection(conn: _Connection) -> None:
    """Settle the outbox, close the connection and wait for its thread to end."""
    try:
        # Only cleanup: the rows' lines are in the log; rows left here are replayed
        # (found, not repeated) by the next open, so a busy file must not fail close.
        # conn.outbox is read on the connection's thread, behind any batch in flight.
        with contextlib.suppress(sqlite3.Error):
            await in_thread(conn.db, lambda db: _settle_outbox(db, conn.outbox))
    finally:
        await aiosqlite_compat.close(conn.db)


def _audit_replay() -> OutboxReplay:
    """The default replay: the core's audit log (imported late: the store needs it only
    when rows are left over)."""
    from attune.memory.security.audit import replay_outbox

    return replay_outbox


def _one_journal(batch: list[Queued]) -> tuple[list[Queued], list[Queued]]:
    """The batch split where an insert's outbox hook names a second journal: one
    transaction keeps the events of one journal only (locking two audit logs at once could
    deadlock on two loggers of one file), so the rest is committed right after, and every
    record's events still go into the outbox of its own transaction. Almost always one
    journal: a pass over the batch, nothing split."""
    journal = None
    for n, (op, _fut) in enumerate(batch):
        if isinstance(op, _Insert) and isinstance(op.on_commit, OutboxHook):
            if journal is None:
                journal = op.on_commit.journal
            elif op.on_commit.journal is not journal:
                return batch[:n], batch[n:]
    return batch, []


def _begin_journal(
    ops: list[_Insert | WriteOp], outcomes: list[Outcome]
) -> tuple[JournalWrite | None, set[int], tuple[Exception, set[int]] | None]:
    """Before COMMIT: the journal write for new records' outbox events, and which ops it
    covers (one journal per batch, see :func:`_one_journal`). A journal that cannot begin
    (its log cannot be extended) refuses them: returned as (its error, those ops), for
    the caller to take their records out of the transaction."""
    hooks = [
        (i, op.on_commit)
        for i, op in enumerate(ops)
        if isinstance(op, _Insert)
        and isinstance(op.on_commit, OutboxHook)
        and outcomes[i] == (True, None)
    ]
    if not hooks:
        return None, set(), None
    journal = hooks[0][1].journal
    mine = [(i, hook) for i, hook in hooks if hook.journal is journal]
    try:
        write = journal.begin([hook.event for _i, hook in mine])
    except Exception as exc:
        return None, set(), (exc, {i for i, _hook in mine})
    return write, {i for i, _hook in mine}, None


def _inserted_id(op: _Insert | WriteOp) -> str:
    assert isinstance(op, _Insert)
    return op.record.pattern_id


def _delete_records(db: sqlite3.Connection, ids: list[str]) -> None:
    """Take records inserted in this transaction out of it again (they were new, so
    deleting them leaves the table as it was)."""
    for chunk in range(0, len(ids), _INSERT_CHUNK):
        part = ids[chunk : chunk + _INSERT_CHUNK]
        marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM patterns WHERE pattern_id IN ({marks})", part)  # noqa: S608


def _committed_error(exc: Exception) -> Exception:
    """What the callers of committed records hear when their journal failed after the
    COMMIT: that their records are stored and the events held in the outbox, never that
    the write was refused."""
    if isinstance(exc, AuditLogError) and exc.committed:
        return exc
    return AuditLogError(
        f"the audit journal failed right after the commit ({exc})",
        "the write WAS stored, and its events are held in the store's outbox: they are "
        "appended to the log when the store next opens. Do not retry the write",
        "",
        committed=True,
    )


def _delete_delivered(db: sqlite3.Connection, outbox: list[tuple[JournalWrite, int]]) -> set[int]:
    """Delete this connection's outbox rows whose lines their journal has made durable.

    A journal makes its writes durable in order, so while neither the oldest nor the newest
    pending write is durable, none is (the common case: checked in O(1) per batch). A write
    whose lines the journal lost stays pending for good; its row waits for a replay.
    """
    if not outbox or not (outbox[0][0].durable() or outbox[-1][0].durable()):
        return set()
    ready = [row for write, row in outbox if write.durable()]
    _delete_outbox_rows(db, ready)
    return set(ready)


def _delete_outbox_rows(db: sqlite3.Connection, ids: list[int]) -> None:
    for chunk in range(0, len(ids), _INSERT_CHUNK):
        part = ids[chunk : chunk + _INSERT_CHUNK]
        marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM audit_outbox WHERE id IN ({marks})", part)  # noqa: S608


def _settle_outbox(db: sqlite3.Connection, outbox: list[tuple[JournalWrite, int]]) -> None:
    """At close: make the journals durable and delete the rows they now cover (a row
    whose journal fails stays, for the next open to replay)."""
    if not outbox:
        return
    for write, _row in outbox:
        if not write.durable():
            with contextlib.suppress(Exception):
                write.sync()
    db.execute("BEGIN IMMEDIATE")
    try:
        _delete_delivered(db, outbox)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _run_commit_hooks(
    ops: list[_Insert | WriteOp], outcomes: list[Outcome], skip: set[int]
) -> None:
    """After the commit, on the connection's thread: each new record's hook (except
    those in ``skip``, whose events the outbox took), then the completions they returned
    (so records of one batch share, say, one audit fsync). A hook's error fails its own
    caller; the record stays stored."""
    completions: list[tuple[int, Callable[[], None]]] = []
    for i, op in enumerate(ops):
        if not isinstance(op, _Insert) or op.on_commit is None or outcomes[i] != (True, None):
            continue
        if i in skip:
            continue
        try:
            done = op.on_commit()
        except Exception as exc:
            outcomes[i] = (True, exc)
            continue
        if done is not None:
            completions.append((i, done))
    for i, done in completions:
        try:
            done()
        except Exception as exc:
            outcomes[i] = (True, exc)


def _params(record: PatternRecord) -> tuple[Any, ...]:
    """A record as the values of ``INSERT INTO patterns ({_COLUMNS})``."""
    return (
        record.pattern_id,
        record.pattern_type,
        record.classification,
        record.created_by,
        record.created_at_ms,
        record.expires_at_ms,
        record.metadata_json,
        record.content,
        int(record.encrypted),
        record.key_id,
        record.wrapped_key,
        record.nonce,
        record.record_format,
    )


_SELECT_ONE = (
    f"SELECT {_COLUMNS} FROM patterns WHERE pattern_id = ? "  # noqa: S608 (constant columns)
    "AND (expires_at_ms IS NULL OR expires_at_ms > ?)"
)


def _select_one(db: sqlite3.Connection, pattern_id: str, now_ms: int) -> Any:
    """The live record's row, or None (on the connection's thread)."""
    return db.execute(_SELECT_ONE, (pattern_id, now_ms)).fetchone()


def _to_record(row: Any) -> PatternRecord:
    """A row of :data:`_COLUMNS` as a record (they are the record's fields, in order).

    The encrypted flag decides how the record is read, so anything but INTEGER 0 / 1 there
    is damage (:class:`CorruptRecordError`), not a truthy value."""
    fields = list(row)
    flag = fields[8]
    if type(flag) is not int or (flag != 0 and flag != 1):
        raise CorruptRecordError(
            str(fields[0]), "its encrypted flag is neither 0 nor 1, so how to read it is unknown"
        )
    fields[8] = flag == 1
    return PatternRecord._make(fields)
