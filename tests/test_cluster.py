"""The short-term tier on a real 3-master Redis Cluster (loopback, see topology_cluster.py).

The short-term and staging tests of test_short_term.py / test_staging.py run here again
with ``config`` replaced by the cluster configuration (only ``redis_url`` differs); the
tests below check what is cluster-specific: slots, per-node batching and order, every
master scanned, the topology in health, a node going down, the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import CI, CLUSTER_PASSWORD, need_cluster_tools
from redis.crc import key_slot
from test_redis_tls_acl import _other_authority
from test_redis_tls_acl import _workflow as tls_workflow
from test_short_term import (  # noqa: F401 - collected here again, on the cluster
    test_bad_agent_id_rejected,
    test_bad_keys_rejected,
    test_bad_ttl_rejected_nothing_written,
    test_circular_value_rejected,
    test_closed_memory_refuses_work,
    test_default_ttl_applied,
    test_forget_and_delete_alias,
    test_non_serialisable_value_rejected_and_nothing_written,
    test_other_agents_data_by_agent_id,
    test_overwrite_is_last_writer_wins,
    test_stash_retrieve_round_trip,
    test_value_expires,
    test_value_size_limit,
)
from test_staging import (  # noqa: F401 - collected here again, on the cluster
    test_bad_stage_input_writes_nothing,
    test_concurrent_promotion_from_threads_has_one_winner,
    test_concurrent_promotion_has_exactly_one_winner,
    test_expired_staged_patterns_never_appear,
    test_promote_moves_to_long_term,
    test_reject_pattern,
    test_stage_and_list_flattens_pattern_data,
    test_unknown_staged_id,
)
from topology_cluster import LocalCluster, cluster_tools, local_cluster
from waiting import DEADLINE_S, wait_until

from attune.errors import PatternNotFoundError, ShortTermCommandError, ShortTermUnavailableError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory, backends
from attune.memory.short_term.cluster import ClusterShortTermMemory

pytestmark = pytest.mark.cluster


@pytest.fixture
def config(cluster_config: MemoryConfig) -> MemoryConfig:
    """The imported tests' ``config``: the session cluster."""
    return cluster_config


def _store(config: MemoryConfig) -> ClusterShortTermMemory:
    store = backends.open_short_term(config)
    assert isinstance(store, ClusterShortTermMemory)
    return store


def _keys(cluster: LocalCluster, prefix: str) -> dict[int, list[bytes]]:
    """Every key under ``prefix``, by the port of the node holding it."""
    found: dict[int, list[bytes]] = {}
    for port in cluster.ports:
        client = cluster.client(port)
        try:
            found[port] = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
        finally:
            client.close()
    return found


def _agents_on_every_node(cluster: LocalCluster, per_node: int) -> list[str]:
    """Agent ids whose hash tags land on each master, ``per_node`` of them per master."""
    client = cluster.client(cluster.ports[0])
    try:
        owner = {}
        for low, high, (_, port, *_), *_ in client.cluster("slots"):
            for slot in range(low, high + 1):
                owner[slot] = port
    finally:
        client.close()
    chosen: dict[int, list[str]] = {port: [] for port in set(owner.values())}
    n = 0
    while any(len(ids) < per_node for ids in chosen.values()):
        agent = f"agent{n}"
        n += 1
        port = owner[key_slot(f"{{agent:{agent}}}".encode())]
        if len(chosen[port]) < per_node:
            chosen[port].append(agent)
    return [agent for ids in chosen.values() for agent in ids]


def _scans(cluster: LocalCluster) -> dict[int, int]:
    """SCAN calls each node has served so far."""
    calls = {}
    for port in cluster.ports:
        client = cluster.client(port)
        try:
            calls[port] = int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))
        finally:
            client.close()
    return calls


