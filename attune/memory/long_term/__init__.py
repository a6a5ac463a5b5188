"""Long-term tier: validated patterns kept for months.

:mod:`.protocol` is what the core needs from a backend (:class:`LongTermStore`, the
write operations it executes and the :class:`Journal` that makes a write's audit event
durable with it), :mod:`.queries` what a read asks a store for and what a record is
indexed by; :mod:`.sqlite_store` is the SQLite backend, :mod:`.postgres_store` the
PostgreSQL one (imported only when chosen: it needs ``asyncpg``, the ``postgres`` extra).
"""

from attune.memory.long_term.protocol import (
    Audited,
    DeleteOp,
    EraseOp,
    IndexOp,
    InsertOp,
    Journal,
    JournalWrite,
    LongTermStore,
    MetaOp,
    PatternRecord,
    PurgeOp,
    RewrapOp,
    RingAdd,
    RingCreate,
    RingKey,
    RingOp,
    RingReroot,
    StoredRing,
    SubjectOp,
    WrappedKey,
    WriteOp,
)
from attune.memory.long_term.queries import Found, Match, PatternQuery, SearchEntry
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore

__all__ = [
    "Audited",
    "DeleteOp",
    "EraseOp",
    "Found",
    "IndexOp",
    "InsertOp",
    "Journal",
    "JournalWrite",
    "LongTermStore",
    "Match",
    "MetaOp",
    "PatternQuery",
    "PatternRecord",
    "PurgeOp",
    "RewrapOp",
    "RingAdd",
    "RingCreate",
    "RingKey",
    "RingOp",
    "RingReroot",
    "SQLiteLongTermStore",
    "SearchEntry",
    "StoredRing",
    "SubjectOp",
    "WrappedKey",
    "WriteOp",
]
