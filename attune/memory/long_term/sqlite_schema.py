"""The SQLite store's schema: its migrations, and how a record lies in a row.

:data:`MIGRATIONS` brings a file from any earlier version to :data:`SCHEMA_VERSION` in
place (:func:`migrate`, in one transaction). The ``patterns`` columns follow
:class:`~attune.memory.long_term.protocol.PatternRecord`'s fields in order, so a row
selected with :data:`COLUMNS` is a record field by field (:func:`to_record`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from attune.errors import CorruptRecordError, LongTermUnavailableError
from attune.memory import store_marker
from attune.memory.long_term.protocol import PatternRecord

#: version -> statements that bring the schema from version-1 to version.

#: Whatever deletes a record (delete, purge, erasure, a refused batch) drops its search row.
_UNINDEX_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS patterns_unindex AFTER DELETE ON patterns "
    "WHEN old.search_rowid IS NOT NULL BEGIN "
    "DELETE FROM pattern_search WHERE rowid = old.search_rowid; END"
)
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
    4: (
        # Namespaces: every record belongs to one; those written before are "default".
        "ALTER TABLE patterns ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default'",
        # Search (sqlite_search.py): a record's row in pattern_search; NULL until indexed
        # (records written before version 4 are indexed by the core on first search).
        "ALTER TABLE patterns ADD COLUMN search_rowid INTEGER",
        "CREATE UNIQUE INDEX IF NOT EXISTS patterns_search_rowid ON patterns (search_rowid) "
        "WHERE search_rowid IS NOT NULL",
        # Records whose search row is not written yet (the core's backfill finds them
        # without reading the whole table).
        "CREATE INDEX IF NOT EXISTS patterns_unindexed ON patterns (pattern_id) "
        "WHERE search_rowid IS NULL",
        # Listing newest first, and the filters a page is asked for most.
        "CREATE INDEX IF NOT EXISTS patterns_newest "
        "ON patterns (namespace, created_at_ms, pattern_id)",
        "CREATE INDEX IF NOT EXISTS patterns_by_creator ON patterns (created_by, created_at_ms)",
        "CREATE INDEX IF NOT EXISTS patterns_by_type "
        "ON patterns (namespace, pattern_type, created_at_ms)",
        # Terms of plaintext records, blind-index tokens of encrypted ones, metadata facet
        # tokens; BM25 ranks. The core folds accents and case itself; the tokenizer agrees.
        "CREATE VIRTUAL TABLE IF NOT EXISTS pattern_search USING fts5("
        "words, tokens, facets, tokenize = 'unicode61 remove_diacritics 2')",
        # Settings the store keeps for the core (the search key's master key id).
        "CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        _UNINDEX_TRIGGER,
    ),
    5: (
        # The secret of each user's audit pseudonym (the audit log names users by it);
        # erasing a user deletes it, and the log no longer links events to the person.
        "CREATE TABLE IF NOT EXISTS audit_subjects ("
        "user_id TEXT PRIMARY KEY, secret BLOB NOT NULL) WITHOUT ROWID",
    ),
    6: (
        # SENSITIVE records' tokens apart from INTERNAL records' (sensitive_tokens), so a
        # SENSITIVE-only search reads only their posting lists and rows. FTS5 cannot add a
        # column: the table is rebuilt from its own rows, split by the record's class.
        "CREATE VIRTUAL TABLE pattern_search_v6 USING fts5("
        "words, tokens, sensitive_tokens, facets, "
        "tokenize = 'unicode61 remove_diacritics 2')",
        "INSERT INTO pattern_search_v6 (rowid, words, tokens, sensitive_tokens, facets) "
        "SELECT s.rowid, s.words, "
        "CASE WHEN p.classification = 'SENSITIVE' THEN '' ELSE s.tokens END, "
        "CASE WHEN p.classification = 'SENSITIVE' THEN s.tokens ELSE '' END, s.facets "
        "FROM pattern_search s JOIN patterns p ON p.search_rowid = s.rowid",
        "DROP TRIGGER patterns_unindex",  # (it names the table: renaming checks it)
        "DROP TABLE pattern_search",
        "ALTER TABLE pattern_search_v6 RENAME TO pattern_search",
        _UNINDEX_TRIGGER,
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

#: The ``patterns`` column of each :class:`PatternRecord` field whose name differs.
COLUMN_OF = {"metadata_json": "metadata", "record_format": "format"}
# (The ``search_rowid`` column is the store's own: not a record field.)
#: The record's fields as columns, in the record's order: rows selected with them are
#: records field by field (:func:`to_record`), and :func:`params` binds them.
COLUMNS = ", ".join(COLUMN_OF.get(name, name) for name in PatternRecord._fields)
INSERT = (
    f"INSERT INTO patterns ({COLUMNS}) "  # noqa: S608 (constant columns)
    f"VALUES ({','.join('?' * len(PatternRecord._fields))})"
)
SELECT_ONE = (
    f"SELECT {COLUMNS} FROM patterns WHERE pattern_id = ? "  # noqa: S608 (constant columns)
    "AND (expires_at_ms IS NULL OR expires_at_ms > ?)"
)
#: Ids per ``IN (...)`` statement (SQLite caps the number of bound parameters).
ID_CHUNK = 500


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Bring the database at ``path`` (open as ``db``) to :data:`SCHEMA_VERSION`, in one
    IMMEDIATE transaction; refuse a newer schema, and a new database where the directory
    says one existed."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = list(await db.execute_fetchall("SELECT version FROM schema_version"))
        current = int(rows[0][0]) if rows else 0
        if not rows:  # a new database: not where the directory says one existed
            store_marker.refuse_schemaless_database(path)
        if current > SCHEMA_VERSION:
            raise LongTermUnavailableError(
                f"{path} has schema version {current}, newer than this attune "
                f"understands ({SCHEMA_VERSION}); upgrade attune"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                await _apply(db, statement)
        if not rows:
            await db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif current != SCHEMA_VERSION:
            await db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    store_marker.note(path.parent, long_term=True)


async def _apply(db: aiosqlite.Connection, statement: str) -> None:
    """One migration statement; a column it adds that a file has already (its version row
    was set back, or a later attune ran on it) is left as it is."""
    try:
        await db.execute(statement)
    except sqlite3.OperationalError as exc:
        if not ("ADD COLUMN" in statement and "duplicate column name" in str(exc)):
            raise


def in_own_transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> None:
    """Run ``work`` as one IMMEDIATE transaction of its own (on the connection's thread):
    committed if it returns, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        work(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def params(record: PatternRecord) -> tuple[Any, ...]:
    """A record as the values of :data:`INSERT`."""
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
        record.namespace,
    )


def to_record(row: Any) -> PatternRecord:
    """A row of :data:`COLUMNS` as a record (they are the record's fields, in order).

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
