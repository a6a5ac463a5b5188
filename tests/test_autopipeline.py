"""Automatic pipelining: concurrent commands coalesce, and nothing about them changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import redis.asyncio

from attune.errors import ShortTermCommandError, ShortTermUnavailableError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.short_term.autopipeline import AutoPipeline
from attune.memory.short_term.redis_store import RedisShortTermMemory


def pipeline_of(mem: AsyncUnifiedMemory) -> AutoPipeline:
    store = mem.short_term
    assert isinstance(store, RedisShortTermMemory)
    # Private on purpose: the pipeline's round-trip counters are internal (no public API).
    conn = store._clients.peek()
    assert conn is not None
    return conn.pipeline


async def test_concurrent_commands_share_round_trips(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent", config) as mem:
        await mem.stash("warm-up", 0)
        pipe = pipeline_of(mem)
        batches, commands = pipe.batches, pipe.commands

        async def worker(n: int) -> None:
            for i in range(10):
                await mem.stash(f"k{n}:{i}", {"n": n, "i": i})
                assert await mem.retrieve(f"k{n}:{i}") == {"n": n, "i": i}

        await asyncio.gather(*(worker(n) for n in range(64)))
        sent = pipe.commands - commands
        assert sent == 64 * 10 * 2
        assert pipe.batches - batches < sent / 8  # far fewer round trips than commands


async def test_sequential_calls_go_out_alone(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent", config) as mem:
        await mem.stash("a", 1)
        pipe = pipeline_of(mem)
        before = pipe.batches
        for i in range(5):
            await mem.stash("a", i)
        assert pipe.batches - before == 5


async def test_concurrent_writers_of_one_key_keep_issue_order(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent", config) as mem:
        await asyncio.gather(*(mem.stash("shared", i) for i in range(300)))
        assert await mem.retrieve("shared") == 299  # the last one issued wins

        seen: list[int] = []

        async def writer() -> None:
            for i in range(300, 400):
                await mem.stash("shared", i)

        async def reader() -> None:
            for _ in range(100):
                seen.append(await mem.retrieve("shared"))

        await asyncio.gather(writer(), reader(), reader())
        assert seen == sorted(seen)  # never goes back in time
        assert await mem.retrieve("shared") == 399


async def test_a_refused_command_fails_only_its_own_caller(
    redis_config: MemoryConfig, redis_url: str
) -> None:
    async with AsyncUnifiedMemory("agent", redis_config) as mem:
        await mem.stash("fine", "ok")
        store = mem.short_term
        assert isinstance(store, RedisShortTermMemory)
        wrong = store.keys.stash("agent", "wrong-type")
        client = redis.Redis.from_url(redis_url)
        client.rpush(wrong, "a list, not a string")
        client.close()

        results = await asyncio.gather(
            mem.retrieve("fine"),
            mem.retrieve("wrong-type"),
            mem.stash("after", 1),
            mem.retrieve("fine"),
            return_exceptions=True,
        )
        assert results[0] == "ok" and results[3] == "ok"
        assert results[2] is True
        assert isinstance(results[1], ShortTermCommandError)
        assert "refused a GET command" in str(results[1])
        assert "a list" not in str(results[1])
        assert await mem.retrieve("after") == 1


async def test_unreachable_redis_fails_every_queued_call_clearly(
    closed_port_url: str, tmp_path: Path
) -> None:
    config = MemoryConfig(redis_url=closed_port_url, storage_dir=tmp_path)
    async with AsyncUnifiedMemory("agent", config) as mem:
        results = await asyncio.gather(
            *(mem.stash(f"k{i}", i) for i in range(20)), return_exceptions=True
        )
    assert all(isinstance(r, ShortTermUnavailableError) for r in results)
    assert "cannot reach Redis" in str(results[-1])


async def test_a_cancelled_caller_leaves_the_others_alone(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("agent", config) as mem:
        await mem.stash("seed", 0)
        tasks = [asyncio.create_task(mem.stash(f"c{i}", i)) for i in range(20)]
        await asyncio.sleep(0)  # let them queue
        tasks[7].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[7], asyncio.CancelledError)
        assert [d for i, d in enumerate(done) if i != 7] == [True] * 19
        for i in (0, 6, 8, 19):
            assert await mem.retrieve(f"c{i}") == i
        assert await mem.retrieve("c7") is None  # cancelled before its batch went out


@pytest.mark.parametrize("n", [1, 2, 50])
async def test_replies_go_to_their_callers(config: MemoryConfig, n: int) -> None:
    async with AsyncUnifiedMemory("agent", config) as mem:
        await asyncio.gather(*(mem.stash(f"r{i}", {"i": i}) for i in range(n)))
        got = await asyncio.gather(*(mem.retrieve(f"r{i}") for i in range(n)))
        ttls = await asyncio.gather(*(mem.ttl(f"r{i}") for i in range(n)))
        assert got == [{"i": i} for i in range(n)]
        assert all(t is not None and 3500 < t <= 3600 for t in ttls)


async def test_a_silent_server_times_out_clearly(tmp_path: Path) -> None:
    """A server that accepts but never answers: every call (lone or batched) gives up."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the socket open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = MemoryConfig(
        redis_url=f"redis://127.0.0.1:{port}/0", storage_dir=tmp_path, redis_socket_timeout=0.2
    )
    try:
        async with AsyncUnifiedMemory("agent", config) as mem:
            results = await asyncio.wait_for(
                asyncio.gather(*(mem.stash(f"k{i}", i) for i in range(5)), return_exceptions=True),
                timeout=10,
            )
            assert all(isinstance(r, ShortTermUnavailableError) for r in results), results
            with pytest.raises(ShortTermUnavailableError):
                await asyncio.wait_for(mem.get_staged_patterns(), timeout=10)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_many_quick_round_trips_outlast_the_timeout_without_timing_out(
    config: MemoryConfig,
) -> None:
    """One watchdog timer serves every round trip: it must re-arm for the one in flight."""
    quick = config.model_copy(update={"redis_socket_timeout": 0.05})
    async with AsyncUnifiedMemory("agent", quick) as mem:
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.3  # six timeouts' worth of back-to-back round trips
        n = 0
        while loop.time() < until:
            await mem.stash("k", n)
            assert await mem.retrieve("k") == n
            n += 1
        batch = await asyncio.gather(*(mem.retrieve("k") for _ in range(20)))
        assert batch == [n - 1] * 20


