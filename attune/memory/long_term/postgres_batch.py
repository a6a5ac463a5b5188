"""The PostgreSQL store's transaction: one batch of queued writes, on one connection.

The store's group commit (:mod:`attune.memory.long_term.postgres_store`) hands a batch of
:data:`~attune.memory.long_term.protocol.WriteOp` values to :func:`transaction`, which runs
it as one transaction: consecutive inserts as one ``INSERT ... SELECT FROM unnest(...)``
statement, other writes one by one, in queue order. A statement that fails aborts a
PostgreSQL transaction: :func:`transaction` rolls it back and raises :class:`Failed`, and
the store runs the batch's writes again one transaction each, so that a failed write
fails its own caller only. A connection lost before the COMMIT was sent raises
:class:`NotStored` (the server applied nothing: the store may run the batch again on
another connection); lost while the COMMIT (or a lone statement) was under way, it raises
:class:`Unsettled` if the transaction appended audit lines (the audit table then tells
whether it committed: :func:`settle`), else as it is (whether it was applied is unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg

from attune.memory.long_term import postgres_audit, postgres_schema, postgres_search
from attune.memory.long_term.batching import Outcome
from attune.memory.long_term.postgres_audit_log import TableJournal
from attune.memory.long_term.postgres_audit_sink import LOST, never_sent, session_lost
from attune.memory.long_term.postgres_schema import INSERT_MANY
from attune.memory.long_term.protocol import (
    DeleteOp,
    EraseOp,
    IndexOp,
    InsertOp,
    MetaOp,
    PurgeOp,
    RewrapOp,
    SubjectOp,
    WriteOp,
    entry_of,
)
from attune.memory.security.audit.batch import _Batch
from attune.memory.security.audit.codec import _encode

#: What a failed statement raises (the server's error, or a value asyncpg cannot send);
#: the connection is still usable and the transaction is rolled back.
STATEMENT_ERRORS = (asyncpg.PostgresError, asyncpg.DataError, ValueError, TypeError)

#: Writes that are one statement (the others read back what they wrote, or write twice).
_ONE_STATEMENT = (InsertOp, DeleteOp, PurgeOp, RewrapOp, IndexOp)


class Failed(Exception):
    """A statement of the transaction failed (it was rolled back; the connection is fine)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class NotStored(Exception):
    """The connection was lost (``cause``) before anything of the transaction could
    commit: before its COMMIT was sent, or before a lone statement left this process.
    The server applied none of it, so it may be run again on another connection."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class Unsettled(Exception):
    """The connection was lost (``cause``) while the COMMIT of a transaction that appended
    audit lines, or its lone statement, was under way: it committed if and only if the
    line it chained at ``tried`` (the head it would have left) is in the table
    (:func:`settle`). ``outcomes``: the writes' results if it did; ``taken``: the audit
    logger's queued events it carried (settled with it, or given back)."""

    def __init__(
        self,
        cause: BaseException,
        tried: tuple[int, str],
        outcomes: list[Outcome],
        taken: _Batch | None,
    ) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.tried = tried
        self.outcomes = outcomes
        self.taken = taken


async def settle(
    conn: asyncpg.Connection, lost: Unsettled, journal: TableJournal | None
) -> list[Outcome] | None:
    """On a new connection: ``lost``'s outcomes if its transaction committed (its audit
    line is in the table), None if it did not (nothing of it was applied: it may be run
    again). Raises as the connection does (then it stays unknown, and the queued events
    it carried go back to the logger: written again, perhaps twice, never not at all)."""
    try:
        committed = await postgres_audit.settled(conn, lost.tried)
    except BaseException:
        _give_back(journal, lost.taken)
        raise
    if not committed:
        _give_back(journal, lost.taken)
        return None
    if journal is not None:
        journal.head_hint.value = lost.tried
        if lost.taken is not None:
            journal.settle(lost.taken)
    return lost.outcomes


