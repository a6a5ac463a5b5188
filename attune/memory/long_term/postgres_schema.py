"""The PostgreSQL store's schema: its migrations, and how a record lies in a row.

:data:`MIGRATIONS` brings a database from any earlier version to :data:`SCHEMA_VERSION`
(:func:`migrate`), in one transaction that first takes a transaction-level advisory lock
(:data:`MIGRATION_LOCK`): several processes that open a fresh database at once apply the
migrations once, the others wait and find them done.

The ``patterns`` columns of a record follow
:class:`~attune.memory.long_term.protocol.PatternRecord`'s fields in order, so a row
selected with :data:`COLUMNS` is a record field by field (:func:`to_record`). Ids are
``COLLATE "C"``: they sort by code point, as Python and SQLite order them, whatever the
database's collation (cursors and paging by id depend on it).

Search lives in the same rows (no separate table, nothing to keep in step): ``words``
(plaintext records' folded terms), ``tokens`` / ``sensitive_tokens`` (encrypted records'
blind-index tokens, INTERNAL / SENSITIVE) as ``tsvector`` with positions (phrases), and
``facets`` (metadata facet tokens) as ``text[]``, each with a GIN index; ``indexed`` is
false until a record's search columns are written (records imported or written before
search: :meth:`~.postgres_store.PostgresLongTermStore.unindexed`).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from attune.errors import ConfigurationError, CorruptRecordError, LongTermUnavailableError
from attune.memory.long_term import postgres_audit
from attune.memory.long_term.protocol import PatternRecord

#: The advisory lock migrations hold (a constant of attune's own: "attune" as an int8).
MIGRATION_LOCK = 0x617474756E65

#: The advisory lock the clean-up after an erasure holds (one at a time: two sessions
#: that REINDEX CONCURRENTLY one table's indexes together deadlock).
ERASURE_LOCK = MIGRATION_LOCK + 1

#: The advisory lock every change of the key ring holds (:mod:`.postgres_keyring`).
KEY_RING_LOCK = MIGRATION_LOCK + 2

#: version -> statements that bring the schema from version-1 to version.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE patterns (
            pattern_id       TEXT COLLATE "C" PRIMARY KEY,
            pattern_type     TEXT NOT NULL,
            classification   TEXT NOT NULL,
            created_by       TEXT NOT NULL,
            created_at_ms    BIGINT NOT NULL,
            expires_at_ms    BIGINT,
            metadata         TEXT NOT NULL,
            content          BYTEA NOT NULL,
            encrypted        BOOLEAN NOT NULL DEFAULT false,
            key_id           TEXT,
            wrapped_key      BYTEA,
            nonce            BYTEA,
            format           INTEGER NOT NULL DEFAULT 1,
            namespace        TEXT NOT NULL DEFAULT 'default',
            indexed          BOOLEAN NOT NULL DEFAULT false,
            words            TSVECTOR,
            tokens           TSVECTOR,
            sensitive_tokens TSVECTOR,
            facets           TEXT[]
        )
        """,
        "CREATE INDEX patterns_expiry ON patterns (expires_at_ms) WHERE expires_at_ms IS NOT NULL",
        # Listing newest first, and the filters a page is asked for most.
        "CREATE INDEX patterns_newest ON patterns (namespace, created_at_ms, pattern_id)",
        "CREATE INDEX patterns_by_creator ON patterns (created_by, created_at_ms)",
        "CREATE INDEX patterns_by_type ON patterns (namespace, pattern_type, created_at_ms)",
        # Records whose search columns are not written yet (the core's backfill).
        "CREATE INDEX patterns_unindexed ON patterns (pattern_id) WHERE NOT indexed",
        "CREATE INDEX patterns_words ON patterns USING GIN (words)",
        "CREATE INDEX patterns_tokens ON patterns USING GIN (tokens)",
        "CREATE INDEX patterns_sensitive_tokens ON patterns USING GIN (sensitive_tokens)",
        "CREATE INDEX patterns_facets ON patterns USING GIN (facets)",
        # Settings the store keeps for the core (the search key's master key id).
        "CREATE TABLE store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # The secret of each user's audit pseudonym; erasing a user deletes it.
        "CREATE TABLE audit_subjects (user_id TEXT PRIMARY KEY, secret BYTEA NOT NULL)",
    ),
    # The key ring of every host sharing the database (:mod:`.postgres_keyring`): one head
    # row (root key id, its check value, the active key) and the keys wrapped under the root.
    2: (
        """
        CREATE TABLE key_ring (
            singleton     BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
            root_key_id   TEXT NOT NULL,
            root_check    BYTEA NOT NULL,
            active_key_id TEXT NOT NULL,
            changed_at_ms BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE key_ring_keys (
            key_id      TEXT COLLATE "C" PRIMARY KEY,
            wrapped     BYTEA NOT NULL,
            added_at_ms BIGINT NOT NULL
        )
        """,
    ),
    # The audit log, one hash chain for every host: append-only events and the chain head
    # (:mod:`.postgres_audit`).
    3: postgres_audit.SCHEMA,
}
SCHEMA_VERSION = max(MIGRATIONS)
#: The indexes that hold a record's words, tokens, facets or creator: rebuilt after an
#: erasure (a GIN index never drops a key from its entry tree, and a B-tree page keeps a
#: deleted entry's bytes in its free space; measured: tests/test_postgres_store.py).
ERASURE_INDEXES = (
    "patterns_words",
    "patterns_tokens",
    "patterns_sensitive_tokens",
    "patterns_facets",
    "patterns_by_creator",
)
#: What runs after an erasure, outside a transaction (see ``PostgresLongTermStore``):
#: dead rows and their index entries removed, then those indexes rebuilt from live rows.
AFTER_ERASURE = (
    "VACUUM (INDEX_CLEANUP ON) patterns",
    "VACUUM (INDEX_CLEANUP ON) audit_subjects",
    *(f"REINDEX INDEX CONCURRENTLY {name}" for name in ERASURE_INDEXES),
    "REINDEX TABLE CONCURRENTLY audit_subjects",
)
#: The indexes an interrupted ``REINDEX ... CONCURRENTLY`` left behind (a cancelled or
#: failed erasure clean-up): invalid copies named ``<index>_ccnew[N]`` / ``_ccold[N]``.
#: The next rebuild makes a new copy beside them, so they would stay for good, holding
#: what they were built from (an erased user's words, if their rows were still visible)
#: and, once ready, updated by every write. Dropped before the rebuild.
LEFTOVER_INDEXES = (
    "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c "
    "ON c.oid = i.indexrelid WHERE NOT i.indisvalid "
    "AND i.indrelid IN ('patterns'::regclass, 'audit_subjects'::regclass) "
    "AND c.relname ~ '_cc(new|old)[0-9]*$'"
)


