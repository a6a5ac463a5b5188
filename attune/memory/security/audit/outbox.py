"""Lines a store's transaction keeps in its outbox, and their replay.

A long-term write's events take a shorter path than the writer's batches:
:meth:`~.logger.AuditLogger.begin` chains them under the file's lock, taken before the
store's ``COMMIT``, and the store keeps them (:attr:`OutboxWrite.payload`, see
:mod:`.codec`) in an *outbox* row of the record's own transaction, so one fsync makes
both durable. After the ``COMMIT``, :meth:`OutboxWrite.finish` leaves the lines *pending*
in the sink with the lock still held, until the writer appends them a linger later,
together with the lines of the writes committed meanwhile, and fsyncs them; then the row
is deleted. So a reader that locks the file (``query``, ``verify``) sees every confirmed
write's events, and one that does not sees them a linger late.

A log that cannot be extended (a garbled last line, a file that cannot be opened) fails
``begin`` before the store's ``COMMIT``: nothing is stored. An append that fails after it
(a full disk) leaves the lines in the outbox row, and the logger keeps them too: its next
``begin`` (or ``check``) appends them first, or refuses the write. A store that finds rows
left over (a writer died, or the log lost its unsynced tail) hands them to
:func:`replay_outbox`, which appends the lines the log lacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from attune.errors import AuditLogError
from attune.memory.security.audit.codec import (
    _encode,
    _entry_of,
    _outbox_entries,
    _outbox_payload,
    _seconds,
)
from attune.memory.security.audit.failures import HELD, NOT_REPLAYED, REFUSED, _describe
from attune.memory.security.audit.files import _rotated
from attune.memory.security.audit.logfile import _Sink

if TYPE_CHECKING:
    from attune.memory.security.audit.batch import _Batch
    from attune.memory.security.audit.events import AuditEvent
    from attune.memory.security.audit.logger import AuditLogger


@dataclass(eq=False, slots=True)
class OutboxWrite:
    """Audit lines a store's transaction keeps in its outbox (:meth:`AuditLogger.begin`).

    The store inserts :attr:`payload` in the transaction, commits, then calls
    :meth:`finish`. The outbox row keeps the lines durable until the logger's writer has
    appended and fsynced them (a linger later), after which :meth:`durable` is true and
    the store may delete the row.
    """

    logger: AuditLogger
    batch: _Batch | None
    payload: str
    mark: int | None = None  # set once the lines are committed (pending in the sink)

    def finish(self, committed: bool) -> None:
        """After the transaction: leave the lines to the writer if it committed (the
        file's lock stays held for them; with another writer of the file active, they are
        appended now), else write only the events queued before this write (this write's
        own events never happened). Releases the logger's lock. Raises
        :class:`~attune.errors.AuditLogError` with ``committed`` true if lines appended now
        could not be: the write is stored, the committed outbox row keeps the lines for
        :func:`replay_outbox`, and the logger keeps them for its next :meth:`begin`."""
        logger = self.logger  # its _sink_lock is held since begin(), released here
        sink, batch, error = logger._sink, self.batch, None
        assert isinstance(sink, _Sink)  # begin() made it, and the lock kept it
        try:
            if committed:
                # Pending (or, with another writer active, appended now): the writer
                # appends them a linger later with the lines of the writes committed
                # meanwhile, and fsyncs them (see _Sink).
                try:
                    self.mark = sink.write_reserved()
                except OSError as exc:
                    # Committed: the outbox row holds the lines, and so does this logger,
                    # whose next begin() appends them (or refuses its write). The caller
                    # is told the write was stored, never that it was refused.
                    logger._reset_sink(exc, report=False)
                    error = _describe(logger.log_file, exc)
                else:
                    sink.release()
                    with logger._cond:
                        worker = logger._running_worker()
                        worker.mark_unsynced()
                        if worker.idle:
                            logger._cond.notify_all()
                if batch is not None:  # committed with the outbox row: durable
                    batch.finish(error)
            else:
                sink.release()
                if batch is not None:  # the others' events: written as if never taken
                    batch.fsync = batch.fsync or logger.sync
                    logger._write(batch)
        finally:
            logger._sink_lock.release()
        if error is not None:
            raise AuditLogError(error[0], HELD, error[1], committed=True)

    def durable(self) -> bool:
        """Whether the log has fsynced the lines, so the outbox row is no longer needed."""
        marks = self.logger._marks
        return self.mark is not None and marks.lost < self.mark <= marks.synced

    def sync(self) -> None:
        """Make the lines durable now (a store closing)."""
        self.logger.flush()


def _begin(logger: AuditLogger, events: list[AuditEvent]) -> OutboxWrite:
    """:meth:`AuditLogger.begin`: take the logger's and the file's lock, chain the queued
    events and ``events`` onto the file, and hand them out as an outbox payload."""
    logger._sink_lock.acquire()
    batch = None
    try:
        with logger._cond:
            worker = logger._running_worker()
            batch, worker.batch = worker.batch, None
            entries = list(batch.entries) if batch is not None else []
            entries.extend((logger._stamp(), event) for event in events)
        sink = _file_sink(logger)
        encoded = _encode(entries)
        try:
            if logger._unwritten:  # the log failed after earlier commits: catch up first
                _append_unwritten(logger)
            sink.reserve(encoded)
        except Exception as exc:
            logger._reset_sink(exc)
            with logger._cond:  # the caller hears of the failure: nothing is left unreported
                logger._lost = 0
            reason, advice = _describe(logger.log_file, exc)
            raise AuditLogError(reason, REFUSED, advice) from None
    except BaseException:
        try:
            if batch is not None:  # the events queued before: written as if never taken
                batch.urgent = True  # (the caller hears of a failure: not "lost" too)
                logger._write(batch)
        finally:
            logger._sink_lock.release()
        raise
    return OutboxWrite(logger, batch, _outbox_payload(logger.log_file, encoded))


def _file_sink(logger: AuditLogger) -> _Sink:
    """The logger's file sink (``_sink_lock`` held), opened if it has none: outbox writes
    and their replay are a log file's (a database logger keeps no outbox)."""
    if logger._sink is None:
        logger._sink = _Sink(logger.log_file, logger.max_bytes, logger._marks)
    sink = logger._sink
    assert isinstance(sink, _Sink)
    return sink


