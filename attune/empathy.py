"""The agent-level API: :class:`AsyncEmpathyOS` and its blocking face :class:`EmpathyOS`.

An EmpathyOS is one agent (``user_id``, ``access_tier``) with a unified memory
(``.memory``) and convenience methods for the common operations.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from attune._runner import run_sync
from attune.memory.config import MemoryConfig
from attune.memory.short_term.protocol import ShortTermStore
from attune.memory.short_term.redis_store import RedisShortTermMemory
from attune.memory.sync import UnifiedMemory, docs_from
from attune.memory.types import AccessTier, Classification
from attune.memory.unified import AsyncUnifiedMemory, shared_short_term

if TYPE_CHECKING:
    from attune.memory.unified import Sharer

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
    the in-process stand-in. Opening a connection is deferred to first use.
    """
    return RedisShortTermMemory(config, url=url)


@docs_from(AsyncUnifiedMemory)
class AsyncEmpathyOS:
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
    ) -> None:
        self.memory = AsyncUnifiedMemory(
            user_id,
            config,
            access_tier=access_tier,
            short_term=shared_short_term(short_term_memory, "short_term_memory"),
        )

    @property
    def user_id(self) -> str:
        return self.memory.user_id

    @property
    def access_tier(self) -> AccessTier:
        return self.memory.access_tier

    @property
    def short_term_memory(self) -> AsyncUnifiedMemory:
        """Deprecated direct access; it is the unified memory (``.memory``)."""
        warnings.warn(_DEPRECATED_SHORT_TERM, DeprecationWarning, stacklevel=2)
        return self.memory

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(user_id={self.user_id!r}, access_tier={self.access_tier.name})"
        )

    async def stash(self, key: str, value: Any, ttl_seconds: float | None = None) -> bool:
        return await self.memory.stash(key, value, ttl_seconds)

    async def retrieve(self, key: str, agent_id: str | None = None) -> Any:
        return await self.memory.retrieve(key, agent_id)

    async def persist_pattern(
        self,
        content: str,
        pattern_type: str,
        classification: Classification | str | None = None,
        auto_classify: bool = True,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self.memory.persist_pattern(
            content, pattern_type, classification, auto_classify, metadata
        )

    async def recall_pattern(self, pattern_id: str) -> dict[str, Any] | None:
        return await self.memory.recall_pattern(pattern_id)

    async def aclose(self) -> None:
        await self.memory.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@docs_from(AsyncEmpathyOS)
class EmpathyOS:
    """Blocking face of :class:`AsyncEmpathyOS`; same methods, same arguments.

    Usable from any thread: each thread runs the calls on an event loop of its own, whose
    connections are released when the thread ends; :meth:`close` releases the rest.
    """

    def __init__(
        self,
        user_id: str,
        *,
        access_tier: AccessTier | str = AccessTier.CONTRIBUTOR,
        config: MemoryConfig | None = None,
        short_term_memory: ShortTermStore | Sharer | None = None,
    ) -> None:
        self._core = AsyncEmpathyOS(
            user_id, access_tier=access_tier, config=config, short_term_memory=short_term_memory
        )
        self.memory = UnifiedMemory.wrap(self._core.memory)

    @property
    def async_os(self) -> AsyncEmpathyOS:
        return self._core

    @property
    def user_id(self) -> str:
        return self._core.user_id

    @property
    def access_tier(self) -> AccessTier:
        return self._core.access_tier

    @property
    def short_term_memory(self) -> UnifiedMemory:
        """Deprecated direct access; it is the unified memory (``.memory``)."""
        warnings.warn(_DEPRECATED_SHORT_TERM, DeprecationWarning, stacklevel=2)
        return self.memory

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncEmpathyOS", "EmpathyOS", 1)

    def stash(self, key: str, value: Any, ttl_seconds: float | None = None) -> bool:
        return run_sync(self._core.stash(key, value, ttl_seconds))

    def retrieve(self, key: str, agent_id: str | None = None) -> Any:
        return run_sync(self._core.retrieve(key, agent_id))

    def persist_pattern(
        self,
        content: str,
        pattern_type: str,
        classification: Classification | str | None = None,
        auto_classify: bool = True,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return run_sync(
            self._core.persist_pattern(
                content, pattern_type, classification, auto_classify, metadata
            )
        )

    def recall_pattern(self, pattern_id: str) -> dict[str, Any] | None:
        return run_sync(self._core.recall_pattern(pattern_id))

    def close(self) -> None:
        run_sync(self._core.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