async def test_staging_keys_share_one_slot_and_stay_atomic(
    cluster_config: MemoryConfig, redis_cluster: LocalCluster
) -> None:
    prefix = cluster_config.key_prefix
    contributor = AsyncUnifiedMemory("code_reviewer", cluster_config)
    validators = [
        AsyncUnifiedMemory(f"v{i}", cluster_config, access_tier="VALIDATOR") for i in range(16)
    ]
    try:
        ids = [
            await contributor.stage_pattern({"content": f"Pattern {i}"}, "best_practice")
            for i in range(3)
        ]
        await validators[0].reject_pattern(ids[2], reason="duplicate")
        # Every staging key (entries, index, claim / fate markers) is on one node, one slot.
        keys = [k for ks in _keys(redis_cluster, prefix).values() for k in ks]
        staging = [k for k in keys if b":{staging}:" in k]
        assert {k.split(b":")[2] for k in staging} == {b"pattern", b"index", b"claim"}
        assert len({key_slot(k) for k in staging}) == 1
        holders = [port for port, ks in _keys(redis_cluster, prefix).items() if ks]
        assert len(holders) == 1
        # 16 validators race for the same entry, twice: each promoted exactly once.
        for staged_id in ids[:2]:
            results = await asyncio.gather(
                *(v.promote_pattern(staged_id) for v in validators), return_exceptions=True
            )
            winners = [r for r in results if isinstance(r, dict) and r.get("pattern_id")]
            assert len(winners) == 1, results
            assert await validators[0].recall_pattern(winners[0]["pattern_id"]) is not None
        assert await validators[0].get_staged_patterns() == []
        assert await validators[0].count_patterns() == 2
    finally:
        for m in (contributor, *validators):
            await m.aclose()


async def test_64_tasks_are_batched_per_node_and_keep_per_key_order(
    cluster_config: MemoryConfig, redis_cluster: LocalCluster
) -> None:
    agents = _agents_on_every_node(redis_cluster, 3)  # 9 agents, 3 on each master
    store = _store(cluster_config)
    try:
        await store.stash("warm", "up", b"0", 60_000)
        conn = store._cluster.peek()
        assert conn is not None
        batches, commands = conn.queues.batches, conn.queues.commands
        # 64 tasks issue, in order, 10 writes of each key then a delete and a last write.
        writes = []
        for step in range(10):
            for agent in agents:
                writes.append(store.stash(agent, "k", f"{step}".encode(), 60_000))
        ops = [asyncio.ensure_future(w) for w in writes]
        ops += [asyncio.ensure_future(store.forget(a, "k")) for a in agents]
        ops += [asyncio.ensure_future(store.stash(a, "k", b"last", 60_000)) for a in agents]
        sem = asyncio.Semaphore(64)

        async def bounded(fut: asyncio.Future[object]) -> object:
            async with sem:
                return await fut

        await asyncio.gather(*(bounded(op) for op in ops))
        assert conn.queues.commands - commands == len(ops)
        assert conn.queues.batches - batches < len(ops) // 4  # coalesced, not one by one
        got = await asyncio.gather(*(store.retrieve(a, "k") for a in agents))
        assert got == [b"last"] * len(agents)

        # 64 concurrent tasks, each its own key, values and TTLs all as written.
        async def one(i: int) -> tuple[bytes | None, int | None]:
            agent = agents[i % len(agents)]
            await store.stash(agent, f"t{i}", f"v{i}".encode(), 30_000 + i)
            return await store.retrieve(agent, f"t{i}"), await store.ttl_ms(agent, f"t{i}")

        results = await asyncio.gather(*(one(i) for i in range(64)))
        for i, (value, ttl) in enumerate(results):
            assert value == f"v{i}".encode()
            assert ttl is not None and 0 < ttl <= 30_000 + i
        assert await store.retrieve(agents[0], "missing") is None
        assert await store.ttl_ms(agents[0], "missing") is None
    finally:
        await store.aclose()


async def test_erase_agent_scans_every_master_and_spares_other_agents(
    cluster_config: MemoryConfig, redis_cluster: LocalCluster
) -> None:
    agents = _agents_on_every_node(redis_cluster, 1)
    store = _store(cluster_config)
    try:
        for agent in agents:
            await asyncio.gather(*(store.stash(agent, f"k{n}", b"x", 60_000) for n in range(5)))
        before = _scans(redis_cluster)
        assert await store.erase_agent(agents[0]) == 5
        after = _scans(redis_cluster)
        assert all(after[port] > before[port] for port in redis_cluster.ports), (before, after)
        assert await store.retrieve(agents[0], "k0") is None
        for agent in agents[1:]:
            assert await store.retrieve(agent, "k4") == b"x"
            assert await store.erase_agent(agent) == 5
        assert await store.erase_agent(agents[0]) == 0
    finally:
        await store.aclose()