#: The ``patterns`` column of each :class:`PatternRecord` field whose name differs.
COLUMN_OF = {"metadata_json": "metadata", "record_format": "format"}
#: The record's fields as columns, in the record's order.
COLUMNS = ", ".join(COLUMN_OF.get(name, name) for name in PatternRecord._fields)
#: The same on the table alias ``p``.
RECORD = ", ".join(f"p.{COLUMN_OF.get(name, name)}" for name in PatternRecord._fields)
SELECT_ONE = (
    f"SELECT {COLUMNS} FROM patterns WHERE pattern_id = $1 "  # noqa: S608 (constant columns)
    "AND (expires_at_ms IS NULL OR expires_at_ms > $2)"
)

#: Each record field's SQL type (for ``unnest`` of a batch's columns).
_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "text",
    "bytea",
    "bool",
    "text",
    "bytea",
    "bytea",
    "int4",
    "text",
)


def _insert_many(condition: str) -> str:
    """New records, one array per column (and the search columns as literals, see
    :mod:`.postgres_search`), where ``condition`` holds; a duplicate id inserts nothing
    (RETURNING says which did)."""
    return (
        f"INSERT INTO patterns ({COLUMNS}, indexed, words, tokens, sensitive_tokens, facets) "  # noqa: S608
        f"SELECT {', '.join(f'c{n}' for n in range(len(_TYPES)))}, "
        "ix, w::tsvector, t::tsvector, st::tsvector, "
        "CASE WHEN f IS NULL THEN NULL ELSE "
        "ARRAY(SELECT jsonb_array_elements_text(f::jsonb)) END "
        "FROM unnest("
        + ", ".join(f"${n + 1}::{t}[]" for n, t in enumerate(_TYPES))
        + f", ${len(_TYPES) + 1}::bool[], ${len(_TYPES) + 2}::text[], ${len(_TYPES) + 3}::text[], "
        f"${len(_TYPES) + 4}::text[], ${len(_TYPES) + 5}::text[]) AS r("
        + ", ".join(f"c{n}" for n in range(len(_TYPES)))
        + ", ix, w, t, st, f) "
        + condition
        + " ON CONFLICT (pattern_id) DO NOTHING RETURNING pattern_id"
    )


