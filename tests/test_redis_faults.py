"""Redis faults: a restart, a cut connection, a frozen server (each on a redis-server of our own).

What the caller may rely on:

* after a restart or a reset connection, a command that is safe to repeat reconnects and
  is retried once, transparently; a command that is not safe to repeat is never retried;
* every call fails within ``redis_socket_timeout`` of the moment it was issued, however
  many callers queue behind a round trip that hangs, retry included;
* a timeout says what timed out and after how long, never a bare class name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from faults import RedisProcess, ReplyDroppingProxy
from redis import exceptions as redis_errors

from attune.errors import ShortTermUnavailableError
from attune.memory import MemoryConfig
from attune.memory.short_term.autopipeline import AutoPipeline, is_idempotent
from attune.memory.short_term.redis_store import RedisShortTermMemory

TTL_MS = 60_000
#: Slack on top of a timeout for a loaded machine (2 cores shared by several test runs).
SLACK = 0.7


def store_on(url: str, tmp_path: Path, timeout: float = 2.0) -> RedisShortTermMemory:
    config = MemoryConfig(redis_url=url, storage_dir=tmp_path, redis_socket_timeout=timeout)
    return RedisShortTermMemory(config)


def command_calls(server: RedisProcess, command: str) -> int:
    """How many times the server ran ``command`` since it started (INFO commandstats)."""
    client = server.client()
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    entry = stats.get(f"cmdstat_{command.lower()}")
    return int(entry["calls"]) if entry else 0


async def fill_pool(store: RedisShortTermMemory) -> None:
    """Several connections in the pool (concurrent transactions), all idle afterwards."""
    await asyncio.gather(*(store.list_staged(0) for _ in range(4)), store.stash("a", "k", b"v", 1))


# -- item 8: an idle client's first call after a restart -----------------------------------


async def test_the_first_call_after_a_restart_succeeds(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    store = store_on(own_redis.url(), tmp_path)
    steps: dict[str, Callable[[], Awaitable[Any]]] = {
        "retrieve": lambda: store.retrieve("a", "k"),
        "stash": lambda: store.stash("a", "k", b"again", TTL_MS),
        "ttl": lambda: store.ttl_ms("a", "k"),
        "forget": lambda: store.forget("a", "k"),
        "health": store.health,
    }
    try:
        for _round in range(5):
            for name, step in steps.items():
                await fill_pool(store)
                await store.stash("a", "k", b"v", TTL_MS)
                assert await store.retrieve("a", "k") == b"v"
                own_redis.restart()  # every pooled connection is now dead
                result = await step()  # no error: reconnected and retried once
                if name == "health":
                    assert result["available"] is True, result
                if name == "stash":
                    assert await store.retrieve("a", "k") == b"again"
                if name in ("retrieve", "ttl"):
                    assert result is None  # the restarted server has no data
    finally:
        await store.aclose()


async def test_an_idle_client_survives_a_restart_while_its_loop_runs(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    """The loop sees the old connections close (as an idle service would): still no error."""
    store = store_on(own_redis.url(), tmp_path)
    try:
        for _round in range(5):
            await fill_pool(store)
            await store.stash("a", "k", b"v", TTL_MS)
            await asyncio.to_thread(own_redis.restart)
            await asyncio.sleep(0.2)  # idle: the closed connections are noticed meanwhile
            assert await store.retrieve("a", "k") is None
    finally:
        await store.aclose()


async def test_a_step_that_is_not_safe_to_repeat_is_not_retried(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    store = store_on(own_redis.url(), tmp_path)
    try:
        await store.stash("a", "k", b"v", TTL_MS)
        own_redis.restart()
        # SET NX (a claim) and INCR change their reply when repeated: never retried.
        # _call/_run are the store's command paths whose retry policy is the subject.
        with pytest.raises(ShortTermUnavailableError):
            await store._call("SET", store.keys.stash("a", "claim"), b"me", "NX", "PX", TTL_MS)
        await store.retrieve("a", "k")  # a live connection again, for the next restart
        own_redis.restart()
        with pytest.raises(ShortTermUnavailableError):
            await store._call("INCR", store.keys.stash("a", "counter"))
        assert command_calls(own_redis, "incr") == 0

        # A transaction runs once unless it says it is safe to repeat.
        await store.retrieve("a", "k")
        own_redis.restart()
        runs = 0

        async def op(r: Any) -> int:
            nonlocal runs
            runs += 1
            return int(await r.execute_command("INCR", store.keys.stash("a", "counter")))

        with pytest.raises(ShortTermUnavailableError):
            await store._run(op)
        assert runs == 1
        assert command_calls(own_redis, "incr") == 0  # it never reached the new server

        await store.retrieve("a", "k")
        own_redis.restart()
        runs = 0
        assert await store._run(op, idempotent=True) == 1  # opted in: retried once
        assert runs == 2
        assert command_calls(own_redis, "incr") == 1
    finally:
        await store.aclose()


def test_which_commands_are_safe_to_repeat() -> None:
    assert is_idempotent(("GET", "k"))
    assert is_idempotent((b"get", "k"))
    assert is_idempotent(("SET", "k", b"v", "PX", 1000))
    assert is_idempotent(("SET", "k", b"v"))
    assert is_idempotent(("PTTL", "k")) and is_idempotent(("DEL", "k"))
    assert is_idempotent(("MGET", "a", "b")) and is_idempotent(("ZRANGE", "z", 0, -1))
    assert is_idempotent(("PING",))
    assert not is_idempotent(("SET", "k", b"v", "NX", "PX", 1000))
    assert not is_idempotent(("SET", "k", b"v", "GET"))
    assert not is_idempotent(("SET", "k", b"v", "IFEQ", b"old"))
    assert not is_idempotent(("INCR", "k"))
    assert not is_idempotent(("GETDEL", "k"))
    assert not is_idempotent(("LPUSH", "k", b"v"))
    assert not is_idempotent(())


class _FailingOnce:
    """A client double: the first round trip (lone or pipelined) fails with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.sent: list[tuple[Any, ...]] = []
        self.failures = 1
        self.connection_pool = self
        self.disconnects = 0

    async def disconnect(self, inuse_connections: bool = True) -> None:
        self.disconnects += 1

    async def _round_trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        fail = self.failures > 0
        self.failures -= fail
        await asyncio.sleep(0.01)
        self.sent += commands
        if fail:
            raise self.error
        return [f"reply to {c[0]} {c[1]}" for c in commands]

    async def execute_command(self, *args: Any) -> Any:
        return (await self._round_trip([args]))[0]

    def pipeline(self, transaction: bool = False) -> _FailingOnce._Pipe:
        return _FailingOnce._Pipe(self)

    class _Pipe:
        def __init__(self, client: _FailingOnce) -> None:
            self.client = client
            self.stack: list[tuple[Any, ...]] = []

        def execute_command(self, *args: Any) -> None:
            self.stack.append(args)

        async def execute(self, raise_on_error: bool = True) -> list[Any]:
            return await self.client._round_trip(self.stack)