async def test_erase_user_through_the_memory_api(cluster_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("alice", cluster_config) as alice:
        await alice.stash("notes", {"mine": True})
        await alice.stage_pattern({"content": "Alice's staged idea"}, "best_practice")
    async with AsyncUnifiedMemory("dpo", cluster_config, access_tier="STEWARD") as steward:
        erased = await steward.erase_user("alice")
        assert erased["working_data"] == 1 and erased["staged_patterns"] == 1
        assert await steward.retrieve("notes", agent_id="alice") is None
        assert await steward.get_staged_patterns(namespace="*") == []


def test_health_reports_the_topology_without_the_password(cluster_config: MemoryConfig) -> None:
    with UnifiedMemory("agent", cluster_config) as mem:
        health = mem.health_check()
    short = health["short_term"]
    assert short["available"] is True, short
    assert (short["backend"], short["mode"], short["nodes"]) == ("redis-cluster", "cluster", 3)
    assert len(short["masters"]) == 3
    assert short["url"].startswith("redis+cluster://default:***@127.0.0.1:")
    assert CLUSTER_PASSWORD not in repr(health)


async def test_wrong_password_and_a_non_cluster_server_are_typed_errors(
    redis_cluster: LocalCluster, storage_dir: Path, own_redis: object
) -> None:
    wrong = redis_cluster.seed_url(0).replace(CLUSTER_PASSWORD, "not-the-password")
    single = f"redis+cluster://127.0.0.1:{own_redis.port}"  # type: ignore[attr-defined]
    for url, fragment in ((wrong, "credentials"), (single, "not a cluster node")):
        config = MemoryConfig(redis_url=url, storage_dir=storage_dir)
        async with AsyncUnifiedMemory("agent", config) as mem:
            with pytest.raises(ShortTermUnavailableError, match=fragment) as err:
                await mem.stash("k", 1)
            assert "not-the-password" not in str(err.value)
            health = (await mem.health_check())["short_term"]
            assert health["available"] is False and "not-the-password" not in repr(health)


async def test_health_says_unavailable_for_an_acl_user_refused_attunes_keys(
    redis_cluster: LocalCluster, storage_dir: Path
) -> None:
    """An ACL user allowed PING (and CLUSTER SLOTS) but not attune's keys: every call fails
    with NOPERM, and health_check, which sent only PING, said "available"."""
    password = "confined-pw-7Qx"
    for port in redis_cluster.ports:
        with contextlib.closing(redis_cluster.client(port)) as admin:
            admin.execute_command(
                "ACL", "SETUSER", "confined", "on", f">{password}", "~other:*", "+@all"
            )
    try:
        url = f"redis+cluster://confined:{password}@127.0.0.1:{redis_cluster.ports[0]}"
        config = MemoryConfig(redis_url=url, storage_dir=storage_dir)
        async with AsyncUnifiedMemory("agent", config) as mem:
            with pytest.raises(ShortTermCommandError, match="ACL user"):
                await mem.stash("k", 1)
            health = (await mem.health_check())["short_term"]
        assert health["available"] is False, health
        assert "ACL user" in health["error"] and password not in repr(health)
    finally:
        for port in redis_cluster.ports:
            with contextlib.closing(redis_cluster.client(port)) as admin:
                admin.execute_command("ACL", "DELUSER", "confined")


async def test_a_key_of_another_type_is_a_command_error_and_data_is_untouched(
    cluster_config: MemoryConfig, redis_cluster: LocalCluster
) -> None:
    store = _store(cluster_config)
    name = store.keys.stash("agent", "k")
    port = next(p for p in redis_cluster.ports if _owns(redis_cluster, p, name))
    client = redis_cluster.client(port)
    try:
        client.hset(name, "f", "v")
        with pytest.raises(ShortTermCommandError, match="different type"):
            await store.retrieve("agent", "k")
        assert client.hgetall(name) == {b"f": b"v"}
        # The pipeline goes on serving other commands of the same batch window.
        await store.stash("agent", "other", b"1", 60_000)
        assert await store.retrieve("agent", "other") == b"1"
    finally:
        client.close()
        await store.aclose()


def _owns(cluster: LocalCluster, port: int, name: str) -> bool:
    client = cluster.client(port)
    try:
        slot = key_slot(name.encode())
        return any(
            low <= slot <= high and node[1] == port
            for low, high, node, *_ in client.cluster("slots")
        )
    finally:
        client.close()


async def test_a_node_down_fails_only_with_the_documented_error_and_the_client_resumes(
    own_cluster: LocalCluster, storage_dir: Path
) -> None:
    """Kill one master (no replicas): its keys fail with ShortTermUnavailableError at once;
    once the cluster marks the node failed, every operation does; nothing else is raised.
    When the node is back, the same store serves again (the slot map is re-read)."""
    config = MemoryConfig(
        redis_url=own_cluster.url, storage_dir=storage_dir, redis_socket_timeout=2.0
    )
    agents = _agents_on_every_node(own_cluster, 2)
    store = _store(config)
    try:
        for agent in agents:
            await store.stash(agent, "k", b"v", 60_000)
        victim = own_cluster.ports[0]
        doomed = [a for a in agents if _owns(own_cluster, victim, store.keys.stash(a, "k"))]
        survivors = [a for a in agents if a not in doomed]
        assert doomed and survivors
        own_cluster.kill(victim)
        for agent in doomed:
            with pytest.raises(ShortTermUnavailableError):
                await store.retrieve(agent, "k")
        outcomes: list[object] = []
        for _ in range(3):
            results = await asyncio.gather(
                *(store.retrieve(a, "k") for a in agents),
                *(store.stash(a, "k2", b"w", 60_000) for a in agents),
                store.stage("stg_x", b"{}", 2**41),
                store.list_staged(0),
                return_exceptions=True,
            )
            outcomes.extend(results)
            await asyncio.sleep(0.5)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, ShortTermUnavailableError), repr(outcome)
        assert any(isinstance(o, ShortTermUnavailableError) for o in outcomes)
        health = await store.health()
        assert health["available"] is False
        own_cluster.restart(victim)
        own_cluster.wait_ok()
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while True:
            try:
                await asyncio.gather(*(store.stash(a, "k3", b"back", 60_000) for a in agents))
                break
            except ShortTermUnavailableError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert await asyncio.gather(*(store.retrieve(a, "k3") for a in agents)) == [b"back"] * len(
            agents
        )
        assert (await store.health())["available"] is True
    finally:
        await store.aclose()


