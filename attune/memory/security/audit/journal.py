"""The audit log as a long-term store's journal (:class:`~attune.memory.long_term.Journal`).

A long-term write's final event must be durable together with its record. The store
decides how (see the protocol): it keeps the events in its own transaction through
:meth:`StoreJournal.begin` (the outbox, one fsync for both), or awaits
:meth:`StoreJournal.append` right after its COMMIT. Each :class:`AuditLogger` has one
``journal`` (a store groups a batch's events by journal, so it must be the same object
for every write to one log).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from attune.errors import AuditLogError
from attune.memory.security.audit.failures import STORED_UNLOGGED

if TYPE_CHECKING:
    from attune.memory.security.audit.events import AuditEvent
    from attune.memory.security.audit.logger import AuditLogger
    from attune.memory.security.audit.outbox import OutboxWrite


class StoreJournal:
    """One audit log, as the journal a long-term store writes events to."""

    __slots__ = ("logger",)

    def __init__(self, logger: AuditLogger) -> None:
        self.logger = logger

    def begin(self, events: Sequence[AuditEvent]) -> OutboxWrite | None:
        """The events as an outbox write (:meth:`AuditLogger.begin`); None with
        ``sync=False``, whose events are only queued: the store appends them after its
        COMMIT instead."""
        if not self.logger.sync:
            return None
        return self.logger.begin(list(events))

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """The events of records just committed, behind everything queued so far; awaited
        until durable (``sync=True``) without blocking the event loop. A failure to write
        earlier events is left for a later call: this write is done and must not be told
        it was refused. Its own failure says the write was stored but not logged."""
        logger = self.logger
        *before, last = events
        try:
            for event in before:
                logger.submit(event, report=False)
            await logger.alog(last, report=False)
        except AuditLogError as exc:
            raise exc.retold(STORED_UNLOGGED, committed=True) from None
