"""The audit log of a PostgreSQL deployment: :class:`DatabaseAuditLogger`, whose lines go
to the database's ``audit_events`` table (:mod:`.postgres_audit`), one chain for every host.

It is an :class:`~attune.memory.security.audit.AuditLogger` with another sink: the same
queue, writer thread, group commit and failure reporting, but a batch is written by one
short transaction (lock the chain head, insert the lines, COMMIT: the COMMIT is the
durability, no fsync of attune's own). asyncpg connections belong to an event loop, so
the sink runs one private loop on a thread of its own with one connection; the writer
thread (or a caller's, see :meth:`~.AuditLogger.wait`) hands it each batch and waits.
Nothing blocks a caller's event loop: ``alog`` awaits a future, as with a file.

A long-term write's event does not come here: :attr:`DatabaseAuditLogger.journal` is a
:class:`TableJournal`, which the PostgreSQL store of the same database recognises and
inserts the event in the record's own transaction (see ``postgres_store``).

``mirror``: a local JSONL file that also receives this process's events (queued, its own
chain, verified as a file). It is a convenience for local tooling, never the record: a
failure to write it is logged (``logging``), not raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from attune.errors import AuditLogError, ConfigurationError
from attune.memory.long_term import postgres_audit
from attune.memory.long_term.postgres_audit_sink import (
    HeadHint,
    NoHeadError,
    TableSink,
    quietly_close,
)
from attune.memory.long_term.protocol import InsertOp, WriteOp
from attune.memory.security.audit.batch import _Batch
from attune.memory.security.audit.events import AuditEvent
from attune.memory.security.audit.failures import CALL_REFUSED, REFUSED, Failure
from attune.memory.security.audit.journal import StoreJournal
from attune.memory.security.audit.logger import AuditLogger
from attune.memory.security.audit.outbox import OutboxWrite
from attune.memory.security.audit.reader import VerifyResult, _verify_lines, query_filters
from attune.memory.security.audit.writer import Sink
from attune.memory.service_urls import redact_url

__all__ = ["DatabaseAuditLogger", "TableJournal", "table_journal"]

_T = TypeVar("_T")
_log = logging.getLogger("attune.security")

_HEAD_MISMATCH = (
    "the chain head (audit_head) does not match the last event: events were removed from "
    "the end of the table, or the head was altered"
)


class TableJournal(StoreJournal):
    """A database logger as a long-term store's journal: a PostgreSQL store of the same
    database (``dsn``) inserts a write's events in the write's own transaction and then
    calls :meth:`kept`; any other store appends them after its COMMIT (:meth:`append`:
    the logger's own short transaction)."""

    __slots__ = ("dsn",)

    def __init__(self, logger: DatabaseAuditLogger, dsn: str) -> None:
        super().__init__(logger)
        self.dsn = dsn

    def begin(self, events: Sequence[AuditEvent]) -> OutboxWrite | None:
        """None: a database log keeps no outbox (see the class)."""
        return None

    @property
    def head_hint(self) -> HeadHint:
        """Where this process last left the chain head (see :class:`HeadHint`)."""
        logger = self.logger
        assert isinstance(logger, DatabaseAuditLogger)
        return logger.head_hint

    def take_queued(self) -> tuple[_Batch | None, _Batch | None]:
        """(the batch the logger's writer is writing now, if any; its open batch, taken):
        for a store's transaction, which waits for the first (without blocking its loop:
        ``done.wait`` in a worker thread) and appends the second before the write's own
        events, so the events an operation queued before its final one are durable, and
        chained, before it. Never blocks (the queue's lock only). Then :meth:`settle` the
        taken batch after the COMMIT, or :meth:`give_back` it if there was none."""
        logger = self.logger
        with logger._cond:
            worker = logger._worker
            if worker is None:
                return None, None
            writing = worker.writing
            if writing is not None and writing.done.is_open:
                writing = None
            batch, worker.batch = worker.batch, None
            return writing, batch

    def settle(self, batch: _Batch) -> None:
        """A taken batch committed with a store's transaction: its waiters are woken."""
        logger = self.logger
        if logger._on_write is not None:
            logger._tell_written(logger._on_write, len(batch.entries))
        batch.finish(None)

    def give_back(self, batch: _Batch) -> None:
        """A taken batch whose transaction did not commit: written by a thread of its own
        (never blocks the caller's event loop), as the writer would have written it."""

        def write() -> None:
            logger = self.logger
            with logger._sink_lock:
                batch.fsync = batch.fsync or logger.sync
                logger._write(batch)

        threading.Thread(target=write, name="attune-audit-give-back", daemon=True).start()

    def kept(self, inserts: Sequence[WriteOp]) -> None:
        """The events of audited inserts a store just committed in the table: copied to
        the local mirror, if any (never blocks: queued)."""
        logger = self.logger
        assert isinstance(logger, DatabaseAuditLogger)
        if logger.mirror is not None:
            logger._mirror_events(
                [op.audit.event for op in inserts if isinstance(op, InsertOp) and op.audit]
            )


def table_journal(ops: Sequence[WriteOp], dsn: str) -> TableJournal | None:
    """The journal of a batch's audited inserts if it is the audit table of the database
    ``dsn`` (their events then go in the batch's own transaction), else None (a store
    appends them right after its COMMIT). One journal per batch (``batching.one_journal``)."""
    for op in ops:
        if isinstance(op, InsertOp) and op.audit is not None:
            journal = op.audit.journal
            if isinstance(journal, TableJournal) and journal.dsn == dsn:
                return journal
            return None
    return None


#: Every database logger, for a forked child to drop the parent's reader (its thread and
#: connection are the parent's; the writer's sink is reset by the audit package itself).
_loggers: weakref.WeakSet[DatabaseAuditLogger] = weakref.WeakSet()


def _reset_in_child() -> None:
    for logger in list(_loggers):
        logger._reader = None
        logger._reader_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_in_child)


