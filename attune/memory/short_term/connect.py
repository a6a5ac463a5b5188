"""What the Redis short-term store needs before its first command: its configuration
(with a caller's ``url`` / ``mock`` applied), a URL checked up front, and a client, for a
real Redis or for the in-process development stand-in (``fakeredis``, one server per
process that every agent shares)."""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from attune.errors import ConfigurationError
from attune.memory.config import MemoryConfig
from attune.memory.service_urls import redact_url
from attune.memory.short_term.cluster_url import is_cluster_url
from attune.memory.short_term.fast_packing import use_fast_packing

_fake_server_lock = threading.Lock()
_fake_server: Any = None

log = logging.getLogger("attune.short_term")


def shared_fake_server() -> Any:
    """The one in-process stand-in server of this process (agents share its data)."""
    global _fake_server
    with _fake_server_lock:
        if _fake_server is None:
            import fakeredis

            _fake_server = fakeredis.FakeServer()
        return _fake_server


def _new_stand_in_in_child() -> None:
    """(In a forked child) a stand-in of the child's own, empty, as documented (working
    data and staged patterns are per process). The inherited copy could not be used: a
    lock another thread of the parent held at the fork (inside a stand-in command) stays
    held in the child, whose first stand-in command then hung forever."""
    global _fake_server, _fake_server_lock
    _fake_server_lock = threading.Lock()
    _fake_server = None


os.register_at_fork(after_in_child=_new_stand_in_in_child)


def stand_in_client() -> aioredis.Redis:
    """A client of the process's in-process stand-in."""
    import fakeredis

    fake: aioredis.Redis = fakeredis.FakeAsyncRedis(server=shared_fake_server())
    return fake


def redis_client(url: str, connect_timeout: float) -> aioredis.Redis:
    """A client of the Redis at ``url`` (checked by :func:`check_url`)."""
    try:
        client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            # No per-read socket timeout: redis-py would arm a timer for every reply of
            # a pipeline. Each round trip is bounded as a whole instead (the store's _run,
            # AutoPipeline).
            socket_timeout=None,
            health_check_interval=30,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid REDIS_URL: {exc}") from None
    use_fast_packing(client)
    return client


def short_term_config(
    config: MemoryConfig | None, *, url: str | None = None, mock: bool | None = None
) -> MemoryConfig:
    """``config`` (else one from the environment) with ``url`` and ``mock`` applied."""
    overrides: dict[str, Any] = {}
    if url is not None:
        overrides["redis_url"] = url
    if mock is not None:
        overrides["redis_mock"] = mock
    if config is None:
        return MemoryConfig(**overrides)
    if overrides:
        config = config.model_copy(update=overrides)
        config = MemoryConfig(**config.model_dump())  # re-validate the overrides
    return config


_told_private = False


def say_the_stand_in_is_private(config: MemoryConfig) -> None:
    """Once per process: the in-process stand-in's working data and staged patterns are
    this process's alone, though the long-term tier (a file, a database) may be shared;
    a warning when that tier is a database other hosts use."""
    global _told_private
    if _told_private:
        return
    _told_private = True
    level = logging.WARNING if config.database_url is not None else logging.INFO
    log.log(
        level,
        "short-term memory is the in-process Redis stand-in: working data and staged "
        "patterns live in this process only, while long-term memory may be shared with "
        "other processes; set REDIS_URL to share them too",
    )


def check_url(url: str) -> None:
    """Refuse, at construction, a URL redis-py would only fail on at the first command (an
    unknown query option is a ``TypeError`` when a connection is made). Nothing connects."""
    if is_cluster_url(url):
        raise ConfigurationError(
            "a redis+cluster:// URL needs the Redis Cluster store, not RedisShortTermMemory: "
            "attune.get_redis_memory(url) or AsyncUnifiedMemory(config) choose it"
        )
    try:
        pool = aioredis.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError, redis_errors.RedisError) as exc:
        # (redis-py refuses some values with its own errors: ssl_cert_reqs=bogus is a
        # RedisError, protocol=9 a ConnectionError, neither of them a ValueError.)
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(exc))
        if unknown:
            # Named only if it looks like an option: a password pasted after '?' is not.
            name = unknown.group(1)
            shown = f" ({name})" if re.fullmatch(r"[a-z_]{1,40}", name) else ""
            reason = f"it has an option redis-py does not accept{shown}"
        else:
            reason = "an option has a value redis-py cannot use"
        raise ConfigurationError(
            f"invalid REDIS_URL {redact_url(url).split('?')[0]}: {reason}; use "
            "redis://[user:password@]host:port/db with only the options redis-py documents"
        ) from None
