"""The Redis short-term store, over ``redis.asyncio``.

The same code drives a real Redis and the in-process development stand-in
(``fakeredis``, which speaks the redis-py API): only the client factory
differs. One client per event loop (see :mod:`attune._loop_local`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from attune._loop_local import LoopLocal
from attune.errors import (
    AttuneError,
    ShortTermCommandError,
    ShortTermUnavailableError,
)
from attune.memory.config import MemoryConfig
from attune.memory.keys import KeySpace
from attune.memory.service_urls import redact_url, user_without_password
from attune.memory.short_term import connect
from attune.memory.short_term.autopipeline import AutoPipeline, is_reconnectable, reconnect
from attune.memory.short_term.fast_packing import use_fast_packing
from attune.memory.short_term.protocol import StagedClaim, StagedEntry
from attune.memory.short_term.replies import describe as _describe
from attune.memory.short_term.replies import first_line as _first_line
from attune.memory.short_term.replies import raw as _raw
from attune.memory.short_term.replies import staged_ids as _staged_ids
from attune.memory.short_term.sentinel import (
    Sentinel,
    close_sentinel,
    master_client,
    master_report,
    sentinel_target,
    topology_message,
)

T = TypeVar("T")

log = logging.getLogger("attune.short_term")


class RedisShortTermMemory:
    """Short-term memory on Redis: TTL'd working data per agent, and the staging area.

    Create it with :func:`attune.get_redis_memory` (or pass a config); share one
    instance between agents with ``EmpathyOS(short_term_memory=...)``.
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        url: str | None = None,
        mock: bool | None = None,
    ) -> None:
        self.config = config = connect.short_term_config(config, url=url, mock=mock)
        kind = config.short_term_backend  # raises ConfigurationError for a refused choice
        self.backend = "fakeredis" if kind == "mock" else "redis"
        self.url = None if kind == "mock" else config.redis_url
        self.keys = KeySpace(config.key_prefix)
        #: The parsed ``redis+sentinel://`` URL, or None for any other.
        self._sentinel = None if self.url is None else sentinel_target(self.url)
        if self.url is None:
            connect.say_the_stand_in_is_private(config)
        elif self._sentinel is None:
            connect.check_url(self.url)
        self._clients: LoopLocal[_LoopClient] = LoopLocal(self._connect, _close_client)

    # -- connection ----------------------------------------------------------------------

    async def _connect(self) -> _LoopClient:
        sentinel = None
        if self._sentinel is not None:
            client, sentinel = master_client(self._sentinel, self.config.redis_connect_timeout)
            use_fast_packing(client)
        else:
            client = self._new_client()
        return _LoopClient(client, AutoPipeline(client, self.config.redis_socket_timeout), sentinel)

    def _new_client(self) -> aioredis.Redis:
        if self.backend == "fakeredis":
            return connect.stand_in_client()
        assert self.url is not None
        return connect.redis_client(self.url, self.config.redis_connect_timeout)

    @property
    def safe_url(self) -> str:
        return "in-process" if self.url is None else redact_url(self.url)

    async def _run(
        self,
        op: Callable[[aioredis.Redis], Awaitable[T]],
        *,
        idempotent: bool = False,
        command: str = "transaction",
    ) -> T:
        """Run ``op`` on this loop's client (multi-key and transactional operations).

        The whole of it, a retry included, is bounded by ``redis_socket_timeout``. Pass
        ``idempotent=True`` only if running ``op`` twice leaves Redis, and its result, as
        running it once: then a connection-level failure (a restart, a reset) drops the
        idle pooled connections and runs ``op`` once more, on a fresh connection.
        """
        conn = await self._clients.get()
        try:
            async with asyncio.timeout(self.config.redis_socket_timeout):
                try:
                    return await op(conn.redis)
                except Exception as exc:
                    if not (idempotent and is_reconnectable(exc)):
                        raise
                await reconnect(conn.redis)
                return await op(conn.redis)
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc, command) from None

    async def _call(self, *args: Any) -> Any:
        """One single-key command, coalesced with concurrent ones (see :mod:`.autopipeline`).

        A command safe to repeat is retried once after a connection-level failure; every
        call is bounded by ``redis_socket_timeout`` from now, retry included.
        """
        conn = await self._clients.get()
        try:
            return await conn.pipeline.execute(*args)
        except (redis_errors.RedisError, OSError) as exc:
            raise self._translate(exc, str(args[0])) from None

    def _translate(self, exc: BaseException, command: str) -> AttuneError:
        """A redis-py error as ours (what failed, where, what to do; never the data), also
        logged once on ``attune.short_term``."""
        error = self._translated(exc, command)
        log.warning("%s", error)
        return error

    def _translated(self, exc: BaseException, command: str) -> AttuneError:
        line, what = _first_line(exc), _describe(exc)
        topology = topology_message(exc, self.safe_url, self._sentinel)
        if topology is not None:
            return ShortTermUnavailableError(topology)
        if isinstance(exc, redis_errors.AuthenticationError):
            return ShortTermUnavailableError(
                f"Redis at {self.safe_url} refused the credentials ({what}); "
                "check the user and password in REDIS_URL"
                + (" (and its sentinel_password for the sentinels)" if self._sentinel else "")
                + (
                    ". Its user part has no ':', so it was sent as a user name: for a "
                    "password alone, write it after a ':' (redis://:PASSWORD@host)"
                    if self.url is not None and user_without_password(self.url)
                    else ""
                )
            )
        if isinstance(exc, redis_errors.NoPermissionError):  # NOPERM: the ACL user's rules
            return ShortTermCommandError(
                f"Redis at {self.safe_url} refused a {command} command ({what}); nothing was "
                "changed by it. The ACL user in REDIS_URL may not run it or touch attune's "
                f"keys: grant it the key pattern ~{self.keys.prefix}:* and the commands "
                "attune uses (ACL SETUSER ... +@read +@write +@keyspace +@transaction "
                "+@scripting +ping)"
            )
        if isinstance(exc, redis_errors.ResponseError):
            advice = (
                "Another client may have written a different type under attune's key "
                f"prefix {self.keys.prefix!r}: give attune its own prefix"
                if "WRONGTYPE" in str(exc)
                else "Check the server's settings (maxmemory, ACL rules, the database "
                "number and options in REDIS_URL)"
            )
            return ShortTermCommandError(
                f"Redis at {self.safe_url} refused a {command} command ({what}); nothing was "
                f"changed by it. {advice}"
            )
        if isinstance(exc, redis_errors.TimeoutError) and "connect" in line.lower():
            return ShortTermUnavailableError(
                f"short-term memory unavailable: could not connect to Redis at {self.safe_url} "
                f"within {float(self.config.redis_connect_timeout)!r} s "
                "(redis_connect_timeout). Check that the server is running and reachable and "
                "that REDIS_URL is right; long-term memory keeps working."
            )
        if isinstance(exc, (TimeoutError, redis_errors.TimeoutError)):
            return ShortTermUnavailableError(
                f"short-term memory unavailable: Redis at {self.safe_url} did not answer "
                f"within {float(self.config.redis_socket_timeout)!r} s (redis_socket_timeout) "
                f"to a {command} command; a write may or may not have been applied. Check "
                "that the server is not overloaded or stopped, or raise redis_socket_timeout; "
                "long-term memory keeps working."
            )
        return ShortTermUnavailableError(
            f"short-term memory unavailable: cannot reach Redis at {self.safe_url} "
            f"({what}). Check that the server is running and REDIS_URL is right; "
            "long-term memory keeps working."
        )

    # -- working data ----------------------------------------------------------------------

    async def stash(self, agent_id: str, key: str, payload: bytes, ttl_ms: int) -> None:
        name = self.keys.stash(agent_id, key)
        await self._call("SET", name, payload, "PX", ttl_ms)

    async def retrieve(self, agent_id: str, key: str) -> bytes | None:
        return _raw(await self._call("GET", self.keys.stash(agent_id, key)))

    async def forget(self, agent_id: str, key: str) -> bool:
        name = self.keys.stash(agent_id, key)
        removed: int = await self._call("DEL", name)
        return removed > 0

    async def ttl_ms(self, agent_id: str, key: str) -> int | None:
        name = self.keys.stash(agent_id, key)
        left: int = await self._call("PTTL", name)
        return None if left == -2 else left

    async def erase_agent(self, agent_id: str) -> int:
        pattern = self.keys.agent_pattern(agent_id)
        erased = 0
        cursor: int = 0
        while True:
            # One bounded round per page (a large keyspace takes many), each safe to repeat.
            async def page(r: aioredis.Redis, at: int = cursor) -> tuple[int, int]:
                following, names = await r.scan(at, match=pattern, count=_SCAN_COUNT)
                return int(following), (await r.unlink(*names) if names else 0)

            cursor, removed = await self._run(page, idempotent=True, command="SCAN")
            erased += removed
            if cursor == 0:
                return erased

    # -- staging area ----------------------------------------------------------------------

    async def stage(self, staged_id: str, payload: bytes, expires_at_ms: int) -> None:
        item, index = self.keys.staged_pattern(staged_id), self.keys.staging_index()

        async def op(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(item, payload, pxat=expires_at_ms)
                pipe.zadd(index, {staged_id: expires_at_ms})
                await pipe.execute()

        # The same SET and ZADD twice leave the same entry: safe to repeat after a reconnect.
        await self._run(op, idempotent=True)

    async def list_staged(self, now_ms: int) -> list[StagedEntry]:
        index = self.keys.staging_index()

        async def op(r: aioredis.Redis) -> list[StagedEntry]:
            async with r.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(index, "-inf", now_ms)
                pipe.zrange(index, 0, -1, withscores=True)
                _, members = await pipe.execute()
            ids = _staged_ids(members)
            if not ids:
                return []
            values = await r.mget([self.keys.staged_pattern(i) for i, _ in ids])
            return [
                StagedEntry(staged_id, raw, expires)
                for (staged_id, expires), v in zip(ids, values, strict=True)
                if (raw := _raw(v)) is not None
            ]

        # Dropping expired members and reading: safe to repeat after a reconnect.
        return await self._run(op, idempotent=True)

    async def get_staged(self, staged_id: str) -> bytes | None:
        name = self.keys.staged_pattern(staged_id)
        return _raw(await self._call("GET", name))

    async def claim_staged(self, staged_id: str, claim: str, lease_ms: int) -> StagedClaim:
        keys = self.keys
        name = keys.staging_claim(staged_id)

        async def op(r: aioredis.Redis) -> StagedClaim:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(name, claim, nx=True, px=lease_ms)
                pipe.get(name)
                pipe.get(keys.staged_pattern(staged_id))
                pipe.zscore(keys.staging_index(), staged_id)
                won, holder, payload, score = await pipe.execute(raise_on_error=False)
            for reply in (won, holder, score):
                if isinstance(reply, Exception):
                    raise reply
            expires = None if score is None else int(score)
            if isinstance(payload, redis_errors.ResponseError):  # the claim was still set
                return StagedClaim(bool(won), _raw(holder), None, expires, wrong_type=True)
            return StagedClaim(bool(won), _raw(holder), _raw(payload), expires)

        return await self._run(op)

    async def staged_claim(self, staged_id: str) -> bytes | None:
        return _raw(await self._call("GET", self.keys.staging_claim(staged_id)))

    async def release_staged_claim(self, staged_id: str, claim: str) -> bool:
        name = self.keys.staging_claim(staged_id)

        async def op(r: aioredis.Redis) -> bool:
            # Compare-and-delete with WATCH/MULTI (no Lua: the stand-in need not run it).
            async with r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(name)
                    if _raw(await pipe.get(name)) != claim.encode():
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(name)
                    await pipe.execute()
                except redis_errors.WatchError:
                    return False
            return True

        return await self._run(op)

    async def settle_staged(
        self, staged_id: str, fate: str, keep_until_ms: int, claim: str | None = None
    ) -> bool:
        keys = self.keys
        name = keys.staging_claim(staged_id)

        async def op(r: aioredis.Redis) -> bool:
            async with r.pipeline(transaction=True) as pipe:
                try:
                    if claim is not None:
                        await pipe.watch(name)
                        if _raw(await pipe.get(name)) != claim.encode():
                            return False
                        pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(keys.staged_pattern(staged_id))
                    pipe.zrem(keys.staging_index(), staged_id)
                    pipe.set(name, fate, pxat=keep_until_ms)
                    await pipe.execute()
                except redis_errors.WatchError:
                    return False
            return True

        return await self._run(op)

    # -- lifecycle -------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "backend": self.backend,
            "url": self.safe_url,
            # The stand-in lives in this process: other processes see none of its data.
            "shared_across_processes": self.url is not None,
        }
        try:
            start = time.perf_counter()
            await self._run(lambda r: r.ping(), idempotent=True, command="PING")
            latency_ms = round((time.perf_counter() - start) * 1000, 3)
            # A read of attune's own keys too: an ACL user allowed PING but not those
            # keys (or the commands) answers PING and refuses every call.
            index = self.keys.staging_index()
            await self._run(lambda r: r.exists(index), idempotent=True, command="EXISTS")
        except (ShortTermUnavailableError, ShortTermCommandError) as exc:
            report.update(available=False, error=str(exc))
        except Exception as exc:  # health never raises
            report.update(available=False, error=_describe(exc))
        else:
            report.update(available=True, latency_ms=latency_ms)  # of the PING
        if self._sentinel is not None:
            conn = await self._clients.get()
            assert conn.sentinel is not None
            report.update(
                await master_report(self._sentinel, conn.sentinel, self.config.redis_socket_timeout)
            )
        return report

    async def aclose(self) -> None:
        await self._clients.aclose()


#: Keys a SCAN round looks at (Redis's hint): larger rounds, fewer round trips.
_SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class _LoopClient:
    """The client of one event loop and the auto-pipeline in front of it."""

    redis: aioredis.Redis
    pipeline: AutoPipeline
    #: The sentinels' clients of a ``redis+sentinel://`` URL (closed with it).
    sentinel: Sentinel | None = None


async def _close_client(conn: _LoopClient) -> None:
    try:
        await conn.redis.aclose()
    finally:
        if conn.sentinel is not None:
            await close_sentinel(conn.sentinel)
