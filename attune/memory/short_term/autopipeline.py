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

Two guarantees hold under faults:

* **Bound**: every call fails with :class:`TimeoutError` at ``timeout`` seconds after
  it was issued, whether it went out alone, waits in the queue behind a round trip that
  hangs, or is in a batch in flight. One watchdog timer serves every call.
* **Reconnect**: when a round trip fails at the connection level (the server restarted,
  the connection was reset), the idle pooled connections are dropped and each command of
  it that is safe to repeat (:func:`is_idempotent`) is sent once more on a fresh
  connection, ahead of anything issued after it and inside its own bound. Other commands,
  a refused command (``ResponseError``) and a timeout are never retried.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

#: A queued command: its arguments, its caller's future, its deadline (loop time), and
#: whether it is already a retry.
_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]", float, bool]

#: Commands whose effect does not change when Redis runs them twice in a row: reads, and
#: writes that set a state rather than change it. A repeat can lower a count in the reply
#: (DEL, UNLINK, PERSIST: the first run already did it), never the state left behind.
_IDEMPOTENT = frozenset(
    {
        "GET", "MGET", "EXISTS", "PTTL", "TTL", "PEXPIRETIME", "EXPIRETIME", "TYPE",
        "STRLEN", "GETRANGE", "HGET", "HMGET", "HGETALL", "HEXISTS", "HLEN", "HKEYS",
        "HVALS", "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZSCORE",
        "ZMSCORE", "ZCARD", "ZCOUNT", "ZRANK", "ZREVRANK", "SMEMBERS", "SISMEMBER",
        "SMISMEMBER", "SCARD", "LRANGE", "LLEN", "LINDEX", "PING", "ECHO", "DBSIZE",
        "DEL", "UNLINK", "PEXPIREAT", "EXPIREAT", "PERSIST",
    }
)  # fmt: skip
#: SET options that keep it idempotent, and how many arguments each takes (itself included).
_SET_OPTIONS = {"EX": 2, "PX": 2, "EXAT": 2, "PXAT": 2, "KEEPTTL": 1, "XX": 1}

#: Connection-level failures a retry can cure. Not: a refused command (ResponseError),
#: our own deadline (the builtin TimeoutError), refused credentials or permissions.
_RECONNECTABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,  # connecting timed out: nothing was sent
    ConnectionError,  # builtin: reset, refused, broken pipe
)
_NOT_RECONNECTABLE: tuple[type[BaseException], ...] = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
    redis_errors.MaxConnectionsError,
)


def _name(word: Any) -> str:
    if isinstance(word, bytes):
        return word.decode("ascii", "replace").upper()
    return word.upper() if isinstance(word, str) else ""


class Batch(Protocol):
    """A non-transactional pipeline: commands queued, then sent together."""

    def execute_command(self, *args: Any) -> Any: ...

    async def execute(self, raise_on_error: bool = ...) -> list[Any]: ...


class Client(Protocol):
    """What the auto-pipeline needs of a client: ``redis.asyncio.Redis`` has it, and so has
    the cluster store's router (:mod:`attune.memory.short_term.cluster`)."""

    async def execute_command(self, *args: Any) -> Any: ...

    def pipeline(self, transaction: bool = ...) -> Batch: ...


def is_idempotent(args: tuple[Any, ...]) -> bool:
    """Whether running the command ``args`` twice leaves Redis, and its reply, as once.

    ``SET`` qualifies only with ``EX``/``PX``/``EXAT``/``PXAT``/``KEEPTTL``/``XX``: ``NX``
    (a claim), ``GET`` and the compare-and-set options reply differently the second time.
    """
    if not args:
        return False
    name = _name(args[0])
    if name != "SET":
        return name in _IDEMPOTENT
    i = 3
    while i < len(args):
        width = _SET_OPTIONS.get(_name(args[i]))
        if width is None:
            return False
        i += width
    return len(args) >= 3


