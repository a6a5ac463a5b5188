"""Legacy re-exports: ``from attune_llm.security import PIIScrubber, SecretsDetector``.

New code imports them from :mod:`attune.memory`.
"""

from attune.memory.security import AuditLogger, PIIScrubber, SecretsDetector

__all__ = ["AuditLogger", "PIIScrubber", "SecretsDetector"]
