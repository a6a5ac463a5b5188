"""Long-term tier: validated patterns kept for months."""

from attune.memory.long_term.protocol import CommitHook, LongTermStore, PatternRecord, WrappedKey
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore

__all__ = ["CommitHook", "LongTermStore", "PatternRecord", "SQLiteLongTermStore", "WrappedKey"]
