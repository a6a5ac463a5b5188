"""The blocking facade: :class:`UnifiedMemory`.

Each method runs the same-named coroutine of :class:`AsyncUnifiedMemory` to
completion through :func:`attune._runner.run_sync` -- no logic lives here.
It works from plain scripts, from several threads, and from code already
inside a running event loop.

The methods are written out (one line each) so that type checkers and editors see
their signatures; ``tests/test_facade_parity.py`` fails when one drifts from its
coroutine (a missing method or parameter, another default or annotation, anything
but ``run_sync(self._core.<same name>(<same arguments>))``). Their docstrings are
the coroutines' own, copied by :func:`docs_from`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

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


#: Blocking name -> the coroutine it runs, where the two differ.
ASYNC_NAMES = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}

_C = TypeVar("_C", bound=type)


def docs_from(source: type) -> Callable[[_C], _C]:
    """Class decorator: each method without a docstring gets the one of the same-named
    method of ``source`` (``close`` that of ``aclose``), so ``help()`` shows it."""

    def decorate(cls: _C) -> _C:
        for name, member in vars(cls).items():
            twin = getattr(source, ASYNC_NAMES.get(name, name), None)
            if inspect.isfunction(member) and not member.__doc__ and twin is not None:
                member.__doc__ = twin.__doc__
        return cls

    return decorate


@docs_from(AsyncUnifiedMemory)
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
