"""The staging workflow's rules: every staged pattern has exactly one fate.

A staged pattern ends promoted or rejected, never both, whatever runs concurrently
and whatever Redis does meanwhile:

* **Claim first.** Promote and reject first claim the entry (``SET NX PX`` on its
  claim key, read atomically with the entry); a loser raises
  :class:`~attune.errors.PatternNotFoundError` naming the fate or the action under
  way. The claim is a lease (:data:`CLAIM_LEASE_MS`), so a crashed claimer blocks
  the entry for a minute, not forever; an action that fails before it is decided
  releases it (compare-and-delete). Once decided, the claim key keeps the fate
  (``promoted:<pattern_id>`` or ``rejected``; :mod:`attune.memory.staged_fates` says
  what a marker holds and what a caller is told of it) for the entry's remaining
  lifetime, removed together with the entry in one transaction.
* **The long-term store is the source of truth.** A promoted pattern's id derives
  from its staged id, so a staged id whose ``pat_`` id exists is promoted, even if
  Redis failed before the entry could be removed: such a leftover is never listed,
  and whoever touches it next (listing, promote, reject) removes it.
* **Audit ahead.** A stage or reject event is durable before the Redis command runs;
  if the command then fails, a second event records ``failed`` (Redis refused it) or
  ``unknown`` (it may have run: the reply never came). So the trail never depends on
  whether a reply arrived, and an audit log that cannot be written stops the action
  before anything changes.
* **One bad entry is one bad entry.** A staged value that cannot be read is skipped
  by the listing and reported (a ``staging.corrupt`` event, a log warning without the
  data); promoting or rejecting it raises :class:`~attune.errors.CorruptRecordError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attune.errors import (
    AttuneError,
    CorruptRecordError,
    DecryptionError,
    PatternNotFoundError,
    PromotionCommittedError,
    ShortTermCommandError,
)
from attune.memory import clock, staged_fates
from attune.memory.long_term.protocol import LongTermStore
from attune.memory.security import randomness
from attune.memory.security.audit import AuditEvent, Durability
from attune.memory.security.pipeline import SecurityPipeline
from attune.memory.short_term.protocol import ShortTermStore, StagedClaim, StagedEntry
from attune.memory.staged_fates import (
    Holder,
    marker,
    not_in_namespace,
    promoted_id,
)

#: How long a claim holds an entry: far longer than a promotion takes, short enough that
#: a claimer that crashed blocks the entry only briefly.
CLAIM_LEASE_MS = 60_000
#: How often an erasure looks again at an entry another agent is deciding.
_CLAIM_POLL_S = 0.02

log = logging.getLogger(__name__)

_REASONS = {
    "not_json": "not valid JSON",
    "not_an_object": "not a JSON object",
    "malformed": "fields missing or of the wrong type",
    "undecryptable": "its sealed part cannot be decrypted",
    "id_mismatch": "it holds another staged pattern's id",
    "wrong_type": "its key holds another Redis type",
}
_CODES = {text: code for code, text in _REASONS.items()}
#: Index members are anyone's text: a reported id is cut to what an audit id may hold.
_MAX_REPORTED_ID = 128


def _keep_until(expires_at_ms: int | None) -> int:
    """How long a fate marker stays: the entry's remaining lifetime, at least a lease."""
    return max(expires_at_ms or 0, clock.now_ms() + CLAIM_LEASE_MS)


def _corrupt(staged_id: str, code: str) -> CorruptRecordError:
    return CorruptRecordError(staged_id, _REASONS[code])


@dataclass(slots=True)
class Claimed:
    """A staged pattern this caller holds the claim on, opened."""

    staged_id: str
    pattern_id: str
    token: str
    staged: dict[str, Any]
    expires_at_ms: int | None
    started: float