async def transaction(
    conn: asyncpg.Connection, ops: list[WriteOp], journal: TableJournal | None = None
) -> list[Outcome]:
    """``ops`` in one transaction: consecutive inserts as one statement, other writes one
    by one, in queue order. Raises :class:`Failed` (rolled back) if a statement failed;
    a failed COMMIT or connection raises as it is. A write of one statement alone is sent
    as that statement (its own implicit transaction: one round trip, not three).

    ``journal``: this database's audit table. The events of the inserts that stored a new
    record are appended to it last, in the same transaction (:func:`postgres_audit.append`,
    which locks the chain head until the COMMIT): a record and its event commit together
    or not at all. The events the journal's logger still queues (an operation's decisions,
    which its final event follows) are taken along, before them, so that event's
    durability covers them, as with a log file's outbox."""
    audit = journal is not None and any(_audited(op) for op in ops)
    taken: _Batch | None = None
    if audit and len(ops) == 1:
        assert journal is not None and isinstance(ops[0], InsertOp)
        alone, taken = await _audited_alone(conn, ops[0], journal)
        if alone is not None:
            return alone
    if len(ops) == 1 and isinstance(ops[0], _ONE_STATEMENT) and not audit:
        only = ops[0]
        try:
            if isinstance(only, InsertOp):
                return [(new, None) for new in await _insert(conn, [only])]
            return [(await _execute(conn, only), None)]
        except BaseException as exc:
            if never_sent(exc):
                raise NotStored(exc) from None
            if isinstance(exc, STATEMENT_ERRORS) and not isinstance(exc, LOST):
                raise Failed(exc) from None
            raise
    tx = conn.transaction()
    try:
        await tx.start()
    except BaseException as exc:
        _give_back(journal, taken)
        if isinstance(exc, LOST):  # no transaction began: nothing to commit
            raise NotStored(exc) from None
        raise
    outcomes: list[Outcome] = []
    pretaken = taken is not None
    head: tuple[int, str] | None = None
    try:
        start = 0
        while start < len(ops):
            end = start
            while end < len(ops) and isinstance(ops[end], InsertOp):
                end += 1
            if end > start:
                inserts = [op for op in ops[start:end] if isinstance(op, InsertOp)]
                outcomes += [(new, None) for new in await _insert(conn, inserts)]
                start = end
                continue
            op = ops[start]
            assert not isinstance(op, InsertOp)
            outcomes.append((await _execute(conn, op), None))
            start += 1
        if journal is not None and audit:
            events = [
                (time.time(), op.audit.event)
                for op, (new, _error) in zip(ops, outcomes, strict=True)
                if isinstance(op, InsertOp) and op.audit is not None and new is True
            ]
            if events:
                if not pretaken:  # (:func:`_audited_alone` took them, with nothing writing)
                    writing, taken = journal.take_queued()
                    if writing is not None:  # earlier events: durable and chained first
                        await asyncio.to_thread(writing.done.wait)
                queued = [] if taken is None else taken.entries
                head = await postgres_audit.append(conn, _encode([*queued, *events]))
    except BaseException as exc:
        # Before the COMMIT: the server rolls back an open transaction whose session ends,
        # so a connection lost here applied nothing.
        await _rollback(tx)
        _give_back(journal, taken)
        if isinstance(exc, LOST):
            raise NotStored(exc) from None
        if isinstance(exc, STATEMENT_ERRORS):
            raise Failed(exc) from None
        raise
    try:
        await tx.commit()
    except BaseException as exc:
        if head is not None and session_lost(exc):
            raise Unsettled(exc, head, outcomes, taken) from None  # the table tells
        # Not committed, or unknown (an answer lost): the queued events are written again
        # by the logger (a lost answer may then show them twice, never not at all).
        _give_back(journal, taken)
        raise
    if journal is not None:
        if head is not None:
            journal.head_hint.value = head
        if taken is not None:
            if head is None:  # taken, but no record of the batch was new: nothing went in
                journal.give_back(taken)
            else:
                journal.settle(taken)
    return outcomes


