"""What every long-term store's group commit shares, whatever its engine.

A store queues writes (:data:`Queued`: an operation and its caller's future) and runs a
batch of them as one transaction; each caller gets its own :data:`Outcome`. Shared here:

* :func:`runnable`, :func:`one_journal`: a transaction runs the writes whose callers
  still wait, and keeps the audit events of one journal only;
* :func:`append_events`: the events of committed inserts appended to their journal right
  after the COMMIT (the durability contract's second way, :class:`~.protocol.Journal`);
* :func:`committed_error`: what the callers of committed records hear when that fails;
* :func:`answer`: every caller answered with its result or its error;
* :func:`enqueue`: a write queued, and the one task that drains the queue batch by batch;
* :func:`search_entry`: a new record's search entry, or none when it cannot be made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from attune.errors import AuditLogError
from attune.memory.long_term.protocol import InsertOp, Journal, WriteOp, entry_of
from attune.memory.long_term.queries import SearchEntry

#: A queued write and its caller's future.
Queued = tuple[WriteOp, "asyncio.Future[Any]"]
#: A queued write's outcome: its result, or the error that failed it alone.
Outcome = tuple[Any, BaseException | None]


_log = logging.getLogger("attune.long_term")


def search_entry(op: InsertOp) -> SearchEntry | None:
    """The search entry of a new record (made now if ``op`` carries the function that makes
    it), or None. One that cannot be made (a bug) leaves its record unindexed, as a process
    that dies before writing its row does: the write stands, and the backfill of a memory
    object's first search indexes it. The log names the error's type only (its message
    could quote the record's words)."""
    try:
        return entry_of(op)
    except Exception as exc:
        _log.error(
            "a new record's search entry could not be made (%s): stored, left unindexed",
            type(exc).__name__,
        )
        return None


class Draining(Protocol):
    """What holds a queue of writes: a SQLite connection, a PostgreSQL pool (per loop)."""

    queue: list[Queued]
    draining: asyncio.Task[None] | None


_H = TypeVar("_H", bound=Draining)


def enqueue(
    holder: _H, op: WriteOp, commit: Callable[[_H, list[Queued]], Awaitable[None]]
) -> asyncio.Future[Any]:
    """Queue ``op`` on ``holder``; its caller's future. One task drains the queue:
    ``commit(holder, batch)`` for everything queued, again until nothing is left."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    holder.queue.append((op, fut))
    if holder.draining is None:
        holder.draining = asyncio.create_task(_drain(holder, commit))
    return fut


async def _drain(holder: _H, commit: Callable[[_H, list[Queued]], Awaitable[None]]) -> None:
    try:
        while holder.queue:
            while holder.queue:
                batch, holder.queue = holder.queue, []
                await commit(holder, batch)
            # Callers just answered often write again at once (a sequential writer does):
            # one more loop iteration takes those into this same task instead of ending it
            # and starting a new one per write.
            await asyncio.sleep(0)
    finally:
        holder.draining = None


def runnable(holder: Draining, batch: list[Queued]) -> list[Queued]:
    """The writes of ``batch`` to run now: those whose caller still waits (a caller that
    gave up before its write ran is dropped), up to the first that names a second journal
    (:func:`one_journal`); the rest go back to the front of ``holder``'s queue, for the
    transaction right after."""
    live = [item for item in batch if not item[1].cancelled()]
    live, later = one_journal(live)
    if later:
        holder.queue[:0] = later
    return live


def one_journal(batch: list[Queued]) -> tuple[list[Queued], list[Queued]]:
    """The batch split where an insert's event names a second journal: one transaction
    keeps the events of one journal only (locking two audit logs at once could deadlock
    on two loggers of one file), so the rest is committed right after, and every
    record's events still become durable with its own transaction. Almost always one
    journal: a pass over the batch, nothing split."""
    journal = None
    for n, (op, _fut) in enumerate(batch):
        if isinstance(op, InsertOp) and op.audit is not None:
            if journal is None:
                journal = op.audit.journal
            elif op.audit.journal is not journal:
                return batch[:n], batch[n:]
    return batch, []


async def append_events(ops: Sequence[WriteOp], which: list[int], outcomes: list[Any]) -> None:
    """After the COMMIT, on the event loop: the events of the committed inserts at
    ``which`` in ``ops``, appended to their journal in one awaited call (one fsync for the
    batch). A failure tells their callers the records are stored (never that the write
    was refused)."""
    events = []
    journal: Journal | None = None
    for i in which:
        op = ops[i]
        assert isinstance(op, InsertOp) and op.audit is not None
        journal = op.audit.journal  # one journal per batch (one_journal)
        events.append(op.audit.event)
    assert journal is not None
    try:
        await journal.append(events)
    except Exception as exc:
        error = committed_error(exc, held=False)
        for i in which:
            outcomes[i] = (True, error)


def answer(live: Sequence[Queued], outcomes: Sequence[Outcome]) -> None:
    """Every caller of ``live`` gets its outcome (a caller that gave up is skipped)."""
    for (_op, fut), (result, error) in zip(live, outcomes, strict=True):
        if fut.done():
            continue
        if error is None:
            fut.set_result(result)
        else:
            fut.set_exception(error)


def committed_error(exc: Exception, *, held: bool = True) -> Exception:
    """What the callers of committed records hear when their journal failed after the
    COMMIT: that their records are stored (and, ``held``, their events kept in the
    outbox), never that the write was refused."""
    if isinstance(exc, AuditLogError) and exc.committed:
        return exc
    fate = (
        "its events are held in the store's outbox: they are appended to the log when the "
        "store next opens"
        if held
        else "its audit events could not be written (they are not in the log)"
    )
    return AuditLogError(
        f"the audit journal failed right after the commit ({exc})",
        f"the write WAS stored, and {fate}. Do not retry the write",
        "",
        committed=True,
    )