class StagingArea:
    """The staging workflow of one agent over both tiers (see the module docstring)."""

    def __init__(
        self,
        short_term: ShortTermStore,
        long_term: LongTermStore,
        pipeline: SecurityPipeline,
        *,
        subject: str,
        tier: str,
        namespace: str | None = None,
    ) -> None:
        self.short_term = short_term
        self.long_term = long_term
        self.pipeline = pipeline
        #: The agent's audit pseudonym (:mod:`attune.memory.security.pseudonyms`).
        self.subject = subject
        self.tier = tier
        #: The namespace whose staged patterns this agent decides: the fate of another
        #: namespace's is not told (None: any).
        self.namespace = namespace

    # -- reading -----------------------------------------------------------------------------

    async def open(self, staged_id: str, raw: bytes) -> dict[str, Any]:
        """A stored entry as the caller sees it, or :class:`CorruptRecordError`."""
        try:
            stored = json.loads(raw)
        except ValueError:  # UnicodeDecodeError included
            raise _corrupt(staged_id, "not_json") from None
        if not isinstance(stored, Mapping):
            raise _corrupt(staged_id, "not_an_object")
        if stored.get("pattern_id") != staged_id:  # before the pipeline names it by that id
            raise _corrupt(staged_id, "id_mismatch")
        try:
            envelope, data = await self.pipeline.opened(
                self.long_term, lambda: self.pipeline.open_staged(stored, staged_id=staged_id)
            )
        except CorruptRecordError:
            raise
        except DecryptionError:
            raise _corrupt(staged_id, "undecryptable") from None
        if not data["content"]:  # open_staged checked every field is a string
            raise _corrupt(staged_id, "malformed")
        return {**data, **envelope}

    def _event(
        self,
        name: str,
        target_id: str | None = None,
        *,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """An audit event of this agent (its pseudonym and tier filled in)."""
        return AuditEvent(
            name, self.subject, self.tier, target_id, outcome=outcome, details=details
        )

    async def report_corrupt(self, error: CorruptRecordError) -> None:
        """A staged entry that cannot be read: a log warning and a queued audit event,
        with its id (shortened if need be) and the kind of damage only; never raises."""
        record_id = error.record_id[:_MAX_REPORTED_ID]
        log.warning(
            "staged pattern %r is corrupt (%s) and was skipped; restore it from a backup "
            "or delete its key",
            record_id,
            error.reason,
        )
        try:
            reason = _CODES.get(error.reason, "malformed")
            event = self._event(
                "staging.corrupt", record_id, outcome="skipped", details={"reason": reason}
            )
            await self.pipeline.audit(event, Durability.QUEUED)
        except AttuneError as exc:  # an id the audit log refuses: the warning stands
            log.warning("could not audit the corrupt staged pattern (%s)", type(exc).__name__)

    async def listing(self, entries: list[StagedEntry]) -> list[dict[str, Any]]:
        """The entries awaiting review: leftovers of committed promotions are removed,
        corrupt ones skipped and reported."""
        if not entries:
            return []
        promoted = await self.long_term.existing([promoted_id(e.staged_id) for e in entries])
        staged: list[dict[str, Any]] = []
        for entry in entries:
            pattern_id = promoted_id(entry.staged_id)
            if pattern_id in promoted:
                await self._remove_leftover(entry.staged_id, pattern_id, entry.expires_at_ms)
                continue
            try:
                staged.append(await self.open(entry.staged_id, entry.payload))
            except CorruptRecordError as exc:
                await self.report_corrupt(exc)
        return staged

    async def erase_entry(self, staged_id: str) -> bool | None:
        """Claim and remove one entry (an erasure): whether it was removed, None if another
        agent holds its claim or has decided its fate."""
        try:
            claimed = await self.claim(staged_id, "erase")
        except PatternNotFoundError:
            return None
        return await self.short_term.settle_staged(
            claimed.staged_id,
            _marker("erased", claimed),
            _keep_until(claimed.expires_at_ms),
            claimed.token,
        )

    async def decided_elsewhere(self, staged_id: str) -> bool:
        """Wait while another agent holds the entry's claim (at most the lease): True once
        its fate is decided or the entry is gone, False if the claim went without a fate
        (a failed promotion released it, or its lease ran out), so it can be claimed."""
        deadline = time.monotonic() + CLAIM_LEASE_MS / 1000
        while True:
            raw = await self.short_term.staged_claim(staged_id)
            if raw is None:
                return False
            if Holder.parse(raw).fate is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_CLAIM_POLL_S)

    async def claim(self, staged_id: str, action: str) -> Claimed:
        """Claim the entry for ``action`` ("promote" or "reject") and open it; or raise
        :class:`PatternNotFoundError` (its fate is decided, or another agent holds it) or
        :class:`CorruptRecordError`."""
        token = f"{action}:{self.subject}:{randomness.uuid7_hex()}"
        found = await self.short_term.claim_staged(staged_id, token, CLAIM_LEASE_MS)
        started = time.monotonic()
        pattern_id = promoted_id(staged_id)
        if not found.won:
            await self._lost(staged_id, pattern_id, found)
        claimed = Claimed(staged_id, pattern_id, token, {}, found.expires_at_ms, started)
        try:
            if found.wrong_type:
                raise _corrupt(staged_id, "wrong_type")
            if found.payload is None:  # the claim is released below
                if await self.long_term.existing([pattern_id]):
                    if await self._elsewhere(pattern_id):
                        raise not_in_namespace(staged_id, self.namespace)
                    raise staged_fates.decided(staged_id, "promoted", pattern_id)
                raise staged_fates.gone(staged_id)
            if await self.long_term.existing([pattern_id]):  # Redis failed after a commit
                await self._remove_leftover(staged_id, pattern_id, found.expires_at_ms)
                raise staged_fates.decided(staged_id, "promoted", pattern_id)
            claimed.staged = await self.open(staged_id, found.payload)
        except asyncio.CancelledError:
            raise  # the lease frees the entry
        except BaseException:
            await self.release(claimed)
            raise
        return claimed

    async def _lost(self, staged_id: str, pattern_id: str, found: StagedClaim) -> None:
        """Raise why another caller's claim or an earlier fate keeps this one out; an
        earlier fate only to an agent of the entry's namespace."""
        holder = Holder.parse(found.holder)
        if holder.fate is not None:
            if holder.namespace is None:  # a marker from before namespaces were named
                elsewhere = holder.fate == "promoted" and await self._elsewhere(pattern_id)
            else:
                elsewhere = self.namespace is not None and holder.namespace != self.namespace
            if elsewhere:
                raise not_in_namespace(staged_id, self.namespace)
            raise staged_fates.decided(staged_id, holder.fate, pattern_id)
        if await self.long_term.existing([pattern_id]):  # promoted; maybe a leftover
            if found.payload is not None:
                await self._remove_leftover(staged_id, pattern_id, found.expires_at_ms)
            if await self._elsewhere(pattern_id):
                raise not_in_namespace(staged_id, self.namespace)
            raise staged_fates.decided(staged_id, "promoted", pattern_id)
        raise staged_fates.busy(staged_id, holder.action)

    async def _elsewhere(self, pattern_id: str) -> bool:
        """Whether the promoted record ``pattern_id`` is of another namespace than this
        agent's (an entry gone from staging no longer says whose it was)."""
        if self.namespace is None:
            return False
        record = await self.long_term.get(pattern_id, clock.now_ms())
        return record is not None and record.namespace != self.namespace

    async def release(self, claimed: Claimed) -> None:
        """Give the claim up (only if still ours); on failure the lease frees it later."""
        with contextlib.suppress(AttuneError):
            await self.short_term.release_staged_claim(claimed.staged_id, claimed.token)

    async def check_claim(self, claimed: Claimed) -> None:
        """Before the long-term commit: raise if the lease may have run out and another
        agent has taken over (only asked once half the lease has passed)."""
        if time.monotonic() - claimed.started < CLAIM_LEASE_MS / 2000:
            return
        holder = await self.short_term.staged_claim(claimed.staged_id)
        if holder != claimed.token.encode():
            raise staged_fates.claim_ran_out(claimed.staged_id, "promoted", CLAIM_LEASE_MS)

    async def _remove_leftover(self, staged_id: str, pattern_id: str, expires: int | None) -> None:
        """Remove an entry whose promotion is committed (its fate is decided)."""
        await self.short_term.settle_staged(
            staged_id, f"promoted:{pattern_id}", _keep_until(expires)
        )
        event = self._event("staging.cleanup", staged_id, details={"promoted_as": pattern_id})
        await self.pipeline.audit(event, Durability.QUEUED)

    # -- deciding ----------------------------------------------------------------------------

    async def settle_promoted(self, claimed: Claimed) -> None:
        """After the long-term commit: remove the entry, or raise
        :class:`PromotionCommittedError` (the promotion stands)."""
        fate = _marker(f"promoted:{claimed.pattern_id}", claimed)
        try:
            await self.short_term.settle_staged(
                claimed.staged_id, fate, _keep_until(claimed.expires_at_ms)
            )
        except AttuneError as exc:
            raise PromotionCommittedError(
                claimed.staged_id, claimed.pattern_id, type(exc).__name__
            ) from exc

    async def promotion_failed(self, claimed: Claimed) -> None:
        """The promotion raised: if its record is committed anyway, its fate is decided;
        otherwise the entry stays staged and the claim is released."""
        try:
            committed = bool(await self.long_term.existing([claimed.pattern_id]))
        except AttuneError:
            return  # unknown: keep the claim; the lease, then the next touch, decide
        if committed:
            with contextlib.suppress(AttuneError):
                await self._remove_leftover(
                    claimed.staged_id, claimed.pattern_id, claimed.expires_at_ms
                )
        else:
            await self.release(claimed)

    async def reject(self, claimed: Claimed, *, has_reason: bool) -> None:
        """Audit the rejection (durably), then remove the entry and record the fate."""
        try:
            event = self._event(
                "pattern.reject", claimed.staged_id, details={"has_reason": has_reason}
            )
            await self.pipeline.audit(event)
        except BaseException:
            await self.release(claimed)
            raise
        try:
            settled = await self.short_term.settle_staged(
                claimed.staged_id,
                _marker("rejected", claimed),
                _keep_until(claimed.expires_at_ms),
                claimed.token,
            )
        except BaseException as exc:
            await audit_write_failed(
                self.pipeline, "pattern.reject", claimed.staged_id, exc, self.subject, self.tier
            )
            if isinstance(exc, Exception):
                await self.release(claimed)
            raise
        if not settled:
            event = self._event(
                "pattern.reject",
                claimed.staged_id,
                outcome="failed",
                details={"error": "claim_lost"},
            )
            await self.pipeline.audit(event)
            raise staged_fates.claim_ran_out(claimed.staged_id, "rejected", CLAIM_LEASE_MS)


