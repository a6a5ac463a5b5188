"""The exception hierarchy of attune.

Every error the library raises on purpose is an :class:`AttuneError`. Where a
builtin exception is the natural fit (a bad argument is a ``ValueError``, a
value that cannot be serialised a ``TypeError``, a denied action a
``PermissionError``), the subclass inherits from it too, so callers can catch
either.

Messages say what went wrong and what to do about it. They never contain the
data that was being written: no content, no PII, no secret values.
"""

from __future__ import annotations

from collections.abc import Mapping


class AttuneError(Exception):
    """Base class of every error raised by attune."""


class ConfigurationError(AttuneError, ValueError):
    """The configuration (arguments or environment variables) is invalid or incomplete."""


class ClaudeMemoryError(ConfigurationError):
    """A file of the Claude memory hierarchy (``load_claude_memory``) cannot be loaded:
    unreadable, too big, an ``@import`` that escapes the allowed roots, goes too deep or
    cycles. ``path`` names the file at fault and ``reason`` says why; nothing of its
    content is ever echoed."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Claude memory file {self.path}: {reason}")


class ValidationError(AttuneError, ValueError):
    """An argument to a memory operation is invalid; nothing was written."""


class SerializationError(AttuneError, TypeError):
    """A value cannot be stored because it is not JSON-serialisable; nothing was written."""


class ValueTooLargeError(ValidationError):
    """A value exceeds the configured size limit; nothing was written."""


class AccessDeniedError(AttuneError, PermissionError):
    """The agent's access tier does not allow this action; nothing was written."""

    def __init__(self, action: str, tier: str, required: str) -> None:
        self.action = action
        self.tier = tier
        self.required = required
        super().__init__(
            f"access denied: {action!r} needs access tier {required} or higher, "
            f"this agent has {tier}"
        )


class PatternNotFoundError(AttuneError, LookupError):
    """The pattern does not exist, has expired, or was already promoted or rejected."""


class CorruptRecordError(AttuneError):
    """A stored record (long-term pattern, staged pattern or stashed value) cannot be read:
    it was altered or damaged outside attune. ``record_id`` names it (a stashed value: its
    key); nothing of the record is echoed. ``shown`` is how the message names it when the
    id is the caller's text (a working-data key, which may hold personal data)."""

    def __init__(self, record_id: str, reason: str, *, shown: str | None = None) -> None:
        self.record_id = record_id
        self.reason = reason
        name = repr(record_id) if shown is None else shown
        super().__init__(
            f"record {name} is corrupt ({reason}); it cannot be read. Restore it "
            "from a backup or delete it; other records are unaffected"
        )


class MemoryUnavailableError(AttuneError, ConnectionError):
    """A memory tier cannot be reached."""


class ShortTermUnavailableError(MemoryUnavailableError):
    """The short-term tier (Redis) cannot be reached.

    The long-term tier keeps working; :meth:`health_check` reports the reason.
    """


class PromotionCommittedError(ShortTermUnavailableError):
    """A promotion was committed to long-term memory (``pattern_id``), but Redis failed
    before the staged entry (``staged_pattern_id``) could be removed.

    The promotion stands: do not retry it. The leftover staged entry is never listed
    as awaiting review and is removed on its next touch.
    """

    def __init__(self, staged_pattern_id: str, pattern_id: str, cause: str) -> None:
        self.staged_pattern_id = staged_pattern_id
        self.pattern_id = pattern_id
        super().__init__(
            f"staged pattern {staged_pattern_id!r} was promoted and committed to long-term "
            f"memory as {pattern_id!r}, but removing it from the staging area failed "
            f"({cause}). The promotion stands; do not retry it. The leftover staged entry "
            "is not listed for review and is removed on its next touch"
        )


class ShortTermCommandError(AttuneError):
    """Redis refused a command (for example a key of another type under attune's prefix).

    Only the operation it belongs to fails; nothing was changed by it.
    """


class LongTermUnavailableError(MemoryUnavailableError):
    """The long-term tier (SQLite or PostgreSQL) cannot be opened or written."""


class ErasureNotCompactedError(LongTermUnavailableError):
    """An erasure was committed (``erased`` records, and the user's pseudonym secret) and
    audited, but what its deleted rows left in the store's files (SQLite's WAL, the search
    index) could not be cleared yet: other connections' readers held them. Run
    ``erase_user`` again once they are done; it completes the cleanup."""

    def __init__(self, message: str, erased: int) -> None:
        super().__init__(message)
        self.erased = erased


class MigrationError(AttuneError):
    """A copy of the long-term store (``attune migrate``) does not match its source;
    the source is untouched and running the migration again resumes it."""


class SecurityError(AttuneError):
    """The security pipeline refused a write."""


class SecretsDetectedError(SecurityError, ValueError):
    """The data contains what looks like a secret; the write was blocked.

    Only the kinds of secret found are kept (``kinds``), never the values.
    """

    def __init__(self, kinds: Mapping[str, int], where: str = "content") -> None:
        self.kinds = dict(kinds)
        listed = ", ".join(f"{k} x{n}" for k, n in sorted(self.kinds.items()))
        super().__init__(
            f"secrets detected in {where} ({listed}); the write was blocked. "
            "Remove the credential (store a reference to a secret manager instead) and retry."
        )


class SecurityPipelineError(SecurityError):
    """A step of the security pipeline could not run; the write was refused (fail closed).

    The one exception is :class:`AuditLogError` with ``committed`` true: read its message.
    """


class AuditLogError(SecurityPipelineError):
    """The audit log cannot be written (a full disk, a file that cannot be opened for
    writing, a last line that is not an audit event).

    ``reason`` says what is wrong with the log, ``outcome`` what became of the operation,
    ``advice`` what to do. ``committed`` is false when the operation was refused and
    nothing was stored or changed; true when it *was* carried out and only its audit event
    is missing from the log (``outcome`` says whether the event is held for replay):
    do not retry it then.
    """

    def __init__(self, reason: str, outcome: str, advice: str, *, committed: bool = False) -> None:
        self.reason = reason
        self.outcome = outcome
        self.advice = advice
        self.committed = committed
        super().__init__(f"{reason}; {outcome}. {advice}".rstrip())

    def retold(self, outcome: str, *, committed: bool = False) -> AuditLogError:
        """The same failure, for an operation whose fate ``outcome`` tells."""
        return AuditLogError(self.reason, outcome, self.advice, committed=committed)


class DecryptionError(SecurityError):
    """A stored record could not be decrypted: wrong key, missing key, or tampered data."""


class CorruptCiphertextError(CorruptRecordError, DecryptionError):
    """An encrypted record's key opened, but its content (or nonce, or a field bound to it:
    id, classification, format) failed authentication: the record was altered or damaged.

    Both a :class:`CorruptRecordError` (damage, not a key problem: restore the record from
    a backup or delete it) and a :class:`DecryptionError` (as tampered data was before)."""