async def test_a_caller_cancelled_while_waiting_is_cancelled_not_timed_out(
    tmp_path: Path,
) -> None:
    held: list[asyncio.StreamWriter] = []
    asked = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if await reader.read(1):  # a command arrived: its caller waits for the reply now
            asked.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = MemoryConfig(redis_url=f"redis://127.0.0.1:{port}/0", storage_dir=tmp_path)
    try:
        async with AsyncUnifiedMemory("agent", config) as mem:
            task = asyncio.create_task(mem.stash("k", 1))
            await asyncio.wait_for(asked.wait(), 10)
            assert not task.done()  # waiting, well inside the socket timeout
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_submit_queues_behind_earlier_calls_and_linger_merges_batches(
    redis_url: str, key_prefix: str
) -> None:
    """``submit`` (the cluster store's hand-over of held calls) queues behind what was
    issued before it and ahead of what comes after; with ``linger`` the callers a batch
    woke add their next commands to the following batch instead of a batch of their own."""
    client = redis.asyncio.Redis.from_url(redis_url)
    key = f"{key_prefix}:submit"
    try:
        pipe = AutoPipeline(client, 5.0)
        loop = asyncio.get_running_loop()
        first = asyncio.create_task(pipe.execute("SET", key, "1"))
        await asyncio.sleep(0)  # in flight, alone
        submitted = pipe.submit(("SET", key, "2"), loop.time() + 5.0)
        later = asyncio.create_task(pipe.execute("GET", key))
        assert await first is True and await submitted is True
        assert await later == b"2"

        plain, lingering = AutoPipeline(client, 5.0), AutoPipeline(client, 5.0, linger=True)

        async def worker(p: AutoPipeline, n: int) -> None:
            for i in range(20):
                await p.execute("SET", f"{key}:{n}", i)

        for p in (plain, lingering):
            await asyncio.gather(*(worker(p, n) for n in range(16)))
            assert p.commands == 320
        assert lingering.batches < plain.batches * 0.8, (lingering.batches, plain.batches)
    finally:
        await client.delete(key, *(f"{key}:{n}" for n in range(16)))
        await client.aclose()


async def test_close_fails_every_queued_call_at_once() -> None:
    """A server that never answers: ``close`` fails the queued and in-flight batched calls
    with the error given, at once, and stops the watchdog."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(port=port)
    try:
        pipe = AutoPipeline(client, 30.0)
        lone = asyncio.create_task(pipe.execute("GET", "a"))
        await asyncio.sleep(0.05)
        batched = [asyncio.create_task(pipe.execute("GET", f"k{i}")) for i in range(5)]
        await asyncio.sleep(0.05)
        pipe.close(redis.ConnectionError("closed"))
        for task in batched:
            with pytest.raises(redis.ConnectionError, match="closed"):
                await asyncio.wait_for(task, 1)
        assert pipe._timer is None
        lone.cancel()  # a lone call is its caller's: closing the client ends it
        with pytest.raises(asyncio.CancelledError):
            await lone
        assert pipe.idle
    finally:
        await client.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
