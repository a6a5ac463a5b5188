"""The SQLite store's transaction: one batch of queued writes, on the connection's thread.

The store's group commit (:mod:`attune.memory.long_term.sqlite_store`) hands a whole
batch to the connection's thread in one hop; :func:`run_batch` runs it there as one
IMMEDIATE transaction (one fsync): consecutive inserts as one ``executemany``, other
writes one by one, new records' audit events into the outbox
(:mod:`attune.memory.long_term.sqlite_outbox`), then the commit hooks. Each caller gets
its own outcome: a failed statement fails its callers only, a failed COMMIT the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attune.errors import AuditLogError, LongTermUnavailableError
from attune.memory.long_term import sqlite_outbox
from attune.memory.long_term.protocol import CommitHook, JournalWrite, OutboxHook, PatternRecord
from attune.memory.long_term.sqlite_outbox import Pending
from attune.memory.long_term.sqlite_schema import ID_CHUNK, INSERT, params

WriteOp = Callable[[sqlite3.Connection], Any]
#: What a writer queues: a record to insert (batched with its neighbours into one
#: ``executemany``), or any other write as a function of the connection. Either runs
#: on the connection's thread, inside the batch's transaction.
Queued = tuple["Insert | WriteOp", "asyncio.Future[Any]"]
#: A queued write's outcome: its result, or the error that failed it alone.
Outcome = tuple[Any, BaseException | None]
#: The store's error for a failed statement: ``unavailable("cannot write to", exc)``.
Unavailable = Callable[[str, BaseException], LongTermUnavailableError]


@dataclass(frozen=True, slots=True)
class Insert:
    """A queued insert and what to run once its transaction committed."""

    record: PatternRecord
    on_commit: CommitHook | None = None


def run_batch(
    db: sqlite3.Connection, outbox: Pending, ops: list[Insert | WriteOp], unavailable: Unavailable
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
        delivered = sqlite_outbox.delete_delivered(db, outbox)
        start = 0
        while start < len(ops):
            end = start
            while end < len(ops) and isinstance(ops[end], Insert):
                end += 1
            if end > start:
                run = [op.record for op in ops[start:end] if isinstance(op, Insert)]
                outcomes += insert_run(db, run, unavailable)
                start = end
                continue
            op = ops[start]
            assert not isinstance(op, Insert)
            try:
                outcomes.append((op(db), None))
            except sqlite3.Error as exc:
                if not db.in_transaction:
                    raise
                outcomes.append((None, unavailable("cannot write to", exc)))
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
                duplicate = isinstance(op, Insert) and op.record.pattern_id in ids
                if i in refused or (duplicate and outcomes[i] == (False, None)):
                    outcomes[i] = (None, error)
        if write is None:
            db.execute("COMMIT")
        else:
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
    _run_commit_hooks(ops, outcomes, journaled)
    return outcomes


def insert_run(
    db: sqlite3.Connection, records: list[PatternRecord], unavailable: Unavailable
) -> list[Outcome]:
    """Insert consecutive records; each caller learns whether its id was new.

    Inside the IMMEDIATE transaction nobody else writes, so "which ids exist" stays
    true until the insert; a duplicate within the run (two promotions of one staged
    pattern) loses to the first.
    """
    try:
        if len(records) == 1:  # the sequential case: one statement
            rows = db.execute(
                f"{INSERT} ON CONFLICT (pattern_id) DO NOTHING RETURNING pattern_id",
                params(records[0]),
            ).fetchall()
            return [(bool(rows), None)]
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
    except sqlite3.Error as exc:
        if not db.in_transaction:
            raise
        error = unavailable("cannot write to", exc)
        return [(None, error) for _r in records]
    return [(new, None) for new in results]


def one_journal(batch: list[Queued]) -> tuple[list[Queued], list[Queued]]:
    """The batch split where an insert's outbox hook names a second journal: one
    transaction keeps the events of one journal only (locking two audit logs at once could
    deadlock on two loggers of one file), so the rest is committed right after, and every
    record's events still go into the outbox of its own transaction. Almost always one
    journal: a pass over the batch, nothing split."""
    journal = None
    for n, (op, _fut) in enumerate(batch):
        if isinstance(op, Insert) and isinstance(op.on_commit, OutboxHook):
            if journal is None:
                journal = op.on_commit.journal
            elif op.on_commit.journal is not journal:
                return batch[:n], batch[n:]
    return batch, []


def _begin_journal(
    ops: list[Insert | WriteOp], outcomes: list[Outcome]
) -> tuple[JournalWrite | None, set[int], tuple[Exception, set[int]] | None]:
    """Before COMMIT: the journal write for new records' outbox events, and which ops it
    covers (one journal per batch, see :func:`one_journal`). A journal that cannot begin
    (its log cannot be extended) refuses them: returned as (its error, those ops), for
    the caller to take their records out of the transaction."""
    hooks = [
        (i, op.on_commit)
        for i, op in enumerate(ops)
        if isinstance(op, Insert)
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


def _inserted_id(op: Insert | WriteOp) -> str:
    assert isinstance(op, Insert)
    return op.record.pattern_id


def _delete_records(db: sqlite3.Connection, ids: list[str]) -> None:
    """Take records inserted in this transaction out of it again (they were new, so
    deleting them leaves the table as it was)."""
    for chunk in range(0, len(ids), ID_CHUNK):
        part = ids[chunk : chunk + ID_CHUNK]
        marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM patterns WHERE pattern_id IN ({marks})", part)  # noqa: S608


def committed_error(exc: Exception) -> Exception:
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


def _run_commit_hooks(ops: list[Insert | WriteOp], outcomes: list[Outcome], skip: set[int]) -> None:
    """After the commit, on the connection's thread: each new record's hook (except
    those in ``skip``, whose events the outbox took), then the completions they returned
    (so records of one batch share, say, one audit fsync). A hook's error fails its own
    caller; the record stays stored."""
    completions: list[tuple[int, Callable[[], None]]] = []
    for i, op in enumerate(ops):
        if not isinstance(op, Insert) or op.on_commit is None or outcomes[i] != (True, None):
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
