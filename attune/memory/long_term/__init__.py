"""Long-term tier: validated patterns kept for months.

:mod:`.protocol` is what the core needs from a backend (:class:`LongTermStore`, the
write operations it executes and the :class:`Journal` that makes a write's audit event
durable with it); :mod:`.sqlite_store` is the SQLite backend.
"""

from attune.memory.long_term.protocol import (
    Audited,
    DeleteOp,
    InsertOp,
    Journal,
    JournalWrite,
    LongTermStore,
    PatternRecord,
    PurgeOp,
    RewrapOp,
    WrappedKey,
    WriteOp,
)
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore

__all__ = [
    "Audited",
    "DeleteOp",
    "InsertOp",
    "Journal",
    "JournalWrite",
    "LongTermStore",
    "PatternRecord",
    "PurgeOp",
    "RewrapOp",
    "SQLiteLongTermStore",
    "WrappedKey",
    "WriteOp",
]
