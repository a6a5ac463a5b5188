"""What the core needs from a long-term backend, and nothing more.

Records arrive finished: scrubbed, classified and (where required) encrypted
by the security pipeline. A PostgreSQL backend is a new module implementing
:class:`LongTermStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from attune.memory.types import RECORD_FORMAT

#: Run by the store right after the transaction holding a new record committed, on the
#: store's own thread (it may block); it may return a completion, which the store runs
#: once every hook of that transaction has run, so work for many records can be shared
#: (the core writes the records' audit events with one fsync). An exception from either
#: fails that record's ``insert`` call; the record stays stored.
CommitHook = Callable[[], Callable[[], None] | None]


class JournalWrite(Protocol):
    """Lines of a :class:`Journal` that a store's transaction keeps in its outbox."""

    #: What the store inserts into its outbox in the transaction.
    payload: str

    def finish(self, committed: bool) -> None:
        """Right after the transaction's COMMIT (or its failure), on the same thread. If
        it raises after a COMMIT, the records are stored and the outbox row keeps the
        lines: the store tells the callers so (never that the write was refused)."""
        ...

    def durable(self) -> bool:
        """Whether the journal made the lines durable itself: the outbox row may go."""
        ...

    def sync(self) -> None:
        """Make the lines durable now (the store is closing)."""
        ...


class Journal(Protocol):
    """An append-only log (the core's audit log) whose events a store can make durable
    inside its own transaction, so a write costs one fsync instead of two."""

    def begin(self, events: list[Any]) -> JournalWrite:
        """Lock the journal for events the coming COMMIT makes durable. Raises if the
        journal cannot take them (the audit log is garbled or cannot be written): the
        store then takes the records those events describe out of the transaction and
        fails their callers with that error, so nothing of those writes is stored."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxHook:
    """A :data:`CommitHook` whose event a store with an outbox table may keep in the
    record's own transaction instead (see :class:`Journal`); a store without one just
    calls it, and the journal makes the event durable after the commit."""

    journal: Journal
    event: Any
    fallback: CommitHook

    def __call__(self) -> Callable[[], None] | None:
        return self.fallback()


class PatternRecord(NamedTuple):
    """One long-term pattern as stored. ``content`` is ciphertext when ``encrypted``.

    Immutable. A named tuple rather than a frozen dataclass: a store builds one per
    recall, and a frozen dataclass's constructor costs five times as much.
    """

    pattern_id: str
    pattern_type: str
    classification: str
    created_by: str
    created_at_ms: int
    expires_at_ms: int | None
    metadata_json: str
    content: bytes
    encrypted: bool = False
    key_id: str | None = None
    wrapped_key: bytes | None = None
    nonce: bytes | None = None
    #: How it was laid out and sealed (:data:`~attune.memory.types.RECORD_FORMAT`); records
    #: stored before the format existed read back as 1.
    record_format: int = RECORD_FORMAT

    def __repr__(self) -> str:  # content and key material stay out of logs and tracebacks
        return (
            f"PatternRecord(pattern_id={self.pattern_id!r}, pattern_type={self.pattern_type!r}, "
            f"classification={self.classification!r}, created_by={self.created_by!r}, "
            f"created_at_ms={self.created_at_ms!r}, expires_at_ms={self.expires_at_ms!r}, "
            f"encrypted={self.encrypted!r}, key_id={self.key_id!r}, "
            f"record_format={self.record_format!r})"
        )


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """The key material of one encrypted record: what key rotation re-wraps."""

    pattern_id: str
    classification: str
    key_id: str
    wrapped_key: bytes = field(repr=False)


@runtime_checkable
class LongTermStore(Protocol):
    #: A short name for health reports, e.g. "sqlite".
    backend: str

    async def insert(self, record: PatternRecord, on_commit: CommitHook | None = None) -> bool:
        """Store a new record durably; False (and nothing written) if the id exists already.

        ``on_commit`` runs once the new record is committed (see :data:`CommitHook`)."""
        ...

    async def get(self, pattern_id: str, now_ms: int) -> PatternRecord | None:
        """The record, or None when unknown or expired at ``now_ms``."""
        ...

    async def existing(self, pattern_ids: list[str]) -> set[str]:
        """Which of ``pattern_ids`` are stored, expired or not (the fate of staged patterns:
        a promoted one's id derives from its staged id)."""
        ...

    async def delete(self, pattern_id: str) -> bool:
        """Remove a record and its wrapped key (crypto-shredding); True if it existed."""
        ...

    async def purge_expired(self, now_ms: int) -> int:
        """Delete every record expired at ``now_ms``; returns how many."""
        ...

    async def wrapped_keys(self, after_id: str, limit: int) -> list[WrappedKey]:
        """Encrypted records' key material, by id after ``after_id`` (paging for rotation)."""
        ...

    async def replace_wrapped_keys(self, updates: list[WrappedKey]) -> int:
        """Store re-wrapped data keys in one transaction; returns how many records changed."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
