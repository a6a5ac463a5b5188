"""What the core needs from a long-term backend, and nothing more.

Records arrive finished: scrubbed, classified and (where required) encrypted
by the security pipeline. A PostgreSQL backend is a new module implementing
:class:`LongTermStore`.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, overload, runtime_checkable

from attune.memory.long_term.queries import DEFAULT_NAMESPACE, Found, PatternQuery, SearchEntry
from attune.memory.types import RECORD_FORMAT


class JournalWrite(Protocol):
    """Events of a :class:`Journal` that a store's transaction keeps in its outbox."""

    #: What the store inserts into its outbox in the transaction.
    payload: str

    def finish(self, committed: bool) -> None:
        """Right after the transaction's COMMIT (or its failure). If it raises after a
        COMMIT, the records are stored and the outbox row keeps the lines: the store tells
        the callers so (never that the write was refused)."""
        ...

    def durable(self) -> bool:
        """Whether the journal made the lines durable itself: the outbox row may go."""
        ...

    def sync(self) -> None:
        """Make the lines durable now (the store is closing)."""
        ...


class Journal(Protocol):
    """Where a write's audit events become durable together with the write: the core's
    audit log, as a store sees it.

    A store makes an :class:`InsertOp`'s event durable in one of two ways, its own choice:

    * **in its transaction** (an outbox): :meth:`begin` before the COMMIT, the returned
      payload stored in the transaction, :meth:`JournalWrite.finish` after it: one fsync
      for the record and its events (the SQLite store does this; a PostgreSQL store may
      keep its events in a table of the same transaction);
    * **right after its COMMIT**: ``await`` :meth:`append` with the events of the records
      it committed, before answering their callers.

    A journal may also be a table of the store's own database (the PostgreSQL store and
    :class:`~attune.memory.long_term.postgres_audit_log.TableJournal`): that store then
    inserts the events in its transaction itself, and :meth:`begin` returns None for any
    other store, which appends them after its COMMIT.

    Either way ``write`` returns once the record and its event are durable. Nothing runs
    on a store's thread on the journal's behalf and nothing is bound to a thread: an
    asyncpg store awaits :meth:`append` on its own event loop.
    """

    def begin(self, events: Sequence[Any]) -> JournalWrite | None:
        """Lock the journal for events the coming COMMIT makes durable; None when this
        journal takes no outbox (it only queues events): then :meth:`append` them after the
        COMMIT. Raises if the journal cannot take them (the audit log is garbled or cannot
        be written): the store then takes the records those events describe out of the
        transaction and fails their callers with that error, so nothing of those writes
        is stored. May block briefly (a file lock): an outbox store calls it where it may
        block, in its transaction."""
        ...

    async def append(self, events: Sequence[Any]) -> None:
        """Make the events of records just committed durable, in order. Raises
        :class:`~attune.errors.AuditLogError` with ``committed`` true if it could not: the
        records are stored, and their callers are told so."""
        ...


@dataclass(frozen=True, slots=True)
class Audited:
    """A write's audit event and the journal that records it (see :class:`Journal`)."""

    journal: Journal
    event: Any


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
    #: The namespace of the agent that wrote it; every read is scoped to one.
    namespace: str = DEFAULT_NAMESPACE

    def __repr__(self) -> str:  # content and key material stay out of logs and tracebacks
        return (
            f"PatternRecord(pattern_id={self.pattern_id!r}, pattern_type={self.pattern_type!r}, "
            f"classification={self.classification!r}, created_by={self.created_by!r}, "
            f"created_at_ms={self.created_at_ms!r}, expires_at_ms={self.expires_at_ms!r}, "
            f"encrypted={self.encrypted!r}, key_id={self.key_id!r}, "
            f"record_format={self.record_format!r}, namespace={self.namespace!r})"
        )


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """The key material of one encrypted record: what key rotation re-wraps."""

    pattern_id: str
    classification: str
    key_id: str
    wrapped_key: bytes = field(repr=False)


# -- operations: what a store executes -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InsertOp:
    """Store a new record; the result is False (nothing written) if its id exists already.
    With ``audit``, the record and that event are durable together when it returns."""

    record: PatternRecord
    audit: Audited | None = None
    #: What the record is found by (None: not searchable, listed all the same): the entry,
    #: or a function that makes it (read it with :func:`entry_of`), which a store may call
    #: while its commit is on the way (the SQLite store does; see ``sqlite_commit``).
    index: SearchEntry | Callable[[], SearchEntry] | None = None


def entry_of(op: InsertOp) -> SearchEntry | None:
    """The search entry of ``op``, made now if ``op`` carries the function that makes it."""
    index = op.index
    return index() if callable(index) else index


@dataclass(frozen=True, slots=True)
class IndexOp:
    """Index records stored before search existed (:meth:`LongTermStore.unindexed`); the
    result is how many of them were still there to index."""

    entries: tuple[tuple[str, SearchEntry], ...]


