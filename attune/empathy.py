"""The agent-level API: :class:`AsyncEmpathyOS` and its blocking face :class:`EmpathyOS`.

An EmpathyOS is one agent (``user_id``, ``access_tier``) with a unified memory
(``.memory``) and convenience methods for the common operations: those are its
memory's coroutines (:func:`attune._facade.forwarded`), and the blocking face's
methods are their twins (:func:`attune._facade.blocking`) -- nothing is written twice.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from attune._facade import AsyncResource, BlockingFacade, Mirror, blocking, built_from, forwarded
from attune.memory import backends
from attune.memory.config import MemoryConfig
from attune.memory.sharing import shared_short_term
from attune.memory.short_term.connect import short_term_config
from attune.memory.short_term.protocol import ShortTermStore
from attune.memory.short_term.redis_store import RedisShortTermMemory
from attune.memory.sync import UnifiedMemory
from attune.memory.types import AccessTier
from attune.memory.unified import AsyncUnifiedMemory

if TYPE_CHECKING:
    from attune.memory.sharing import Sharer

_DEPRECATED_SHORT_TERM = (
    "empathy.short_term_memory is deprecated; use empathy.stash()/retrieve() "
    "or empathy.memory instead"
)


def get_redis_memory(
    url: str | None = None, *, config: MemoryConfig | None = None
) -> RedisShortTermMemory:
    """A short-term store to share between agents: ``EmpathyOS(short_term_memory=...)``.

    Configured from the environment (``REDIS_URL``, ``ATTUNE_ENV``, ...) unless
    ``url`` or ``config`` is given; in development without ``REDIS_URL`` it is
    the in-process stand-in, and a ``redis+cluster://`` URL gives the Redis Cluster
    store. Opening a connection is deferred to first use.
    """
    store = backends.open_short_term(short_term_config(config, url=url))
    assert isinstance(store, RedisShortTermMemory)  # Redis, the stand-in, or Redis Cluster
    return store


class AsyncEmpathyOS(AsyncResource):
    """One agent with two-tier memory; every operation is awaitable.

    ``short_term_memory`` shares one short-term store between agents: a store
    (:func:`get_redis_memory`), or another agent or memory object whose store to use
    (``short_term_memory=other.memory``). The agent that created a store closes it.
    """

    def __init__(
        self,
        user_id: str,
        *,
        access_tier: AccessTier | str = AccessTier.CONTRIBUTOR,
        config: MemoryConfig | None = None,
        short_term_memory: ShortTermStore | Sharer | None = None,
        namespace: str | None = None,
    ) -> None:
        self.memory = AsyncUnifiedMemory(
            user_id,
            config,
            access_tier=access_tier,
            short_term=shared_short_term(short_term_memory, "short_term_memory"),
            namespace=namespace,
        )

    user_id = Mirror[str]("memory")
    access_tier = Mirror[AccessTier]("memory")
    namespace = Mirror[str]("memory")

    @property
    def short_term_memory(self) -> AsyncUnifiedMemory:
        """Deprecated direct access; it is the unified memory (``.memory``)."""
        warnings.warn(_DEPRECATED_SHORT_TERM, DeprecationWarning, stacklevel=2)
        return self.memory

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(user_id={self.user_id!r}, access_tier={self.access_tier.name})"
        )

    stash = forwarded(AsyncUnifiedMemory.stash, to="memory")
    retrieve = forwarded(AsyncUnifiedMemory.retrieve, to="memory")
    persist_pattern = forwarded(AsyncUnifiedMemory.persist_pattern, to="memory")
    recall_pattern = forwarded(AsyncUnifiedMemory.recall_pattern, to="memory")
    search_patterns = forwarded(AsyncUnifiedMemory.search_patterns, to="memory")
    list_patterns = forwarded(AsyncUnifiedMemory.list_patterns, to="memory")
    count_patterns = forwarded(AsyncUnifiedMemory.count_patterns, to="memory")
    aclose = forwarded(AsyncUnifiedMemory.aclose, to="memory")


class EmpathyOS(BlockingFacade[AsyncEmpathyOS]):
    """One agent with two-tier memory, as :class:`AsyncEmpathyOS` but blocking: the same
    methods and arguments. Usable from any thread, like its ``.memory`` (a
    :class:`UnifiedMemory`); :meth:`close` releases what the threads leave open.
    """

    @built_from(AsyncEmpathyOS)
    def __init__(self, core: AsyncEmpathyOS) -> None:
        self._core = core
        self.memory = UnifiedMemory.wrap(core.memory)

    @property
    def async_os(self) -> AsyncEmpathyOS:
        return self._core

    user_id = Mirror[str]()
    access_tier = Mirror[AccessTier]()
    namespace = Mirror[str]()

    @property
    def short_term_memory(self) -> UnifiedMemory:
        """Deprecated direct access; it is the unified memory (``.memory``)."""
        warnings.warn(_DEPRECATED_SHORT_TERM, DeprecationWarning, stacklevel=2)
        return self.memory

    stash = blocking(AsyncEmpathyOS.stash)
    retrieve = blocking(AsyncEmpathyOS.retrieve)
    persist_pattern = blocking(AsyncEmpathyOS.persist_pattern)
    recall_pattern = blocking(AsyncEmpathyOS.recall_pattern)
    search_patterns = blocking(AsyncEmpathyOS.search_patterns)
    list_patterns = blocking(AsyncEmpathyOS.list_patterns)
    count_patterns = blocking(AsyncEmpathyOS.count_patterns)
    close = blocking(AsyncEmpathyOS.aclose)
