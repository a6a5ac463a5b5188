"""The audit log as a PostgreSQL table: one hash chain for every host of one database.

``audit_events`` holds one row per event: its ``seq``, its timestamp text (``ts``, for
``since``) and its ``line``, exactly the bytes a log file would hold (built by
:mod:`attune.memory.security.audit.codec`, the one codec of files and table, so a table
verifies with the file's check: :func:`~attune.memory.security.audit.reader._verify_lines`).
``audit_head`` is one row, the chain head (last ``seq`` and the SHA-256 of its line).

:func:`append` chains entries onto the head inside the caller's transaction: it locks the
head row ``FOR UPDATE``, so transactions of every host and process append one at a time,
in one order, and a transaction that rolls back leaves neither its lines nor a moved head.
The long-term store calls it last in a group commit's transaction (the records first: the
lock is held from there to the COMMIT only), so a record and its event commit together;
events without a record (:class:`~.postgres_audit_log.DatabaseAuditLogger`) are appended
in a short transaction of their own.

The table is append-only for attune's role: a trigger refuses ``UPDATE``, ``DELETE`` and
``TRUNCATE``. Erasure never needs them: lines name users by pseudonym, and erasing a user
deletes the pseudonym's secret (``audit_subjects``), never lines. The trigger is a guard
against mistakes, not against the table's owner or a superuser, who can drop it: that is
what verifying the chain (and the head against its last line) and signed checkpoints of
the head exposes (:mod:`attune.memory.security.audit.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from attune.errors import AuditLogError
from attune.memory.security.audit.codec import GENESIS, _digest, _line, _record
from attune.memory.security.audit.failures import REFUSED

#: The table of events, and the one-row table of the chain head.
TABLE = "audit_events"
HEAD = "audit_head"

#: The statements of the migration that adds the tables (see ``postgres_schema``).
SCHEMA: tuple[str, ...] = (
    f"""
    CREATE TABLE {TABLE} (
        seq  BIGINT PRIMARY KEY,
        ts   TEXT NOT NULL,
        line TEXT NOT NULL
    )
    """,
    f"""
    CREATE TABLE {HEAD} (
        id   SMALLINT PRIMARY KEY CHECK (id = 1),
        seq  BIGINT NOT NULL,
        hash TEXT NOT NULL
    )
    """,
    f"INSERT INTO {HEAD} (id, seq, hash) VALUES (1, 0, '{GENESIS}')",  # noqa: S608
    """
    CREATE FUNCTION attune_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only: % on audit_events refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION attune_audit_append_only()",
    f"CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION attune_audit_append_only()",
)

_LOCK_HEAD = f"SELECT seq, hash FROM {HEAD} WHERE id = 1 FOR UPDATE"  # noqa: S608 (constants)
_APPEND = (
    f"WITH added AS (INSERT INTO {TABLE} (seq, ts, line) "  # noqa: S608 (constant names)
    "SELECT * FROM unnest($1::int8[], $2::text[], $3::text[])) "
    f"UPDATE {HEAD} SET seq = $4, hash = $5 WHERE id = 1"
)


async def append(
    conn: asyncpg.Connection,
    entries: list[tuple[str, str]],
    tried: list[tuple[int, str]] | None = None,
) -> tuple[int, str]:
    """Chain ``entries`` ((timestamp text, body), as :func:`codec._encode` gives them) onto
    the head and insert them, inside the caller's open transaction; returns the new head.
    Holds the head's row lock until that transaction ends. ``tried``: the new head is
    added to it before the statement is sent (see :func:`landed`)."""
    row = await conn.fetchrow(_LOCK_HEAD)
    if row is None:
        raise _no_head()
    seqs, stamps, lines, new = chained((int(row[0]), str(row[1])), entries)
    if tried is not None:
        tried.append(new)
    await conn.execute(_APPEND, seqs, stamps, lines, *new)
    return new


