"""Auto-pipelined batches on Redis Cluster: one pipeline per node, in parallel.

:class:`Router` is what :class:`~attune.memory.short_term.autopipeline.AutoPipeline`
drives on a cluster (see :mod:`attune.memory.short_term.cluster`). A batch's commands are
grouped by the node that owns their key's slot (the client's slot map) and each group is
sent as one pipeline on one connection of that node; the groups go out in parallel.

* **Order**: a node runs its pipeline in issue order, and one key lives on one node, so
  one key's commands keep their order. Every node's round trip ends before the batch
  does (none is left running to land after a later batch).
* **Failures**: a node that fails fails only its own commands (the AutoPipeline then
  retries the idempotent ones and refreshes the slot map).
* **Redirections**: a command answered MOVED / ASK / TRYAGAIN was not run; it is sent
  again alone, in issue order, through RedisCluster, which follows the redirection and
  patches its slot map.

redis-py's ``ClusterPipeline`` does the grouping too, but when one node fails it raises
while the other nodes' round trips still run (they could land after the retry), and it
resolves a routing policy for every command, which this need not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster


class Router:
    """The auto-pipeline's client on a cluster: single commands go through RedisCluster
    (which follows MOVED / ASK); a batch goes out as one pipeline per node."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster

    async def execute_command(self, *args: Any) -> Any:
        return await self.cluster.execute_command(*args)

    def pipeline(self, transaction: bool = False) -> NodeBatches:
        return NodeBatches(self.cluster)


class NodeBatches:
    """One batch of single-key commands (the key is the second argument), sent as one
    pipeline per master, in parallel; each node's commands in issue order.

    Every node's round trip ends before the batch does (none is left running to land
    after a later batch), and a node that fails fails only its own commands. A command
    answered MOVED / ASK / TRYAGAIN is sent again alone, in issue order, through
    RedisCluster, which follows the redirection and updates its slot map.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.commands: list[PipelineCommand] = []

    def execute_command(self, *args: Any) -> NodeBatches:
        self.commands.append(PipelineCommand(len(self.commands), *args))
        return self

    async def execute(self, raise_on_error: bool = False) -> list[Any]:
        cluster = self.cluster
        await cluster.initialize()  # at once when it already is
        manager = cluster.nodes_manager
        by_node: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
        for cmd in self.commands:
            if len(cmd.args) < 2:  # no key: RedisCluster decides where it goes
                cmd.result = _ALONE
                continue
            try:
                node = manager.get_node_from_slot(cluster.keyslot(cmd.args[1]))
            except (KeyError, redis_errors.SlotNotCoveredError):
                cmd.result = redis_errors.SlotNotCoveredError("a slot is not covered")
                continue
            by_node.setdefault(node.name, (node, []))[1].append(cmd)
        sent = list(by_node.values())
        outcomes = await asyncio.gather(
            *(node.execute_pipeline(cmds) for node, cmds in sent), return_exceptions=True
        )
        for (_, cmds), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # the node failed before any reply
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
#: The mark of a command that goes out alone through RedisCluster (it names no key).
_ALONE = redis_errors.RedisClusterException("sent alone")
