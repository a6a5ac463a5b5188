"""Waiting for a background effect without sleeping a guessed time.

:class:`WriteRecorder` is an :class:`~attune.memory.security.audit.AuditLogger`
``on_write`` hook: it records each batch written (its size and the thread that wrote
it) and lets a test wait until a number of events were written. :func:`wait_until` and
:func:`await_until` poll a condition with a deadline, for effects no hook announces.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

#: Long enough for a slow CI machine; a condition that holds returns at once.
DEADLINE_S = 10.0


class WriteRecorder:
    """An audit logger's ``on_write`` hook: what was written, by which thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: Events per batch written, in order.
        self.batches: list[int] = []
        #: The name of the thread that wrote each batch.
        self.threads: list[str] = []

    def __call__(self, count: int) -> None:
        with self._cond:
            self.batches.append(count)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    @property
    def events(self) -> int:
        """Events written so far."""
        with self._cond:
            return sum(self.batches)

    def reached(self, events: int, timeout: float) -> bool:
        """Whether ``events`` events were written within ``timeout`` seconds (waits no
        longer than it takes)."""
        with self._cond:
            return self._cond.wait_for(lambda: sum(self.batches) >= events, timeout)

    def wait_for(self, events: int, timeout: float = DEADLINE_S) -> None:
        """Block until at least ``events`` events were written; fail the test after
        ``timeout`` seconds."""
        if not self.reached(events, timeout):
            pytest.fail(f"{events} audit events were never written (only {self.events})")

    async def await_for(self, events: int) -> None:
        """:meth:`wait_for` without blocking the event loop."""
        await asyncio.to_thread(self.wait_for, events)


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it is true; fail the test, saying ``what`` never happened,
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never happened")
        time.sleep(0.002)


async def await_until(condition: Callable[[], object], what: str) -> None:
    """:func:`wait_until` for a coroutine: polls without blocking the event loop."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never happened")
        await asyncio.sleep(0.002)
