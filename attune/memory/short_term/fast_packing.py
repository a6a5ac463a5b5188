"""Commands packed into RESP by hiredis (C) instead of redis-py's Python packer.

``redis.asyncio`` packs every command argument by argument in Python: about 3 µs of a
stash's CPU, the largest single share once concurrent commands are coalesced into
pipelines. hiredis (installed with ``redis[hiredis]``) packs the same bytes in about
0.5 µs. Connections use it for the arguments attune sends (``str``, ``bytes``, 64-bit
``int``) and fall back to redis-py for anything else, so the bytes on the wire never
change (a differential test checks that).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

hiredis: Any
try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency; stay correct without
    hiredis = None

_INT64 = range(-(2**63), 2**63)


def packable(args: tuple[Any, ...]) -> bool:
    """Whether hiredis packs ``args`` exactly as redis-py does."""
    if not args:
        return False
    name = args[0]
    if isinstance(name, str):
        if " " in name:
            return False  # redis-py splits "CONFIG GET" into two arguments
    elif not isinstance(name, bytes) or b" " in name:
        return False
    for arg in args:
        kind = type(arg)
        if kind is str or kind is bytes:
            continue
        if kind is int and arg in _INT64:
            continue
        return False  # bool, float, memoryview, subclasses...: redis-py's encoder decides
    return True


class _HiredisPacking:
    """Mixed into a redis-py connection class ahead of it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if packable(args):
            return [hiredis.pack_command(args)]
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def use_fast_packing(client: Redis) -> None:
    """Make the client's pool create connections that pack with hiredis (when installed)."""
    if hiredis is None or not hasattr(hiredis, "pack_command"):
        return
    pool = client.connection_pool
    pool.connection_class = fast_connection_class(pool.connection_class)


def fast_connection_class(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` packing with hiredis (itself when hiredis is missing or it already does)."""
    if hiredis is None or not hasattr(hiredis, "pack_command"):
        return base
    if issubclass(base, _HiredisPacking):
        return base
    fast = _classes.get(base)
    if fast is None:
        fast = type(base.__name__, (_HiredisPacking, base), {"__module__": __name__})
        _classes[base] = fast
    return fast
