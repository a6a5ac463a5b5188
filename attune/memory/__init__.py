"""Unified two-tier memory: short-term (Redis) and long-term (SQLite) behind one API."""

from attune.errors import (
    AccessDeniedError,
    AttuneError,
    ClaudeMemoryError,
    ConfigurationError,
    DecryptionError,
    PatternNotFoundError,
    SecretsDetectedError,
    ShortTermUnavailableError,
    ValidationError,
)
from attune.memory.claude_memory import ClaudeMemory, ClaudeMemoryFile
from attune.memory.config import Environment, MemoryConfig
from attune.memory.security import AuditLogger, PIIScrubber, SecretsDetector
from attune.memory.short_term import RedisShortTermMemory
from attune.memory.sync import UnifiedMemory
from attune.memory.types import AccessTier, Classification
from attune.memory.unified import AsyncUnifiedMemory

__all__ = [
    "AccessDeniedError",
    "AccessTier",
    "AsyncUnifiedMemory",
    "AttuneError",
    "AuditLogger",
    "Classification",
    "ClaudeMemory",
    "ClaudeMemoryError",
    "ClaudeMemoryFile",
    "ConfigurationError",
    "DecryptionError",
    "Environment",
    "MemoryConfig",
    "PIIScrubber",
    "PatternNotFoundError",
    "RedisShortTermMemory",
    "SecretsDetectedError",
    "SecretsDetector",
    "ShortTermUnavailableError",
    "UnifiedMemory",
    "ValidationError",
]