def _marker(fate: str, claimed: Claimed) -> str:
    """The fate marker of a claimed entry (it names the entry's namespace)."""
    return marker(fate, claimed.staged.get("namespace"))


async def audit_write_failed(
    pipeline: SecurityPipeline,
    event: str,
    target_id: str,
    exc: BaseException,
    subject: str,
    tier: str,
) -> None:
    """The second event of a write audited ahead: the Redis command failed. ``failed``
    when Redis refused it (nothing changed), ``unknown`` when it may have run. Never
    raises: the caller re-raises the command's own error."""
    outcome = "failed" if isinstance(exc, ShortTermCommandError) else "unknown"
    if outcome == "unknown":
        exc.add_note(
            f"{event} of {target_id!r}: the command may have run (its reply never came); "
            "the audit log records the outcome as unknown"
        )
    try:
        failed = AuditEvent(
            event, subject, tier, target_id, outcome=outcome, details={"error": type(exc).__name__}
        )
        # Cancelled: queue it, do not wait.
        durability = Durability.DURABLE if isinstance(exc, Exception) else Durability.QUEUED
        await pipeline.audit(failed, durability)
    except Exception as audit_exc:
        log.warning(
            "could not audit the %s outcome of %s for %s (%s)",
            event,
            outcome,
            target_id,
            type(audit_exc).__name__,
        )
        exc.add_note(f"the audit log lacks the {outcome!r} outcome of this {event} event")
