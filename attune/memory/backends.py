"""Which backend serves each tier: chosen from the configuration, in this one place.

The core asks for "the short-term store of this configuration" and "the long-term store
of this configuration" and never imports a backend itself. A new backend (PostgreSQL,
Redis Cluster) is a module implementing the tier's protocol plus one entry in a table
below, and the rule in ``*_backend_name`` that selects it.

Backends are imported only when chosen, so an optional backend's driver is needed only
by the deployments that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from attune.errors import ConfigurationError
from attune.memory.config import Environment, MemoryConfig
from attune.memory.long_term.protocol import LongTermStore
from attune.memory.short_term.cluster_url import is_cluster_url
from attune.memory.short_term.protocol import ShortTermStore

T = TypeVar("T")


def _redis(config: MemoryConfig) -> ShortTermStore:
    """Redis through redis.asyncio; also the in-process stand-in (same client code)."""
    from attune.memory.short_term.redis_store import RedisShortTermMemory

    return RedisShortTermMemory(config)


def _redis_cluster(config: MemoryConfig) -> ShortTermStore:
    """Redis Cluster (``redis+cluster://`` / ``rediss+cluster://``) through RedisCluster."""
    from attune.memory.short_term.cluster import ClusterShortTermMemory

    return ClusterShortTermMemory(config)


def _sqlite(config: MemoryConfig) -> LongTermStore:
    """One SQLite file, ``<storage_dir>/patterns.db``."""
    from attune.memory.long_term.sqlite_store import SQLiteLongTermStore

    return SQLiteLongTermStore(config.ensure_storage_dir())


def _postgres(config: MemoryConfig) -> LongTermStore:
    """A PostgreSQL database, ``database_url`` (``ATTUNE_DATABASE_URL``), over asyncpg."""
    assert config.database_url is not None
    try:
        from attune.memory.long_term.postgres_store import PostgresLongTermStore
    except ImportError:
        raise ConfigurationError(
            "ATTUNE_DATABASE_URL selects the PostgreSQL long-term store, which needs asyncpg: "
            "pip install 'attune[postgres]'"
        ) from None
    return PostgresLongTermStore(config.database_url)


#: backend name -> factory. ``redis`` serves both a real Redis and the stand-in ("mock").
SHORT_TERM: dict[str, Callable[[MemoryConfig], ShortTermStore]] = {
    "redis": _redis,
    "mock": _redis,
    "redis-cluster": _redis_cluster,
}
LONG_TERM: dict[str, Callable[[MemoryConfig], LongTermStore]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


def short_term_backend_name(config: MemoryConfig) -> str:
    """The short-term backend ``config`` selects (raises ConfigurationError if refused):
    ``redis-cluster`` for a ``redis+cluster://`` URL."""
    name = config.short_term_backend
    if name == "redis" and is_cluster_url(config.redis_url):
        return "redis-cluster"
    return name


def long_term_backend_name(config: MemoryConfig) -> str:
    """The long-term backend ``config`` selects: PostgreSQL when ``database_url`` is set,
    else SQLite, the embedded default."""
    return config.long_term_backend


def open_short_term(config: MemoryConfig) -> ShortTermStore:
    """A new short-term store for ``config`` (it connects lazily, on first use)."""
    return _pick(SHORT_TERM, short_term_backend_name(config), "short-term")(config)


def check_short_term(store: ShortTermStore, config: MemoryConfig) -> None:
    """Refuse a short-term store passed in (shared) that ``config`` would not have chosen:
    the in-process stand-in outside development (a shared store brings its own config)."""
    if store.backend == "fakeredis" and config.environment is not Environment.DEVELOPMENT:
        env = config.environment.value
        raise ConfigurationError(
            f"the in-process Redis stand-in is refused in {env}: the short-term store "
            "passed in is the development stand-in; pass one connected to a real Redis "
            "(REDIS_URL)"
        )


def open_long_term(config: MemoryConfig) -> LongTermStore:
    """A new long-term store for ``config`` (it opens lazily, on first use)."""
    return _pick(LONG_TERM, long_term_backend_name(config), "long-term")(config)


def _pick(
    table: Mapping[str, Callable[[MemoryConfig], T]], name: str, tier: str
) -> Callable[[MemoryConfig], T]:
    try:
        return table[name]
    except KeyError:
        raise ConfigurationError(
            f"no {tier} backend named {name!r}; known: {', '.join(sorted(table))}"
        ) from None
