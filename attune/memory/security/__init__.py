"""Security units of the write path; :mod:`.pipeline` runs them in order."""

from attune.memory.security.audit import AuditLogger
from attune.memory.security.classifier import ClassificationDecision, classify
from attune.memory.security.crypto import EncryptedBlob, EnvelopeCipher
from attune.memory.security.keyring import KeyRing
from attune.memory.security.pii import PIIScrubber, ScrubResult
from attune.memory.security.secrets import SecretFinding, SecretsDetector

__all__ = [
    "AuditLogger",
    "ClassificationDecision",
    "EncryptedBlob",
    "EnvelopeCipher",
    "KeyRing",
    "PIIScrubber",
    "ScrubResult",
    "SecretFinding",
    "SecretsDetector",
    "classify",
]
