"""What the async core gives the mixins it is made of.

``AsyncUnifiedMemory`` is one class assembled from modules of one job each: the reads
(:mod:`.reads`), working data (:mod:`.working_data`), the staging area
(:mod:`.staged_patterns`), export and import (:mod:`.transfer`), and the rest in
:mod:`.unified`. :class:`CoreParts` names, for the
type checker, the attributes and helpers the core sets and defines for all of them;
it holds no code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from attune.memory.config import MemoryConfig
from attune.memory.long_term.protocol import LongTermStore
from attune.memory.security.audit import AuditEvent
from attune.memory.short_term.protocol import ShortTermStore
from attune.memory.types import AccessTier

if TYPE_CHECKING:
    from attune.memory.security.pipeline import SecurityPipeline


class CoreParts:
    """The core's state and helpers, as its mixins see them (annotations only)."""

    user_id: str
    access_tier: AccessTier
    namespace: str
    config: MemoryConfig
    short_term: ShortTermStore
    long_term: LongTermStore
    pipeline: SecurityPipeline
    #: Check (and audit) that this agent's tier allows an action (``AsyncUnifiedMemory``).
    _require: Callable[..., Awaitable[None]]
    #: An audit event of this agent (``AsyncUnifiedMemory``).
    _event: Callable[..., AuditEvent]
    #: This agent's audit pseudonym, once known (``AsyncUnifiedMemory``).
    _subject: str | None
    #: This agent's audit pseudonym, once ``_require`` has run (``AsyncUnifiedMemory``).
    _audit_subject: Callable[[], str]
    #: A user's audit pseudonym, or None when it has none and ``create`` is false.
    _pseudonym_of: Callable[..., Awaitable[str | None]]