def _append_unwritten(logger: AuditLogger) -> None:
    """Append and fsync the lines of committed outbox writes that could not be appended
    (``_sink_lock`` held). Until this succeeds ``begin`` refuses writes, so a log that
    failed (a full disk) stores nothing new until it has caught up. Their outbox rows
    stay until the store next opens, whose replay finds these lines."""
    sink = logger._sink
    assert sink is not None
    sink.commit(logger._unwritten, fsync=True)
    logger._unwritten.clear()


# -- replay --------------------------------------------------------------------------------------


def replay_outbox(payloads: list[str]) -> None:
    """Make the audit lines kept in a store's outbox rows durable in their logs.

    For each row's log: append the lines it lacks (their writer died between its
    ``COMMIT`` and its append, or the machine lost the log's unsynced tail), chained
    after the current head and stamped with their original time, then fsync. Lines
    already there are not repeated. The store deletes the rows once this returned.
    Raises :class:`SecurityPipelineError` for a log it cannot write or a row it cannot read.
    """
    from attune.memory.security.audit.logger import AuditLogger  # (it imports this module)

    by_log: dict[str, list[tuple[str, str]]] = {}
    for payload in payloads:
        log, entries = _outbox_entries(payload)
        by_log.setdefault(log, []).extend(entries)
    for log, entries in by_log.items():
        logger = AuditLogger(log)
        try:
            _replay(logger, entries)
        finally:
            logger.close()


def _replay(logger: AuditLogger, entries: list[tuple[str, str]]) -> None:
    """Append the entries (timestamp text, body) whose lines the log lacks, then make them
    all durable; under the file's lock, so concurrent replays add each line once."""
    with logger._sink_lock:
        sink = _file_sink(logger)
        fd = sink.acquire()
        try:
            sink.append_missing(fd, lambda: _missing_lines(logger.log_file, entries))
        except Exception as exc:
            logger._reset_sink(exc)
            reason, advice = _describe(logger.log_file, exc)
            raise AuditLogError(reason, NOT_REPLAYED, advice) from None
        finally:
            sink.release()


def _missing_lines(log_file: Path, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The entries whose line is in none of the log's files, in their order. Files holding
    some of them are fsynced (a live writer may not have yet). Only files written to
    after the oldest entry's time are read."""
    wanted = set(entries)
    oldest = min(ts for ts, _ in entries)
    since = _seconds(oldest) - 2.0
    for path in [log_file, *_rotated(log_file)]:
        if not wanted:
            break
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            if os.fstat(handle.fileno()).st_mtime < since:
                break  # neither this file nor an older one was written after the entries
            found = False
            for raw in handle:
                entry = _entry_of(raw, oldest)
                if entry is not None and entry in wanted:
                    wanted.discard(entry)
                    found = True
            if found:
                os.fsync(handle.fileno())
    return [entry for entry in entries if entry in wanted]
