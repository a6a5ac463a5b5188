"""Short-term tier: stash / retrieve / forget / ttl on real Redis and on the stand-in."""

from __future__ import annotations

import math

import pytest
import redis

from attune.errors import (
    AttuneError,
    SerializationError,
    ShortTermUnavailableError,
    ValidationError,
    ValueTooLargeError,
)
from attune.memory import AsyncUnifiedMemory, MemoryConfig


async def test_stash_retrieve_round_trip(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        value = {"files": ["api.py"], "status": "analyzing", "n": 3, "ok": True, "x": None}
        assert await mem.stash("current_task", value) is True
        assert await mem.retrieve("current_task") == value
        assert await mem.retrieve("missing") is None


async def test_default_ttl_applied(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        await mem.stash("k", 1)
        ttl = await mem.ttl("k")
        assert ttl is not None and 3590 < ttl <= 3600
        await mem.stash("k2", 1, ttl_seconds=86400)
        ttl2 = await mem.ttl("k2")
        assert ttl2 is not None and 86390 < ttl2 <= 86400
        assert await mem.ttl("missing") is None


async def test_value_expires(config: MemoryConfig) -> None:
    import asyncio

    async with AsyncUnifiedMemory("agent_a", config) as mem:
        await mem.stash("short", "v", ttl_seconds=0.05)
        await asyncio.sleep(0.15)
        assert await mem.retrieve("short") is None


async def test_other_agents_data_by_agent_id(config: MemoryConfig) -> None:
    async with (
        AsyncUnifiedMemory("agent_a", config) as a,
        AsyncUnifiedMemory("agent_b", config) as b,
    ):
        await a.stash("findings", [1, 2])
        assert await b.retrieve("findings") is None  # namespaced per agent
        assert await b.retrieve("findings", agent_id="agent_a") == [1, 2]


async def test_forget_and_delete_alias(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        await mem.stash("k", "v")
        assert await mem.forget("k") is True
        assert await mem.forget("k") is False
        await mem.stash("k", "v")
        assert await mem.delete("k") is True
        assert await mem.retrieve("k") is None


async def test_overwrite_is_last_writer_wins(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        for i in range(5):
            await mem.stash("k", i)
        assert await mem.retrieve("k") == 4


async def test_keys_are_namespaced_with_hash_tags(redis_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent_a", redis_config) as mem:
        await mem.stash("task", 1)
    client = redis.Redis.from_url(redis_config.redis_url or "")
    keys = [k.decode() for k in client.scan_iter(match=f"{redis_config.key_prefix}:*")]
    client.close()
    assert keys == [f"{redis_config.key_prefix}:{{agent:agent_a}}:stash:task"]


class _NotJSON:
    pass


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"a": _NotJSON()}, "_NotJSON"),
        ({1, 2}, "set"),
        (float("nan"), "NaN"),
        (b"bytes", "bytes"),
    ],
)
async def test_non_serialisable_value_rejected_and_nothing_written(
    config: MemoryConfig, value: object, fragment: str
) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        await mem.stash("k", "before")
        with pytest.raises(SerializationError, match=fragment) as info:
            await mem.stash("k", value)
        assert isinstance(info.value, TypeError) and isinstance(info.value, AttuneError)
        assert await mem.retrieve("k") == "before"


async def test_circular_value_rejected(config: MemoryConfig) -> None:
    loop: list[object] = []
    loop.append(loop)
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        with pytest.raises(SerializationError, match="circular"):
            await mem.stash("k", loop)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "empty"),
        ("x" * 257, "limit is 256"),
        (42, "string"),
        ("a\nb", "control"),
        ("\x85nel", "control"),
    ],
)
async def test_bad_keys_rejected(config: MemoryConfig, key: object, fragment: str) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        with pytest.raises(ValidationError, match=fragment) as info:
            await mem.stash(key, "v")  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        with pytest.raises(ValidationError):
            await mem.retrieve(key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ttl", "fragment"),
    [
        (0, "positive"),
        (-5, "positive"),
        (math.inf, "positive"),
        (10**9, "exceeds"),
        (True, "number"),
        ("60", "number"),
    ],
)
async def test_bad_ttl_rejected_nothing_written(
    config: MemoryConfig, ttl: object, fragment: str
) -> None:
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        with pytest.raises(ValidationError, match=fragment):
            await mem.stash("k", "v", ttl_seconds=ttl)  # type: ignore[arg-type]
        assert await mem.retrieve("k") is None


async def test_value_size_limit(config: MemoryConfig) -> None:
    small = config.model_copy(update={"max_value_bytes": 100})
    async with AsyncUnifiedMemory("agent_a", small) as mem:
        await mem.stash("k", "x" * 50)
        with pytest.raises(ValueTooLargeError, match="limit is 100"):
            await mem.stash("k", "x" * 200)
        assert await mem.retrieve("k") == "x" * 50


async def test_bad_agent_id_rejected(config: MemoryConfig) -> None:
    with pytest.raises(ValidationError, match="user_id"):
        AsyncUnifiedMemory("agent {bad}", config)
    async with AsyncUnifiedMemory("agent_a", config) as mem:
        with pytest.raises(ValidationError, match="agent_id"):
            await mem.retrieve("k", agent_id="")


async def test_unreachable_redis_is_a_clear_error(closed_port_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = closed_port_url.replace("redis://", "redis://user:s3cretpw@")
    cfg = MemoryConfig(redis_url=url, storage_dir=tmp_path, redis_connect_timeout=0.5)
    async with AsyncUnifiedMemory("agent_a", cfg) as mem:
        with pytest.raises(ShortTermUnavailableError) as info:
            await mem.stash("k", "v")
        message = str(info.value)
        assert "s3cretpw" not in message
        assert "redis://user:***@127.0.0.1" in message
        assert info.value.__cause__ is None  # no raw redis-py traceback chained
        # the long-term tier keeps working
        result = await mem.persist_pattern("Prefer small pure functions", "architecture")
        assert (await mem.recall_pattern(result["pattern_id"]))[
            "content"
        ] == "Prefer small pure functions"  # type: ignore[index]


async def test_closed_memory_refuses_work(config: MemoryConfig) -> None:
    mem = AsyncUnifiedMemory("agent_a", config)
    await mem.stash("k", 1)
    await mem.aclose()
    await mem.aclose()  # idempotent
    with pytest.raises(AttuneError, match="closed"):
        await mem.retrieve("k")