async def test_a_slot_moving_to_another_node_is_followed_ask_then_moved(
    own_cluster: LocalCluster, storage_dir: Path
) -> None:
    """Reshard the slot of one agent while 64 tasks use it: new keys during the migration
    are answered ASK, every key after it MOVED; the batches follow both, nothing fails,
    each key keeps its last value."""
    config = MemoryConfig(redis_url=own_cluster.url, storage_dir=storage_dir)
    store = _store(config)
    agent = _agents_on_every_node(own_cluster, 1)[0]
    name = store.keys.stash(agent, "old0")
    slot = key_slot(name.encode())
    source = next(p for p in own_cluster.ports if _owns(own_cluster, p, name))
    target = next(p for p in own_cluster.ports if p != source)
    admin = {p: own_cluster.client(p) for p in own_cluster.ports}
    ids = {p: admin[p].execute_command("CLUSTER MYID").decode() for p in own_cluster.ports}

    async def many(verb: str, keys: list[str], value: bytes = b"") -> list[object]:
        sem = asyncio.Semaphore(64)

        async def one(key: str) -> object:
            async with sem:
                if verb == "stash":
                    return await store.stash(agent, key, value, 60_000)
                return await store.retrieve(agent, key)

        return await asyncio.gather(*(one(k) for k in keys))

    try:
        old = [f"old{i}" for i in range(40)]
        await many("stash", old, b"before")
        admin[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
        admin[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
        # Migrating: existing keys still on the source, new keys go to the target (ASK).
        new = [f"new{i}" for i in range(40)]
        await many("stash", new, b"during")
        assert await many("retrieve", old) == [b"before"] * len(old)
        names = admin[source].execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        admin[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *names)
        for port in own_cluster.ports:
            admin[port].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])
        # Moved: every key answered MOVED by the source, then served by the target.
        assert await many("retrieve", old + new) == [b"before"] * 40 + [b"during"] * 40
        await many("stash", old, b"after")
        assert await many("retrieve", old) == [b"after"] * len(old)
        assert admin[target].dbsize() == 80 and admin[source].dbsize() == 0
        conn = store._cluster.peek()
        assert conn is not None and conn.queues.batches < conn.queues.commands
    finally:
        for client in admin.values():
            client.close()
        await store.aclose()


