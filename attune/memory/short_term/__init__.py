"""Short-term tier: TTL'd working data and the staging area."""

from attune.memory.short_term.protocol import ShortTermStore, StagedClaim, StagedEntry
from attune.memory.short_term.redis_store import RedisShortTermMemory

__all__ = ["RedisShortTermMemory", "ShortTermStore", "StagedClaim", "StagedEntry"]