async def test_a_failed_batch_retries_only_what_is_safe_to_repeat() -> None:
    client = _FailingOnce(redis_errors.ConnectionError("Connection closed by server."))
    pipe = AutoPipeline(client, 5.0)  # type: ignore[arg-type]
    client.failures = 0
    first = asyncio.create_task(pipe.execute("GET", "warm"))  # goes out alone
    await asyncio.sleep(0)
    client.failures = 1  # ...and the batch queued behind it fails
    queued = [
        asyncio.create_task(pipe.execute("GET", "a")),
        asyncio.create_task(pipe.execute("INCR", "n")),
        asyncio.create_task(pipe.execute("SET", "b", b"v", "PX", 100)),
        asyncio.create_task(pipe.execute("SET", "c", b"v", "NX")),
    ]
    assert await first == "reply to GET warm"
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert results[0] == "reply to GET a"
    assert isinstance(results[1], redis_errors.ConnectionError)
    assert results[2] == "reply to SET b"
    assert isinstance(results[3], redis_errors.ConnectionError)
    # Sent twice: GET a and SET b (retried once, in their order); INCR and SET NX once.
    assert [c[:2] for c in client.sent[1:]] == [
        ("GET", "a"),
        ("INCR", "n"),
        ("SET", "b"),
        ("SET", "c"),
        ("GET", "a"),
        ("SET", "b"),
    ]
    assert client.disconnects == 1  # idle pooled connections dropped before the retry


