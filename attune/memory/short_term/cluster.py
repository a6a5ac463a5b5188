"""The short-term store on Redis Cluster (``REDIS_URL=redis+cluster://host:port,...``).

It is :class:`~attune.memory.short_term.redis_store.RedisShortTermMemory` with a
:class:`~redis.asyncio.cluster.RedisCluster` client; what differs lives here:

* **Routing and auto-pipelining.** Single-key commands are auto-pipelined per master
  (:mod:`~attune.memory.short_term.cluster_router`): each master has its own
  :class:`~attune.memory.short_term.autopipeline.AutoPipeline` with one batch in flight,
  and a command joins the one of its hash slot's master. A master that hangs stalls only
  the calls for its own slots. One key's commands are sent in issue order, also when its
  slot moves to another master (see the router for what holds then); MOVED / ASK /
  TRYAGAIN replies are sent again through RedisCluster, which follows them. redis-py's
  own retries are off (``retries=0``): it would repeat any command, a claim included. The
  AutoPipeline's rules apply instead: a command that failed at the connection level is
  repeated once, only if it is idempotent, after the slot map is refreshed from the live
  nodes (``CLUSTER SLOTS``).
* **Staging.** Every staging key carries the ``{staging}`` hash tag (see
  :mod:`attune.memory.keys`), so all of them live in one slot, on one node. Each
  multi-key operation is one Lua script on that slot (MULTI/WATCH on a cluster pipeline
  is not usable from redis.asyncio), so it is atomic exactly as on a single Redis.
* **Erasure.** An agent's keys share its ``{agent:<id>}`` tag; ``erase_agent`` still
  scans every master, so keys caught in a resharding are found too.
* **Errors.** CLUSTERDOWN, an uncovered slot, a node that cannot be reached and an
  unreachable cluster raise :class:`~attune.errors.ShortTermUnavailableError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from attune._loop_local import LoopLocal
from attune.errors import (
    AttuneError,
    ConfigurationError,
    ShortTermCommandError,
    ShortTermUnavailableError,
)
from attune.memory.config import MemoryConfig
from attune.memory.keys import KeySpace
from attune.memory.short_term.autopipeline import is_reconnectable
from attune.memory.short_term.cluster_router import NodeQueues
from attune.memory.short_term.cluster_scripts import CLAIM as _CLAIM
from attune.memory.short_term.cluster_scripts import LIST as _LIST
from attune.memory.short_term.cluster_scripts import RELEASE as _RELEASE
from attune.memory.short_term.cluster_scripts import SETTLE as _SETTLE
from attune.memory.short_term.cluster_scripts import STAGE as _STAGE
from attune.memory.short_term.cluster_url import ClusterURL, is_cluster_url, parse_cluster_url
from attune.memory.short_term.fast_packing import fast_connection_class
from attune.memory.short_term.protocol import StagedClaim, StagedEntry
from attune.memory.short_term.redis_store import _SCAN_COUNT, RedisShortTermMemory
from attune.memory.short_term.replies import describe as _describe
from attune.memory.short_term.replies import raw as _raw
from attune.memory.short_term.replies import staged_ids as _staged_ids

T = TypeVar("T")
log = logging.getLogger("attune.short_term")

#: How long a staging script answered TRYAGAIN (its slot migrating) waits before it is sent
#: again.
_TRY_AGAIN_PAUSE_S = 0.05
#: RedisCluster's error once a command met only redirections and TRYAGAIN (never run).
_NOT_RUN_TTL = "TTL exhausted."
#: Cluster-level conditions: the cluster (or the node of a slot) cannot serve now.
_CLUSTER_DOWN: tuple[type[BaseException], ...] = (
    redis_errors.ClusterDownError,  # CLUSTERDOWN, MASTERDOWN: a slot has no live master
    redis_errors.TryAgainError,  # a multi-key command during a resharding
    redis_errors.ClusterError,  # redirections did not settle (TTL exhausted)
    redis_errors.AskError,  # MOVED / ASK left over after redis-py's own redirections
    redis_errors.RedisClusterException,  # no node reachable, a slot not covered
)


@dataclass(frozen=True, slots=True)
class _ClusterClient:
    """The cluster client of one event loop and the per-master auto-pipelines in front."""

    cluster: RedisCluster
    queues: NodeQueues


class ClusterShortTermMemory(RedisShortTermMemory):
    """Short-term memory on a Redis Cluster (same behaviour as on one Redis).

    Chosen by a ``redis+cluster://`` (or ``rediss+cluster://``) ``REDIS_URL``.
    """

    def __init__(self, config: MemoryConfig) -> None:
        # Not RedisShortTermMemory.__init__: its client and URL check are single-node ones.
        if config.short_term_backend != "redis" or not is_cluster_url(config.redis_url):
            raise ConfigurationError(
                "the Redis Cluster store needs REDIS_URL=redis+cluster://host:port[,host:port...]"
            )
        assert config.redis_url is not None
        _check_redis_py()
        self.config = config
        self.backend = "redis-cluster"
        self.url = config.redis_url
        self.keys = KeySpace(config.key_prefix)
        self._sentinel = None  # the base class's error messages ask; a cluster has none
        try:
            self.target: ClusterURL = parse_cluster_url(config.redis_url)
        except ValueError as exc:
            raise ConfigurationError(f"invalid REDIS_URL: {exc}") from None
        self._new_cluster()  # refuses now what the client would refuse at first use
        self._cluster: LoopLocal[_ClusterClient] = LoopLocal(self._open, _close)

    @property
    def safe_url(self) -> str:
        return self.target.safe

    # -- connection ----------------------------------------------------------------------

    def _new_cluster(self) -> RedisCluster:
        """A client (not yet connected: it discovers the cluster on first use)."""
        target = self.target
        try:
            client = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in target.seeds],
                username=target.username,
                password=target.password,
                ssl=target.tls,
                socket_connect_timeout=self.config.redis_connect_timeout,
                # Each round trip is bounded as a whole (AutoPipeline, _run), not per read.
                socket_timeout=None,
                health_check_interval=30,
                # No retry inside redis-py: it would repeat a claim. See the module docstring.
                retry=Retry(NoBackoff(), 0),
                # A MOVED patches that slot's owner only: a full refresh on every fifth
                # (the default) closes every connection, in-flight commands included.
                reinitialize_steps=0,
                # As many connections per node as concurrent work needs (redis-py's pool
                # for one Redis has no cap either; its cluster default of 100 would fail
                # a burst with MaxConnectionsError).
                max_connections=2**31 - 1,
                **target.options,
            )
        except (TypeError, ValueError, redis_errors.RedisClusterException) as exc:
            raise ConfigurationError(
                f"invalid REDIS_URL {target.safe}: the cluster client refused its settings "
                f"({type(exc).__name__}); use redis+cluster://[user:password@]host:port,..."
            ) from None
        fast = fast_connection_class(client.connection_kwargs["connection_class"])
        client.connection_kwargs["connection_class"] = fast
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = fast  # type: ignore[assignment]
        return client

    async def _open(self) -> _ClusterClient:
        client = self._new_cluster()

        async def refresh(silent: str | None = None) -> None:
            await self._refresh(client, silent)

        return _ClusterClient(client, NodeQueues(client, self.config.redis_socket_timeout, refresh))

    async def _refresh(self, client: RedisCluster, silent: str | None = None) -> None:
        """Re-read the slot map from the live nodes after a node failed, asking the node
        named ``silent`` (one that did not answer in time) last (bounded; a failure here
        is left to the retried command to report)."""
        try:
            async with asyncio.timeout(self.config.redis_connect_timeout):
                await client.nodes_manager.initialize(last_failed_node_name=silent)
        except (TimeoutError, redis_errors.RedisError, redis_errors.RedisClusterException, OSError):
            log.debug("refreshing the Redis Cluster slot map failed; the next command retries")

    async def _call(self, *args: Any) -> Any:
        conn = await self._cluster.get()
        try:
            return await conn.queues.execute(*args)
        except (redis_errors.RedisError, redis_errors.RedisClusterException, OSError) as exc:
            raise self._translate(exc, str(args[0])) from None

    async def _run_cluster(
        self,
        op: Callable[[RedisCluster], Awaitable[T]],
        *,
        idempotent: bool = False,
        command: str = "script",
    ) -> T:
        """Run ``op`` on this loop's cluster client, bounded by ``redis_socket_timeout``;
        an ``idempotent`` one once more after a connection-level failure (slot map
        refreshed first)."""
        conn = await self._cluster.get()
        try:
            async with asyncio.timeout(self.config.redis_socket_timeout):
                try:
                    return await op(conn.cluster)
                except Exception as exc:
                    if not (idempotent and is_reconnectable(exc)):
                        raise
                await self._refresh(conn.cluster)
                return await op(conn.cluster)
        except (redis_errors.RedisError, redis_errors.RedisClusterException, OSError) as exc:
            raise self._translate(exc, command) from None

    async def _script(self, script: str, keys: list[str], *args: Any, idempotent: bool) -> Any:
        """One Lua script on the slot of ``keys`` (they must share it: hash tags).

        While that slot migrates, a script whose keys are split between the two nodes is
        answered ``TRYAGAIN``: it ran nowhere, so it is sent again (a claim included) until
        the migration moves the keys together, within ``redis_socket_timeout``; then the
        ``TRYAGAIN`` stands (the cluster is resharding). RedisCluster sends it again
        itself a few times, then gives up with "TTL exhausted", which only redirections
        and ``TRYAGAIN`` replies (commands not run) lead to."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.redis_socket_timeout - _TRY_AGAIN_PAUSE_S

        async def op(r: RedisCluster) -> Any:
            while True:
                try:
                    return await r.execute_command("EVAL", script, len(keys), *keys, *args)
                except (redis_errors.TryAgainError, redis_errors.ClusterError) as exc:
                    not_run = isinstance(exc, redis_errors.TryAgainError) or (
                        str(exc) == _NOT_RUN_TTL
                    )
                    if not not_run or loop.time() + _TRY_AGAIN_PAUSE_S > deadline:
                        raise
                await asyncio.sleep(_TRY_AGAIN_PAUSE_S)

        return await self._run_cluster(op, idempotent=idempotent, command="EVAL")

    def _translated(self, exc: BaseException, command: str) -> AttuneError:
        cause = exc.__cause__
        if isinstance(exc, redis_errors.RedisClusterException) and isinstance(
            cause, redis_errors.AuthenticationError
        ):
            return super()._translated(cause, command)  # refused credentials, said so
        if "cluster mode is not enabled" in str(exc).lower():
            return ShortTermUnavailableError(
                f"short-term memory unavailable: the Redis at {self.safe_url} is not a "
                "cluster node (cluster mode is not enabled). Use redis://host:port/db for a "
                "single Redis, or name the nodes of a Redis Cluster in REDIS_URL."
            )
        if isinstance(exc, _CLUSTER_DOWN):
            return ShortTermUnavailableError(
                f"short-term memory unavailable: the Redis Cluster at {self.safe_url} cannot "
                f"serve a {command} command now ({_describe(exc)}): a node is down or the "
                "cluster is resharding or failing over. A write may or may not have been "
                "applied. Check CLUSTER INFO on the nodes; long-term memory keeps working."
            )
        return super()._translated(exc, command)

    # -- working data ------------------------------------------------------------------------

    async def erase_agent(self, agent_id: str) -> int:
        """Every key of the agent, on every master (one SCAN cursor per master)."""
        pattern = self.keys.agent_pattern(agent_id)
        conn = await self._cluster.get()
        await self._run_cluster(lambda r: r.initialize(), idempotent=True, command="CLUSTER SLOTS")
        erased = 0
        for node in conn.cluster.get_primaries():
            cursor = 0
            while True:

                async def page(
                    r: RedisCluster, at: int = cursor, node: ClusterNode = node
                ) -> tuple[int, int]:
                    cursors, names = await r.execute_command(
                        "SCAN", at, "MATCH", pattern, "COUNT", _SCAN_COUNT, target_nodes=node
                    )
                    return int(cursors[node.name]), await _unlink(r, names)

                cursor, removed = await self._run_cluster(page, idempotent=True, command="SCAN")
                erased += removed
                if cursor == 0:
                    break
        return erased

    # -- staging area ------------------------------------------------------------------------

    async def stage(self, staged_id: str, payload: bytes, expires_at_ms: int) -> None:
        keys = [self.keys.staged_pattern(staged_id), self.keys.staging_index()]
        # The same SET and ZADD twice leave the same entry: safe to repeat.
        await self._script(_STAGE, keys, payload, expires_at_ms, staged_id, idempotent=True)

    async def list_staged(self, now_ms: int) -> list[StagedEntry]:
        index = self.keys.staging_index()

        async def op(r: RedisCluster) -> list[StagedEntry]:
            flat = await r.execute_command("EVAL", _LIST, 1, index, now_ms)
            ids = _staged_ids([(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)])
            if not ids:
                return []
            # One slot ({staging}): one MGET on one node.
            values = await r.execute_command("MGET", *[self.keys.staged_pattern(i) for i, _ in ids])
            return [
                StagedEntry(staged_id, raw, expires)
                for (staged_id, expires), v in zip(ids, values, strict=True)
                if (raw := _raw(v)) is not None
            ]

        return await self._run_cluster(op, idempotent=True, command="EVAL")

    async def claim_staged(self, staged_id: str, claim: str, lease_ms: int) -> StagedClaim:
        k = self.keys
        keys = [k.staging_claim(staged_id), k.staged_pattern(staged_id), k.staging_index()]
        won, holder, payload, score, wrong = await self._script(
            _CLAIM, keys, claim, lease_ms, staged_id, idempotent=False
        )
        expires = None if score is None else int(float(score))
        return StagedClaim(bool(won), _raw(holder), _raw(payload), expires, wrong_type=bool(wrong))

    async def release_staged_claim(self, staged_id: str, claim: str) -> bool:
        keys = [self.keys.staging_claim(staged_id)]
        return bool(await self._script(_RELEASE, keys, claim, idempotent=False))

    async def settle_staged(
        self, staged_id: str, fate: str, keep_until_ms: int, claim: str | None = None
    ) -> bool:
        k = self.keys
        keys = [k.staging_claim(staged_id), k.staged_pattern(staged_id), k.staging_index()]
        checked = "0" if claim is None else "1"
        args = (fate, keep_until_ms, staged_id, checked, claim or "")
        return bool(await self._script(_SETTLE, keys, *args, idempotent=False))

    # -- lifecycle ---------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """Reachability and the topology as the client sees it (no password anywhere)."""
        report: dict[str, Any] = {
            "backend": self.backend,
            "mode": "cluster",
            "url": self.safe_url,
            "shared_across_processes": True,
        }
        start = time.perf_counter()
        try:

            async def ping(r: RedisCluster) -> list[str]:
                await r.initialize()
                primaries = r.get_primaries()
                # Every master answers, or the report says which part is down.
                await asyncio.gather(
                    *(r.execute_command("PING", target_nodes=node) for node in primaries)
                )
                return sorted(node.name for node in primaries)

            masters = await self._run_cluster(ping, idempotent=True, command="PING")
            latency_ms = round((time.perf_counter() - start) * 1000, 3)
            # A read of attune's own keys too: an ACL user allowed PING but not those keys
            # (or the commands) answers PING and refuses every call.
            index = self.keys.staging_index()
            await self._run_cluster(lambda r: r.exists(index), idempotent=True, command="EXISTS")
        except (ShortTermUnavailableError, ShortTermCommandError) as exc:
            report.update(available=False, error=str(exc))
        except Exception as exc:  # health never raises
            report.update(available=False, error=_describe(exc))
        else:
            conn = self._cluster.peek()
            nodes = len(conn.cluster.get_nodes()) if conn is not None else len(masters)
            report.update(available=True, latency_ms=latency_ms, masters=masters, nodes=nodes)
        return report

    async def aclose(self) -> None:
        await self._cluster.aclose()


#: The first redis-py whose RedisCluster takes its retry count from ``retry`` (before, a
#: separate count applied, and 0 meant "never run"): ``retries=0`` must really mean it.
_REDIS_PY_MIN = (6, 0)


def _check_redis_py() -> None:
    try:
        version = tuple(int(part) for part in redis.__version__.split(".")[:2])
    except ValueError:
        return  # a development build: assume it is recent
    if version < _REDIS_PY_MIN:
        raise ConfigurationError(
            f"Redis Cluster needs redis-py 6.0 or later (this is {redis.__version__[:20]}): "
            "pip install -U 'redis[hiredis]>=6'"
        )


async def _unlink(r: RedisCluster, names: list[bytes]) -> int:
    """UNLINK ``names`` one slot at a time (a multi-key command must stay in one slot)."""
    by_slot: dict[int, list[bytes]] = {}
    for name in names:
        by_slot.setdefault(r.keyslot(name), []).append(name)
    removed = 0
    for group in by_slot.values():
        removed += int(await r.execute_command("UNLINK", *group))
    return removed


async def _close(conn: _ClusterClient) -> None:
    conn.queues.close()
    await conn.cluster.aclose()
