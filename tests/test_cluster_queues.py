"""One auto-pipeline queue per master on a real Redis Cluster (loopback clusters of each
test's own, see topology_cluster.py): a master frozen with SIGSTOP stalls only the calls for
its own slots, a key keeps its order when its slot moves, a frozen master failed over is
followed to its replica, and closing the store closes every queue. Every node a test
freezes is sent SIGCONT in a ``finally`` (and by the cluster's stop), and every server is
stopped by pid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
from conftest import need_cluster_tools
from redis.crc import key_slot
from test_cluster import _agents_on_every_node, _owns, _replica_synced, _store
from test_cluster import replicated_cluster as replicated_cluster  # a fixture
from topology_cluster import LocalCluster, local_cluster
from waiting import DEADLINE_S, await_until, wait_until

from attune.errors import ShortTermUnavailableError
from attune.memory import MemoryConfig

pytestmark = pytest.mark.cluster


@pytest.fixture
def patient_cluster() -> Iterator[LocalCluster]:
    """A 3-master cluster of this test's own whose nodes wait 60 s before they mark a
    silent node failed: a master frozen for a few seconds leaves the cluster up (no
    CLUSTERDOWN), so only the frozen master itself is silent."""
    need_cluster_tools()
    with local_cluster(node_timeout_ms=60_000) as cluster:
        yield cluster


async def _timed(call: Awaitable[object]) -> tuple[float, object]:
    """How long ``call`` took, and its result or the exception it raised."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        result = await call
    except Exception as exc:
        result = exc
    return loop.time() - start, result


async def test_a_frozen_master_stalls_only_the_calls_for_its_own_slots(
    patient_cluster: LocalCluster, storage_dir: Path
) -> None:
    """SIGSTOP one master (connections open, no answer): for 1.5 x redis_socket_timeout,
    concurrent calls for keys on the other masters keep completing at loopback latency
    while new calls for the frozen master's keys keep arriving; the latter fail with
    ShortTermUnavailableError at the timeout. After SIGCONT the same store serves every
    key again."""
    cluster = patient_cluster
    timeout = 2.0
    config = MemoryConfig(
        redis_url=cluster.url, storage_dir=storage_dir, redis_socket_timeout=timeout
    )
    agents = _agents_on_every_node(cluster, 4)
    victim = cluster.ports[0]
    store = _store(config)
    try:
        for agent in agents:
            await store.stash(agent, "k", b"v", 60_000)
        frozen = [a for a in agents if _owns(cluster, victim, store.keys.stash(a, "k"))]
        healthy = [a for a in agents if a not in frozen]
        assert len(frozen) == 4 and len(healthy) == 8
        conn = store._cluster.peek()
        assert conn is not None
        names = {n.name for n in conn.cluster.get_primaries()}
        assert set(conn.queues.lanes()) == names  # one queue per master
        loop = asyncio.get_running_loop()
        stuck: list[asyncio.Task[tuple[float, object]]] = []
        latencies: list[float] = []
        cluster.freeze(victim)
        try:
            until = loop.time() + 1.5 * timeout
            step = 0
            while loop.time() < until:
                # A call for the frozen master is issued first in every round: with one
                # batch for the whole cluster, every healthy call would wait behind it.
                agent = frozen[step % len(frozen)]
                stuck.append(asyncio.create_task(_timed(store.retrieve(agent, "k"))))
                stuck.append(asyncio.create_task(_timed(store.stash(agent, "w", b"x", 60_000))))
                await asyncio.sleep(0)
                value = f"{step}".encode()
                results = await asyncio.gather(
                    *(_timed(store.retrieve(a, "k")) for a in healthy),
                    *(_timed(store.stash(a, "k2", value, 60_000)) for a in healthy),
                )
                assert [r for _, r in results] == [b"v"] * len(healthy) + [None] * len(healthy)
                latencies += [took for took, _ in results]
                step += 1
            # Each is a loopback round trip (milliseconds); the bound is generous.
            assert max(latencies) < timeout / 2, max(latencies)
            assert step > 10
            for took, result in await asyncio.gather(*stuck):
                assert isinstance(result, ShortTermUnavailableError), repr(result)
                assert "did not answer within 2.0 s" in str(result)
                assert timeout * 0.9 <= took < timeout * 2, took
        finally:
            cluster.thaw(victim)
        # Every key works again on the same store, the frozen master's included.
        await asyncio.gather(*(store.stash(a, "k3", b"back", 60_000) for a in agents))
        got = await asyncio.gather(*(store.retrieve(a, "k3") for a in agents))
        assert got == [b"back"] * len(agents)
        last = f"{step - 1}".encode()
        assert await asyncio.gather(*(store.retrieve(a, "k2") for a in healthy)) == [last] * len(
            healthy
        )
        assert set(conn.queues.lanes()) == names
    finally:
        await store.aclose()