def is_reconnectable(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection-level failure that reconnecting may cure."""
    return isinstance(exc, _RECONNECTABLE) and not isinstance(exc, _NOT_RECONNECTABLE)


async def reconnect(client: aioredis.Redis) -> None:
    """Drop the idle pooled connections of ``client``: after a restart they are all dead.

    Connections in use are left alone; redis-py already dropped the one that failed.
    """
    await client.connection_pool.disconnect(inuse_connections=False)


def _retryable(args: tuple[Any, ...], exc: BaseException) -> bool:
    return is_reconnectable(exc) and is_idempotent(args)


class AutoPipeline:
    """Coalesces the commands of one client on one event loop into pipelines.

    On a cluster there is one per master (:mod:`.cluster_router`), whose client routes a
    batch by slot when it is sent (normally all to that master). A failed node fails only
    its own commands; ``reconnect`` (given by the cluster store) then refreshes the slot
    map, even when none of them is retried.
    """

    def __init__(
        self,
        client: Client,
        timeout: float,
        reconnect: Callable[[], Awaitable[None]] | None = None,
        *,
        linger: bool = False,
    ) -> None:
        self.client = client
        self._reconnector = reconnect
        #: After a batch, let the callers it woke run once before the next batch goes
        #: out, so it carries the commands they issue next too (fewer, larger batches).
        self._linger = linger
        #: Each call fails ``timeout`` seconds after it was issued.
        self.timeout = timeout
        self._pending: list[_Call] = []
        #: The batch in flight (its callers wait on their futures).
        self._inflight: list[_Call] = []
        #: The task draining the queue; held here, since the loop keeps only a weak reference.
        self._flusher: asyncio.Task[None] | None = None
        #: True while a command or batch is in flight: new commands queue behind it.
        self._busy = False
        # The round trip in flight: the task awaiting it (the lone caller, or the flusher),
        # when it must end, the task's cancellation count before it, whether the watchdog
        # cancelled it.
        self._task: asyncio.Task[Any] | None = None
        self._ends_at = 0.0
        self._cancelling = 0
        self._fired = False
        #: The one watchdog timer, armed at or before the earliest deadline outstanding.
        self._timer: asyncio.TimerHandle | None = None
        #: Batches sent and commands in them (for tests and benchmarks).
        self.batches = 0
        self.commands = 0

    async def execute(self, *args: Any) -> Any:
        """Run one command (``"SET", key, value, "PX", ms``) and return its reply.

        On an idle connection it goes out at once, alone: a sequential caller pays no
        batching delay. Otherwise it joins the queue, sent as one pipeline as soon as
        what is in flight returns. Either way it fails with :class:`TimeoutError`
        ``timeout`` seconds after this call.
        """
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self.timeout
        if self._timer is None:  # every deadline outstanding is earlier than this one
            self._timer = loop.call_at(ends_at, self._expire)
        if self._busy:
            future: asyncio.Future[Any] = loop.create_future()
            self._pending.append((args, future, ends_at, False))
            return await future
        self._busy = True
        task = asyncio.current_task()
        assert task is not None, "commands run inside a task"
        self._task, self._ends_at, self._cancelling = task, ends_at, task.cancelling()
        try:
            self.batches += 1
            self.commands += 1
            try:
                return await self.client.execute_command(*args)
            except Exception as exc:
                if not _retryable(args, exc):
                    raise
            await self._reconnect()
            self.batches += 1
            self.commands += 1
            return await self.client.execute_command(*args)
        except asyncio.CancelledError:
            if self._withdraw(task):
                raise TimeoutError(self._message) from None
            raise
        finally:
            if self._task is task:  # the round trip ended without the watchdog's cancellation
                self._withdraw(task)
            self._hand_over()

    def submit(self, args: tuple[Any, ...], ends_at: float) -> asyncio.Future[Any]:
        """Queue ``args`` behind every command issued so far and return its reply's future.

        For a caller that waited before it could queue (the cluster store, when a slot
        moved): it bounds its own wait at ``ends_at`` and cancels the future then (a
        cancelled call is left out of its batch, or its reply dropped). The deadline kept
        here is never earlier than those queued before it, so the watchdog's order holds.
        """
        loop = asyncio.get_running_loop()
        if self._pending:
            ends_at = max(ends_at, self._pending[-1][2])
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future, ends_at, False))
        if self._timer is None:
            self._timer = loop.call_at(ends_at, self._expire)
        if not self._busy:
            self._busy = True
            self._flusher = loop.create_task(self._flush())
        return future

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing queued."""
        return not self._busy

    def close(self, exc: BaseException) -> None:
        """Fail every queued and in-flight call with ``exc``, stop the flusher and the
        watchdog. A lone command in flight is left to its caller (closing the client
        fails it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        self._fail(self._inflight, exc)
        self._fail(pending, exc)
        if self._flusher is not None:
            self._flusher.cancel()

    @property
    def _message(self) -> str:
        return f"Redis did not answer within {self.timeout!r} s"

    def _withdraw(self, task: asyncio.Task[Any]) -> bool:
        """End the round trip of ``task``: whether the watchdog's cancellation is its only one.

        ``uncancel()`` runs whenever the watchdog fired: it withdraws the watchdog's
        request, so a caller cancelled by someone else stays cancelled (the rule of
        ``asyncio.timeout``).
        """
        self._task = None
        if not self._fired:
            return False
        self._fired = False
        return task.uncancel() <= self._cancelling

    async def _reconnect(self) -> None:
        if self._reconnector is not None:
            await self._reconnector()
        else:  # a redis.asyncio.Redis (or a stand-in with its connection_pool)
            await reconnect(cast(aioredis.Redis, self.client))

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
                    if self._linger:
                        await asyncio.sleep(0)
        finally:
            self._busy = False
            self._flusher = None

    async def _send(self, batch: list[_Call]) -> None:
        self.batches += 1
        self.commands += len(batch)
        pipe = self.client.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command(*call[0])
        task = asyncio.current_task()
        assert task is not None
        # The round trip lasts until the last caller of the batch gives up; the watchdog
        # fails each earlier caller at its own deadline meanwhile.
        self._inflight = batch
        self._task, self._ends_at, self._cancelling = task, batch[-1][2], task.cancelling()
        try:
            replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            if self._withdraw(task):  # the batch's bound passed: its callers have failed
                self._fail(batch, TimeoutError(self._message))
                return
            for call in batch:
                call[1].cancel()
            raise
        except Exception as exc:  # the connection failed: every command of the batch
            self._withdraw(task)
            replies = [exc] * len(batch)
        finally:
            self._inflight = []
            if self._task is task:
                self._withdraw(task)
        # A connection-level failure fails the commands it hit: the whole batch on one
        # connection, or (on a cluster) the commands of the node that failed.
        again: list[_Call] = []
        lost = False
        for (args, future, ends_at, retried), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if not isinstance(reply, Exception):
                future.set_result(reply)
                continue
            lost = lost or is_reconnectable(reply)
            if not retried and _retryable(args, reply):
                again.append((args, future, ends_at, True))
            else:
                future.set_exception(reply)
        if again:
            self._pending[:0] = again  # ahead of everything issued after them
        if again or (lost and self._reconnector is not None):
            await self._reconnect()

    @staticmethod
    def _fail(calls: list[_Call], exc: BaseException) -> None:
        for call in calls:
            if not call[1].done():
                call[1].set_exception(exc)

    def _expire(self) -> None:
        """The watchdog: fail every call past its deadline, re-arm for the next one."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_at = math.inf
        for calls in (self._inflight, self._pending):
            for _, future, ends_at, _ in calls:  # in issue order, so in deadline order
                if future.done():
                    continue
                if ends_at > now:
                    next_at = min(next_at, ends_at)
                    break
                future.set_exception(TimeoutError(self._message))
        task = self._task
        if task is not None and not self._fired:
            if self._ends_at <= now:
                self._fired = True
                task.cancel()
            else:
                next_at = min(next_at, self._ends_at)
        if next_at < math.inf:
            self._timer = loop.call_at(next_at, self._expire)