class DatabaseAuditLogger(AuditLogger):
    """The audit log in a PostgreSQL database's ``audit_events`` table (see the module).

    ``dsn``: the database (``postgresql://...``, as ``ATTUNE_DATABASE_URL``); ``mirror``:
    a local JSONL file that also gets this process's events, or None. ``sync=False``
    commits batches without waiting for the WAL flush (``synchronous_commit = off``).
    """

    def __init__(
        self,
        dsn: str,
        *,
        sync: bool = True,
        mirror: str | Path | None = None,
        linger_s: float | None = None,
        on_write: Callable[[int], None] | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                "a PostgreSQL URL starts with postgresql:// or postgres:// "
                "(for example postgresql://attune@localhost:5432/attune)"
            )
        self.dsn = dsn
        self.url = redact_url(dsn)
        self.connect_timeout_s = connect_timeout_s
        #: Where this process last left the chain head (its sink's and its stores' appends).
        self.head_hint = HeadHint()
        #: The local copy of this process's events (its own chain), or None.
        self.mirror = None if mirror is None else AuditLogger(mirror, sync=False)
        where = Path(mirror) if mirror is not None else Path(f"/{postgres_audit.TABLE}")
        super().__init__(where, sync=sync, linger_s=linger_s, on_write=on_write)
        self.journal = TableJournal(self, dsn)
        self._reader: TableSink | None = None
        self._reader_lock = threading.Lock()
        _loggers.add(self)

    def __repr__(self) -> str:
        return f"DatabaseAuditLogger({self.url!r})"

    # -- writing ---------------------------------------------------------------------------

    def _new_sink(self) -> Sink:
        return TableSink(self.dsn, self.connect_timeout_s, self.head_hint)

    def _failure_of(self, exc: BaseException) -> Failure:
        if isinstance(exc, NoHeadError):
            return (
                f"the audit chain head (audit_head) of {self.url} has no row, so the chain "
                "cannot be extended",
                "The table was altered outside attune: run `attune audit verify`, then "
                "restore the database from a backup.",
            )
        if isinstance(exc, AuditLogError):
            return (exc.reason, exc.advice)
        code = getattr(exc, "sqlstate", None)
        kind = type(exc).__name__ + (f", SQLSTATE {code}" if code else "")
        return (
            f"the audit table {postgres_audit.TABLE} of {self.url} could not be written ({kind})",
            "Check that the database is reachable and that attune's role may insert into "
            "audit_events and update audit_head, then retry.",
        )

    def _submit(
        self,
        event: AuditEvent,
        future: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None,
        *,
        urgent: bool = False,
        report: bool = True,
    ) -> Any:
        batch = super()._submit(event, future, urgent=urgent, report=report)
        if self.mirror is not None:
            self._mirror_events((event,))
        return batch

    def _mirror_events(self, events: Sequence[AuditEvent]) -> None:
        mirror = self.mirror
        if mirror is None:
            return
        try:
            for event in events:
                mirror.submit(event)
        except AuditLogError as exc:
            _log.warning("the local audit mirror %s failed: %s", mirror.log_file, exc.reason)

    def begin(self, events: list[AuditEvent]) -> OutboxWrite:
        raise AuditLogError(
            "a database audit log keeps no outbox: its events go in the store's own transaction",
            REFUSED,
            "Use TableJournal.begin (None): append the events after the COMMIT instead.",
        )

    def check(self) -> None:
        """Raise :class:`~attune.errors.AuditLogError` (the call refused) unless the table
        can be extended now (the database answers and the chain head is there)."""
        with self._sink_lock:
            if self._sink is None:
                self._sink = self._new_sink()
            try:
                self._sink.check()
            except Exception as exc:
                self._reset_sink(exc)
                reason, advice = self._failure_of(exc)
                raise AuditLogError(reason, CALL_REFUSED, advice) from None

    def close(self) -> None:
        try:
            super().close()
        finally:
            with self._reader_lock:
                reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()
            if self.mirror is not None:
                self.mirror.close()

    def where(self) -> dict[str, Any]:
        return {"database": self.url, "table": postgres_audit.TABLE}

    def written(self) -> bool:
        return True

    # -- reading ---------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """None: the log is a table (the mirror's files are ``mirror.files()``)."""
        return []

    def _reading(self) -> TableSink:
        with self._reader_lock:
            if self._reader is None:
                self._reader = TableSink(self.dsn, self.connect_timeout_s)
            return self._reader

    def verify(
        self, *, allow_pruned: bool = False, anchor: tuple[int, str] | None = None
    ) -> VerifyResult:
        """Recompute the hash chain over the table, in ``seq`` order, in one snapshot, with
        the same check as a file's; then check that the chain head row names the last
        line (events removed from the end show there, unless the head was rewritten too:
        anchor it with a signed checkpoint, :mod:`~attune.memory.security.audit.checkpoint`).
        This logger's queued events are written first."""
        self._flush_pending()
        reader = self._reading()
        try:
            conn = reader.run(reader.connect)
        except Exception as exc:
            raise self.unreadable(exc, "it was not verified") from None
        try:
            reader.run(lambda: conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            stored = reader.run(lambda: postgres_audit.head(conn))
            last, altered = [0], [0]
            result = _verify_lines(
                self._rows(reader, conn, last, altered),
                allow_pruned,
                0,
                postgres_audit.TABLE,
                anchor,
            )
        except Exception as exc:
            raise self.unreadable(exc, "it was not verified") from None
        finally:
            reader.run(lambda: quietly_close(conn))
        # A broken chain is reported first (at or before the row whose columns disagree).
        reason = postgres_audit.COLUMNS_ALTERED if altered[0] else _HEAD_MISMATCH
        if result.ok and (altered[0] or stored != (last[0], result.head)):
            return VerifyResult(
                False, result.lines_checked, None, last[0], reason, 0, table=postgres_audit.TABLE
            )
        return result

    @staticmethod
    def _rows(
        reader: TableSink, conn: asyncpg.Connection, last: list[int], altered: list[int]
    ) -> Iterator[tuple[Path | None, int, bytes]]:
        """Every row's line (newline added, as a file's) in ``seq`` order, page by page;
        ``last[0]`` follows the last seq read. Ends after a row whose ``seq`` or ``ts``
        column disagrees with its line, its seq then in ``altered[0]``."""
        after = 0
        while True:
            rows, bad = reader.run(
                lambda: postgres_audit.verify_page(conn, after, postgres_audit.PAGE)  # noqa: B023
            )
            for seq, line in rows:
                last[0] = seq
                yield None, seq, line.encode("ascii", "replace") + b"\n"
            if bad is not None:
                altered[0] = bad
                return
            if not rows:
                return
            after = rows[-1][0]

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
        """Events matching every filter given, oldest first (see
        :meth:`AuditLogger.query`), from the table: read newest first, page by page, until
        ``limit`` matched. Rows that are not valid events are skipped (``verify`` reports
        them)."""
        wanted, after = query_filters(event_type, user_id, since, outcome, target_id, limit)
        if limit == 0:
            return []
        self._flush_pending()
        reader = self._reading()

        async def scan() -> list[dict[str, Any]]:
            conn = await reader.connect()
            try:
                return await postgres_audit.matching(conn, wanted, after, limit)
            finally:
                await quietly_close(conn)

        try:
            return reader.run(scan)
        except Exception as exc:
            raise self.unreadable(exc, "nothing was returned") from None

    def unreadable(self, exc: BaseException, outcome: str) -> AuditLogError:
        """The error for a read of the table that failed with ``exc`` (``outcome``: what
        became of the operation); also the follower's (``attune.memory.security.audit.follow``)."""
        if isinstance(exc, AuditLogError):
            return exc
        code = getattr(exc, "sqlstate", None)
        kind = type(exc).__name__ + (f", SQLSTATE {code}" if code else "")
        return AuditLogError(
            f"the audit table {postgres_audit.TABLE} of {self.url} could not be read ({kind})",
            outcome,
            "Check that the database is reachable and that attune's role may read it.",
        )
