"""Auto-pipelining on Redis Cluster: one queue per master, one batch in flight per queue.

:class:`NodeQueues` is what the cluster store (:mod:`attune.memory.short_term.cluster`)
sends its single-key commands through. Each master has its own
:class:`~attune.memory.short_term.autopipeline.AutoPipeline` (a *lane*), and a command
joins the lane of the master that owns its key's hash slot (the client's slot map). A
master that hangs (frozen, or cut off by a partition that drops packets) stalls only its
own lane: commands for the other masters keep their normal latency.

* **Order**: every command of a slot still outstanding is in one lane (the slot is
  *pinned* to it), and a lane sends one batch at a time, each in issue order, so one key's
  commands reach Redis in the order they were issued. When the slot map moves a slot to
  another master while commands for it are outstanding in the old lane, new commands for
  it wait (inside their own time bound) until those end, then join the new owner's lane,
  in issue order, ahead of anything issued after them. The only exception is the one a
  single Redis has too: a command whose caller timed out or was cancelled while it was in
  flight may still be run by the old master after that.
* **Routing at send time**: a lane's batch is grouped by the owner of each slot *when it
  is sent* (:class:`NodeBatches`), normally one pipeline on the lane's own master. A
  command retried after a failover (slot map refreshed) thus goes to the new master.
* **Failures**: a node that fails fails only its own commands (the lane then retries the
  idempotent ones and refreshes the slot map).
* **Redirections**: a command answered MOVED / ASK / TRYAGAIN was not run; it is sent
  again alone, in issue order, through RedisCluster, which follows the redirection and
  patches its slot map.
* **Topology**: a master that appears (a replica promoted, a node added) gets its lane on
  first use; the lane of a node that is no longer a master is retired when the slot map is
  refreshed: closed if idle, else it takes no new command and is dropped once what it
  holds has ended (each call within its bound). A call that times out re-reads the slot
  map in the background, asking the silent node last: a master that hangs and is failed
  over is followed to its replica.

redis-py's ``ClusterPipeline`` does the grouping too, but when one node fails it raises
while the other nodes' round trips still run (they could land after the retry), and it
resolves a routing policy for every command, which this need not.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.cluster import PRIMARY

from attune.memory.short_term.autopipeline import AutoPipeline

#: Keys whose slot is remembered (then the memo starts over): keys repeat a lot.
_SLOT_MEMO = 8192
#: A call held back while its slot leaves a lane: its arguments, the future that will hold
#: its lane future, its deadline (loop time).
_Held = tuple[tuple[Any, ...], "asyncio.Future[asyncio.Future[Any]]", float]


class _Pin:
    """The lane a slot's outstanding commands are in, and the calls waiting to follow it."""

    __slots__ = ("count", "held", "lane")

    def __init__(self, lane: AutoPipeline) -> None:
        self.lane = lane
        #: Calls of the slot in ``lane`` that have not ended.
        self.count = 0
        #: Calls waiting for those to end before they join the slot's new lane.
        self.held: list[_Held] | None = None