async def test_staging_waits_out_a_migration_of_its_slot(
    own_cluster: LocalCluster, storage_dir: Path
) -> None:
    """While the ``{staging}`` slot migrates, a script whose keys are split between the two
    nodes (the index still on the source, a new entry's key not there) is answered
    TRYAGAIN: staging raised ShortTermUnavailableError until the migration ended. It is
    sent again until the keys are together, within the call's time bound."""
    config = MemoryConfig(redis_url=own_cluster.url, storage_dir=storage_dir)
    store = _store(config)
    index = store.keys.staging_index()
    slot = key_slot(index.encode())
    source = next(p for p in own_cluster.ports if _owns(own_cluster, p, index))
    target = next(p for p in own_cluster.ports if p != source)
    admin = {p: own_cluster.client(p) for p in own_cluster.ports}
    ids = {p: admin[p].execute_command("CLUSTER MYID").decode() for p in own_cluster.ports}
    far = 4_102_444_800_000  # 2100: never expired here
    try:
        await store.stage("stg_" + "a" * 32, b"{}", far)  # the index exists on the source
        admin[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
        admin[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
        staging = asyncio.ensure_future(store.stage("stg_" + "b" * 32, b"{}", far))
        await asyncio.sleep(0.5)  # answered TRYAGAIN, again and again
        assert not staging.done()
        names = admin[source].execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        admin[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *names)
        for port in own_cluster.ports:
            admin[port].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])
        await asyncio.wait_for(staging, config.redis_socket_timeout)
        listed = await store.list_staged(0)
        assert sorted(e.staged_id for e in listed) == ["stg_" + "a" * 32, "stg_" + "b" * 32]
    finally:
        for client in admin.values():
            client.close()
        await store.aclose()


@pytest.fixture
def replicated_cluster() -> Iterator[LocalCluster]:
    """3 masters with one replica each (6 nodes), of this test's own."""
    need_cluster_tools()
    with local_cluster(replicas=1) as cluster:
        yield cluster


def _replica_synced(cluster: LocalCluster, master: int) -> bool:
    for port in cluster.procs:
        client = cluster.client(port)
        try:
            info = client.info("replication")
        finally:
            client.close()
        if info.get("master_port") == master and info.get("master_link_status") == "up":
            return True
    return False


