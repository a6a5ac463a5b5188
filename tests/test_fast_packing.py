"""Commands packed by hiredis: the same bytes as redis-py, on every real-Redis connection."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.short_term import fast_packing
from attune.memory.short_term.fast_packing import packable, use_fast_packing

pytestmark = pytest.mark.skipif(fast_packing.hiredis is None, reason="hiredis not installed")

_plain = Connection()
# The internal mixin is the unit under test (applied by use_fast_packing, not exported).
_fast = fast_packing._HiredisPacking  # the mixin, bound to a connection class below


def _fast_connection() -> Any:
    cls = type("FastConnection", (_fast, Connection), {})
    return cls()


_args = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
_names = st.sampled_from(["SET", "GET", b"PEXPIRE", "CONFIG GET", b"CLIENT SETNAME", "ZADD"])


@settings(max_examples=400, deadline=None)
@given(name=_names, rest=st.lists(_args, max_size=6))
def test_the_bytes_on_the_wire_are_redis_pys(name: Any, rest: list[Any]) -> None:
    args = (name, *rest)
    try:
        expected = b"".join(_plain.pack_command(*args))
    except Exception as exc:  # redis-py refuses it (a bool): so must we
        with pytest.raises(type(exc)):
            _fast_connection().pack_command(*args)
        return
    assert b"".join(_fast_connection().pack_command(*args)) == expected


def test_only_plain_arguments_take_the_fast_path() -> None:
    assert packable(("SET", "k", b"v", "PX", 60_000))
    assert packable((b"GET", "é"))
    assert not packable(("CONFIG GET", "maxmemory"))  # redis-py splits the name
    assert not packable(("SET", "k", True))
    assert not packable(("SET", "k", 1.5))
    assert not packable(("SET", "k", 2**64))
    assert not packable(("SET", "k", memoryview(b"v")))
    assert not packable(())


@pytest.mark.parametrize("base", [Connection, SSLConnection, UnixDomainSocketConnection])
def test_each_connection_kind_keeps_its_class(base: type) -> None:
    from redis.asyncio import ConnectionPool, Redis

    client = Redis(connection_pool=ConnectionPool(connection_class=base))
    use_fast_packing(client)
    use_fast_packing(client)  # idempotent
    cls = client.connection_pool.connection_class
    assert issubclass(cls, base) and issubclass(cls, fast_packing._HiredisPacking)
    assert cls.__mro__[2] is base  # mixin, then exactly the original class


async def test_a_real_redis_client_packs_with_hiredis(redis_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("packer", redis_config) as mem:
        await mem.stash("k", {"text": "héllo", "n": 2**40})
        assert await mem.retrieve("k") == {"text": "héllo", "n": 2**40}
        # Private on purpose: which connection class the store's client uses is internal.
        client = mem.short_term._clients.peek().redis  # type: ignore[attr-defined]
        assert issubclass(client.connection_pool.connection_class, fast_packing._HiredisPacking)
