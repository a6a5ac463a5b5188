"""Automatic pipelining of single-key Redis commands (as ioredis' ``enableAutoPipelining``).

A command issued through :meth:`AutoPipeline.execute` while the connection is idle goes
out at once, alone, so a sequential caller pays nothing for batching. Commands issued
while something is in flight queue up; when it returns, a flusher task sends the whole
queue as one pipeline (one write, one round trip), and keeps doing so until the queue is
empty. With 64 concurrent tasks that is about one round trip per 64 commands instead of
64 round trips, and Python's per-command cost drops too.

Semantics do not change:

* **Order**: one batch is in flight at a time, and a pipeline runs its commands in
  order on one connection, so commands reach Redis in the order they were issued;
  two writers of one key keep last-writer-wins.
* **Errors**: the pipeline runs with ``raise_on_error=False``, so a command Redis
  refuses fails only its own caller; a connection error fails the batch it hit.
* **Cancellation**: a caller cancelled before its batch is sent is left out of it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class AutoPipeline:
    """Coalesces the commands of one client on one event loop into pipelines."""

    def __init__(self, client: aioredis.Redis, timeout: float) -> None:
        self.client = client
        #: Bounds each round trip (a lone command or a whole batch) to ``timeout`` seconds.
        self._deadline = _SharedDeadline(timeout)
        self._pending: list[_Call] = []
        #: The task draining the queue; held here, since the loop keeps only a weak reference.
        self._flusher: asyncio.Task[None] | None = None
        #: True while a command or batch is in flight: new commands queue behind it.
        self._busy = False
        #: Batches sent and commands in them (for tests and benchmarks).
        self.batches = 0
        self.commands = 0

    async def execute(self, *args: Any) -> Any:
        """Run one command (``"SET", key, value, "PX", ms``) and return its reply.

        On an idle connection it goes out at once, alone: a sequential caller pays no
        batching delay. Otherwise it joins the queue, sent as one pipeline as soon as
        what is in flight returns.
        """
        if self._busy:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._pending.append((args, future))
            return await future
        self._busy = True
        try:
            self.batches += 1
            self.commands += 1
            async with self._deadline:
                return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """After a send: drain what queued meanwhile in a flusher task, or go idle."""
        if self._pending:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        else:
            self._busy = False

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                live = [call for call in batch if not call[1].done()]
                if live:
                    await self._send(live)
        finally:
            self._busy = False
            self._flusher = None

    async def _send(self, batch: list[_Call]) -> None:
        self.batches += 1
        self.commands += len(batch)
        pipe = self.client.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command(*args)
        try:
            async with self._deadline:
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every command of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


class _SharedDeadline:
    """``asyncio.timeout`` for round trips that never overlap, with one timer for all.

    ``asyncio.timeout`` arms and cancels a timer per use, which costs as much as a few
    percent of a loopback round trip. Here each round trip only records its deadline; one
    watchdog timer, armed when none is, re-arms itself for the round trip in flight when it
    fires early, and cancels the waiting task once that round trip is past its deadline.
    Leaving the block turns that cancellation into :class:`TimeoutError`, unless someone
    else cancelled the task too -- the same rule as ``asyncio.timeout``.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._ends_at = 0.0
        self._fired = False
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "round trips run inside a task"
        loop = task.get_loop()
        self._task, self._cancelling, self._fired = task, task.cancelling(), False
        self._ends_at = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_at(self._ends_at, self._expire)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        fired, self._fired = self._fired, False
        # uncancel() runs whenever the watchdog fired: it withdraws the watchdog's request.
        if (
            fired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError(f"Redis did not answer within {self.seconds:g} s") from exc

    def _expire(self) -> None:
        self._timer = None
        task = self._task
        if task is None:  # idle: the next round trip arms a new timer
            return
        loop = task.get_loop()
        if loop.time() < self._ends_at:  # a later round trip is in flight: wait for it
            self._timer = loop.call_at(self._ends_at, self._expire)
            return
        self._fired = True
        task.cancel()
