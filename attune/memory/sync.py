"""The blocking facade: :class:`UnifiedMemory`.

Each method runs the same-named coroutine of :class:`AsyncUnifiedMemory` to
completion through :func:`attune._runner.run_sync` -- no logic lives here.
It works from plain scripts, from several threads, and from code already
inside a running event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from attune._runner import run_sync
from attune.errors import ValidationError
from attune.memory.config import Environment, MemoryConfig
from attune.memory.long_term.protocol import LongTermStore
from attune.memory.security.pipeline import SecurityPipeline
from attune.memory.short_term.protocol import ShortTermStore
from attune.memory.types import AccessTier, Classification
from attune.memory.unified import AsyncUnifiedMemory

if TYPE_CHECKING:
    from attune.memory.unified import Sharer


class UnifiedMemory:
    """Blocking face of :class:`AsyncUnifiedMemory`; same methods, same arguments.

    Usable from any thread: each thread runs the calls on an event loop of its own, whose
    connections are released when the thread ends; :meth:`close` releases the rest.
    """

    def __init__(
        self,
        user_id: str,
        config: MemoryConfig | None = None,
        *,
        access_tier: AccessTier | str = AccessTier.CONTRIBUTOR,
        short_term: ShortTermStore | Sharer | None = None,
        long_term: LongTermStore | Sharer | None = None,
        pipeline: SecurityPipeline | None = None,
    ) -> None:
        self._core = AsyncUnifiedMemory(
            user_id,
            config,
            access_tier=access_tier,
            short_term=short_term,
            long_term=long_term,
            pipeline=pipeline,
        )

    @classmethod
    def wrap(cls, core: AsyncUnifiedMemory) -> UnifiedMemory:
        """A blocking face over an existing async core (they share connections and state)."""
        if not isinstance(core, AsyncUnifiedMemory):
            raise ValidationError(
                f"UnifiedMemory.wrap needs an AsyncUnifiedMemory, not {type(core).__name__}"
            )
        self = cls.__new__(cls)
        self._core = core
        return self

    @property
    def async_memory(self) -> AsyncUnifiedMemory:
        return self._core

    @property
    def user_id(self) -> str:
        return self._core.user_id

    @property
    def access_tier(self) -> AccessTier:
        return self._core.access_tier

    @property
    def config(self) -> MemoryConfig:
        return self._core.config

    @property
    def environment(self) -> Environment:
        return self._core.environment

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncUnifiedMemory", "UnifiedMemory", 1)

    def stash(self, key: str, value: Any, ttl_seconds: float | None = None) -> bool:
        return run_sync(self._core.stash(key, value, ttl_seconds))

    def retrieve(self, key: str, agent_id: str | None = None) -> Any:
        return run_sync(self._core.retrieve(key, agent_id))

    def forget(self, key: str) -> bool:
        return run_sync(self._core.forget(key))

    delete = forget

    def ttl(self, key: str, agent_id: str | None = None) -> float | None:
        return run_sync(self._core.ttl(key, agent_id))

    def stage_pattern(
        self, pattern_data: Mapping[str, Any], pattern_type: str, ttl_hours: float | None = None
    ) -> str:
        return run_sync(self._core.stage_pattern(pattern_data, pattern_type, ttl_hours))

    def get_staged_patterns(self) -> list[dict[str, Any]]:
        return run_sync(self._core.get_staged_patterns())

    def promote_pattern(
        self, staged_pattern_id: str, classification: Classification | str | None = None
    ) -> dict[str, Any]:
        return run_sync(self._core.promote_pattern(staged_pattern_id, classification))

    def reject_pattern(self, staged_pattern_id: str, reason: str | None = None) -> bool:
        return run_sync(self._core.reject_pattern(staged_pattern_id, reason))

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

    def delete_pattern(self, pattern_id: str) -> bool:
        return run_sync(self._core.delete_pattern(pattern_id))

    def purge_expired(self) -> int:
        return run_sync(self._core.purge_expired())

    def rotate_keys(self, batch_size: int = 500) -> dict[str, Any]:
        return run_sync(self._core.rotate_keys(batch_size))

    def health_check(self) -> dict[str, Any]:
        return run_sync(self._core.health_check())

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
