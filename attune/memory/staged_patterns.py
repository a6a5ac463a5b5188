"""The core's staging-area operations: stage, list, promote and reject (a mixin of
``AsyncUnifiedMemory``).

Each checks the tier, validates its input and runs the security pipeline before Redis sees
anything; the promotion workflow's claims and fates are :mod:`attune.memory.staging`'s.
Staged patterns belong to the namespace of the agent that staged them: the listing shows
the agent's own (a STEWARD may name another), and an agent promotes or rejects only its
namespace's.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from attune.errors import PatternNotFoundError, ShortTermCommandError, ValidationError
from attune.memory import clock, validation
from attune.memory.clock import iso_or_none
from attune.memory.core_parts import CoreParts
from attune.memory.long_term.queries import DEFAULT_NAMESPACE
from attune.memory.security import randomness
from attune.memory.security.audit import Durability
from attune.memory.staged_fates import STAGED_PREFIX, promoted_id
from attune.memory.staging import StagingArea, audit_write_failed
from attune.memory.types import Classification

#: Fields a staged entry fills in itself: ``pattern_data`` may not set them.
STAGED_RESERVED = (
    "namespace",
    "pattern_id",
    "pattern_type",
    "staged_by",
    "staged_at",
    "expires_at",
    "classification",
)
MAX_CONTENT_CHARS = 1_000_000


class StagedPatterns(CoreParts):
    """The staging area's operations of the core."""

    _persist: Callable[..., Awaitable[dict[str, Any] | None]]
    _staging: Callable[[], StagingArea]

    if TYPE_CHECKING:  # LongTermReads's

        async def _scope(self, namespace: Any) -> str | None: ...

    async def stage_pattern(
        self,
        pattern_data: Mapping[str, Any],
        pattern_type: str,
        ttl_hours: float | None = None,
    ) -> str:
        """Park a discovered pattern for review; returns its staged id.

        ``pattern_data`` must hold a ``content`` string; its other fields are kept
        and shown next to it. It expires after ``ttl_hours`` unless promoted.
        """
        await self._require("stage_pattern")
        data = check_pattern_data(pattern_data, self.config.max_value_bytes)
        pattern_type = validation.check_pattern_type(pattern_type)
        hours = self.config.staging_ttl_hours if ttl_hours is None else ttl_hours
        ttl_ms = validation.ttl_to_ms(hours, self.config.max_ttl_seconds, "ttl_hours", 3600)
        staged_id = STAGED_PREFIX + randomness.uuid7_hex()
        prepared = await self.pipeline.prepare_staged(
            data,
            pattern_type,
            subject=self._audit_subject(),
            tier=self.access_tier.name,
            staged_id=staged_id,
        )
        now = clock.now_ms()
        envelope = {
            "pattern_id": staged_id,
            "pattern_type": pattern_type,
            "staged_by": self.user_id,
            "staged_at": iso_or_none(now),
            "expires_at": iso_or_none(now + ttl_ms),
            "namespace": self.namespace,
        }
        await self.pipeline.keys_ready(self.long_term)  # another host's new active key
        payload = self.pipeline.seal_staged(envelope, prepared)
        encoded = validation.encode_json(payload, self.config.max_value_bytes, "pattern_data")
        # Audited ahead: the event is durable before Redis sees the entry, so the trail
        # does not depend on a reply arriving, and a broken audit log stages nothing.
        tier = self.access_tier.name
        staged = self._event(
            "pattern.stage",
            target_id=staged_id,
            classification=prepared.classification.value,
            details={
                **prepared.audit_details,
                "encrypted": prepared.classification is Classification.SENSITIVE,
            },
        )
        await self.pipeline.audit(staged)
        try:
            await self.short_term.stage(staged_id, encoded, now + ttl_ms)
        except BaseException as exc:
            await audit_write_failed(
                self.pipeline, "pattern.stage", staged_id, exc, self._audit_subject(), tier
            )
            raise
        return staged_id

    async def get_staged_patterns(self, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every staged pattern of this agent's namespace not yet expired: its data fields at
        the top level, next to ``pattern_id``, ``pattern_type``, ``staged_by``,
        ``staged_at``, ``expires_at`` and ``namespace``. A STEWARD may name another
        namespace, or ``"*"`` for all."""
        await self._require("get_staged_patterns")
        scope = await self._scope(namespace)
        entries = await self.short_term.list_staged(clock.now_ms())
        staged = [
            entry
            for entry in await self._staging().listing(entries)
            if scope is None or entry.get("namespace") == scope
        ]
        listed = self._event("staging.list", details={"patterns": len(staged)})
        await self.pipeline.audit(listed, Durability.QUEUED)  # a read: nobody waits
        return staged

    async def promote_pattern(
        self,
        staged_pattern_id: str,
        classification: Classification | str | None = None,
    ) -> dict[str, Any]:
        """Move a staged pattern into long-term memory; returns what persist_pattern returns.

        A staged pattern is promoted or rejected, once: of concurrent promotions and
        rejections, one wins and the others raise :class:`PatternNotFoundError`. If Redis
        fails after the long-term commit, :class:`PromotionCommittedError` names the
        committed pattern; the promotion stands.
        """
        await self._require("promote_pattern", staged_pattern_id)
        validation.check_staged_id(staged_pattern_id, STAGED_PREFIX)
        if classification is not None:
            classification = Classification.parse(classification)
        await self._staged_in_scope(staged_pattern_id)
        staging = self._staging()
        claimed = await staging.claim(staged_pattern_id, "promote")
        staged = claimed.staged
        content = staged["content"]
        provenance = {
            "promoted_from": staged_pattern_id,
            "staged_by": staged["staged_by"],
            "promoted_by": self.user_id,
        }
        metadata = {
            k: v
            for k, v in staged.items()
            if k not in ("content", *STAGED_RESERVED) and k not in provenance
        }
        # The long-term id derives from the staged id: the primary key admits one winner,
        # and the long-term store tells whether a staged pattern was promoted.
        pattern_id = promoted_id(staged_pattern_id)
        try:
            result = await self._persist(
                pattern_id,
                content=content,
                pattern_type=staged["pattern_type"],
                classification=classification,
                auto_classify=True,
                metadata=metadata,
                event="pattern.promote",
                before_insert=lambda: staging.check_claim(claimed),
                provenance=provenance,
            )
        except BaseException:
            await staging.promotion_failed(claimed)
            raise
        if result is None:  # committed by another agent after this call's lease ran out
            await staging.promotion_failed(claimed)
            raise PatternNotFoundError(
                f"staged pattern {staged_pattern_id!r} not found: it was already promoted "
                f"(as {pattern_id})"
            )
        await staging.settle_promoted(claimed)
        result["staged_pattern_id"] = staged_pattern_id
        return result

    async def reject_pattern(self, staged_pattern_id: str, reason: str | None = None) -> bool:
        """Drop a staged pattern without promoting it. ``reason`` is for the caller's
        records only; the audit log keeps the decision, not the text.

        Raises :class:`PatternNotFoundError` if it was promoted or rejected already, or
        another agent is deciding it right now."""
        await self._require("reject_pattern", staged_pattern_id)
        validation.check_staged_id(staged_pattern_id, STAGED_PREFIX)
        if reason is not None:
            validation.check_text(reason, "reason", allow_empty=True)
        await self._staged_in_scope(staged_pattern_id)
        claimed = await self._staging().claim(staged_pattern_id, "reject")
        await self._staging().reject(claimed, has_reason=reason is not None)
        return True

    async def _staged_in_scope(self, staged_id: str) -> None:
        """Refuse a staged pattern of another namespace as if it did not exist
        (:class:`PatternNotFoundError`): an agent decides its own namespace's only. An
        entry gone or unreadable is left to the claim, which says what became of it."""
        try:
            raw = await self.short_term.get_staged(staged_id)
        except ShortTermCommandError:  # not a staged entry (another type): the claim says so
            return
        if raw is None:
            return
        try:
            stored = json.loads(raw)
        except ValueError:
            return
        found = stored.get("namespace", DEFAULT_NAMESPACE) if isinstance(stored, dict) else None
        if found is not None and found != self.namespace:
            raise PatternNotFoundError(
                f"staged pattern {staged_id!r} not found in namespace {self.namespace!r}"
            )


def check_pattern_data(pattern_data: Any, max_bytes: int) -> dict[str, Any]:
    if not isinstance(pattern_data, Mapping):
        raise ValidationError("pattern_data must be a dict with at least a 'content' string")
    data = dict(pattern_data)
    content = data.get("content")
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("pattern_data['content'] must be a non-empty string")
    if len(content) > MAX_CONTENT_CHARS:
        raise ValidationError(
            f"pattern_data['content'] is longer than {MAX_CONTENT_CHARS} characters"
        )
    clash = [k for k in STAGED_RESERVED if k in data]
    if clash:
        raise ValidationError(
            f"pattern_data must not set {', '.join(clash)}: those fields are filled in by staging"
        )
    if not all(isinstance(k, str) for k in data):
        raise ValidationError("pattern_data keys must be strings")
    # Before the pipeline walks it: what cannot be stored, at any depth, fails here.
    validation.check_json(data, "pattern_data", max_bytes, sized=False)
    return data