#: One audited insert as one statement, its own transaction (see :func:`_audited_alone`):
#: the head is locked (``h``; under the lock, its latest version), and the record, the
#: events and the new head go in only if it is the one expected (``ok``) and the record is
#: new (``ins``). The head comes back either way: the next write's guess.
_P = postgres_schema.INSERT_PARAMS
_AUDITED_ALONE = (
    f"WITH h AS (SELECT seq, hash FROM {postgres_audit.HEAD} WHERE id = 1 FOR UPDATE), "  # noqa: S608
    f"ok AS (SELECT 1 FROM h WHERE seq = ${_P + 4} AND hash = ${_P + 5}), "
    f"ins AS ({postgres_schema.insert_many_if('EXISTS (SELECT 1 FROM ok)')}), "
    f"ev AS (INSERT INTO {postgres_audit.TABLE} (seq, ts, line) SELECT u.s, u.t, u.l "
    f"FROM unnest(${_P + 1}::int8[], ${_P + 2}::text[], ${_P + 3}::text[]) AS u(s, t, l) "
    "WHERE EXISTS (SELECT 1 FROM ins)), "
    f"up AS (UPDATE {postgres_audit.HEAD} SET seq = ${_P + 6}, hash = ${_P + 7} "
    "WHERE id = 1 AND EXISTS (SELECT 1 FROM ins)) "
    "SELECT EXISTS (SELECT 1 FROM ok), EXISTS (SELECT 1 FROM ins), "
    "(SELECT seq FROM h), (SELECT hash FROM h)"
)


async def _audited_alone(
    conn: asyncpg.Connection, op: InsertOp, journal: TableJournal
) -> tuple[list[Outcome] | None, _Batch | None]:
    """A batch of one audited insert (a sequential persist) in one statement and one round
    trip, instead of BEGIN, INSERT, lock the head, append, COMMIT: the record, the events
    its operation queued and its own event are inserted, and the head moved, only if the
    chain head is the one this process expects (``journal.head_hint``, checked under the
    head's row lock) and the record is new. A duplicate id writes nothing (its queued
    events go back to the logger). Another writer moved the head: nothing was written, the
    head it left becomes the next guess, and the queued events taken are returned for
    :func:`transaction`'s usual path (None: that path takes them itself). Trying again at
    once on the returned head did not pay: with 8 stores writing at once, 154-227 persists/s
    against 229-244 for one try (commits queue on the head's row lock either way).
    5 round trips -> 1: docs/performance.md, PostgreSQL."""
    writing, taken = journal.take_queued()
    if writing is not None:  # the writer is appending: follow it on the usual path
        if taken is not None:
            journal.give_back(taken)
        return None, None
    assert op.audit is not None
    queued = [] if taken is None else taken.entries
    entries = _encode([*queued, (time.time(), op.audit.event)])
    args = postgres_schema.columns([op.record]) + [
        [value] for value in postgres_search.row(entry_of(op))
    ]
    expected = journal.head_hint.value or (-1, "")  # unknown: this try learns it
    seqs, stamps, lines, new = postgres_audit.chained(expected, entries)
    try:
        row = await conn.fetchrow(_AUDITED_ALONE, *args, seqs, stamps, lines, *expected, *new)
    except BaseException as exc:
        if session_lost(exc) and not never_sent(exc):
            raise Unsettled(exc, new, [(True, None)], taken) from None  # the table tells
        _give_back(journal, taken)
        if never_sent(exc):
            raise NotStored(exc) from None
        if isinstance(exc, STATEMENT_ERRORS) and not isinstance(exc, LOST):
            raise Failed(exc) from None
        raise
    assert row is not None
    if not row[0]:  # no head row (the usual path reports it), or another writer moved it
        journal.head_hint.value = None if row[2] is None else (int(row[2]), str(row[3]))
        return None, taken
    if not row[1]:
        _give_back(journal, taken)
        return [(False, None)], None
    journal.head_hint.value = new
    if taken is not None:
        journal.settle(taken)
    return [(True, None)], None


def _give_back(journal: TableJournal | None, taken: _Batch | None) -> None:
    if journal is not None and taken is not None:
        journal.give_back(taken)


def _audited(op: WriteOp) -> bool:
    return isinstance(op, InsertOp) and op.audit is not None


async def _rollback(tx: Any) -> None:
    with contextlib.suppress(Exception):
        await tx.rollback()


