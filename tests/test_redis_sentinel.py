"""The short-term tier on a real Redis Sentinel group (tests/topology_sentinel.py: 1 master,
1 replica, 3 sentinels on loopback, started per test and stopped by pid): every operation
through the master Sentinel names, failovers followed on the same client with only
``ShortTermUnavailableError`` meanwhile, promotions exactly once, and the workflow and the
demo with nothing but ``REDIS_URL`` changed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certificates import make_certificates
from conftest import CI
from topology_sentinel import SERVICE, SentinelGroup, sentinel_group

from attune.cli import main
from attune.errors import (
    AttuneError,
    PatternNotFoundError,
    PromotionCommittedError,
    ShortTermUnavailableError,
)
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.short_term.redis_store import RedisShortTermMemory
from attune.memory.short_term.sentinel import FOLLOW_INTERVAL_S
from attune.memory.staged_fates import promoted_id

pytestmark = pytest.mark.sentinel

DATA_PW = "Data-pw-5521"
SENTINEL_PW = "Sentinel-pw-9034"
#: How long the same client may take to work again once a replica is promoted.
RECOVERY_BOUND_S = 10.0


def _require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        if CI:
            pytest.fail("redis-server is not installed (CI=true makes this a failure)")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A fresh Sentinel group per test: a failover changes the topology for good."""
    _require_redis_server()
    with sentinel_group(tmp_path / "sentinel") as started:
        yield started


@pytest.fixture
def guarded_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """As ``group``, with a password on the data nodes and another on the sentinels."""
    _require_redis_server()
    with sentinel_group(
        tmp_path / "sentinel", password=DATA_PW, sentinel_password=SENTINEL_PW
    ) as started:
        yield started


def _config(url: str, storage: Path, **extra: Any) -> MemoryConfig:
    return MemoryConfig(redis_url=url, storage_dir=storage, key_prefix="sen", **extra)


async def test_every_short_term_operation_runs_through_the_sentinel_master(
    guarded_group: SentinelGroup, tmp_path: Path
) -> None:
    url = guarded_group.url(2, auth=f":{DATA_PW}@") + f"?sentinel_password={SENTINEL_PW}"
    store = RedisShortTermMemory(_config(url, tmp_path))
    master = guarded_group.data_client(guarded_group.master_port() or 0, db=2)
    try:
        await store.stash("agent", "k", b"v", 60_000)
        assert await store.retrieve("agent", "k") == b"v"
        assert master.get(store.keys.stash("agent", "k")) == b"v"  # on the master, db 2
        assert 0 < (await store.ttl_ms("agent", "k") or 0) <= 60_000
        assert await store.forget("agent", "k") is True
        assert await store.retrieve("agent", "k") is None
        # Coalesced: 64 concurrent stashes go out in far fewer round trips.
        conn = await store._clients.get()
        before = conn.pipeline.batches
        await asyncio.gather(*(store.stash("agent", f"c{i}", b"x", 60_000) for i in range(64)))
        assert conn.pipeline.batches - before < 64
        assert await store.erase_agent("agent") == 64
        # Staging: stage, list, claim (one winner), release, settle.
        expires = int(time.time() * 1000) + 60_000
        await store.stage("stg_a", b"payload", expires)
        assert [e.staged_id for e in await store.list_staged(0)] == ["stg_a"]
        won = await store.claim_staged("stg_a", "promote:one", 60_000)
        lost = await store.claim_staged("stg_a", "promote:two", 60_000)
        assert won.won and won.payload == b"payload" and not lost.won
        assert lost.holder == b"promote:one"
        assert await store.release_staged_claim("stg_a", "promote:two") is False
        assert await store.settle_staged("stg_a", "promoted:pat_a", expires, "promote:one")
        assert await store.list_staged(0) == []
        assert await store.staged_claim("stg_a") == b"promoted:pat_a"
        health = await store.health()
        assert health["available"] is True
        assert (health["mode"], health["service"]) == ("sentinel", SERVICE)
        assert health["master"] == f"127.0.0.1:{guarded_group.master_port()}"
        assert DATA_PW not in str(health) and SENTINEL_PW not in str(health)
    finally:
        master.close()
        await store.aclose()


async def test_a_wrong_password_is_refused_without_being_shown(
    guarded_group: SentinelGroup, tmp_path: Path
) -> None:
    good = f"?sentinel_password={SENTINEL_PW}"
    cases = [
        guarded_group.url(auth=":wrong-data-pw@") + good,  # the data nodes refuse
        guarded_group.url(auth=f":{DATA_PW}@") + "?sentinel_password=wrong-s-pw",  # sentinels
    ]
    for url in cases:
        store = RedisShortTermMemory(_config(url, tmp_path))
        try:
            with pytest.raises(ShortTermUnavailableError) as refused:
                await store.stash("agent", "k", b"v", 60_000)
            message = str(refused.value)
            assert "credentials" in message and "sentinel_password" in message, message
            for secret in (DATA_PW, SENTINEL_PW, "wrong-data-pw", "wrong-s-pw"):
                assert secret not in message
        finally:
            await store.aclose()