async def test_failover_to_a_replica_raises_only_the_documented_error_and_resumes(
    replicated_cluster: LocalCluster, storage_dir: Path
) -> None:
    """Kill the master of the staging slot while 16 tasks stash / retrieve / stage: every
    failure is a ShortTermUnavailableError, the same memories resume once the replica is
    promoted (within the tests' deadline), and every staged pattern is promoted at most
    once by 4 racing validators."""
    cluster = replicated_cluster
    config = MemoryConfig(
        redis_url=cluster.seed_url(0), storage_dir=storage_dir, redis_socket_timeout=2.0
    )
    victim = cluster.master_of(b"{staging}")
    wait_until(lambda: _replica_synced(cluster, victim), "the replica's sync")
    writers = [AsyncUnifiedMemory(f"w{i}", config) for i in range(16)]
    validators = [
        AsyncUnifiedMemory(f"v{i}", config, access_tier="VALIDATOR", short_term=writers[0])
        for i in range(4)
    ]
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def work(mem: AsyncUnifiedMemory, n: int) -> None:
        step = 0
        while not stop.is_set():
            step += 1
            try:
                await mem.stash("k", {"step": step})
                got = await mem.retrieve("k")
                # A write the old master acknowledged but had not replicated is lost.
                assert got is None or got["step"] <= step
                if step % 4 == n % 4:
                    await mem.stage_pattern({"content": f"idea {n}.{step}"}, "practice")
            except ShortTermUnavailableError as exc:
                errors.append(exc)
                await asyncio.sleep(0.05)
            except Exception as exc:  # anything else fails the test below
                errors.append(exc)

    workers = [asyncio.create_task(work(m, n)) for n, m in enumerate(writers)]
    try:
        await asyncio.sleep(0.5)
        cluster.kill(victim)
        killed_at = asyncio.get_running_loop().time()
        # The same memories resume: every writer stashes and stages again.
        deadline = killed_at + DEADLINE_S
        while True:
            try:
                await asyncio.gather(*(m.stash("after", 1) for m in writers))
                await writers[0].stage_pattern({"content": "after the failover"}, "practice")
                break
            except ShortTermUnavailableError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        recovered_in = asyncio.get_running_loop().time() - killed_at
        stop.set()
        await asyncio.gather(*workers)
        assert all(isinstance(e, ShortTermUnavailableError) for e in errors), errors[:3]
        # Exactly-once promotion after the switch: 4 validators race for every entry.
        staged = [p["pattern_id"] for p in await validators[0].get_staged_patterns()]
        assert staged
        results = []
        for staged_id in staged:
            results += await asyncio.gather(
                *(v.promote_pattern(staged_id) for v in validators), return_exceptions=True
            )
        won = [r["pattern_id"] for r in results if isinstance(r, dict)]
        lost = [r for r in results if not isinstance(r, dict)]
        assert len(won) == len(set(won)) == len(staged)
        assert all(isinstance(r, PatternNotFoundError) for r in lost), lost[:3]
        assert await validators[0].count_patterns() == len(staged)
        print(f"failover: {len(errors)} unavailable errors, resumed in {recovered_in:.2f} s")
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        for m in (*validators, *writers):
            await m.aclose()


def test_the_demo_runs_on_the_cluster(redis_cluster: LocalCluster, tmp_path: Path) -> None:
    """``attune demo`` with only REDIS_URL set to the cluster (a process of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
    env.update(
        REDIS_URL=redis_cluster.url,
        ATTUNE_STORAGE_DIR=str(tmp_path),
        ATTUNE_KEY_PREFIX=f"demo{os.getpid()}",
    )
    out = subprocess.run(
        [sys.executable, "-m", "attune.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Patterns awaiting review: 2" in out.stdout
    assert out.stdout.count("PROMOTED -> Long-term ID: pat_") == 2
    assert "redis-cluster" in out.stdout
    assert CLUSTER_PASSWORD not in out.stdout + out.stderr
    client = redis.Redis(port=redis_cluster.ports[0], password=CLUSTER_PASSWORD)
    client.close()


@pytest.fixture
def tls_cluster() -> Iterator[LocalCluster]:
    """A 3-master cluster speaking TLS only (clients and cluster bus)."""
    if cluster_tools() is None or shutil.which("openssl") is None:
        if CI:
            pytest.fail("redis-server, redis-cli and openssl are needed (CI=true: a failure)")
        pytest.skip("redis-server, redis-cli or openssl is not installed")
    with local_cluster(tls=True) as cluster:
        yield cluster


async def test_tls_cluster_runs_the_workflow_and_an_unknown_authority_is_refused(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    url = tls_cluster.seed_url(2)
    assert url.startswith("rediss+cluster://")
    await tls_workflow(MemoryConfig(redis_url=url, storage_dir=tmp_path / "ok"))
    untrusted = url.replace(str(tls_cluster.dir / "ca.crt"), str(_other_authority(tmp_path)))
    config = MemoryConfig(redis_url=untrusted, storage_dir=tmp_path / "bad")
    async with AsyncUnifiedMemory("writer", config) as writer:
        with pytest.raises(ShortTermUnavailableError):
            await writer.stash("task", 1)


def test_the_cluster_benchmark_runs() -> None:
    """benchmarks/short_term_cluster.py at tiny sizes: it starts its own cluster, prints
    both figures, and stops its servers (its ratios mean nothing at this size)."""
    need_cluster_tools()
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "short_term_cluster.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
    out = subprocess.run(
        [sys.executable, str(script), "--ops", "256", "--rounds", "1", "--agents", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "cluster stash, 64 tasks vs raw RedisCluster" in out.stdout
    assert "cluster retrieve, 64 tasks vs raw RedisCluster" in out.stdout
