"""The blocking facade: :class:`UnifiedMemory`.

Each method runs the same-named coroutine of :class:`AsyncUnifiedMemory` to
completion through :func:`attune._runner.run_sync` -- no logic lives here.
It works from plain scripts, from several threads, and from code already
inside a running event loop.

The methods are declared, not written out: :func:`attune._facade.blocking` makes each
from its coroutine, with the coroutine's signature and docstring, so type checkers,
editors, ``inspect.signature`` and ``help()`` see the real ones.
``tests/test_facade_parity.py`` fails when a coroutine has no twin here.
"""

from __future__ import annotations

from attune._facade import BlockingFacade, Mirror, blocking, built_from
from attune.memory.claude_memory import ClaudeMemory
from attune.memory.config import Environment, MemoryConfig
from attune.memory.types import AccessTier
from attune.memory.unified import AsyncUnifiedMemory


class UnifiedMemory(BlockingFacade[AsyncUnifiedMemory]):
    """Blocking face of :class:`AsyncUnifiedMemory`; same methods, same arguments.

    Usable from any thread: each thread runs the calls on an event loop of its own, whose
    connections are released when the thread ends; :meth:`close` releases the rest.
    """

    @built_from(AsyncUnifiedMemory)
    def __init__(self, core: AsyncUnifiedMemory) -> None:
        self._core = core

    @property
    def async_memory(self) -> AsyncUnifiedMemory:
        return self._core

    close = blocking(AsyncUnifiedMemory.aclose)
    user_id = Mirror[str]()
    access_tier = Mirror[AccessTier]()
    config = Mirror[MemoryConfig]()
    environment = Mirror[Environment]()
    namespace = Mirror[str]()
    claude_memory = Mirror[ClaudeMemory | None]()

    # -- the operations, in the core's order ---------------------------------------------------

    stash = blocking(AsyncUnifiedMemory.stash)
    retrieve = blocking(AsyncUnifiedMemory.retrieve)
    forget = blocking(AsyncUnifiedMemory.forget)
    delete = forget
    ttl = blocking(AsyncUnifiedMemory.ttl)
    stage_pattern = blocking(AsyncUnifiedMemory.stage_pattern)
    get_staged_patterns = blocking(AsyncUnifiedMemory.get_staged_patterns)
    promote_pattern = blocking(AsyncUnifiedMemory.promote_pattern)
    reject_pattern = blocking(AsyncUnifiedMemory.reject_pattern)
    persist_pattern = blocking(AsyncUnifiedMemory.persist_pattern)
    recall_pattern = blocking(AsyncUnifiedMemory.recall_pattern)
    search_patterns = blocking(AsyncUnifiedMemory.search_patterns)
    list_patterns = blocking(AsyncUnifiedMemory.list_patterns)
    count_patterns = blocking(AsyncUnifiedMemory.count_patterns)
    delete_pattern = blocking(AsyncUnifiedMemory.delete_pattern)
    purge_expired = blocking(AsyncUnifiedMemory.purge_expired)
    rotate_keys = blocking(AsyncUnifiedMemory.rotate_keys)
    export_patterns = blocking(AsyncUnifiedMemory.export_patterns)
    import_patterns = blocking(AsyncUnifiedMemory.import_patterns)
    erase_user = blocking(AsyncUnifiedMemory.erase_user)
    audit_pseudonym = blocking(AsyncUnifiedMemory.audit_pseudonym)
    health_check = blocking(AsyncUnifiedMemory.health_check)
