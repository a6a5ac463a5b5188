"""The async core: :class:`AsyncUnifiedMemory`, one API over both tiers.

Every operation follows the same order: check the access tier, validate the
input, run the security pipeline (for pattern writes), then touch a tier. So a
denied or invalid call never writes anything, and the pipeline runs in one
place for every write path (:mod:`attune.memory.security.pipeline`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from attune._facade import AsyncResource
from attune.errors import (
    AttuneError,
    CorruptRecordError,
    SecretsDetectedError,
    ValidationError,
)
from attune.memory import access, backends, claude_memory, clock, validation
from attune.memory.claude_memory import ClaudeMemory
from attune.memory.config import MemoryConfig
from attune.memory.long_term.protocol import (
    InsertOp,
    LongTermStore,
    PatternRecord,
)
from attune.memory.people import PeopleData
from attune.memory.reads import LongTermReads, pattern_result
from attune.memory.security import randomness
from attune.memory.security.audit import AuditEvent, Durability
from attune.memory.security.pipeline import SecurityPipeline
from attune.memory.sharing import shared_long_term, shared_short_term
from attune.memory.short_term.protocol import ShortTermStore
from attune.memory.staged_fates import PATTERN_PREFIX
from attune.memory.staged_patterns import (
    MAX_CONTENT_CHARS,
    StagedPatterns,
)
from attune.memory.staging import StagingArea
from attune.memory.transfer import PatternTransfer
from attune.memory.types import AccessTier, Classification
from attune.memory.upkeep import LongTermUpkeep
from attune.memory.working_data import WorkingData

if TYPE_CHECKING:
    from attune.memory.sharing import Sharer


#: One record per denied call (agents are named by their audit pseudonym, as in the log).
_log = logging.getLogger("attune.access")


class AsyncUnifiedMemory(
    WorkingData,
    StagedPatterns,
    LongTermReads,
    LongTermUpkeep,
    PatternTransfer,
    PeopleData,
    AsyncResource,
):
    """Short-term (Redis) and long-term (SQLite) memory for one agent, all awaitable.

    ``user_id`` identifies the agent; ``access_tier`` limits what it may do.
    ``namespace`` (default: the configuration's, ``ATTUNE_NAMESPACE``, else
    ``"default"``) is where its long-term and staged patterns live and what it reads.
    Pass ``short_term`` to share one short-term store between agents: a store, or a
    memory or agent object whose store to share (likewise ``long_term``); a shared
    store is left open by :meth:`aclose`.
    Use ``async with`` or ``await memory.aclose()`` to release connections.
    """

    def __init__(
        self,
        user_id: str,
        config: MemoryConfig | None = None,
        *,
        access_tier: AccessTier | str = AccessTier.CONTRIBUTOR,
        short_term: ShortTermStore | Sharer | None = None,
        long_term: LongTermStore | Sharer | None = None,
        pipeline: SecurityPipeline | None = None,
        namespace: str | None = None,
    ) -> None:
        self.user_id = validation.check_agent_id(user_id)
        self.access_tier = AccessTier.parse(access_tier)
        validation.check_instance(config, MemoryConfig, "config")
        validation.check_instance(pipeline, SecurityPipeline, "pipeline")
        self.config = config if config is not None else MemoryConfig()
        self.namespace = validation.check_namespace(
            self.config.namespace if namespace is None else namespace
        )
        self.environment = self.config.environment
        short_term = shared_short_term(short_term, "short_term")
        long_term = shared_long_term(long_term, "long_term")
        self._owns_short_term = short_term is None
        self.short_term: ShortTermStore = (
            short_term if short_term is not None else backends.open_short_term(self.config)
        )
        backends.check_short_term(self.short_term, self.config)
        self._owns_long_term = long_term is None
        self.long_term: LongTermStore = (
            long_term if long_term is not None else backends.open_long_term(self.config)
        )
        self.pipeline = pipeline if pipeline is not None else SecurityPipeline(self.config)
        self._closed = False
        #: How the audit log names this agent (:mod:`.security.pseudonyms`); set by the
        #: first call that audits.
        self._subject: str | None = None
        self._claude_memory: ClaudeMemory | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(user_id={self.user_id!r}, access_tier={self.access_tier.name}, "
            f"environment={self.environment.value!r}, namespace={self.namespace!r})"
        )

    @property
    def claude_memory(self) -> ClaudeMemory | None:
        """The CLAUDE.md hierarchy (:mod:`attune.memory.claude_memory`) when
        ``load_claude_memory`` is on (``ATTUNE_CLAUDE_MEMORY=true``), else None (nothing is
        read). Loaded on first access, for the working directory of that moment, then kept;
        a file that cannot be loaded raises :class:`~attune.errors.ClaudeMemoryError` (the
        next access tries again). Reads a few small files: blocking, but brief."""
        if not self.config.load_claude_memory:
            return None
        if self._claude_memory is None:
            self._claude_memory = claude_memory.load(self.config)
        return self._claude_memory

    # -- helpers ---------------------------------------------------------------------------

    def _event(
        self,
        name: str,
        *,
        target_id: str | None = None,
        classification: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """An audit event of this agent (its pseudonym and tier filled in)."""
        return AuditEvent(
            name,
            self._audit_subject(),
            self.access_tier.name,
            target_id,
            classification,
            outcome,
            details,
        )

    def _closed_message(self) -> str:
        return f"{type(self).__name__} is closed; create a new one"

    async def _require(self, action: str, target_id: object = None) -> None:
        """Check (and audit) that this agent's tier allows ``action``; before any I/O but
        the pseudonym's lookup (once per object, for a call that audits)."""
        if self._closed:
            raise AttuneError(self._closed_message())
        allowed = access.is_allowed(self.access_tier, action)
        if self._subject is None and not (allowed and action in access.WORKING_DATA):
            # The store's key ring first: a host with the wrong root key stops here,
            # before its first write (the pseudonym's secret).
            await self.pipeline.keys_ready(self.long_term)
            self._subject = await self._pseudonym_of(self.user_id, create=True)
        if allowed and not access.audit_when_allowed(action):
            return
        # An id not of attune's making (a bad one, or anything a caller typed: an email, a
        # key pasted in the wrong place) is audited as none: the log keeps no values. A bad
        # one is refused right after by the operation's own check, with a clear error.
        target = target_id if validation.is_own_id(target_id) else None
        required = access.REQUIRED_TIER[action].name
        checked = self._event(
            "access.check",
            target_id=target,
            outcome="allowed" if allowed else "denied",
            details={"action": action, "required": required},
        )
        if allowed:  # queued: the operation's own final event makes it durable
            await self.pipeline.audit(checked, Durability.QUEUED)
            return
        await self.pipeline.audit(checked)  # denied: awaited, the call ends there
        _log.warning(
            "access denied: agent %s (%s) may not %s (needs %s)",
            self._audit_subject(),
            self.access_tier.name,
            action,
            required,
        )
        access.require(self.access_tier, action)  # raises AccessDeniedError

    def _staging(self) -> StagingArea:
        return StagingArea(
            self.short_term,
            self.long_term,
            self.pipeline,
            subject=self._audit_subject(),
            tier=self.access_tier.name,
            namespace=self.namespace,
        )

    # -- long-term ------------------------------------------------------------------------------

    async def persist_pattern(
        self,
        content: str,
        pattern_type: str,
        classification: Classification | str | None = None,
        auto_classify: bool = True,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a validated pattern for the long term.

        Returns ``{"pattern_id", "classification", "encrypted", "created_at", ...}``,
        or ``{"error": "secrets_detected", "blocked": True, ...}`` when the content
        holds a credential (nothing is stored then).
        """
        await self._require("persist_pattern")
        pattern_id = PATTERN_PREFIX + randomness.uuid7_hex()
        try:
            result = await self._persist(
                pattern_id,
                content=content,
                pattern_type=pattern_type,
                classification=classification,
                auto_classify=auto_classify,
                metadata=metadata,
                event="pattern.store",
            )
        except SecretsDetectedError as exc:
            return {
                "error": "secrets_detected",
                "blocked": True,
                "secret_kinds": exc.kinds,
                "message": str(exc),
            }
        assert result is not None  # a fresh random id cannot collide
        return result

    async def _persist(
        self,
        pattern_id: str,
        *,
        content: Any,
        pattern_type: Any,
        classification: Classification | str | None,
        auto_classify: bool,
        metadata: Mapping[str, Any] | None,
        event: str,
        before_insert: Callable[[], Awaitable[None]] | None = None,
        provenance: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        if not isinstance(content, str) or not content.strip():
            raise ValidationError("content must be a non-empty string")
        if len(content) > MAX_CONTENT_CHARS:
            raise ValidationError(f"content is longer than {MAX_CONTENT_CHARS} characters")
        validation.check_text(content, "content")
        pattern_type = validation.check_pattern_type(pattern_type)
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise ValidationError("metadata must be a dict")
        validation.check_json(dict(metadata), "metadata", self.config.max_value_bytes)
        if not isinstance(auto_classify, bool):
            raise ValidationError("auto_classify must be True or False")
        explicit = None if classification is None else Classification.parse(classification)

        prepared = await self.pipeline.prepare_pattern(
            content,
            pattern_type,
            dict(metadata),
            explicit,
            auto_classify,
            subject=self._audit_subject(),
            tier=self.access_tier.name,
            target_id=pattern_id,
        )
        await self.pipeline.keys_ready(self.long_term)  # another host's new active key
        # Who staged and promoted it: agent ids, set by attune, not content: stored as they
        # are (as created_by is), never scrubbed, so erasure finds the stager's records.
        kept = {**prepared.metadata, **(provenance or {})}
        now = clock.now_ms()
        sealed = self.pipeline.seal(pattern_id, prepared.classification, prepared.content, kept)
        record = PatternRecord(
            pattern_id=pattern_id,
            pattern_type=pattern_type,
            classification=prepared.classification.value,
            created_by=self.user_id,
            created_at_ms=now,
            expires_at_ms=now + self.pipeline.retention_ms(prepared.classification),
            metadata_json=sealed.metadata_json,
            content=sealed.content,
            encrypted=sealed.encrypted,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            nonce=sealed.nonce,
            namespace=self.namespace,
        )
        index = await self._search_index() if sealed.encrypted else None
        # Made by the store when it suits it (SQLite: while its commit is on the way).
        entry = functools.partial(self._entry, record, prepared.content, kept, index)
        # The final event is made durable with the record, behind this operation's queued
        # decisions (the store's outbox, or right after its commit): write returns once
        # both are.
        audited = self.pipeline.audited(
            self._event(
                event,
                target_id=pattern_id,
                classification=record.classification,
                details={"encrypted": sealed.encrypted, **prepared.audit_details},
            )
        )
        if before_insert is not None:
            await before_insert()
        if not await self.long_term.write(InsertOp(record, audited, entry)):
            return None
        return {
            "pattern_id": pattern_id,
            "classification": record.classification,
            "encrypted": sealed.encrypted,
            "created_at": clock.iso_or_none(now),
            "expires_at": clock.iso_or_none(record.expires_at_ms),
            "pattern_type": pattern_type,
            "pii_scrubbed": dict(prepared.pii_counts),
        }

    async def recall_pattern(
        self, pattern_id: str, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The long-term pattern with this id, or None if unknown, past its retention or in
        another namespace (a STEWARD may name one, or ``"*"`` for any)."""
        await self._require("recall_pattern", pattern_id)
        validation.check_pattern_id(pattern_id)
        scope = await self._scope(namespace)
        record = await self.long_term.get(pattern_id, clock.now_ms())
        if record is None or (scope is not None and record.namespace != scope):
            return None
        try:
            content, metadata = await self.pipeline.opened(
                self.long_term, lambda: self.pipeline.unseal(record)
            )
        except CorruptRecordError:
            # Tampering shows in the audit log, not only here.
            corrupt = self._event("pattern.retrieve", target_id=pattern_id, outcome="corrupt")
            await self.pipeline.audit(corrupt, Durability.QUEUED)
            raise
        # A read: its event is queued, not waited for.
        read = self._event(
            "pattern.retrieve", target_id=pattern_id, classification=record.classification
        )
        await self.pipeline.audit(read, Durability.QUEUED)
        return pattern_result(record, content, metadata)

    # -- health and lifecycle ----------------------------------------------------------------------

    async def health_check(self) -> dict[str, Any]:
        """The state of both tiers and of the audit log (``audit``: whether it can be
        written now, why not, and ``held_events`` of stored writes waiting for it); never
        raises (a tier that is down reports why). Once closed, both tiers report that
        this object is closed, and neither store is touched (nor opened again)."""
        if self._closed:
            closed = {"available": False, "error": self._closed_message()}
            short_term, long_term = dict(closed), dict(closed)
        else:
            short_term = await self.short_term.health()
            long_term = await self.long_term.health()
        return {
            "short_term": short_term,
            "long_term": long_term,
            "audit": await self.pipeline.audit_health(),
            "environment": self.environment.value,
            "user_id": self.user_id,
            "access_tier": self.access_tier.name,
        }

    async def aclose(self) -> None:
        """Release the connections this object opened (shared stores stay open)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_short_term:
            await self.short_term.aclose()
        if self._owns_long_term:
            await self.long_term.aclose()
