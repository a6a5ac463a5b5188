"""Upkeep of long-term memory, for STEWARDs: delete a pattern, purge expired ones, rotate
the master key (a mixin of ``AsyncUnifiedMemory``).

Each announces its event first (:meth:`SecurityPipeline.audit_ready`: refused before any
change if the audit log cannot take it), changes the store with one operation value per
transaction, then awaits its event.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from attune.errors import AttuneError, CorruptRecordError
from attune.memory import clock, validation
from attune.memory.core_parts import CoreParts
from attune.memory.long_term.protocol import DeleteOp, PurgeOp, RewrapOp, WrappedKey
from attune.memory.progress import ProgressCallback, Reporter, check_progress
from attune.memory.security.audit import Durability

#: Largest page of wrapped keys rotate_keys reads at once (a bigger one only costs memory).
_MAX_BATCH_SIZE = 100_000


def _rewrap(core: CoreParts, keys: list[WrappedKey]) -> tuple[list[WrappedKey], list[str]]:
    """The keys re-wrapped under the active master key, and the ids of records whose key
    does not open (damaged outside attune: left as they are, reported)."""
    updates, corrupt = [], []
    for key in keys:
        try:
            updates.append(core.pipeline.rewrap(key))
        except CorruptRecordError:
            corrupt.append(key.pattern_id)
    return updates, corrupt


class LongTermUpkeep(CoreParts):
    """The core's long-term upkeep (a mixin of ``AsyncUnifiedMemory``)."""

    async def delete_pattern(self, pattern_id: str) -> bool:
        """Delete a long-term pattern (STEWARD only); True if it existed."""
        await self._require("delete_pattern", pattern_id)
        validation.check_pattern_id(pattern_id)
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        deleted = await self.long_term.write(DeleteOp(pattern_id))
        outcome = "success" if deleted else "not_found"
        # An id that named no record and is not of attune's making is not recorded: it
        # may be anything a caller typed (an email), and the log keeps no values.
        named = pattern_id if deleted or validation.is_own_id(pattern_id) else None
        event = self._event("pattern.delete", target_id=named, outcome=outcome)
        await self.pipeline.audit(event, done="the delete")
        return deleted

    async def purge_expired(
        self, batch_size: int = 1000, *, progress: ProgressCallback | None = None
    ) -> int:
        """Delete every long-term pattern past its retention (STEWARD only); returns how many.

        Expired patterns are never returned by :meth:`recall_pattern` even before a purge;
        purging also drops their wrapped keys, so their content is unrecoverable. They go
        ``batch_size`` at a time (one transaction each, those that expired first), so a
        large purge never holds the store in one long transaction.

        ``progress(done, None)``, if given, is called with the patterns purged so far
        (their total is not counted beforehand), first with ``done=0`` and then after each
        batch (see :mod:`attune.memory.progress`: an exception it raises is logged and
        ignored)."""
        await self._require("purge_expired")
        validation.check_count(batch_size, "batch_size", _MAX_BATCH_SIZE)
        report = Reporter(check_progress(progress), "purge_expired")
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        now = clock.now_ms()
        purged = 0
        report(0, None)
        while True:
            gone = await self.long_term.write(PurgeOp(now, batch_size))
            purged += gone
            report(purged, None)
            if gone < batch_size:
                break
        event = self._event("pattern.purge", details={"purged": purged})
        await self.pipeline.audit(event, done="the purge")
        return purged

    async def rotate_keys(
        self, batch_size: int = 500, *, progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        """Make a new master key active and re-wrap every record's data key under it
        (STEWARD only). Content is not re-encrypted; old keys stay in the ring (the key
        file, to which ``ATTUNE_MASTER_KEY``'s key is added too, so setting the variable
        to the new key as the warning says keeps search working; or, with a long-term
        store that keeps the ring for every host, PostgreSQL: there, so every host reads
        the records at once and writes under the new key) so staged patterns and backups
        remain readable. Returns the new key id and counts: ``rewrapped``, and
        ``corrupt``, records whose data key does not open (damaged outside attune: left as
        they are and reported in the audit log, as by every read).

        A rotation that fails part way (the store or the log went away) leaves the new key
        active and the records handled so far under it, every record readable; its event
        says so (outcome ``failed``), and another rotation finishes the work.

        ``progress(done, None)``, if given, is called with the encrypted records handled
        so far (their total is not counted beforehand), first with ``done=0`` and then
        after each batch is written (see :mod:`attune.memory.progress`: an exception it
        raises is logged and ignored)."""
        await self._require("rotate_keys")
        validation.check_count(batch_size, "batch_size", _MAX_BATCH_SIZE)
        report = Reporter(check_progress(progress), "rotate_keys")
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        # ATTUNE_MASTER_KEY's key goes to the key file too (not active): the warning tells
        # the operator to set the variable to the new key, and the search index (kept
        # under the old one) must still find its key then. Not with a store-kept ring.
        await self.pipeline.keys_ready(self.long_term)
        self.pipeline.cipher.ring.keep_env_key()
        new_key_id = await self.pipeline.new_active_key(self.long_term)
        rewrapped = 0
        corrupt: list[str] = []
        after = ""
        done = 0
        report(done, None)
        try:
            while page := await self.long_term.wrapped_keys(after, batch_size):
                todo = [k for k in page if k.key_id != new_key_id]
                updates, damaged = await self.pipeline.opened(
                    self.long_term, functools.partial(_rewrap, self, todo)
                )
                corrupt += damaged
                if updates:
                    rewrapped += await self.long_term.write(RewrapOp(tuple(updates)))
                after = page[-1].pattern_id
                done += len(page)
                report(done, None)
        except Exception:
            # The new key is active and some records are re-wrapped (all stay readable:
            # old keys stay in the ring); the log says so, and a new rotation finishes.
            details = {"key_id": new_key_id, "rewrapped": rewrapped, "corrupt": len(corrupt)}
            failed = self._event("keys.rotate", outcome="failed", details=details)
            with contextlib.suppress(AttuneError):
                await self.pipeline.audit(failed, done="the key rotation")
            raise
        for pid in corrupt:
            damaged_event = self._event("pattern.retrieve", target_id=pid, outcome="corrupt")
            await self.pipeline.audit(damaged_event, Durability.QUEUED)
        details = {"key_id": new_key_id, "rewrapped": rewrapped, "corrupt": len(corrupt)}
        event = self._event("keys.rotate", details=details)
        await self.pipeline.audit(event, done="the key rotation")
        return {"key_id": new_key_id, "rewrapped": rewrapped, "corrupt": len(corrupt)}
