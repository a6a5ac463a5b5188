"""Long-term tier: validated patterns kept for months."""

from attune.memory.long_term.protocol import (
    CommitHook,
    Journal,
    JournalWrite,
    LongTermStore,
    OutboxHook,
    PatternRecord,
    WrappedKey,
)
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore

__all__ = [
    "CommitHook",
    "Journal",
    "JournalWrite",
    "LongTermStore",
    "OutboxHook",
    "PatternRecord",
    "SQLiteLongTermStore",
    "WrappedKey",
]
