"""The blocking facade's resources (per-thread loops and their connections) and the
sharing idiom of the seed (``EmpathyOS(short_term_memory=other.short_term_memory)``)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from attune import AsyncEmpathyOS, EmpathyOS, ValidationError
from attune._runner import run_sync
from attune.memory import AsyncUnifiedMemory, MemoryConfig, RedisShortTermMemory, UnifiedMemory
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
from attune.memory.security.pipeline import SecurityPipeline

# -- item 12: the sharing idiom ------------------------------------------------------------------


def _deprecated_short_term(agent: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return agent.short_term_memory


def test_sharing_idiom_of_the_seed(config: MemoryConfig) -> None:
    with EmpathyOS("a", config=config) as a:
        with EmpathyOS("b", config=config, short_term_memory=_deprecated_short_term(a)) as b:
            assert b.memory.async_memory.short_term is a.memory.async_memory.short_term
            a.stash("k", {"from": "a"})
            assert b.retrieve("k") is None  # b's own namespace
            assert b.memory.retrieve("k", agent_id="a") == {"from": "a"}
            staged = b.memory.stage_pattern({"content": "Shared staging works"}, "misc")
            assert staged in [p["pattern_id"] for p in a.memory.get_staged_patterns()]
        # b borrowed the store: closing b leaves a working
        assert a.retrieve("k") == {"from": "a"}


@pytest.mark.parametrize("kind", ["EmpathyOS", "UnifiedMemory", "AsyncEmpathyOS", "AsyncUnified"])
def test_every_wrapper_shares_its_store(mock_config: MemoryConfig, kind: str) -> None:
    a = EmpathyOS("a", config=mock_config)
    store = a.memory.async_memory.short_term
    source: Any = {
        "EmpathyOS": a,
        "UnifiedMemory": a.memory,
        "AsyncEmpathyOS": a.async_os,
        "AsyncUnified": a.memory.async_memory,
    }[kind]
    b = EmpathyOS("b", config=mock_config, short_term_memory=source)
    c = AsyncEmpathyOS("c", config=mock_config, short_term_memory=source)
    d = UnifiedMemory("d", mock_config, short_term=source)
    e = AsyncUnifiedMemory("e", mock_config, short_term=source)
    for agent in (b.memory.async_memory, c.memory, d.async_memory, e):
        assert agent.short_term is store
    b.close()
    d.close()
    a.close()


def test_long_term_can_be_shared_too(mock_config: MemoryConfig) -> None:
    a = UnifiedMemory("a", mock_config)
    b = AsyncUnifiedMemory("b", mock_config, long_term=a, short_term=a.async_memory)
    assert b.long_term is a.async_memory.long_term
    assert b.short_term is a.async_memory.short_term
    a.close()


@pytest.mark.parametrize("bad", [object(), "redis://localhost", {"stash": 1}, 42])
def test_a_non_store_is_refused_at_construction(mock_config: MemoryConfig, bad: Any) -> None:
    for make in (
        lambda: EmpathyOS("b", config=mock_config, short_term_memory=bad),
        lambda: AsyncEmpathyOS("b", config=mock_config, short_term_memory=bad),
        lambda: UnifiedMemory("b", mock_config, short_term=bad),
        lambda: AsyncUnifiedMemory("b", mock_config, short_term=bad),
    ):
        with pytest.raises(ValidationError, match="ShortTermStore") as info:
            make()
        assert "UnifiedMemory" in str(info.value) and "EmpathyOS" in str(info.value)
    with pytest.raises(ValidationError, match="LongTermStore"):
        AsyncUnifiedMemory("b", mock_config, long_term=bad)
    with pytest.raises(ValidationError, match="LongTermStore"):
        UnifiedMemory("b", mock_config, long_term=bad)


def test_a_store_of_the_other_tier_is_refused(mock_config: MemoryConfig) -> None:
    sqlite = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    with pytest.raises(ValidationError, match="ShortTermStore"):
        AsyncUnifiedMemory("b", mock_config, short_term=sqlite)  # type: ignore[arg-type]
    redis_store = RedisShortTermMemory(mock_config)
    with pytest.raises(ValidationError, match="LongTermStore"):
        AsyncUnifiedMemory("b", mock_config, long_term=redis_store)  # type: ignore[arg-type]


def test_facade_takes_long_term_and_pipeline_like_the_core(mock_config: MemoryConfig) -> None:
    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    pipeline = SecurityPipeline(mock_config)
    with UnifiedMemory("a", mock_config, long_term=store, pipeline=pipeline) as mem:
        assert mem.async_memory.long_term is store
        assert mem.async_memory.pipeline is pipeline
        stored = mem.persist_pattern("Facade mirrors the core", "misc")
        assert mem.recall_pattern(stored["pattern_id"]) is not None
    # a store passed in is the caller's: the facade does not close it
    with UnifiedMemory("b", mock_config, long_term=store) as other:
        assert other.recall_pattern(stored["pattern_id"]) is not None
    run_sync(store.aclose())
