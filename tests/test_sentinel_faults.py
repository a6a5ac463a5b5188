"""Sentinel faults a fleet meets besides a failover (tests/topology_sentinel.py: a group of
the test's own, stopped by pid): sentinels that hang while the master is fine, one hung
sentinel among several, a sentinel ACL user without the right to name the master, and
sentinels that disagree during a failover (attune/memory/short_term/sentinel.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CI
from redis.asyncio.sentinel import MasterNotFoundError
from topology_sentinel import SentinelGroup, sentinel_group

from attune.errors import ShortTermUnavailableError
from attune.memory import MemoryConfig
from attune.memory.short_term.redis_store import RedisShortTermMemory
from attune.memory.short_term.sentinel import FOLLOW_INTERVAL_S, discover

pytestmark = pytest.mark.sentinel


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    if shutil.which("redis-server") is None:
        if CI:
            pytest.fail("redis-server is not installed (CI=true makes this a failure)")
        pytest.skip("redis-server is not installed")
    with sentinel_group(tmp_path / "sentinel") as started:
        yield started


def _store(url: str, tmp_path: Path, **extra: Any) -> RedisShortTermMemory:
    config = MemoryConfig(redis_url=url, storage_dir=tmp_path, key_prefix="sf", **extra)
    return RedisShortTermMemory(config)


async def _timed(call: Any) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_hung_sentinels_never_hold_up_a_master_that_answers(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """All sentinels frozen (SIGSTOP: a partition between the client and them) while the
    master runs: a client that knows the master keeps working at full speed, however long
    it lasts; a new client fails at once, typed, saying the sentinels name no master."""
    timeouts = {"redis_connect_timeout": 1.0, "redis_socket_timeout": 3.0}
    store = _store(group.url(), tmp_path / "a", **timeouts)
    fresh = _store(group.url(), tmp_path / "b", **timeouts)
    try:
        await store.stash("agent", "k", b"v", 60_000)
        for node in group.sentinels:
            node.freeze()
        ends = time.monotonic() + 3 * FOLLOW_INTERVAL_S + 0.5
        rounds = 0
        while time.monotonic() < ends:  # several follow-up questions to the sentinels
            rounds += 1
            assert await _timed(store.stash("agent", f"k{rounds}", b"v", 60_000)) < 0.5
            assert await store.retrieve("agent", f"k{rounds}") == b"v"
            await asyncio.sleep(0.25)
        health = await store.health()
        assert health["available"] is True and health["master"] is None
        started = time.monotonic()
        with pytest.raises(ShortTermUnavailableError) as failed:
            await fresh.stash("agent", "k", b"v", 60_000)
        assert time.monotonic() - started < timeouts["redis_socket_timeout"]
        assert "name no reachable master" in str(failed.value)
    finally:
        for node in group.sentinels:
            node.thaw()
        await fresh.aclose()
        await store.aclose()


async def test_one_hung_sentinel_does_not_slow_a_new_client(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """The first sentinel of the URL frozen: the others answer, so a new client finds the
    master without waiting out the frozen one's timeout."""
    assert group.master is not None
    store = _store(group.url(), tmp_path, redis_connect_timeout=2.0)
    group.sentinels[0].freeze()
    try:
        assert await _timed(store.stash("agent", "k", b"v", 60_000)) < 1.0
        with contextlib.closing(group.data_client(group.master.port)) as master:
            assert master.get(store.keys.stash("agent", "k")) == b"v"
    finally:
        group.sentinels[0].thaw()
        await store.aclose()


async def test_a_sentinel_acl_user_that_may_not_ask_is_told_what_to_grant(
    group: SentinelGroup, tmp_path: Path
) -> None:
    for node in group.sentinels:
        with contextlib.closing(node.client()) as sentinel:
            sentinel.execute_command("ACL", "SETUSER", "ping-only", "on", ">pw1", "+ping")
            sentinel.execute_command("ACL", "SETUSER", "asker", "on", ">pw2", "+sentinel|masters")
    refused = _store(group.url() + "?sentinel_username=ping-only&sentinel_password=pw1", tmp_path)
    allowed = _store(group.url() + "?sentinel_username=asker&sentinel_password=pw2", tmp_path)
    try:
        with pytest.raises(ShortTermUnavailableError) as failed:
            await refused.stash("agent", "k", b"v", 60_000)
        assert type(failed.value) is ShortTermUnavailableError
        message = str(failed.value)
        assert "sentinel_username" in message and "+sentinel|masters" in message, message
        assert "pw1" not in message
        await allowed.stash("agent", "k", b"v", 60_000)
        assert await allowed.retrieve("agent", "k") == b"v"
    finally:
        await refused.aclose()
        await allowed.aclose()


class _Sentinel:
    """A sentinel's client that answers SENTINEL MASTERS after ``delay`` seconds."""

    def __init__(self, delay: float, port: int, epoch: int, *, refuse: bool = False) -> None:
        self.delay, self.port, self.epoch, self.refuse = delay, port, epoch, refuse

    async def sentinel_masters(self) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        if self.refuse:
            raise ConnectionRefusedError("refused")
        state = {"ip": "10.0.0.1", "port": self.port, "config-epoch": self.epoch}
        flags = {"is_master": True, "is_sdown": False, "is_odown": False}
        return {"svc": {**state, **flags, "num-other-sentinels": 2}}


class _Group:
    def __init__(self, *sentinels: _Sentinel) -> None:
        self.sentinels = list(sentinels)

    def check_master_state(self, state: dict[str, Any], service: str) -> bool:
        return bool(state["is_master"])


async def test_a_sentinel_behind_a_failover_does_not_send_the_pool_back() -> None:
    """During a failover the sentinels disagree for a moment: the first answer names the
    old master (config-epoch 1) while the pool already follows epoch 2. The newer answer
    wins; an older one is taken only when no sentinel gives a newer one."""
    lagging, current = _Sentinel(0.0, 6001, 1), _Sentinel(0.05, 6002, 2)
    epoch = [2]
    sentinels: Any = _Group(lagging, current)
    assert await discover(sentinels, "svc", 1.0, epoch) == ("10.0.0.1", 6002)
    assert await discover(sentinels, "svc", 1.0) == ("10.0.0.1", 6001)  # no epoch: first
    reset: Any = _Group(_Sentinel(0.0, 6003, 0), _Sentinel(0.0, 6003, 0))  # sentinels reset
    assert await discover(reset, "svc", 1.0, epoch) == ("10.0.0.1", 6003)
    assert epoch == [0]
    hung: Any = _Group(_Sentinel(5.0, 6004, 3), _Sentinel(0.0, 0, 0, refuse=True))
    started = time.monotonic()
    with pytest.raises(MasterNotFoundError, match=r"ConnectionRefusedError.*no answer within"):
        await discover(hung, "svc", 0.2, epoch)
    assert time.monotonic() - started < 1.0
