"""Tamper-evident audit log: JSON Lines, one event per line, chained by SHA-256.

Every line carries ``seq`` (+1 per event) and ``prev`` (the SHA-256 of the previous
line's exact bytes; ``"0" * 64`` for the first), so :meth:`AuditLogger.verify` finds
the first altered, removed, inserted, reordered or torn line. Events hold ids, counts
and kinds only: ``details`` is sanitised here, whatever the caller passes.

Writing never serialises callers on the disk. Each logger has one daemon writer
thread; callers append to an open *batch* and (``sync=True``) wait until the writer
has written the whole batch with one ``write()`` and one ``fsync`` (group commit).
Blocking callers wait on the batch's event, ``alog`` callers on a future of their
own loop, woken with ``call_soon_threadsafe``. Under an exclusive ``flock`` the writer
reads the real chain head from the file's tail, so several processes (or several
loggers) appending to one file keep one valid chain. When a file would exceed
``max_bytes`` it is renamed to ``.1`` (older ones shift to ``.2``...) and the chain
continues in a fresh file. Rotated files are never deleted: deleting the oldest ones
is an operator action, accepted by ``verify(allow_pruned=True)``.

A long-term write's events take a shorter path (:meth:`AuditLogger.begin`): the store
keeps them in an *outbox* row of the record's own transaction, so one fsync makes both
durable. The lines are chained under the file's lock, taken before that ``COMMIT``, and
the lock stays held until the writer appends them a linger later, together with the
lines of the writes committed meanwhile, and fsyncs them; then the row is deleted. So a
reader that locks the file (``query``, ``verify``) sees every confirmed write's events,
and one that does not sees them a linger late. A store that finds rows left over (a
writer died, or the log lost its unsynced tail) hands them to :func:`replay_outbox`,
which appends the lines the log lacks.

Failures (:class:`~attune.errors.AuditLogError`; its message says what became of the
operation, never "refused" for something that was done). A log that cannot be extended
(a garbled last line, a file that cannot be opened) fails :meth:`AuditLogger.begin`
before the store's COMMIT: the store takes the records out again, nothing is stored. An
append that fails after the COMMIT (a full disk) leaves the lines in the outbox row, and
this logger keeps them too: its next ``begin`` (or :meth:`AuditLogger.check`) appends
them first, or refuses the write, so writes are refused until the log has caught up,
and the store's next open finds the lines instead of repeating them. Events nobody
waits for (reads'; with ``sync=False``, all) that cannot be written are reported, and
the call that hears of it refused, by the logger's next call.

Limit: the chain is keyless, so it exposes edits, not a writer that rewrites every
later line too, and an edit of the very last line goes unnoticed until a next event
is chained to it. A signed checkpoint of the head (:mod:`.checkpoint`, ``attune audit
checkpoint``), kept elsewhere, anchors it: ``verify(anchor=...)``.

The modules, one job each (the names below are re-exported here):

- :mod:`.events`: the event model: ``AuditEvent`` (validated and sanitised when made),
  ``Durability``, ``AuditTicket``;
- :mod:`.codec`: the line and outbox-row formats, the chain hash, parsing a line back;
- :mod:`.logfile`: the sink: appends under the file's exclusive lock, pending outbox
  lines, rotation, fsync marks;
- :mod:`.files`: the files on disk: rotated names and their shift, the last line and chain
  head, torn-line repair, directories, the readers' shared lock;
- :mod:`.writer`: each logger's queue and writer thread: lingering, group commit, failures
  kept for the next call;
- :mod:`.batch`: a batch of events and its waiters (the latch, ``alog`` futures), the
  writer thread's state;
- :mod:`.process`: every logger of the process: closed at exit, started afresh after fork;
- :mod:`.failures`: what an ``AuditLogError`` says went wrong and became of the call;
- :mod:`.outbox`: ``OutboxWrite``, ``begin``'s work, ``replay_outbox``;
- :mod:`.journal`: ``StoreJournal``, the log as a long-term store's journal;
- :mod:`.reader`: ``verify`` (``VerifyResult``) and ``query``;
- :mod:`.checkpoint`: signed checkpoints of the chain head (the anchor against a writer
  that rewrites history);
- :mod:`.logger`: the public ``AuditLogger``.

With PostgreSQL (``ATTUNE_DATABASE_URL``) the log is the database's ``audit_events``
table instead, one chain for every host, with the same codec and chain check:
:mod:`attune.memory.long_term.postgres_audit` (the table) and
:mod:`attune.memory.long_term.postgres_audit_log` (``DatabaseAuditLogger``, this
package's logger with the table as its sink).
"""

from attune.memory.security.audit.codec import FIELDS, GENESIS
from attune.memory.security.audit.events import (
    MAX_DETAIL_DEPTH,
    MAX_ID_LENGTH,
    REDACTED,
    AuditEvent,
    AuditTicket,
    Durability,
    sanitize_details,
)
from attune.memory.security.audit.journal import StoreJournal
from attune.memory.security.audit.logger import AuditLogger
from attune.memory.security.audit.outbox import OutboxWrite, replay_outbox
from attune.memory.security.audit.reader import VerifyResult

__all__ = [
    "FIELDS",
    "GENESIS",
    "MAX_DETAIL_DEPTH",
    "MAX_ID_LENGTH",
    "REDACTED",
    "AuditEvent",
    "AuditLogger",
    "AuditTicket",
    "Durability",
    "OutboxWrite",
    "StoreJournal",
    "VerifyResult",
    "replay_outbox",
    "sanitize_details",
]