async def test_a_slot_that_moves_while_its_key_is_in_flight_keeps_the_key_in_order(
    patient_cluster: LocalCluster, storage_dir: Path
) -> None:
    """A write of key K is in flight on its (frozen) master when the client's slot map
    moves K's slot to another master (as a MOVED seen by another call does): later
    commands for K wait for it instead of overtaking it on the other master's queue, then
    follow the redirection, in issue order. A healthy master's keys are not held up."""
    cluster = patient_cluster
    config = MemoryConfig(redis_url=cluster.url, storage_dir=storage_dir, redis_socket_timeout=5.0)
    agents = _agents_on_every_node(cluster, 1)
    store = _store(config)
    victim = cluster.ports[0]
    try:
        for agent in agents:
            await store.stash(agent, "k", b"0", 60_000)
        agent = next(a for a in agents if _owns(cluster, victim, store.keys.stash(a, "k")))
        other = next(a for a in agents if a != agent)
        conn = store._cluster.peek()
        assert conn is not None
        manager = conn.cluster.nodes_manager
        slot = key_slot(store.keys.stash(agent, "k").encode())
        owner = manager.slots_cache[slot]
        elsewhere = next(n for n in conn.cluster.get_primaries() if n is not owner[0])
        cluster.freeze(victim)
        try:
            first = asyncio.create_task(store.stash(agent, "k", b"1", 60_000))
            await asyncio.sleep(0.2)  # in flight on the frozen master
            manager.slots_cache[slot] = [elsewhere]  # a stale map, as after a MOVED
            later = [
                asyncio.create_task(store.stash(agent, "k", b"2", 60_000)),
                asyncio.create_task(store.retrieve(agent, "k")),
                asyncio.create_task(store.stash(agent, "k", b"3", 60_000)),
            ]
            await asyncio.sleep(0.2)
            assert not first.done() and not any(t.done() for t in later)
            pin = conn.queues._pins[slot]
            assert len(pin.held or ()) == 3  # held back, not sent to the other master
            assert await asyncio.wait_for(store.retrieve(other, "k"), 1.0) == b"0"
        finally:
            cluster.thaw(victim)
        await first
        assert await asyncio.gather(*later) == [None, b"2", None]
        assert await store.retrieve(agent, "k") == b"3"
        assert manager.slots_cache[slot][0] is not elsewhere  # the MOVED was followed
        assert slot not in conn.queues._pins  # nothing outstanding is left pinned
    finally:
        await store.aclose()


async def test_closing_the_store_fails_what_its_queues_hold_at_once(
    patient_cluster: LocalCluster, storage_dir: Path
) -> None:
    """Calls queued behind a frozen master end with ShortTermUnavailableError as soon as
    the store closes (not at the timeout), and every queue is closed."""
    cluster = patient_cluster
    config = MemoryConfig(redis_url=cluster.url, storage_dir=storage_dir, redis_socket_timeout=30.0)
    agents = _agents_on_every_node(cluster, 2)
    store = _store(config)
    victim = cluster.ports[0]
    try:
        for agent in agents:
            await store.stash(agent, "k", b"v", 60_000)
        frozen = [a for a in agents if _owns(cluster, victim, store.keys.stash(a, "k"))]
        conn = store._cluster.peek()
        assert conn is not None
        cluster.freeze(victim)
        try:
            calls = [asyncio.create_task(_timed(store.retrieve(a, "k"))) for a in frozen * 5]
            await asyncio.sleep(0.2)
            lanes = list(conn.queues.lanes().values())
            await store.aclose()
            for took, result in await asyncio.wait_for(asyncio.gather(*calls), 10):
                assert isinstance(result, ShortTermUnavailableError), repr(result)
                assert took < 5
            assert conn.queues.lanes() == {} and all(lane.idle for lane in lanes)
        finally:
            cluster.thaw(victim)
    finally:
        await store.aclose()


async def test_a_frozen_master_failed_over_is_followed_to_its_replica(
    replicated_cluster: LocalCluster, storage_dir: Path
) -> None:
    """SIGSTOP a master that has a replica (cluster-node-timeout 2 s): its calls time out
    until the cluster promotes the replica; each timeout re-reads the slot map in the
    background (asking the silent node last), so the same store follows the slots to the
    new master while the old one is still frozen. The new master gets its queue; the old
    one's queue is retired; after SIGCONT every key works."""
    cluster = replicated_cluster
    config = MemoryConfig(
        redis_url=cluster.seed_url(0), storage_dir=storage_dir, redis_socket_timeout=1.0
    )
    agents = _agents_on_every_node(cluster, 2)
    store = _store(config)
    try:
        for agent in agents:
            await store.stash(agent, "k", b"v", 60_000)
        victim = cluster.master_of(store.keys.stash(agents[0], "k").encode())
        mine = [a for a in agents if _owns(cluster, victim, store.keys.stash(a, "k"))]
        wait_until(lambda: _replica_synced(cluster, victim), "the replica's sync")
        conn = store._cluster.peek()
        assert conn is not None
        old = f"127.0.0.1:{victim}"
        assert old in conn.queues.lanes()
        cluster.freeze(victim)
        loop = asyncio.get_running_loop()
        try:
            deadline = loop.time() + 3 * DEADLINE_S
            while True:
                results = await asyncio.gather(
                    *(store.stash(a, "k2", b"w", 60_000) for a in mine), return_exceptions=True
                )
                failed = [r for r in results if r is not None]
                assert all(isinstance(r, ShortTermUnavailableError) for r in failed), failed
                if not failed:
                    break
                assert loop.time() < deadline, "the store did not follow the failover"
            assert await asyncio.gather(*(store.retrieve(a, "k2") for a in mine)) == [b"w"] * len(
                mine
            )
            lanes = conn.queues.lanes()
            new = conn.cluster.nodes_manager.slots_cache[
                key_slot(store.keys.stash(mine[0], "k").encode())
            ][0].name
            assert new != old and new in lanes and old not in lanes
        finally:
            cluster.thaw(victim)
        await asyncio.gather(*(store.stash(a, "k3", b"back", 60_000) for a in agents))
        assert await asyncio.gather(*(store.retrieve(a, "k3") for a in agents)) == [b"back"] * len(
            agents
        )
        assert old not in conn.queues.lanes()
        # A retired queue holds nothing once its calls have ended (none leaks).
        live = list(conn.queues.lanes().values())
        await await_until(
            lambda: all(lane.idle for lane in conn.queues._opened if lane not in live),
            "the retired queues' draining",
        )
    finally:
        await store.aclose()
    assert conn.queues.lanes() == {} and all(lane.idle for lane in conn.queues._opened)