class NodeQueues:
    """One auto-pipeline per master of ``cluster``; commands routed by hash slot.

    ``timeout`` bounds every call from its issue (as :class:`AutoPipeline`);
    ``refresh`` re-reads the slot map: after a connection-level failure, and (in the
    background, asking that node last) after a master did not answer in time, so a
    master that hangs and is failed over is followed to its replica.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        timeout: float,
        refresh: Callable[[str | None], Awaitable[None]],
    ) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self._refresh = refresh
        self._manager = cluster.nodes_manager
        #: Lanes by master name (None: before the slot map is known).
        self._lanes: dict[str | None, AutoPipeline] = {}
        #: Every lane opened and not yet collected (closed together by :meth:`close`).
        self._opened: weakref.WeakSet[AutoPipeline] = weakref.WeakSet()
        self._pins: dict[int, _Pin] = {}
        self._slots: dict[Any, int] = {}
        self._closed = False
        #: The background refresh after a timeout (one at a time).
        self._refreshing: asyncio.Task[None] | None = None
        #: Batches and commands sent by lanes since retired (see :attr:`batches`).
        self._retired = [0, 0]

    @property
    def batches(self) -> int:
        """Round trips so far, every lane together (for tests and benchmarks)."""
        return self._retired[0] + sum(lane.batches for lane in self._lanes.values())

    @property
    def commands(self) -> int:
        return self._retired[1] + sum(lane.commands for lane in self._lanes.values())

    def lanes(self) -> dict[str | None, AutoPipeline]:
        """The open lanes by master name (a copy)."""
        return dict(self._lanes)

    def slot_of(self, key: Any) -> int:
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= _SLOT_MEMO:
                self._slots.clear()
            slot = self._slots[key] = self.cluster.keyslot(key)
        return slot

    def node_of(self, slot: int) -> ClusterNode | None:
        """The master of ``slot`` by the slot map (None: not known yet, or not covered)."""
        nodes = self._manager.slots_cache.get(slot)
        return nodes[0] if nodes else None

    async def execute(self, *args: Any) -> Any:
        """Run one single-key command (the key is ``args[1]``) in its master's lane."""
        if len(args) < 2:
            return await self._lane(None).execute(*args)
        slot = self.slot_of(args[1])
        node = self.node_of(slot)
        name = None if node is None else node.name
        lane = self._lane(name)
        pin = self._pins.get(slot)
        if pin is None:
            pin = self._pins[slot] = _Pin(lane)
        elif pin.lane is not lane or pin.held is not None:
            return await self._held(slot, pin, args)
        pin.count += 1
        try:
            return await lane.execute(*args)
        except TimeoutError:
            self._silent(name)
            raise
        finally:
            self._ended(slot, pin)

    async def _held(self, slot: int, pin: _Pin, args: tuple[Any, ...]) -> Any:
        """A call whose slot moved while commands for it are outstanding in the old lane:
        it joins the new lane once they end (:meth:`_move`), all within its own bound."""
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self.timeout
        ticket: asyncio.Future[asyncio.Future[Any]] = loop.create_future()
        if pin.held is None:
            pin.held = []
        pin.held.append((args, ticket, ends_at))
        try:
            async with asyncio.timeout_at(ends_at):
                reply = await ticket
                return await reply
        finally:
            if ticket.done() and not ticket.cancelled():
                ticket.result().cancel()  # given up: left out of its batch, or reply dropped

    def _ended(self, slot: int, pin: _Pin, _reply: object = None) -> None:
        pin.count -= 1
        if pin.count:
            return
        if pin.held is None:
            self._unpin(slot, pin)
        else:
            self._move(slot, pin)

    def _unpin(self, slot: int, pin: _Pin) -> None:
        if self._pins.get(slot) is pin:  # not if close() dropped it
            del self._pins[slot]

    def _move(self, slot: int, pin: _Pin) -> None:
        """The slot's last command in its old lane ended: the held calls join the lane of
        the slot's master now, in issue order, ahead of anything issued after them."""
        held = [call for call in pin.held or () if not call[1].done()]  # done: gave up
        pin.held = None
        if held and not self._closed:
            node = self.node_of(slot)
            pin.lane = self._lane(None if node is None else node.name)
        for args, ticket, ends_at in held:
            if self._closed:
                ticket.set_exception(_closed())
                continue
            reply = pin.lane.submit(args, ends_at)
            pin.count += 1
            reply.add_done_callback(partial(self._ended, slot, pin))
            ticket.set_result(reply)
        if not pin.count:
            self._unpin(slot, pin)

    def _lane(self, name: str | None) -> AutoPipeline:
        lane = self._lanes.get(name)
        if lane is None:
            if self._closed:
                raise _closed()
            lane = AutoPipeline(Router(self), self.timeout, self._on_failure, linger=True)
            self._lanes[name] = lane
            self._opened.add(lane)
            self.prune()  # a new master: another may have left
        return lane

    async def _on_failure(self) -> None:
        if not self._closed:
            await self._refresh(None)
            self.prune()

    def _silent(self, name: str | None) -> None:
        """A call to master ``name`` timed out: re-read the slot map in the background (it
        may have been failed over: only a new map leads its slots elsewhere)."""
        if self._refreshing is None and not self._closed:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_after(name))

    async def _refresh_after(self, name: str | None) -> None:
        try:
            await self._refresh(name)
            self.prune()
        finally:
            self._refreshing = None

    def prune(self) -> None:
        """Retire the lanes of nodes that are no longer masters (by the slot map): closed
        now if idle, else left to end what they hold (each call within its bound)."""
        if not self._manager.slots_cache:
            return
        masters = {
            name for name, node in self._manager.nodes_cache.items() if node.server_type == PRIMARY
        }
        for name, lane in list(self._lanes.items()):
            if name in masters:
                continue
            del self._lanes[name]
            self._retired[0] += lane.batches
            self._retired[1] += lane.commands
            if lane.idle:
                lane.close(redis_errors.ConnectionError("the node left the cluster"))

    def close(self) -> None:
        """Fail what every lane holds and stop them (the store is closing)."""
        self._closed = True
        self._lanes.clear()
        if self._refreshing is not None:
            self._refreshing.cancel()
        for lane in list(self._opened):
            lane.close(_closed())
        for pin in self._pins.values():
            for _, ticket, _ in pin.held or ():
                if not ticket.done():
                    ticket.set_exception(_closed())
        self._pins.clear()


