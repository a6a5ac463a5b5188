"""A batch: events committed together with one write and fsync, and everyone waiting on it.

:class:`_Batch` collects events (with their timestamps) until the writer takes it; once
written, :meth:`_Batch.finish` wakes its waiters, blocking callers on its :class:`_Latch`
(a one-shot gate, cheaper than ``threading.Event``), ``alog`` callers on futures of their
own loops (``call_soon_threadsafe``, settled by :func:`_settle`). :class:`_Worker` is one
writer thread's state: the batch it will commit next, whether it is stopping or asleep,
and outbox lines left to it to fsync. The thread itself is :mod:`.writer`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from attune.errors import AuditLogError
from attune.memory.security.audit.failures import NOT_LOGGED, Failure

if TYPE_CHECKING:
    from attune.memory.security.audit.events import AuditEvent


class _Latch:
    """A gate opened once, then passed by any number of waiters: what a batch's waiters
    need of ``threading.Event`` at a fifth of its cost (every persist opens a batch)."""

    __slots__ = ("_gate", "is_open")

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self.is_open = False

    def open(self) -> None:
        if not self.is_open:
            self.is_open = True
            self._gate.release()

    def wait(self) -> None:
        if not self.is_open:
            with self._gate:  # released by open(); each waiter passes it on
                pass


@dataclass(eq=False, slots=True)
class _Batch:
    """Events committed together; everyone waiting on it is woken once."""

    entries: list[tuple[float, AuditEvent]] = field(default_factory=list)
    futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )
    fsync: bool = False
    #: Someone waits for this batch (or it is full): write it without lingering.
    urgent: bool = False
    #: When its first event was queued: it is written by this + the logger's linger at the latest.
    created: float = field(default_factory=time.monotonic)
    #: Why the batch could not be written: (reason, advice), see :func:`_describe`.
    error: Failure | None = None
    done: _Latch = field(default_factory=_Latch)

    def finish(self, error: Failure | None) -> None:
        self.error = error
        self.done.open()
        for loop, future in self.futures:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future[None], error: Failure | None) -> None:
    if future.done():  # the caller was cancelled; the event is still logged
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(AuditLogError(error[0], NOT_LOGGED, error[1]))


@dataclass(eq=False, slots=True)
class _Worker:
    """One writer thread and the batch it will commit next."""

    thread: threading.Thread | None = None
    batch: _Batch | None = None
    #: The batch last taken to be written (by this thread or a caller's): until its latch
    #: opens, it is being written (a database store's transaction waits for it, see
    #: ``TableJournal.take_queued``).
    writing: _Batch | None = None
    #: close() asked it to write what is queued and end.
    stopping: bool = False
    #: Asleep until notified (no events for a linger period); else it polls.
    idle: bool = False
    #: Lines were appended without fsync (an outbox write): fsync them after a linger.
    unsynced: bool = False
    #: ``time.monotonic()`` when ``unsynced`` last became true.
    unsynced_at: float = 0.0

    def open_batch(self) -> _Batch:
        if self.batch is None:
            self.batch = _Batch()
        return self.batch

    def mark_unsynced(self) -> None:
        if not self.unsynced:
            self.unsynced = True
            self.unsynced_at = time.monotonic()
