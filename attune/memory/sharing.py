"""Sharing stores between agents: a memory or agent object given where a store goes.

``AsyncUnifiedMemory(short_term=other)`` and ``EmpathyOS(short_term_memory=other.memory)``
take a store, or any memory or agent object (async or blocking) whose store to share;
this module turns the one into the other, or refuses it at construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from attune.errors import ValidationError
from attune.memory.long_term.protocol import LongTermStore
from attune.memory.short_term.protocol import ShortTermStore

if TYPE_CHECKING:
    from attune.empathy import AsyncEmpathyOS, EmpathyOS
    from attune.memory.sync import UnifiedMemory
    from attune.memory.unified import AsyncUnifiedMemory

    #: A memory or agent object whose stores another one may share (see ``short_term``).
    Sharer: TypeAlias = "AsyncUnifiedMemory | UnifiedMemory | AsyncEmpathyOS | EmpathyOS"

_SHARERS = "a UnifiedMemory, AsyncUnifiedMemory, EmpathyOS or AsyncEmpathyOS"


def shared_short_term(value: object, name: str) -> ShortTermStore | None:
    """``value`` as a short-term store to share: a store itself, or the store of a memory
    or agent object (``EmpathyOS(short_term_memory=other.short_term_memory)``); None for
    None. Anything else is refused here, at construction, not at the first operation."""
    if value is None or isinstance(value, ShortTermStore):
        return value
    store = "a ShortTermStore (such as attune.get_redis_memory())"
    return _sharer(value, name, store, "short-term").short_term


def shared_long_term(value: object, name: str) -> LongTermStore | None:
    """As :func:`shared_short_term`, for the long-term store."""
    if value is None or isinstance(value, LongTermStore):
        return value
    store = "a LongTermStore (such as SQLiteLongTermStore)"
    return _sharer(value, name, store, "long-term").long_term


def _sharer(value: object, name: str, store: str, tier: str) -> AsyncUnifiedMemory:
    """The async core behind the memory or agent object ``value``, whose ``tier`` store to
    share; anything else is refused (``name``: the parameter, ``store``: what else it takes)."""
    # Imported here: those modules build on this one.
    from attune.empathy import AsyncEmpathyOS, EmpathyOS
    from attune.memory.sync import UnifiedMemory
    from attune.memory.unified import AsyncUnifiedMemory

    if isinstance(value, EmpathyOS):
        value = value.async_os
    if isinstance(value, AsyncEmpathyOS):
        value = value.memory
    if isinstance(value, UnifiedMemory):
        value = value.async_memory
    if isinstance(value, AsyncUnifiedMemory):
        return value
    raise ValidationError(
        f"{name} must be {store} or {_SHARERS} whose {tier} store to share; "
        f"got {type(value).__name__}"
    )