async def _insert(conn: asyncpg.Connection, inserts: list[InsertOp]) -> list[bool]:
    """Insert records; each caller learns whether its id was new. A duplicate within the
    run (two promotions of one staged pattern) loses to the first."""
    first: dict[str, int] = {}
    for n, op in enumerate(inserts):
        first.setdefault(op.record.pattern_id, n)
    fresh = [op for n, op in enumerate(inserts) if first[op.record.pattern_id] == n]
    search = [postgres_search.row(entry_of(op)) for op in fresh]
    args = postgres_schema.columns([op.record for op in fresh])
    args += [list(values) for values in zip(*search, strict=True)]
    rows = await conn.fetch(INSERT_MANY, *args)
    new = {row[0] for row in rows}
    return [
        first[op.record.pattern_id] == n and op.record.pattern_id in new
        for n, op in enumerate(inserts)
    ]


async def _execute(
    conn: asyncpg.Connection,
    op: IndexOp | MetaOp | DeleteOp | PurgeOp | RewrapOp | SubjectOp | EraseOp,
) -> Any:
    """One write other than an insert, inside the batch's transaction."""
    if isinstance(op, MetaOp):
        await conn.execute(
            "INSERT INTO store_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            op.name,
            op.default,
        )
        return str(await conn.fetchval("SELECT value FROM store_meta WHERE name = $1", op.name))
    if isinstance(op, IndexOp):
        entries = dict(op.entries)  # one row per id (the last entry given)
        if not entries:
            return 0
        rows = [postgres_search.row(entry) for entry in entries.values()]
        _ix, words, tokens, sensitive, facets = (list(col) for col in zip(*rows, strict=True))
        changed = await conn.fetch(
            "UPDATE patterns p SET indexed = true, words = u.w::tsvector, "
            "tokens = u.t::tsvector, sensitive_tokens = u.st::tsvector, "
            "facets = ARRAY(SELECT jsonb_array_elements_text(u.f::jsonb)) "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
            "AS u(id, w, t, st, f) WHERE p.pattern_id = u.id AND NOT p.indexed "
            "RETURNING p.pattern_id",
            list(entries),
            words,
            tokens,
            sensitive,
            facets,
        )
        return len(changed)
    if isinstance(op, DeleteOp):
        gone = await conn.fetch(
            "DELETE FROM patterns WHERE pattern_id = $1 RETURNING pattern_id", op.pattern_id
        )
        return bool(gone)
    if isinstance(op, PurgeOp):
        if op.limit is None:
            status = await conn.execute(
                "DELETE FROM patterns WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= $1",
                op.now_ms,
            )
        else:
            status = await conn.execute(
                "DELETE FROM patterns WHERE pattern_id IN (SELECT pattern_id FROM patterns "
                "WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= $1 "
                "ORDER BY expires_at_ms LIMIT $2)",
                op.now_ms,
                op.limit,
            )
        return _rows_of(status)
    if isinstance(op, RewrapOp):
        if not op.updates:
            return 0
        status = await conn.execute(
            "UPDATE patterns p SET key_id = u.k, wrapped_key = u.w "
            "FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u(id, k, w) "
            "WHERE p.pattern_id = u.id AND p.encrypted",
            [u.pattern_id for u in op.updates],
            [u.key_id for u in op.updates],
            [u.wrapped_key for u in op.updates],
        )
        return _rows_of(status)
    if isinstance(op, SubjectOp):
        await conn.execute(
            "INSERT INTO audit_subjects (user_id, secret) VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO NOTHING",
            op.user_id,
            op.secret,
        )
        secret = await conn.fetchval(
            "SELECT secret FROM audit_subjects WHERE user_id = $1", op.user_id
        )
        return bytes(secret)
    if isinstance(op, EraseOp):
        status = await conn.execute(
            "DELETE FROM patterns WHERE created_by = $1 OR pattern_id = ANY($2::text[])",
            op.user_id,
            list(op.pattern_ids),
        )
        await conn.execute("DELETE FROM audit_subjects WHERE user_id = $1", op.user_id)
        return _rows_of(status)
    raise TypeError(f"not a long-term write: {type(op).__name__}")


def _rows_of(status: str) -> int:
    """The row count of a command status such as ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1])