class Router:
    """A lane's client: a lone command goes straight to its slot's master (MOVED / ASK
    through RedisCluster); a batch goes out as one pipeline per node."""

    def __init__(self, queues: NodeQueues) -> None:
        self.queues = queues
        self.cluster = queues.cluster

    async def execute_command(self, *args: Any) -> Any:
        if self.queues._closed:
            raise _closed()
        node = self.queues.node_of(self.queues.slot_of(args[1])) if len(args) > 1 else None
        if node is None:  # no key, or the slot map is not known yet: RedisCluster decides
            return await self.cluster.execute_command(*args)
        try:
            return await node.execute_command(*args)
        except _REDIRECTED:
            return await self.cluster.execute_command(*args)

    def pipeline(self, transaction: bool = False) -> NodeBatches:
        return NodeBatches(self.queues)


class NodeBatches:
    """One batch of single-key commands (the key is the second argument), sent as one
    pipeline per master (by the slot map now), in parallel; each node's commands in issue
    order.

    Every node's round trip ends before the batch does (none is left running to land
    after a later batch), and a node that fails fails only its own commands. A command
    answered MOVED / ASK / TRYAGAIN is sent again alone, in issue order, through
    RedisCluster, which follows the redirection and updates its slot map.
    """

    def __init__(self, queues: NodeQueues) -> None:
        self.queues = queues
        self.commands: list[PipelineCommand] = []

    def execute_command(self, *args: Any) -> NodeBatches:
        self.commands.append(PipelineCommand(len(self.commands), *args))
        return self

    async def execute(self, raise_on_error: bool = False) -> list[Any]:
        queues = self.queues
        if queues._closed:
            raise _closed()
        cluster = queues.cluster
        if not cluster.nodes_manager.slots_cache:
            await cluster.initialize()  # the first use (a known map is never re-read here)
        by_node: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
        for cmd in self.commands:
            if len(cmd.args) < 2:  # no key: RedisCluster decides where it goes
                cmd.result = _ALONE
                continue
            node = queues.node_of(queues.slot_of(cmd.args[1]))
            if node is None:
                cmd.result = redis_errors.SlotNotCoveredError("a slot is not covered")
                continue
            by_node.setdefault(node.name, (node, []))[1].append(cmd)
        sent = list(by_node.values())
        if len(sent) == 1:  # the usual case: the lane's own master only
            node, cmds = sent[0]
            try:
                await node.execute_pipeline(cmds)
            except Exception as exc:  # the node failed before any reply
                for cmd in cmds:
                    cmd.result = exc
        elif sent:
            outcomes = await asyncio.gather(
                *(node.execute_pipeline(cmds) for node, cmds in sent), return_exceptions=True
            )
            for (_, cmds), outcome in zip(sent, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):
                        raise outcome
                    for cmd in cmds:
                        cmd.result = outcome
        for cmd in self.commands:
            if cmd.result is _ALONE or isinstance(cmd.result, _REDIRECTED):
                try:
                    cmd.result = await cluster.execute_command(*cmd.args)
                except Exception as exc:
                    cmd.result = exc
        return [cmd.result for cmd in self.commands]


#: Replies that name another node (or say "soon"): the command is sent again, alone.
_REDIRECTED = (redis_errors.AskError, redis_errors.TryAgainError)  # MovedError is an AskError


def _closed() -> redis_errors.ConnectionError:
    return redis_errors.ConnectionError("the short-term store was closed")


#: The mark of a command that goes out alone through RedisCluster (it names no key).
_ALONE = redis_errors.RedisClusterException("sent alone")