async def test_a_graceful_failover_moves_the_same_client_to_the_new_master(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """``SENTINEL FAILOVER`` promotes the replica while the old master keeps running (and
    accepting writes) until Sentinel demotes it, about 10 s later: pooled connections to
    it must not keep writing there. Within FOLLOW_INTERVAL_S of the promotion the same
    client writes to the new master; every error meanwhile is typed."""
    store = RedisShortTermMemory(_config(group.url(), tmp_path))
    old = group.master_port()
    assert old is not None
    errors: list[BaseException] = []

    async def write(key: str) -> None:
        while True:
            try:
                await store.claim_staged(f"stg_{key}", "promote:x", 60_000)  # never repeated
                await store.stash("agent", key, b"new", 60_000)
                return
            except AttuneError as exc:
                errors.append(exc)
                await asyncio.sleep(0.05)

    try:
        # Several pooled connections to the old master.
        await asyncio.gather(*(store.stash("agent", f"k{i}", b"v", 60_000) for i in range(32)))
        await asyncio.gather(*(store.stage(f"stg_{i}", b"p", 2**41) for i in range(8)))
        with contextlib.closing(group.sentinels[0].client()) as sentinel:
            sentinel.sentinel_failover(SERVICE)
        promoted_at = await asyncio.to_thread(group.wait_for_promotion, old)
        while time.monotonic() < promoted_at + FOLLOW_INTERVAL_S + 0.2:  # keep it busy
            await asyncio.gather(*(write(f"busy{i}") for i in range(8)))
        await asyncio.wait_for(write("after"), RECOVERY_BOUND_S)
        assert all(type(e) is ShortTermUnavailableError for e in errors), errors
        new = group.master_port()
        with contextlib.closing(group.data_client(new or 0)) as master:
            assert master.get(store.keys.stash("agent", "after")) == b"new"  # the new master
        assert (await store.health())["master"] == f"127.0.0.1:{new}"
    finally:
        await store.aclose()


async def test_killing_the_master_fails_over_on_the_same_client_and_promotes_once(
    group: SentinelGroup, tmp_path: Path
) -> None:
    config = _config(group.url(), tmp_path / "store")
    owner = AsyncUnifiedMemory("agent-0", config, access_tier="VALIDATOR")
    agents = [owner] + [
        AsyncUnifiedMemory(
            f"agent-{i}",
            config,
            access_tier="VALIDATOR",
            short_term=owner,
            long_term=owner,
            pipeline=owner.pipeline,
        )
        for i in range(1, 16)
    ]
    store = owner.short_term
    old = group.master_port()
    assert old is not None
    errors: list[tuple[float, BaseException]] = []
    staged: list[str] = []
    promoted: list[str] = []  # staged ids, one per successful promote_pattern
    committed: list[str] = []  # promotions committed whose caller got PromotionCommittedError
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def attempt(call: Any) -> Any:
        try:
            return await call
        except PromotionCommittedError as exc:
            committed.append(exc.staged_pattern_id)
        except PatternNotFoundError:
            pass  # another agent promoted it first, or its entry went with the old master
        except Exception as exc:
            errors.append((loop.time(), exc))
        return None

    async def work(index: int, agent: AsyncUnifiedMemory) -> None:
        round_no = 0
        while not stop.is_set():
            round_no += 1
            key = f"k{round_no % 8}"
            if await attempt(agent.stash(key, {"round": round_no})):
                got = await attempt(agent.retrieve(key))
                assert got in (None, {"round": round_no}), got  # never another value
            staged_id = await attempt(
                agent.stage_pattern({"content": f"Pattern {index}.{round_no}"}, "practice")
            )
            if staged_id:
                staged.append(staged_id)
            if index % 4 == 0:  # a promoter: everything listed, concurrently with others
                listed = await attempt(agent.get_staged_patterns())
                for entry in (listed or [])[:4]:
                    result = await attempt(agent.promote_pattern(entry["pattern_id"]))
                    if result is not None:
                        promoted.append(entry["pattern_id"])
            await asyncio.sleep(0.01)

    async def probe() -> float:
        """Until the same client answers again: the loop time it did."""
        while True:
            try:
                await store.stash("probe", "p", b"1", 60_000)
                return loop.time()
            except ShortTermUnavailableError:
                await asyncio.sleep(0.02)

    workers = [asyncio.create_task(work(i, a)) for i, a in enumerate(agents)]
    try:
        await asyncio.sleep(1.5)  # steady state on the first master
        assert staged and not errors, errors
        killed_at = loop.time()
        group.kill_master()
        promoted_wall = await asyncio.to_thread(group.wait_for_promotion, old)
        promoted_at = loop.time() - (time.monotonic() - promoted_wall)
        recovered_at = await probe()
        await asyncio.sleep(2.0)  # steady state on the new master
    finally:
        stop.set()
        outcomes = await asyncio.gather(*workers, return_exceptions=True)
    try:
        assert [o for o in outcomes if o is not None] == []
        print(
            "\nsentinel failover: master killed -> replica promoted "
            f"{promoted_at - killed_at:.2f} s, -> same client answering "
            f"{recovered_at - killed_at:.2f} s "
            f"({max(0.0, recovered_at - promoted_at):.2f} s after the promotion); "
            f"{len(errors)} ShortTermUnavailableError meanwhile; {len(staged)} staged, "
            f"{len(promoted)} promoted, {len(committed)} committed before Redis failed"
        )
        leaked = [exc for _, exc in errors if not isinstance(exc, ShortTermUnavailableError)]
        assert leaked == [], leaked  # nothing but the documented error
        assert recovered_at - promoted_at < RECOVERY_BOUND_S
        assert all(at < promoted_at + RECOVERY_BOUND_S for at, _ in errors)
        assert errors, "the kill should have been noticed"
        # Exactly once: no staged pattern promoted twice, and long-term memory holds one
        # record per promotion that reported success or committed before Redis failed.
        assert len(promoted) == len(set(promoted))
        expected = {promoted_id(s) for s in [*promoted, *committed]}
        existing = await owner.long_term.existing([promoted_id(s) for s in staged])
        assert existing == expected
        assert await owner.long_term.count() == len(expected)
        assert promoted, "some promotions should have run"
        health = await owner.health_check()
        assert health["short_term"]["master"] == f"127.0.0.1:{group.master_port()}"
    finally:
        for agent in reversed(agents):
            await agent.aclose()


async def test_a_frozen_master_is_replaced_and_the_same_client_follows(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """SIGSTOP on the master (a hung or partitioned node: connections open, no answer): calls
    in flight fail at redis_socket_timeout, typed; once the replica is promoted the same
    client writes there, and after the old master wakes up (demoted) it still does."""
    assert group.master is not None
    store = RedisShortTermMemory(_config(group.url(), tmp_path, redis_socket_timeout=2.0))
    old = group.master_port()
    assert old is not None
    try:
        await asyncio.gather(*(store.stash("agent", f"k{i}", b"v", 60_000) for i in range(16)))
        group.master.freeze()
        promotion = asyncio.create_task(asyncio.to_thread(group.wait_for_promotion, old))
        errors: list[BaseException] = []
        while True:
            try:
                await store.stash("agent", "k0", b"after", 60_000)
                await store.claim_staged("stg_x", "promote:x", 60_000)
                break
            except AttuneError as exc:
                errors.append(exc)
                await asyncio.sleep(0.05)
        promoted_at = await promotion
        assert time.monotonic() - promoted_at < RECOVERY_BOUND_S
        assert errors and all(type(e) is ShortTermUnavailableError for e in errors), errors
        group.master.thaw()
        new = group.master_port()
        assert new not in (None, old)
        await store.stash("agent", "k1", b"later", 60_000)
        with contextlib.closing(group.data_client(new or 0)) as master:
            assert master.get(store.keys.stash("agent", "k0")) == b"after"
            assert master.get(store.keys.stash("agent", "k1")) == b"later"
    finally:
        await store.aclose()


def test_the_workflow_and_the_demo_run_with_only_redis_url_changed(
    group: SentinelGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = group.url()

    async def async_workflow() -> None:
        config = MemoryConfig(redis_url=url, storage_dir=tmp_path / "async")
        async with (
            AsyncUnifiedMemory("writer", config) as writer,
            AsyncUnifiedMemory("reviewer", config, access_tier="VALIDATOR") as reviewer,
        ):
            assert await writer.stash("task", {"step": 1}) is True
            assert await writer.retrieve("task") == {"step": 1}
            staged = await writer.stage_pattern({"content": "Retry with backoff"}, "practice")
            assert staged in [p["pattern_id"] for p in await reviewer.get_staged_patterns()]
            promoted = await reviewer.promote_pattern(staged)
            assert await reviewer.recall_pattern(promoted["pattern_id"]) is not None
            assert (await writer.health_check())["short_term"]["mode"] == "sentinel"

    asyncio.run(async_workflow())
    config = MemoryConfig(redis_url=url, storage_dir=tmp_path / "blocking")
    with (
        UnifiedMemory("writer", config) as writer,
        UnifiedMemory("reviewer", config, access_tier="VALIDATOR") as reviewer,
    ):
        assert writer.stash("task", [1, 2]) is True
        assert writer.retrieve("task") == [1, 2]
        staged = writer.stage_pattern({"content": "Log the request id"}, "practice")
        promoted = reviewer.promote_pattern(staged)
        assert reviewer.recall_pattern(promoted["pattern_id"]) is not None
        assert writer.health_check()["short_term"]["available"] is True
    monkeypatch.setenv("REDIS_URL", url)
    assert main(["demo", "--storage-dir", str(tmp_path / "demo")]) == 0
    with contextlib.closing(group.data_client(group.master_port() or 0)) as master:
        assert master.dbsize() > 0  # the demo's keys went to the Sentinel master


async def test_readonly_from_a_demoted_master_is_unavailable_not_a_refused_command(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """A master demoted behind Sentinel's back (``REPLICAOF`` by hand, its clients' connections
    left open) answers writes with ``READONLY``: the pool drops the connection and asks the
    sentinels again; while they still name that node, the write fails as
    ``ShortTermUnavailableError`` (never a raw error, never ``ShortTermCommandError``), and
    the same client works again once the node is a master again."""
    assert group.master is not None and group.replica is not None
    store = RedisShortTermMemory(_config(group.url(), tmp_path / "a"))
    demoted_url = f"redis://127.0.0.1:{group.master.port}/0"
    direct = RedisShortTermMemory(_config(demoted_url, tmp_path / "b"))
    master, replica = group.master.client(), group.replica.client()
    try:
        await asyncio.gather(*(store.stash("agent", f"k{i}", b"v", 60_000) for i in range(16)))
        replica.replicaof("NO", "ONE")
        master.replicaof("127.0.0.1", group.replica.port)
        for call in (
            store.stash("agent", "k0", b"w", 60_000),  # repeated once, then typed
            store.claim_staged("stg_x", "promote:x", 60_000),  # never repeated
            direct.stash("agent", "k0", b"w", 60_000),  # a plain redis:// URL to a replica
        ):
            with pytest.raises(ShortTermUnavailableError) as failed:
                await call
            assert type(failed.value) is ShortTermUnavailableError
            assert "not a writable master" in str(failed.value)
        assert await store.retrieve("agent", "k1") == b"v"  # reads still answer
        master.replicaof("NO", "ONE")
        replica.replicaof("127.0.0.1", group.master.port)
        await store.stash("agent", "k0", b"back", 60_000)
        assert master.get(store.keys.stash("agent", "k0")) == b"back"
    finally:
        master.close()
        replica.close()
        await direct.aclose()
        await store.aclose()


@pytest.fixture
def tls_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """As ``group``, every process speaking TLS only (a throwaway CA of the test's own)."""
    _require_redis_server()
    if shutil.which("openssl") is None:
        if CI:
            pytest.fail("openssl is not installed (CI=true makes this a failure)")
        pytest.skip("openssl is not installed")
    certificates = tmp_path / "certs"
    certificates.mkdir()
    with sentinel_group(tmp_path / "sentinel", tls=make_certificates(certificates)) as started:
        yield started


async def test_rediss_sentinel_speaks_tls_to_sentinels_and_master(
    tls_group: SentinelGroup, tmp_path: Path
) -> None:
    assert tls_group.tls is not None
    trusted = f"?ssl_ca_certs={tls_group.tls.ca}&ssl_cert_reqs=required"
    store = RedisShortTermMemory(
        _config(tls_group.url(scheme="rediss+sentinel") + trusted, tmp_path)
    )
    try:
        await store.stash("agent", "k", b"v", 60_000)
        assert await store.retrieve("agent", "k") == b"v"
        health = await store.health()
        assert health["available"] is True
        assert health["master"] == f"127.0.0.1:{tls_group.master_port()}"
    finally:
        await store.aclose()
    with contextlib.closing(tls_group.data_client(tls_group.master_port() or 0)) as master:
        assert master.get(store.keys.stash("agent", "k")) == b"v"
    # Plain text to a TLS-only group, or a CA that did not sign its certificates: typed.
    for url in (
        tls_group.url(),
        tls_group.url(scheme="rediss+sentinel") + f"?ssl_ca_certs={_other_ca(tmp_path)}",
    ):
        refused = RedisShortTermMemory(
            _config(url, tmp_path / "refused", redis_connect_timeout=0.5)
        )
        try:
            with pytest.raises(ShortTermUnavailableError):
                await refused.stash("agent", "k", b"v", 60_000)
        finally:
            await refused.aclose()


def _other_ca(tmp_path: Path) -> Path:
    """The certificate of an authority that signed nothing of the group's."""
    other = tmp_path / "other-ca"
    other.mkdir()
    return make_certificates(other).ca
