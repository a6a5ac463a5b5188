"""The SQLite store's transaction: one batch of queued writes, on the connection's thread.

The store's group commit (:mod:`attune.memory.long_term.sqlite_store`) hands a whole
batch of :data:`~attune.memory.long_term.protocol.WriteOp` values to the connection's
thread in one hop; :func:`run_batch` runs it there as one IMMEDIATE transaction (one
fsync): consecutive inserts as one ``executemany``, other writes one by one, and new
records' audit events into the outbox (:mod:`attune.memory.long_term.sqlite_outbox`).
Each caller gets its own outcome: a failed statement fails its callers only, a failed
COMMIT the batch. Events the journal keeps no outbox for are appended by the store
after the commit, on the event loop (:func:`run_batch` says which).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any

from attune.errors import LongTermUnavailableError
from attune.memory.long_term import sqlite_outbox, sqlite_search
from attune.memory.long_term.batching import Outcome, committed_error
from attune.memory.long_term.protocol import (
    DeleteOp,
    EraseOp,
    IndexOp,
    InsertOp,
    JournalWrite,
    MetaOp,
    PatternRecord,
    PurgeOp,
    RewrapOp,
    SubjectOp,
    WriteOp,
)
from attune.memory.long_term.sqlite_outbox import Pending
from attune.memory.long_term.sqlite_schema import ID_CHUNK, INSERT, params

#: The store's error for a failed statement: ``unavailable("cannot write to", exc)``.
Unavailable = Callable[[str, BaseException], LongTermUnavailableError]


def run_batch(
    db: sqlite3.Connection, outbox: Pending, ops: list[WriteOp], unavailable: Unavailable
) -> tuple[list[Outcome], list[int]]:
    """The batch's transaction, on the connection's thread.

    Consecutive inserts go to SQLite as one ``executemany``; other writes run one by
    one, in queue order. A failed statement fails its own callers; a failed commit
    fails the whole batch (nothing of it was written), raised from here. New records'
    audit events go into the outbox in the same transaction (one fsync for both) when
    their journal takes one. Returns every op's outcome, and which committed inserts'
    events still go to their journal (:meth:`Journal.append`, after the commit).
    """
    outcomes: list[Outcome] = []
    write: JournalWrite | None = None
    journaled: list[int] = []
    row: int | None = None
    try:
        db.execute("BEGIN IMMEDIATE")
        delivered = sqlite_outbox.delete_delivered(db, outbox)
        start = 0
        while start < len(ops):
            end = start
            while end < len(ops) and isinstance(ops[end], InsertOp):
                end += 1
            if end > start:
                inserts = [op for op in ops[start:end] if isinstance(op, InsertOp)]
                outcomes += insert_run(db, inserts, unavailable)
                start = end
                continue
            op = ops[start]
            assert not isinstance(op, InsertOp)
            try:
                outcomes.append((execute(db, op), None))
            except sqlite3.Error as exc:
                if not db.in_transaction:
                    raise
                outcomes.append((None, unavailable("cannot write to", exc)))
            start += 1
        audited = [
            i
            for i, op in enumerate(ops)
            if isinstance(op, InsertOp) and op.audit is not None and outcomes[i] == (True, None)
        ]
        try:
            write = _begin_journal(ops, audited)
        except Exception as error:
            # The journal cannot take their events (the audit log is garbled or cannot
            # be written): their records are taken out again before COMMIT, so nothing
            # of those writes is stored, and their callers hear the journal's error.
            _refuse(db, ops, outcomes, set(audited), error)
            audited = []
        if write is None:
            db.execute("COMMIT")
        else:
            journaled, audited = audited, []
            try:
                row = sqlite_outbox.add_row(db, write.payload)
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
        outbox[:] = [item for item in outbox if item[1] not in delivered]
    if write is not None:
        try:
            write.finish(committed=True)
        except Exception as exc:  # the row stays: replayed when the store next opens
            held = committed_error(exc)
            for i in journaled:
                outcomes[i] = (True, held)
        else:
            assert row is not None
            outbox.append((write, row))
    return outcomes, audited


def execute(
    db: sqlite3.Connection,
    op: IndexOp | MetaOp | DeleteOp | PurgeOp | RewrapOp | SubjectOp | EraseOp,
) -> Any:
    """One write other than an insert, inside the batch's transaction."""
    if isinstance(op, MetaOp):
        db.execute(
            "INSERT INTO store_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (op.name, op.default),
        )
        return str(
            db.execute("SELECT value FROM store_meta WHERE name = ?", (op.name,)).fetchone()[0]
        )
    if isinstance(op, IndexOp):
        ids = [pattern_id for pattern_id, _entry in op.entries]
        waiting: set[str] = set()
        for chunk in range(0, len(ids), ID_CHUNK):
            part = ids[chunk : chunk + ID_CHUNK]
            marks = ",".join("?" * len(part))
            waiting.update(
                row[0]
                for row in db.execute(
                    "SELECT pattern_id FROM patterns "  # noqa: S608
                    f"WHERE search_rowid IS NULL AND pattern_id IN ({marks})",
                    part,
                )
            )
        entries = [(pid, entry) for pid, entry in op.entries if pid in waiting]
        sqlite_search.index_records(db, entries)
        return len(entries)
    if isinstance(op, DeleteOp):
        rows = db.execute(
            "DELETE FROM patterns WHERE pattern_id = ? RETURNING pattern_id", (op.pattern_id,)
        ).fetchall()
        return bool(rows)
    if isinstance(op, PurgeOp):
        if op.limit is None:
            rows = db.execute(
                "DELETE FROM patterns WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ? "
                "RETURNING pattern_id",
                (op.now_ms,),
            ).fetchall()
        else:
            rows = db.execute(
                "DELETE FROM patterns WHERE pattern_id IN (SELECT pattern_id FROM patterns "
                "WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ? "
                "ORDER BY expires_at_ms LIMIT ?) RETURNING pattern_id",
                (op.now_ms, op.limit),
            ).fetchall()
        return len(rows)
    if isinstance(op, RewrapOp):
        changed = 0
        for u in op.updates:
            cursor = db.execute(
                "UPDATE patterns SET key_id = ?, wrapped_key = ? "
                "WHERE pattern_id = ? AND encrypted = 1",
                (u.key_id, u.wrapped_key, u.pattern_id),
            )
            changed += cursor.rowcount
        return changed
    if isinstance(op, SubjectOp):
        db.execute(
            "INSERT INTO audit_subjects (user_id, secret) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO NOTHING",
            (op.user_id, op.secret),
        )
        row = db.execute(
            "SELECT secret FROM audit_subjects WHERE user_id = ?", (op.user_id,)
        ).fetchone()
        return bytes(row[0])
    if isinstance(op, EraseOp):
        return _erase(db, op)
    raise TypeError(f"not a long-term write: {type(op).__name__}")


