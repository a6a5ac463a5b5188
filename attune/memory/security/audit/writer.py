"""The writer: each logger's queue of events and the daemon thread that writes it.

Writing never serialises callers on the disk. Callers append to an open *batch*; the
writer (or, for :meth:`~.logger.AuditLogger.wait`, the calling thread itself, when no
writer is busy with the batch) writes a whole batch with one ``write()`` and one
``fsync`` (group commit), then wakes everyone waiting on it: blocking callers on the
batch's latch, ``alog`` callers on a future of their own loop (``call_soon_threadsafe``).
Events nobody waits for are written together after at most the logger's ``linger_s``
(default :data:`_LINGER_S`), or once :data:`_LINGER_EVENTS` are queued. Failures of
events nobody waited for are kept and told to the logger's next call.

:class:`_LogWriter` is :class:`~.logger.AuditLogger`'s base: its state and the machinery
below the public API. A batch and its waiters are :mod:`.batch`; closing every logger at
exit and a forked child's fresh writer, locks and file are :mod:`.process`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from attune.errors import AuditLogError
from attune.memory.security.audit.batch import _Batch, _Worker
from attune.memory.security.audit.codec import _encode
from attune.memory.security.audit.failures import (
    CALL_REFUSED,
    NOT_LOGGED,
    Failure,
    _describe,
    _lost_events,
    _pending_lost,
)
from attune.memory.security.audit.logfile import _Sink, _SyncMarks

if TYPE_CHECKING:
    from attune.memory.security.audit.events import AuditEvent

_log = logging.getLogger(__name__)

#: Events nobody waits for (reads, queued decisions, sync=False) are written together
#: after at most this long, or once this many are queued: one write and fsync for many.
_LINGER_S = 0.02
_LINGER_EVENTS = 256


class Sink(Protocol):
    """What the writer needs of where lines go: the log file (:class:`_Sink`), or a
    database table (:mod:`attune.memory.long_term.postgres_audit_log`). Used by one thread
    at a time (``_sink_lock``)."""

    def commit(self, entries: list[tuple[str, str]], fsync: bool) -> None:
        """Chain the (timestamp text, body) entries onto the log and write them."""
        ...

    def check(self) -> None:
        """Raise unless the log can be extended now."""
        ...

    def sync(self) -> None:
        """Make lines written without durability durable."""
        ...

    def reset(self) -> list[tuple[str, str]]:
        """Forget open resources after an error; the entries of lines dropped."""
        ...

    def close(self) -> None: ...


class _LogWriter:
    """A logger below its API: the queue of events, the writer thread that writes them,
    the sink it writes with, and the failures not yet told (see the module)."""

    def __init__(
        self,
        log_file: Path,
        sync: bool,
        max_bytes: int,
        linger_s: float,
        on_write: Callable[[int], None] | None,
    ) -> None:
        self.log_file = log_file
        self.sync = sync
        self.max_bytes = max_bytes
        #: How long events nobody waits for may wait to share a write (see the module);
        #: read by the writer at each wait, set through ``AuditLogger.linger_s``.
        self._linger_s = linger_s
        #: Told the number of events of each batch written, in the writing thread.
        self._on_write = on_write
        # The condition and its lock (``_submit`` takes the lock itself: every event does).
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._worker: _Worker | None = None
        # The open file, shared by the writer thread and callers that commit in their own
        # thread; whoever holds the lock takes the queued batch and writes it, so batches
        # reach the file in the order they were queued.
        self._sink_lock = threading.Lock()
        self._sink: Sink | None = None
        self._marks = _SyncMarks()
        #: Events nobody waited for (reads; with sync=False, all) whose write failed, not
        #: yet reported, and why they failed: the next call raises it.
        self._lost = 0
        self._lost_failure: Failure = ("", "")
        #: Pending outbox lines that could not be written (their rows keep them), not yet
        #: reported: the next call raises it.
        self._failure: Failure | None = None
        #: Entries of committed outbox lines that could not be appended (their rows keep
        #: them too): the next :meth:`begin` appends them first, or refuses its write.
        self._unwritten: list[tuple[str, str]] = []
        self._last_ts = 0.0

    # -- queueing ----------------------------------------------------------------------------

    def _submit(
        self,
        event: AuditEvent,
        future: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None,
        *,
        urgent: bool = False,
        report: bool = True,
    ) -> _Batch:
        """Queue one event. ``urgent``: someone waits for it, write the batch now; else the
        writer lingers up to ``linger_s`` (or ``_LINGER_EVENTS``) to share one write."""
        with self._lock:  # the condition's lock, without the condition's Python-level enter
            if report and (self._lost or self._failure is not None):
                self._raise_unreported()
            worker = self._worker or self._running_worker()
            fresh = worker.batch is None
            batch = worker.open_batch()
            batch.entries.append((self._stamp(), event))
            if future is not None:
                batch.futures.append(future)
            batch.fsync = batch.fsync or self.sync
            batch.urgent = batch.urgent or urgent or len(batch.entries) >= _LINGER_EVENTS
            # Wake the writer if someone waits, or if it sleeps without a timeout (after a
            # quiet period); a polling writer finds the batch by its deadline on its own.
            if batch.urgent or (fresh and worker.idle):
                self._cond.notify_all()
            return batch

    def _stamp(self) -> float:
        """The next event's time (``_lock`` held): never before the previous one's, so
        timestamps never go backwards within a logger."""
        ts = time.time()
        if ts < self._last_ts:
            ts = self._last_ts
        self._last_ts = ts
        return ts

    def _running_worker(self) -> _Worker:
        """The writer thread, started on first use (called with ``_cond`` held). A writer
        that ends, even by a bug, detaches itself (:meth:`_run`), and a forked child
        starts afresh (:func:`_reset_in_child`): a set ``_worker`` is a live one."""
        worker = self._worker
        if worker is None:
            worker = _Worker()
            worker.thread = threading.Thread(
                target=self._run, args=(worker,), name="attune-audit-writer", daemon=True
            )
            worker.thread.start()
            self._worker = worker
        return worker

    # -- the writer thread -------------------------------------------------------------------

    def _run(self, worker: _Worker) -> None:
        try:
            self._serve(worker)
        finally:
            with self._cond:  # ended by a bug: let the next event start a new writer
                if self._worker is worker:
                    self._worker = None

    def _serve(self, worker: _Worker) -> None:
        while True:
            with self._cond:
                while not worker.stopping:
                    batch = worker.batch
                    if batch is None and not worker.unsynced:
                        # Poll for one linger period (events tend to keep coming, and then
                        # submitters need not wake this thread); after a quiet one, sleep.
                        quiet = not self._cond.wait(timeout=self._linger_s)
                        if quiet and worker.batch is None and not worker.unsynced:
                            worker.idle = True
                            self._cond.wait()
                            worker.idle = False
                        continue
                    if batch is not None and batch.urgent:
                        break  # someone waits for it, or it is full: write it now
                    # Due a linger after the batch's first event or after the oldest
                    # outbox line left to this thread (pending, or appended without fsync:
                    # its row and the file's lock wait for it), even while events keep
                    # coming.
                    due = min(
                        batch.created if batch is not None else math.inf,
                        worker.unsynced_at if worker.unsynced else math.inf,
                    )
                    remaining = due + self._linger_s - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(timeout=remaining)
            with self._sink_lock:
                with self._cond:
                    batch, worker.batch = worker.batch, None
                    if batch is not None:
                        worker.writing = batch
                    stopping = worker.stopping
                    unsynced, worker.unsynced = worker.unsynced, False
                if batch is not None:  # else a caller's commit() took it meanwhile
                    self._write(batch)
                if unsynced:
                    self._sync_sink()
            if stopping:
                return

    def _write(self, batch: _Batch) -> None:
        """Append a taken batch and wake everyone waiting on it (``_sink_lock`` held)."""
        if self._sink is None:
            self._sink = self._new_sink()
        error = None
        try:
            self._sink.commit(_encode(batch.entries), batch.fsync)
        except Exception as exc:
            error = self._failure_of(exc)
            self._reset_sink(exc)
            if not self.sync or not batch.urgent:
                # Nobody waits for these events (reads'; with sync=False, every one): the
                # next call is told, and refused (an audited read is never served unlogged
                # without someone hearing of it).
                with self._cond:
                    self._lost += len(batch.entries)
                    self._lost_failure = error
        if error is None and self._on_write is not None:
            self._tell_written(self._on_write, len(batch.entries))
        batch.finish(error)

    def _new_sink(self) -> Sink:
        """The sink batches are written with: the log file (a database logger: its table)."""
        return _Sink(self.log_file, self.max_bytes, self._marks)

    def _failure_of(self, exc: BaseException) -> Failure:
        """Why the log could not be extended (``exc``), and what to do; no data."""
        return _describe(self.log_file, exc)

    def _tell_written(self, on_write: Callable[[int], None], count: int) -> None:
        """Call the ``on_write`` hook before the batch's waiters are woken; what it raises
        is logged, never lets the batch fail (its events are written)."""
        try:
            on_write(count)
        except Exception:
            _log.exception("the on_write hook of the audit log %s raised", self.log_file)

    def _sync_sink(self) -> None:
        """Write pending outbox lines and fsync them (``_sink_lock`` held); a failure
        leaves their outbox rows for the next store to replay, and is reported to the
        logger's next call."""
        if self._sink is None:
            return
        try:
            self._sink.sync()
        except OSError as exc:
            self._reset_sink(exc)

    def _reset_sink(self, exc: Exception, *, report: bool = True) -> None:
        """Forget the sink's file after ``exc`` (``_sink_lock`` held). Pending outbox lines
        it could not write are left to their rows, kept for the next :meth:`begin` to
        append (until then it refuses writes), and (``report``) the next call is told."""
        assert self._sink is not None
        dropped = self._sink.reset()
        if dropped:
            self._unwritten.extend(dropped)
            if report:
                with self._cond:
                    self._failure = _pending_lost(self._failure_of(exc))

    # -- failures told to callers -----------------------------------------------------------

    def _finish_wait(self, batch: _Batch) -> None:
        """Wait until ``batch`` is written; raise if it failed, or if events nobody waited
        for (or committed outbox lines) failed meanwhile: this caller is told."""
        batch.done.wait()
        with self._cond:
            lost, self._lost = self._lost, 0
            failure, self._failure = self._failure, None
        if batch.error is not None:
            raise AuditLogError(batch.error[0], NOT_LOGGED, batch.error[1])
        if lost:  # this call's own events were written
            failure = _lost_events(lost, self._lost_failure)
        if failure is not None:
            raise AuditLogError(failure[0], "this call's own events were logged", failure[1])

    def _raise_unreported(self) -> None:
        """(``_cond`` held) Raise, once, a failure not yet reported."""
        if self._lost:
            lost, self._lost = self._lost, 0
            failure = _lost_events(lost, self._lost_failure)
            raise AuditLogError(failure[0], CALL_REFUSED, failure[1])
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise AuditLogError(failure[0], CALL_REFUSED, failure[1])
