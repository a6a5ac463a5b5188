"""The public :class:`AuditLogger`: logging, the outbox entry point, verifying, querying.

Every method here is API; the machinery beneath lives in the modules it names: the event
model (:mod:`.events`), the formats (:mod:`.codec`), the file (:mod:`.logfile`), the
queue and writer thread (:mod:`.writer`, the logger's base class), outbox writes and
their replay (:mod:`.outbox`) and reading back (:mod:`.reader`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from attune.errors import AuditLogError, ConfigurationError, ValidationError
from attune.memory.config import MemoryConfig
from attune.memory.security.audit import writer
from attune.memory.security.audit.events import AuditEvent, AuditTicket
from attune.memory.security.audit.failures import CALL_REFUSED, _unreadable
from attune.memory.security.audit.files import _read_lock, _rotated
from attune.memory.security.audit.journal import StoreJournal
from attune.memory.security.audit.outbox import OutboxWrite, _append_unwritten, _begin
from attune.memory.security.audit.process import _live
from attune.memory.security.audit.reader import VerifyResult, _matching, _verify, query_filters
from attune.memory.security.audit.writer import _LogWriter

#: How long :meth:`AuditLogger.verify` waits for the current file to reappear when only
#: rotated files are there (a writer between renaming it and creating the fresh one).
_ROTATING_S = 0.5


class AuditLogger(_LogWriter):
    """Append-only, hash-chained audit log of security decisions.

    ``log_file`` defaults to ``$ATTUNE_AUDIT_LOG``, else ``<storage_dir>/audit.jsonl``.
    Nothing is opened until the first event, so constructing does not touch the file.
    With ``sync=True`` (default) :meth:`log` / :meth:`alog` return once the event is
    fsynced; with ``sync=False`` they only queue it, and :meth:`flush` / :meth:`close`
    make it durable. ``linger_s`` (default 0.02) is how long events nobody waits for may
    wait to share one write and fsync (also a settable property). ``on_write``, if given,
    is called with the number of events of each batch written (see :attr:`on_write`).
    A failed write raises
    :class:`~attune.errors.AuditLogError` (a :class:`SecurityPipelineError`) to its caller
    (``sync=False``: to the next call).
    After :meth:`close`, logging again starts a new writer, so a closed logger stays
    usable.
    """

    def __init__(
        self,
        log_file: str | Path | None = None,
        *,
        sync: bool = True,
        max_bytes: int = 10 * 1024 * 1024,
        linger_s: float | None = None,
        on_write: Callable[[int], None] | None = None,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ConfigurationError("max_bytes of the audit log must be a positive integer")
        linger = _checked_linger(writer._LINGER_S if linger_s is None else linger_s)
        if on_write is not None and not callable(on_write):
            raise ConfigurationError("on_write of the audit log must be callable")
        path = _default_path() if log_file is None else Path(log_file)
        super().__init__(path.expanduser().absolute(), bool(sync), max_bytes, linger, on_write)
        #: This log as a long-term store's journal: where a write's final event becomes
        #: durable with its record (``InsertOp(record, Audited(logger.journal, event))``).
        self.journal = StoreJournal(self)
        _live.add(self)

    @property
    def linger_s(self) -> float:
        """How long events nobody waits for may wait to share one write and fsync.

        Settable (a positive number of seconds), also on a logger that is running, such as
        a pipeline's shared one: the writer thread uses the new value from its next wait
        on, which setting it starts at once.
        """
        return self._linger_s

    @linger_s.setter
    def linger_s(self, value: float) -> None:
        linger = _checked_linger(value)
        with self._cond:
            self._linger_s = linger
            self._cond.notify_all()

    @property
    def on_write(self) -> Callable[[int], None] | None:
        """The hook given as ``on_write``: called with the number of events each time a
        batch of queued events was written (and fsynced, if it needed to be), before
        anyone waiting for them returns, in the thread that wrote them (the writer
        thread, or a caller's: :meth:`log`, :meth:`wait`, :meth:`begin` and its
        ``finish``), for metrics (group-commit batch sizes) and tests. It runs with the
        file held: keep it short, and never log to this logger from it. What it raises
        is logged (``logging``) and otherwise ignored. Not told: failed writes (their
        callers are), and events that go out as an outbox write's lines (:meth:`begin`).
        """
        return self._on_write

    # -- writing ----------------------------------------------------------------------------

    def log(self, event: AuditEvent) -> None:
        """Record one event, blocking until it is durable (``sync=True``): for scripts and
        threads that may block, never an event loop's.

        The calling thread writes the queued batch itself when no writer is busy with it:
        no hand-off to the writer thread and back.
        """
        ticket = self.submit(event)
        if self.sync:
            self.wait(ticket)

    async def alog(self, event: AuditEvent, *, report: bool = True) -> None:
        """Record one event, awaiting durability (``sync=True``) without blocking the event
        loop; with ``sync=False`` it is only queued. ``report=False``: see :meth:`submit`."""
        _check(event)
        if not self.sync:
            self._submit(event, report=report)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._submit(event, (loop, future), urgent=True, report=report)
        await future

    def submit(self, event: AuditEvent, *, report: bool = True) -> AuditTicket:
        """Queue one event behind everything queued so far, without waiting (a read's, or a
        decision a later durable event of the same operation covers: the writer keeps
        order); :meth:`wait` for the ticket to make it durable. Thread-safe, never blocks
        on the disk. A failure to write earlier events nobody waited for refuses this call
        (:meth:`report_failures`); ``report=False`` leaves it for a later call: for an event
        whose operation is done already, which must not be told it was refused."""
        _check(event)
        return AuditTicket(self._submit(event, report=report))

    def wait(self, ticket: AuditTicket) -> None:
        """Block until the ticket's events are written (and fsynced when ``sync=True``).

        If no writer has taken them yet, this thread writes the whole queued batch itself;
        tickets of one batch share that write and fsync. For threads that may block, never
        an event loop's. Raises :class:`SecurityPipelineError` if the write failed.
        """
        batch = ticket.batch
        if not batch.done.is_open:
            with self._sink_lock:
                with self._cond:
                    worker = self._worker
                    mine = worker is not None and worker.batch is batch
                    if mine:
                        assert worker is not None
                        worker.batch = None
                        worker.writing = batch
                    elif not batch.done.is_open:  # a stopping writer still owns it
                        batch.urgent = True
                        self._cond.notify_all()
                if mine:
                    batch.fsync = batch.fsync or self.sync
                    batch.urgent = True  # waited for: a failure is told here (see _write)
                    self._write(batch)
        self._finish_wait(batch)

    def flush(self) -> None:
        """Wait until everything queued so far is written and fsynced."""
        with self._cond:
            worker = self._worker
            batch = None
            if worker is not None:
                batch = worker.open_batch()
                batch.fsync = batch.urgent = True
                self._cond.notify_all()
        if batch is not None:
            self._finish_wait(batch)

    def close(self) -> None:
        """Flush, then stop the writer thread. Idempotent; a later event starts a new one."""
        with self._cond:
            worker, self._worker = self._worker, None
            batch = None
            if worker is not None:
                batch = worker.open_batch()
                batch.fsync = batch.urgent = worker.stopping = True
                self._cond.notify_all()
        if worker is not None and worker.thread is not None:
            worker.thread.join()
        with self._sink_lock:
            if self._sink is not None:
                self._sync_sink()  # outbox lines pending since the writer's last write
                self._sink.close()
                self._sink = None
        if batch is not None:
            self._finish_wait(batch)

    def report_failures(self) -> None:
        """Raise, once, a failure to write events that nobody waited for (reads, and with
        ``sync=False`` every event), or to append committed outbox lines: the call it
        interrupts is refused (:class:`~attune.errors.AuditLogError`). Nothing to do, and
        no lock taken, when there is none."""
        if self._lost or self._failure is not None:
            with self._cond:
                self._raise_unreported()

    def begin(self, events: list[AuditEvent]) -> OutboxWrite:
        """Start writing ``events`` (and everything queued before them) for a store whose
        transaction will keep them, as :attr:`OutboxWrite.payload`, in an outbox table.

        Holds this logger and the file's lock until :meth:`OutboxWrite.finish`: call it
        right after the transaction's ``COMMIT`` (or its failure), from any thread (a
        ``threading.Lock`` and an ``flock`` on the log's descriptor: neither is bound to
        the thread that took it).
        Anyone who takes the file's lock therefore finds each committed outbox row's
        lines in the log, or its writer dead; :func:`replay_outbox` relies on that.

        This is where the log's health is checked before the store's ``COMMIT``: the lock
        is taken and the tail read (a garbled last line or a file that cannot be opened
        fails here), and lines of earlier writes that could not be appended after their
        commit (a full disk) are appended first, with an fsync. If any of that fails it
        raises :class:`~attune.errors.AuditLogError` saying the write was refused and
        nothing stored: the store must then not commit the records these events describe.
        """
        for event in events:
            _check(event)
        return _begin(self, events)

    @property
    def failure_pending(self) -> bool:
        """Whether a failure is waiting to be told: a write of events nobody waited for
        failed, or committed outbox lines could not be appended. The next call is refused
        with it; :meth:`report_failures` raises it now. Never blocks."""
        return bool(self._lost) or self._failure is not None

    @property
    def held_events(self) -> int:
        """Events of committed writes that could not be appended yet (their store's outbox
        keeps them; the next write, :meth:`check` or a reopened store appends them)."""
        return len(self._unwritten)

    def check(self) -> None:
        """Raise :class:`~attune.errors.AuditLogError` (the call refused) unless the log can
        be extended now: for an operation whose event can only be written after it ran
        (a delete), to be refused before it runs. Locks the file and reads its tail (a
        garbled last line, a file that cannot be opened fail here) and appends lines
        kept from a failed append first (see :meth:`begin`); a full disk is found only by
        writing, so it can still fail the event afterwards. Blocks on the disk."""
        with self._sink_lock:
            if self._sink is None:
                self._sink = self._new_sink()
            try:
                if self._unwritten:
                    _append_unwritten(self)
                self._sink.check()
            except Exception as exc:
                self._reset_sink(exc)
                reason, advice = self._failure_of(exc)
                raise AuditLogError(reason, CALL_REFUSED, advice) from None

    def where(self) -> dict[str, Any]:
        """Where the log is, for health reports: its file (a database logger: its table)."""
        return {"path": str(self.log_file)}

    def written(self) -> bool:
        """Whether the log exists yet (a file not written yet is not created by a check)."""
        return self.log_file.exists()

    def cannot_create(self) -> str | None:
        """Why a log not written yet could not be created where it is configured (its
        nearest existing folder is a file, or not writable), or None; creates nothing."""
        folder = self.log_file.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a directory, so the log {self.log_file} cannot be created"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"no permission to create the log {self.log_file} under {folder}"
        return None

    # -- reading ----------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """The log's files, oldest first (rotated ``.N`` ... ``.1``, then the current one)."""
        current = [self.log_file] if self.log_file.exists() else []
        return _rotated(self.log_file)[::-1] + current

    def verify(
        self, *, allow_pruned: bool = False, anchor: tuple[int, str] | None = None
    ) -> VerifyResult:
        """Recompute the hash chain over every file and report the first problem.

        ``allow_pruned=True`` accepts a log whose oldest files were deleted: the first
        remaining line is trusted as the start of the chain. ``anchor``: (seq, hash) of a
        checkpoint (:func:`~.checkpoint.open_checkpoint`): the chain must still hold that
        line. This logger's queued events are written first; other loggers' (other
        processes') only once they flush.
        """
        self._flush_pending()
        # Rotated files without the current one: its events were deleted, unless a writer
        # is rotating right now (it renames the file to .1, then creates the fresh one).
        patience = time.monotonic() + _ROTATING_S
        try:
            while True:
                with _read_lock(self.log_file):
                    files = self.files()
                    if not files or files[-1] == self.log_file or time.monotonic() >= patience:
                        return _verify(files, allow_pruned, anchor, current=self.log_file)
                time.sleep(_ROTATING_S / 20)
        except OSError as exc:
            raise _unreadable(self.log_file, exc, "it was not verified") from None

    def query(
        self,
        *,
        event_type: str | None = None,
        user_id: str | None = None,
        since: datetime | str | None = None,
        outcome: str | None = None,
        target_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Events matching every filter given, oldest first, across rotated files.

        ``since`` keeps events at or after that time (a naive datetime is UTC);
        ``limit`` keeps the most recent matches. Lines that are not valid events are
        skipped (:meth:`verify` reports them).
        """
        wanted, after = query_filters(event_type, user_id, since, outcome, target_id, limit)
        self._flush_pending()
        try:
            with _read_lock(self.log_file):
                return _matching(self.files(), wanted, after, limit)
        except OSError as exc:
            raise _unreadable(self.log_file, exc, "nothing was returned") from None

    def _flush_pending(self) -> None:
        """Write this logger's queued events, so a read sees everything logged before it."""
        with self._cond:
            idle = self._worker is None
        if not idle:
            self.flush()


def _checked_linger(value: object) -> float:
    """``linger_s`` as a float, or :class:`ConfigurationError` unless a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError("linger_s of the audit log must be a positive number")
    return float(value)


def _check(event: object) -> None:
    """Refuse anything but an :class:`AuditEvent` (which validated itself when made)."""
    if type(event) is not AuditEvent:
        raise ValidationError("an audit event must be an AuditEvent")


def _default_path() -> Path:
    """The configuration's audit log (``MemoryConfig.ensure_audit_log_path``)."""
    return MemoryConfig().ensure_audit_log_path()