@dataclass(frozen=True, slots=True)
class MetaOp:
    """The store's value for setting ``name``, set to ``default`` first if it has none
    (the first writer wins, across processes); the result is the stored value."""

    name: str
    default: str


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Remove a record and its wrapped key (crypto-shredding); True if it existed."""

    pattern_id: str


@dataclass(frozen=True, slots=True)
class PurgeOp:
    """Delete the records expired at ``now_ms`` (at most ``limit`` of them, those that
    expired first, when given); the result is how many."""

    now_ms: int
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class RewrapOp:
    """Replace encrypted records' data keys (key rotation), in one transaction; the result
    is how many records changed."""

    updates: tuple[WrappedKey, ...]


@dataclass(frozen=True, slots=True)
class SubjectOp:
    """The secret of ``user_id``'s audit pseudonym, set to ``secret`` first if it has none
    (the first writer wins, across processes); the result is the stored secret."""

    user_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EraseOp:
    """Erase a person (right to be forgotten): delete every record ``user_id`` created and
    the records ``pattern_ids`` (their content, found by the core), with their search rows
    and wrapped keys, and the secret of the user's audit pseudonym; the result is how many
    records were deleted. When it returns, none of it is left in the store's files (the
    SQLite store overwrites deleted rows, merges its search index and empties its WAL)."""

    user_id: str
    pattern_ids: tuple[str, ...] = ()


#: Every change a store makes is one of these values, handed to :meth:`LongTermStore.write`:
#: a store may queue, batch and reorder nothing but what they say.
WriteOp = InsertOp | IndexOp | MetaOp | DeleteOp | PurgeOp | RewrapOp | SubjectOp | EraseOp
#: The same, for a store's ``isinstance`` check of what it was handed.
WRITE_OPS = typing.get_args(WriteOp)


# -- the key ring a store keeps for every host that shares it --------------------------------


@dataclass(frozen=True, slots=True)
class RingKey:
    """One master key of a stored key ring: its id and its material wrapped under the root
    key (:mod:`attune.memory.security.ring_store` says how)."""

    key_id: str
    wrapped: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoredRing:
    """A key ring as a store keeps it. ``root_key_id`` is None while none was created (then
    ``keys`` is empty); ``check`` proves a root key is that root (an AEAD check value)."""

    root_key_id: str | None
    check: bytes = field(repr=False)
    active_key_id: str | None
    keys: tuple[RingKey, ...] = ()

    @property
    def created(self) -> bool:
        return self.root_key_id is not None


@dataclass(frozen=True, slots=True)
class RingCreate:
    """Create the store's key ring unless one exists (the first writer wins, across
    processes): ``keys`` with ``active_key_id`` active, under root ``root_key_id``."""

    root_key_id: str
    check: bytes = field(repr=False)
    active_key_id: str
    keys: tuple[RingKey, ...]


@dataclass(frozen=True, slots=True)
class RingAdd:
    """Add ``key`` to the ring (``activate``: make it the active key); done only while the
    ring's root is ``root_key_id``."""

    root_key_id: str
    key: RingKey
    activate: bool = True


@dataclass(frozen=True, slots=True)
class RingReroot:
    """Move the whole ring from root ``old_root_key_id`` to ``root_key_id``: ``keys`` are
    every key of the ring wrapped under the new root; done only while the root is the old
    one and ``keys`` names exactly the ring's keys."""

    old_root_key_id: str
    root_key_id: str
    check: bytes = field(repr=False)
    keys: tuple[RingKey, ...]


#: A change to a stored key ring (:meth:`LongTermStore.change_key_ring`).
RingOp = RingCreate | RingAdd | RingReroot


@runtime_checkable
class LongTermStore(Protocol):
    """A long-term backend: writes are :data:`WriteOp` values it executes (durably, with
    their audit events, see :class:`Journal`); reads are plain methods (a recall is one
    round trip, the hot path)."""

    #: A short name for health reports, e.g. "sqlite".
    backend: str

    @overload
    async def write(self, op: InsertOp | DeleteOp) -> bool: ...

    @overload
    async def write(self, op: IndexOp | PurgeOp | RewrapOp | EraseOp) -> int: ...

    @overload
    async def write(self, op: MetaOp) -> str: ...

    @overload
    async def write(self, op: SubjectOp) -> bytes: ...

    async def write(self, op: WriteOp) -> bool | int | str | bytes:
        """Execute one write durably and return its result (see each operation). Concurrent
        writes may share a transaction (group commit); each caller gets its own result or
        error."""
        ...

    async def get(self, pattern_id: str, now_ms: int) -> PatternRecord | None:
        """The record, or None when unknown or expired at ``now_ms``."""
        ...

    async def existing(self, pattern_ids: list[str]) -> set[str]:
        """Which of ``pattern_ids`` are stored, expired or not (the fate of staged patterns:
        a promoted one's id derives from its staged id)."""
        ...

    async def wrapped_keys(self, after_id: str, limit: int) -> list[WrappedKey]:
        """Encrypted records' key material, by id after ``after_id`` (paging for rotation)."""
        ...

    async def find(self, query: PatternQuery) -> list[Found]:
        """One page of live records matching ``query`` (see :class:`PatternQuery`)."""
        ...

    async def count(self, query: PatternQuery | None = None) -> int:
        """How many live records ``query`` matches (every stored record without one)."""
        ...

    async def unindexed(self, after_id: str, limit: int) -> list[PatternRecord]:
        """Records stored before search existed, without an index entry, by id."""
        ...

    async def subject_secret(self, user_id: str) -> bytes | None:
        """The secret of ``user_id``'s audit pseudonym (:class:`SubjectOp`), or None when it
        has none (never seen, or erased)."""
        ...

    async def key_ring(self, on_change: Callable[[], None] | None = None) -> StoredRing | None:
        """The key ring this store keeps for every process that shares it; None when it
        keeps none (a store of one host: the key file is the ring). ``on_change``, if
        given, is called (on this loop, from no particular task) after another process
        changes the ring or when the store can no longer tell: the caller then reads the
        ring again. A store may never call it (the core also reloads on an unknown key)."""
        ...

    async def change_key_ring(self, op: RingOp) -> StoredRing:
        """Apply ``op`` in one transaction, serialized with every other change of the ring
        across processes, and return the ring as stored afterwards (unchanged when its
        condition does not hold: the caller compares). A store that keeps no key ring
        raises :class:`~attune.errors.ConfigurationError`."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