#: Records inserted (an id already there is skipped); their ids come back.
INSERT_MANY = _insert_many("")
#: The number of parameters :data:`INSERT_MANY` takes.
INSERT_PARAMS = len(_TYPES) + 5


def insert_many_if(condition: str) -> str:
    """:data:`INSERT_MANY` inserting only where ``condition`` (an SQL expression) holds."""
    return _insert_many(f" WHERE {condition}")


async def migrate(conn: asyncpg.Connection) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction holding
    :data:`MIGRATION_LOCK`; refuse a newer schema, and a database that is not attune's
    (tables of attune's names without its ``schema_version``): nothing is created."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        if not await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
            await _refuse_others(conn)
            await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        try:
            rows = await conn.fetch("SELECT version FROM schema_version")
        except asyncpg.UndefinedColumnError:
            raise _not_attunes("schema_version") from None
        current = int(rows[0][0]) if rows else 0
        if current > SCHEMA_VERSION:
            raise LongTermUnavailableError(
                f"the PostgreSQL database has attune schema version {current}, newer than "
                f"this attune understands ({SCHEMA_VERSION}); upgrade attune"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
        if not rows:
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION)
        elif current != SCHEMA_VERSION:
            await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)


#: The tables the migrations create (besides ``schema_version``).
_TABLES = (
    "patterns",
    "store_meta",
    "audit_subjects",
    "key_ring",
    "key_ring_keys",
    postgres_audit.TABLE,
    postgres_audit.HEAD,
)


async def _refuse_others(conn: asyncpg.Connection) -> None:
    """A database with no attune schema yet must not hold a table of attune's names:
    another application's, which the migrations would fail on, or worse, write into."""
    taken = await conn.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relname = ANY($1::text[]) "
        "AND pg_table_is_visible(c.oid) ORDER BY c.relname",
        list(_TABLES),
    )
    if taken:
        raise _not_attunes(", ".join(str(r[0]) for r in taken))


def _not_attunes(tables: str) -> ConfigurationError:
    return ConfigurationError(
        f"the PostgreSQL database already holds tables attune would create ({tables}), "
        "but no attune schema version: it belongs to another application. Give attune a "
        "database of its own (CREATE DATABASE attune) and name it in ATTUNE_DATABASE_URL; "
        "nothing was created"
    )


def columns(records: list[PatternRecord]) -> list[list[Any]]:
    """Records as one list per field (the first :data:`INSERT_MANY` parameters)."""
    return [list(values) for values in zip(*records, strict=True)]


def to_record(row: Any) -> PatternRecord:
    """A row of :data:`COLUMNS` as a record (they are the record's fields, in order)."""
    fields = list(row[: len(PatternRecord._fields)])
    if type(fields[8]) is not bool:
        raise CorruptRecordError(
            str(fields[0]),
            "its encrypted flag is neither true nor false, so how to read it is unknown",
        )
    return PatternRecord._make(fields)