async def landed(conn: asyncpg.Connection, tried: list[tuple[int, str]]) -> tuple[int, str] | None:
    """Which of the heads an append whose answer was lost ``tried`` (its last line's seq
    and hash) is in the table, if any: the line at that seq hashes to it only if that
    very append committed (the hash covers the lines' content and the chain before)."""
    if not tried:
        return None
    rows = await conn.fetch(
        f"SELECT seq, line FROM {TABLE} WHERE seq = ANY($1::int8[])",  # noqa: S608
        [seq for seq, _hash in tried],
    )
    found = {int(r[0]): _digest(str(r[1]).encode("ascii", "replace")) for r in rows}
    for seq, digest in tried:
        if found.get(seq) == digest:
            return seq, digest
    return None


#: How long :func:`settled` waits for the head's row lock (a lost transaction whose session
#: lives on, cut off from its client, holds it until it ends).
SETTLE_LOCK_TIMEOUT_MS = 10_000


async def settled(conn: asyncpg.Connection, tried: tuple[int, str]) -> bool:
    """Whether the transaction that appended up to head ``tried`` (on a connection lost
    while its COMMIT was under way) committed: checked on another connection once the
    head's row lock is free (that transaction held it to its end: a session cut off from
    its client but still alive ends first), so the answer cannot change afterwards.
    Raises as the connection does, or ``LockNotAvailableError`` after
    :data:`SETTLE_LOCK_TIMEOUT_MS`: then it stays unknown."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {SETTLE_LOCK_TIMEOUT_MS}")
        await conn.fetchrow(_LOCK_HEAD)
        return await landed(conn, [tried]) is not None


def _no_head() -> AuditLogError:
    return AuditLogError(
        f"the audit chain head ({HEAD}) of the database has no row, so the chain cannot "
        "be extended",
        REFUSED,
        "The table was altered outside attune: run `attune audit verify`, then restore "
        "the database from a backup.",
    )


#: One statement, so one round trip in its own implicit transaction: the lines chained onto
#: the head the caller expects ($4, $5) are inserted and the head moved ($6, $7) only if
#: the head is still that one (locked FOR UPDATE; a head another writer moved meanwhile is
#: seen after its COMMIT and matches no more): no row back then, nothing written.
_APPEND_IF_HEAD = (
    f"WITH h AS (SELECT 1 FROM {HEAD} WHERE id = 1 AND seq = $4 AND hash = $5 FOR UPDATE), "  # noqa: S608
    f"added AS (INSERT INTO {TABLE} (seq, ts, line) SELECT u.s, u.t, u.l "
    "FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(s, t, l) WHERE EXISTS (SELECT 1 FROM h)) "
    f"UPDATE {HEAD} SET seq = $6, hash = $7 WHERE id = 1 AND EXISTS (SELECT 1 FROM h) "
    "RETURNING seq"
)
#: Tries of :func:`append_alone` before it takes the head's lock first (a head that keeps
#: moving: many writers at once).
_TRIES = 3


def chained(
    start: tuple[int, str], entries: list[tuple[str, str]]
) -> tuple[list[int], list[str], list[str], tuple[int, str]]:
    """``entries`` as lines chained onto ``start``: their seqs, stamps, lines, new head."""
    seq, prev = start
    seqs, stamps, lines = [], [], []
    for ts, body in entries:
        seq += 1
        line = _line(ts, seq, body, prev)
        prev = _digest(line)
        seqs.append(seq)
        stamps.append(ts)
        lines.append(line.decode("ascii"))
    return seqs, stamps, lines, (seq, prev)


async def append_alone(
    conn: asyncpg.Connection,
    entries: list[tuple[str, str]],
    expected: tuple[int, str] | None,
    tried: list[tuple[int, str]] | None = None,
) -> tuple[int, str]:
    """``entries`` appended outside any transaction (events without a record), in one
    statement when the head is still ``expected`` (this writer's last head): one round
    trip, not four. Else the head is read and it is tried again; after a few misses, a
    transaction locks the head first (:func:`append`). Returns the new head. ``tried``
    collects each new head sent (if the connection is lost, :func:`landed` tells whether
    one of them committed)."""
    for _ in range(_TRIES):
        if expected is None:
            expected = await head(conn)
            if expected is None:
                raise _no_head()
        seqs, stamps, lines, new = chained(expected, entries)
        if tried is not None:
            tried.append(new)
        if await conn.fetchval(_APPEND_IF_HEAD, seqs, stamps, lines, *expected, *new) is not None:
            return new
        expected = None
    async with conn.transaction():
        return await append(conn, entries, tried)


async def head(conn: asyncpg.Connection) -> tuple[int, str] | None:
    """The chain head row (seq, hash), without locking it; None if it has gone."""
    row = await conn.fetchrow(f"SELECT seq, hash FROM {HEAD} WHERE id = 1")  # noqa: S608
    return None if row is None else (int(row[0]), str(row[1]))


async def page(
    conn: asyncpg.Connection, after_seq: int, limit: int, *, newest_first: bool = False
) -> list[tuple[int, str]]:
    """(seq, line) of up to ``limit`` rows by ``seq``: after ``after_seq``, or
    (``newest_first``) before it, newest first."""
    if newest_first:
        sql = f"SELECT seq, line FROM {TABLE} WHERE seq < $1 ORDER BY seq DESC LIMIT $2"  # noqa: S608
    else:
        sql = f"SELECT seq, line FROM {TABLE} WHERE seq > $1 ORDER BY seq LIMIT $2"  # noqa: S608
    rows: list[Any] = await conn.fetch(sql, after_seq, limit)
    return [(int(r[0]), str(r[1])) for r in rows]


#: Why verify stops at a row whose own ``seq`` or ``ts`` column disagrees with its line.
COLUMNS_ALTERED = (
    "the row's seq or ts column does not match its line: the row was altered outside "
    "attune (a changed ts hides the event from queries by time)"
)


async def verify_page(
    conn: asyncpg.Connection, after_seq: int, limit: int
) -> tuple[list[tuple[int, str]], int | None]:
    """As :func:`page`, oldest first, with each row's ``seq`` and ``ts`` columns checked
    against its line (which attune writes starting ``{"ts":"<ts>","seq":<seq>,``): the
    rows up to and including the first that disagrees, and its seq (None if all agree)."""
    rows: list[Any] = await conn.fetch(
        f"SELECT seq, ts, line FROM {TABLE} WHERE seq > $1 ORDER BY seq LIMIT $2",  # noqa: S608
        after_seq,
        limit,
    )
    checked: list[tuple[int, str]] = []
    for seq, ts, line in rows:
        checked.append((int(seq), str(line)))
        if not str(line).startswith(f'{{"ts":"{ts}","seq":{seq},'):
            return checked, int(seq)
    return checked, None


async def page_since(
    conn: asyncpg.Connection, before_seq: int, since: str, limit: int
) -> list[tuple[int, str]]:
    """(seq, line) of up to ``limit`` rows stamped at or after ``since``, before
    ``before_seq``, newest first (``ts`` is a row's own column: a line is checked again)."""
    rows: list[Any] = await conn.fetch(
        f"SELECT seq, line FROM {TABLE} WHERE seq < $1 AND ts >= $2 "  # noqa: S608
        "ORDER BY seq DESC LIMIT $3",
        before_seq,
        since,
        limit,
    )
    return [(int(r[0]), str(r[1])) for r in rows]


#: Rows read per round trip by :func:`matching` (and by verify).
PAGE = 5000


async def matching(
    conn: asyncpg.Connection, wanted: Mapping[str, object], after: str | None, limit: int | None
) -> list[dict[str, Any]]:
    """The events whose fields hold every ``wanted`` value, stamped at or after ``after``
    (a timestamp text), oldest first; the last ``limit`` of them. Read newest first, page
    by page, until ``limit`` matched; each line parsed by the codec (rows that are not
    valid events are skipped: verify reports them), as a log file's are."""
    found: list[dict[str, Any]] = []
    before = 2**63 - 1
    while limit is None or len(found) < limit:
        if after is None:
            rows = await page(conn, before, PAGE, newest_first=True)
        else:
            rows = await page_since(conn, before, after, PAGE)
        if not rows:
            break
        for _seq, line in rows:
            record = _record(line.encode("ascii", "replace") + b"\n")
            if record is None or any(record.get(k) != v for k, v in wanted.items()):
                continue
            if after is not None and str(record.get("ts", "")) < after:
                continue
            found.append(record)
            if limit is not None and len(found) >= limit:
                break
        before = rows[-1][0]
    found.reverse()
    return found