async def test_a_refused_command_or_a_second_failure_is_not_retried() -> None:
    client = _FailingOnce(redis_errors.ResponseError("WRONGTYPE"))
    pipe = AutoPipeline(client, 5.0)  # type: ignore[arg-type]
    with pytest.raises(redis_errors.ResponseError):
        await pipe.execute("GET", "k")
    assert len(client.sent) == 1

    client = _FailingOnce(redis_errors.ConnectionError("Connection reset by peer"))
    client.failures = 2
    pipe = AutoPipeline(client, 5.0)  # type: ignore[arg-type]
    with pytest.raises(redis_errors.ConnectionError):
        await pipe.execute("GET", "k")
    assert len(client.sent) == 2  # retried once, not more


# -- item 8 (d): a cut connection ------------------------------------------------------------


async def test_a_cut_connection_reconnects_for_commands_safe_to_repeat(
    reply_proxy: ReplyDroppingProxy, tmp_path: Path
) -> None:
    store = store_on(reply_proxy.url(), tmp_path)
    steps: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.retrieve("a", "k"),
        lambda: store.stash("a", "k", b"v2", TTL_MS),
        lambda: store.ttl_ms("a", "k"),
        lambda: store.forget("a", "k"),
    ]
    try:
        for step in steps * 2:
            await fill_pool(store)
            await store.stash("a", "k", b"v", TTL_MS)
            reply_proxy.cut()  # returns once the proxy closed every connection
            await step()
        # concurrent callers on a cut connection: the whole batch comes back
        await store.stash("a", "k", b"v", TTL_MS)
        reply_proxy.cut()
        got = await asyncio.gather(*(store.retrieve("a", "k") for _ in range(20)))
        assert got == [b"v"] * 20
    finally:
        await store.aclose()


async def test_a_retry_stays_inside_the_callers_bound(
    reply_proxy: ReplyDroppingProxy, tmp_path: Path
) -> None:
    """A reset late in the bound, then a server that does not answer: still one bound."""
    store = store_on(reply_proxy.url(), tmp_path, timeout=1.0)
    try:
        await store.stash("a", "k", b"v", TTL_MS)
        reply_proxy.drop_replies = True
        start = time.monotonic()
        call = asyncio.create_task(store.retrieve("a", "k"))
        await asyncio.sleep(0.6)
        reply_proxy.cut()  # ConnectionError: reconnect, retry; the reply is dropped again
        with pytest.raises(ShortTermUnavailableError, match="did not answer within"):
            await call
        assert time.monotonic() - start < 1.0 + SLACK
    finally:
        reply_proxy.drop_replies = False
        await store.aclose()


# -- item 9: every call is bounded from the moment it is issued -------------------------------


