"""attune: async-first two-tier memory for AI agents.

from attune import EmpathyOS            # blocking API
from attune import AsyncEmpathyOS       # the same, awaitable
"""

import logging

from attune.empathy import AsyncEmpathyOS, EmpathyOS, get_redis_memory
from attune.errors import (
    AccessDeniedError,
    AttuneError,
    AuditLogError,
    ClaudeMemoryError,
    ConfigurationError,
    CorruptCiphertextError,
    CorruptRecordError,
    PatternNotFoundError,
    PromotionCommittedError,
    SecretsDetectedError,
    ShortTermUnavailableError,
    ValidationError,
)
from attune.memory.types import AccessTier, Classification

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AccessTier",
    "AsyncEmpathyOS",
    "AttuneError",
    "AuditLogError",
    "Classification",
    "ClaudeMemoryError",
    "ConfigurationError",
    "CorruptCiphertextError",
    "CorruptRecordError",
    "EmpathyOS",
    "PatternNotFoundError",
    "PromotionCommittedError",
    "SecretsDetectedError",
    "ShortTermUnavailableError",
    "ValidationError",
    "__version__",
    "get_redis_memory",
]

# A library: its records go where the application sends them, nowhere by default.
logging.getLogger("attune").addHandler(logging.NullHandler())
