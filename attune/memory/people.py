"""What attune keeps about a person, and how it forgets them: audit pseudonyms and erasure.

The audit log names each agent by a keyed pseudonym (:mod:`.security.pseudonyms`), so it
can be kept whole after a person asks to be forgotten. :meth:`PeopleData.erase_user`
(STEWARD) removes everything a user wrote, in this order:

1. their staged patterns (each claimed first, as a promotion claims it; one another agent
   is promoting right now is waited for, and its record erased in step 3);
2. their working data: only their own keys (the agent's hash tag), never a keyspace scan
   of everyone's;
3. their long-term records in every namespace: those they created, and those promoted
   from a pattern they staged (found by the ``staged_by`` metadata every promotion
   records, the agent id as it is, never scrubbed; checked against the record's id, which
   only that promotion gives), with search rows and wrapped keys; and the secret of their
   pseudonym, so the log can no longer be linked to them. The store leaves no trace in its files.

A validator's erasure removes the patterns it promoted too: its id is part of each
(``created_by``, ``promoted_by``). Erase a user whose agents have stopped: an agent still
running holds its pseudonym and would write it on.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from attune.errors import ConfigurationError, CorruptRecordError, ErasureNotCompactedError
from attune.memory import validation
from attune.memory.core_parts import CoreParts
from attune.memory.long_term.protocol import EraseOp, PatternRecord, SubjectOp
from attune.memory.long_term.queries import Found, PatternQuery
from attune.memory.search import entries
from attune.memory.search.blind_index import BlindIndex
from attune.memory.security import pseudonyms
from attune.memory.short_term.protocol import StagedEntry
from attune.memory.staged_fates import STAGED_PREFIX, promoted_id
from attune.memory.staging import StagingArea

#: Records per page while looking for a user's promoted content.
_PAGE = 1_000


async def _erase_staged(staging: StagingArea, staged: list[StagedEntry], user: str) -> int:
    """Remove the entries ``user`` staged; returns how many. Each is claimed first, as a
    promotion claims it. One another agent is deciding right now is waited for (at most
    the claim's lease): a promotion's record is then committed, and erased with the user's
    long-term ones; an entry whose claimer gave up or crashed is claimed and removed."""
    erased = 0
    for entry in await staging.listing(staged):
        if entry.get("staged_by") != user:
            continue
        staged_id = entry["pattern_id"]
        removed = await staging.erase_entry(staged_id)
        if removed is None and not await staging.decided_elsewhere(staged_id):
            removed = await staging.erase_entry(staged_id)
        erased += bool(removed)
    return erased


class PeopleData(CoreParts):
    """The core's person-level operations (a mixin of ``AsyncUnifiedMemory``)."""

    # What the core provides (see attune.memory.unified and attune.memory.reads).
    _staging: Any
    _search_index: Any
    _backfill: Any

    def _audit_subject(self) -> str:
        """This agent's audit pseudonym; :meth:`_require` has set it for any call that
        audits."""
        if self._subject is None:
            raise AssertionError("an audit event before _require: call _require first")
        return self._subject

    async def _pseudonym_of(self, user_id: str, *, create: bool) -> str | None:
        """``user_id``'s audit pseudonym; its secret is made now if it has none and
        ``create`` (else None)."""
        secret = await self.long_term.subject_secret(user_id)
        if secret is None:
            if not create:
                return None
            secret = await self.long_term.write(SubjectOp(user_id, pseudonyms.new_secret()))
        return pseudonyms.pseudonym(secret, user_id)

    async def audit_pseudonym(self, user_id: str | None = None) -> str | None:
        """The name the audit log gives ``user_id`` (default: this agent), to find their
        events (``AuditLogger.query(user_id=...)``); None for a user never seen or
        erased. Naming another user takes a STEWARD."""
        if user_id is None or user_id == self.user_id:
            await self._require("audit_pseudonym")
            return self._audit_subject()
        await self._require("audit_pseudonym_of_other")
        user = validation.check_agent_id(user_id)
        return await self._pseudonym_of(user, create=False)

    async def erase_user(self, user_id: str) -> dict[str, Any]:
        """Erase everything ``user_id`` wrote (the right to be forgotten; STEWARD only):
        staged patterns, working data, long-term records in every namespace (with their
        search index entries and keys) and the secret of their audit pseudonym.

        Returns ``{"user_id", "patterns", "staged_patterns", "working_data",
        "pseudonym_erased"}`` (counts, and whether the user had a pseudonym). Run it once
        the user's agents have stopped; running it again is harmless."""
        await self._require("erase_user")
        user = validation.check_agent_id(user_id)
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        target = await self._pseudonym_of(user, create=False)
        staging: StagingArea = self._staging()
        staged = await _erase_staged(staging, await self.short_term.list_staged(0), user)
        working = await self.short_term.erase_agent(user)
        promoted = await self._promoted_from(user)
        counts = {"patterns": 0, "staged_patterns": staged, "working_data": working}
        try:
            counts["patterns"] = await self.long_term.write(EraseOp(user, promoted))
        except ErasureNotCompactedError as exc:
            # Committed, its traces not cleared yet: the erasure is audited all the same,
            # then the caller hears what is left to do.
            counts["patterns"] = exc.erased
            await self._erased(user, target, counts, outcome="incomplete")
            raise
        await self._erased(user, target, counts, outcome="success")
        return {"user_id": user, **counts, "pseudonym_erased": target is not None}

    async def _erased(
        self, user: str, target: str | None, counts: dict[str, int], *, outcome: str
    ) -> None:
        """The ``user.erase`` event of an erasure carried out, awaited."""
        event = self._event("user.erase", target_id=target, outcome=outcome, details=counts)
        if user == self.user_id:
            self._subject = None  # its secret is gone: a new pseudonym from its next call
        await self.pipeline.audit(event, done="the erasure")

    async def _promoted_from(self, user: str) -> tuple[str, ...]:
        """The ids of records promoted from patterns ``user`` staged (whoever promoted
        them), expired ones included, in every namespace: found by their ``staged_by``
        facet, which every record carries whatever its classification (records another
        process committed moments ago, whose search rows are not written yet, are indexed
        first), and kept only if the record is that promotion: its id is the one the
        staged id it names gives (:func:`promoted_id`). Any writer can put a ``staged_by``
        in a record's metadata; only a promotion gets that id."""
        index: BlindIndex | None = await self._search_index()
        await self._backfill(index, again=True)
        wanted = {"staged_by": user}
        found = await self._every(
            PatternQuery(now_ms=0, namespace=None, facets=entries.facets(wanted, index))
        )
        return tuple([f.record.pattern_id for f in found if await self._promoted(f.record, user)])

    async def _promoted(self, record: PatternRecord, user: str) -> bool:
        """Whether ``record`` was promoted from a pattern ``user`` staged. A record that
        cannot be read (damaged, or its master key missing) but is indexed as such is taken
        to be: kept, it could hold the person's data."""
        try:
            _content, metadata = await self.pipeline.opened(
                self.long_term, functools.partial(self.pipeline.unseal, record)
            )
        except (CorruptRecordError, ConfigurationError):
            return True
        source = metadata.get("promoted_from")
        return (
            metadata.get("staged_by") == user
            and isinstance(source, str)
            and source.startswith(STAGED_PREFIX)
            and record.pattern_id == promoted_id(source)
        )

    async def _every(self, query: PatternQuery) -> list[Found]:
        """Every record ``query`` matches, page by page (newest first)."""
        found: list[Found] = []
        page = replace(query, limit=_PAGE)
        while True:
            batch = await self.long_term.find(page)
            found += batch
            if len(batch) < _PAGE:
                return found
            last = batch[-1].record
            page = replace(page, after=(last.created_at_ms, last.pattern_id))