def _erase(db: sqlite3.Connection, op: EraseOp) -> int:
    """A user's records, the records named, and the user's pseudonym secret (the
    connection overwrites deleted rows: ``secure_delete``; the trigger drops search rows)."""
    erased = len(
        db.execute(
            "DELETE FROM patterns WHERE created_by = ? RETURNING pattern_id", (op.user_id,)
        ).fetchall()
    )
    erased += _delete_records(db, list(op.pattern_ids))
    db.execute("DELETE FROM audit_subjects WHERE user_id = ?", (op.user_id,))
    return erased


def insert_run(
    db: sqlite3.Connection, inserts: list[InsertOp], unavailable: Unavailable
) -> list[Outcome]:
    """Insert consecutive records; each caller learns whether its id was new. (Their
    search rows follow in a later transaction: :class:`~.sqlite_search.PendingIndex`.)

    Inside the IMMEDIATE transaction nobody else writes, so "which ids exist" stays
    true until the insert; a duplicate within the run (two promotions of one staged
    pattern) loses to the first.
    """
    records = [op.record for op in inserts]
    try:
        if len(records) == 1:  # the sequential case: one statement
            rows = db.execute(
                f"{INSERT} ON CONFLICT (pattern_id) DO NOTHING RETURNING pattern_id",
                params(records[0]),
            ).fetchall()
            return [(bool(rows), None)]
        return [(new, None) for new in _insert_many(db, records)]
    except sqlite3.Error as exc:
        if not db.in_transaction:
            raise
        error = unavailable("cannot write to", exc)
        return [(None, error) for _r in records]


def _insert_many(db: sqlite3.Connection, records: list[PatternRecord]) -> list[bool]:
    """Several records: one "which ids exist" query and one ``executemany``."""
    taken: set[str] = set()
    for chunk in range(0, len(records), ID_CHUNK):
        ids = [r.pattern_id for r in records[chunk : chunk + ID_CHUNK]]
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
            fresh.append(params(record))
    if fresh:
        db.executemany(INSERT, fresh)
    return results


def _begin_journal(ops: list[WriteOp], audited: list[int]) -> JournalWrite | None:
    """Before COMMIT: the outbox write for the events of the new records ``audited``
    (one journal per batch, see :func:`.batching.one_journal`), or None when there are none or
    the journal takes no outbox. Raises the journal's error if it cannot take them."""
    if not audited:
        return None
    events = []
    journal = None
    for i in audited:
        op = ops[i]
        assert isinstance(op, InsertOp) and op.audit is not None
        journal = op.audit.journal
        events.append(op.audit.event)
    assert journal is not None
    return journal.begin(events)


def _refuse(
    db: sqlite3.Connection,
    ops: list[WriteOp],
    outcomes: list[Outcome],
    refused: set[int],
    error: Exception,
) -> None:
    """Take the records of the inserts ``refused`` out of the transaction again (they
    were new, so deleting them leaves the table as it was) and fail their callers with
    ``error``. A later insert of one of those ids lost to it inside this transaction
    ("exists"): it is refused too, or a promotion told its pattern was promoted already
    would drop the staged entry."""
    ids: set[str] = set()
    for i in refused:
        op = ops[i]
        assert isinstance(op, InsertOp)
        ids.add(op.record.pattern_id)
    _delete_records(db, sorted(ids))
    for i, op in enumerate(ops):
        duplicate = isinstance(op, InsertOp) and op.record.pattern_id in ids
        if i in refused or (duplicate and outcomes[i] == (False, None)):
            outcomes[i] = (None, error)


def _delete_records(db: sqlite3.Connection, ids: list[str]) -> int:
    """Delete the records ``ids``; returns how many there were."""
    deleted = 0
    for chunk in range(0, len(ids), ID_CHUNK):
        part = ids[chunk : chunk + ID_CHUNK]
        marks = ",".join("?" * len(part))
        cursor = db.execute(f"DELETE FROM patterns WHERE pattern_id IN ({marks})", part)  # noqa: S608
        deleted += cursor.rowcount
    return deleted