async def test_callers_queued_behind_a_hung_round_trip_fail_at_their_own_deadline(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    timeout = 1.0
    store = store_on(own_redis.url(), tmp_path, timeout=timeout)
    elapsed: list[float] = []
    errors: list[BaseException] = []

    async def timed_retrieve(delay: float) -> None:
        await asyncio.sleep(delay)
        start = time.monotonic()
        try:
            await store.retrieve("a", "k")
        except ShortTermUnavailableError as exc:
            errors.append(exc)
        elapsed.append(time.monotonic() - start)

    try:
        await store.stash("a", "k", b"v", TTL_MS)
        own_redis.freeze()
        # Staggered over 1.5 s: some join while the first round trip is in flight, some
        # while the first batch is.
        await asyncio.wait_for(
            asyncio.gather(*(timed_retrieve(i * 0.075) for i in range(20))), timeout=30
        )
        assert len(errors) == 20
        assert max(elapsed) < timeout + SLACK, sorted(elapsed)
        assert min(elapsed) > timeout * 0.9, sorted(elapsed)  # nobody gave up early
        assert all("did not answer within 1.0 s" in str(e) for e in errors)
    finally:
        own_redis.thaw()
        await store.aclose()


async def test_after_a_hang_the_next_calls_work(own_redis: RedisProcess, tmp_path: Path) -> None:
    store = store_on(own_redis.url(), tmp_path, timeout=0.5)
    try:
        await store.stash("a", "k", b"v", TTL_MS)
        own_redis.freeze()
        results = await asyncio.gather(
            *(store.retrieve("a", "k") for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, ShortTermUnavailableError) for r in results)
        own_redis.thaw()
        assert await asyncio.gather(*(store.retrieve("a", "k") for _ in range(10))) == [b"v"] * 10
    finally:
        if own_redis.frozen:
            own_redis.thaw()
        await store.aclose()


# -- item 10b: a timeout says what timed out and after how long -------------------------------


async def test_health_of_a_hung_server_names_the_timeout(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    store = store_on(own_redis.url(), tmp_path, timeout=1.0)
    try:
        await store.stash("a", "k", b"v", TTL_MS)
        own_redis.freeze()
        start = time.monotonic()
        report = await store.health()
        assert time.monotonic() - start < 1.0 + SLACK
        assert report["available"] is False
        error = report["error"]
        assert f"Redis at redis://127.0.0.1:{own_redis.port}/0 did not answer" in error
        assert "within 1.0 s (redis_socket_timeout)" in error
        assert "TimeoutError" not in error

        # the same for a normal call and a transaction
        for call in (store.retrieve("a", "k"), store.list_staged(0)):
            with pytest.raises(ShortTermUnavailableError) as info:
                await call
            assert "did not answer within 1.0 s (redis_socket_timeout)" in str(info.value)
            assert "TimeoutError" not in str(info.value)
    finally:
        own_redis.thaw()
        await store.aclose()


def test_no_error_renders_as_a_bare_class_name(tmp_path: Path) -> None:
    store = store_on("redis://127.0.0.1:6399/0", tmp_path, timeout=2.5)
    # The translation itself is the unit (raising each error for real needs its fault).
    timeout = str(store._translate(TimeoutError(), "GET"))
    assert "did not answer within 2.5 s (redis_socket_timeout) to a GET command" in timeout
    assert "TimeoutError" not in timeout
    connecting = redis_errors.TimeoutError("Timeout connecting to server")
    connect = str(store._translate(connecting, "GET"))
    assert "could not connect to Redis at redis://127.0.0.1:6399/0 within 2.0 s" in connect
    assert "(redis_connect_timeout)" in connect
    reset = str(store._translate(ConnectionResetError(), "GET"))
    assert "(ConnectionResetError)" in reset
    assert "ConnectionResetError: ConnectionResetError" not in reset


# -- a refused command inside a transaction ------------------------------------------------


async def test_an_error_inside_a_transaction_never_quotes_the_data(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    """redis-py notes an error inside a pipeline as "Command # N (<the command and its
    arguments>) of pipeline caused error: ...": with a short key prefix the arguments
    reached a staged entry's content, and the error (and the log line made of it) quoted
    them. The error keeps Redis's reason and drops the command's arguments."""
    from attune.errors import ShortTermCommandError
    from attune.memory import AsyncUnifiedMemory

    config = MemoryConfig(
        redis_url=own_redis.url(), storage_dir=tmp_path, key_prefix="a", environment="development"
    )
    async with AsyncUnifiedMemory("scout", config) as memory:
        client = own_redis.client()
        try:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")  # every write now refused: OOM
            for call in (
                lambda: memory.stage_pattern({"content": "Zanzibar retry policy"}, "note"),
                lambda: memory.stash("k", {"plan": "Zanzibar retry policy"}),
            ):
                with pytest.raises(ShortTermCommandError) as caught:
                    await call()
                message = str(caught.value)
                assert "maxmemory" in message  # Redis's own reason is kept
                assert "Zanzibar" not in message and "{staging}" not in message
        finally:
            client.config_set("maxmemory", "0")
            client.close()
