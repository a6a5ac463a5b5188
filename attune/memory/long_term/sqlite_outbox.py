"""The SQLite store's audit outbox: rows of journal lines committed with their records.

A batch whose new records carry an :class:`~attune.memory.long_term.protocol.OutboxHook`
inserts its journal's payload into ``audit_outbox`` in the records' own transaction (one
fsync for both, :func:`add_row`). Each connection remembers its rows until their journal
has made the lines durable itself, then deletes them in a later transaction
(:func:`delete_delivered`) or at close (:func:`settle`). Rows a dead writer left behind
are replayed into their journal when the store next opens (:func:`replay_left_rows`).

Everything here but :func:`replay_left_rows` runs on the connection's thread.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Callable

import aiosqlite

from attune.memory.long_term.aiosqlite_compat import in_thread
from attune.memory.long_term.protocol import JournalWrite
from attune.memory.long_term.sqlite_schema import ID_CHUNK, in_own_transaction

#: Replays an outbox's payloads into their journals (default: the audit log's replay).
OutboxReplay = Callable[[list[str]], None]
#: A connection's outbox rows not yet known durable in their journal: (write, row id).
Pending = list[tuple[JournalWrite, int]]


async def replay_left_rows(db: aiosqlite.Connection, replay: OutboxReplay | None) -> None:
    """Rows left by a writer that died (or lost its journal's unsynced tail): replay them
    into their journal (``replay``, or the audit log's), then delete them. Rows of live
    writers replay harmlessly (their lines are found, not repeated)."""
    rows = list(await db.execute_fetchall("SELECT id, payload FROM audit_outbox ORDER BY id"))
    if not rows:
        return
    run = replay or _audit_replay()
    payloads = [str(row[1]) for row in rows]
    await in_thread(db, lambda _db: run(payloads))
    await in_thread(db, delete_rows, [int(row[0]) for row in rows])


def _audit_replay() -> OutboxReplay:
    """The default replay: the core's audit log (imported late: the store needs it only
    when rows are left over)."""
    from attune.memory.security.audit import replay_outbox

    return replay_outbox


def add_row(db: sqlite3.Connection, payload: str) -> int:
    """Insert a batch's payload, inside its transaction; returns the row's id.

    Ids are random 63-bit numbers, never max+1: a deleted id is not handed to a later
    writer, so deleting "my delivered rows" cannot hit someone else's."""
    row = secrets.randbits(63)  # once per batch
    db.execute("INSERT INTO audit_outbox (id, payload) VALUES (?, ?)", (row, payload))
    return row


def delete_delivered(db: sqlite3.Connection, outbox: Pending) -> set[int]:
    """Delete this connection's outbox rows whose lines their journal has made durable.

    A journal makes its writes durable in order, so while neither the oldest nor the newest
    pending write is durable, none is (the common case: checked in O(1) per batch). A write
    whose lines the journal lost stays pending for good; its row waits for a replay.
    """
    if not outbox or not (outbox[0][0].durable() or outbox[-1][0].durable()):
        return set()
    ready = [row for write, row in outbox if write.durable()]
    delete_rows(db, ready)
    return set(ready)


def delete_rows(db: sqlite3.Connection, ids: list[int]) -> None:
    for chunk in range(0, len(ids), ID_CHUNK):
        part = ids[chunk : chunk + ID_CHUNK]
        marks = ",".join("?" * len(part))
        db.execute(f"DELETE FROM audit_outbox WHERE id IN ({marks})", part)  # noqa: S608


def settle(db: sqlite3.Connection, outbox: Pending) -> None:
    """At close: make the journals durable and delete the rows they now cover (a row
    whose journal fails stays, for the next open to replay)."""
    if not outbox:
        return
    for write, _row in outbox:
        if not write.durable():
            with contextlib.suppress(Exception):
                write.sync()
    in_own_transaction(db, lambda db: delete_delivered(db, outbox))
