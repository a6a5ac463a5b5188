"""health_check reports both tiers and never raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory


def test_health_both_up(config: MemoryConfig) -> None:
    with UnifiedMemory("agent", config) as mem:
        health = mem.health_check()
    assert health["short_term"]["available"] is True
    assert health["short_term"]["backend"] == ("fakeredis" if config.redis_mock else "redis")
    assert health["long_term"]["available"] is True
    assert health["long_term"]["backend"] == "sqlite"
    assert health["environment"] == "development"


def test_health_with_redis_down(closed_port_url: str, tmp_path: Path) -> None:
    cfg = MemoryConfig(
        redis_url=closed_port_url.replace("redis://", "redis://u:topsecret@"),
        storage_dir=tmp_path,
        redis_connect_timeout=0.5,
    )
    with UnifiedMemory("agent", cfg) as mem:
        health = mem.health_check()
        assert health["short_term"]["available"] is False
        assert "cannot reach Redis" in health["short_term"]["error"]
        assert "topsecret" not in str(health)
        assert health["long_term"]["available"] is True
        # the long-term tier still works
        pid = mem.persist_pattern("Degrade gracefully", "reliability")["pattern_id"]
        assert mem.recall_pattern(pid) is not None


def test_health_with_long_term_unusable(mock_config: MemoryConfig, tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    mem = UnifiedMemory("agent", mock_config)
    mem.async_memory.long_term.path = blocker / "patterns.db"  # type: ignore[attr-defined]
    health = mem.health_check()
    assert health["long_term"]["available"] is False
    assert "error" in health["long_term"]
    assert health["short_term"]["available"] is True
    mem.close()


async def test_the_stand_in_says_its_data_is_this_processs_alone(
    config: MemoryConfig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shared_across_processes`` in the short-term report, and one log record per process
    when the in-process stand-in is chosen (private flag reset: it is per process)."""
    import logging

    from attune.memory.short_term import connect

    monkeypatch.setattr(connect, "_told_private", False)
    caplog.set_level(logging.INFO, logger="attune.short_term")
    async with (
        AsyncUnifiedMemory("agent", config) as first,
        AsyncUnifiedMemory("other", config) as second,
    ):
        report = (await first.health_check())["short_term"]
        await second.health_check()
    stand_in = report["backend"] == "fakeredis"
    assert report["shared_across_processes"] is (not stand_in)
    told = [r for r in caplog.records if "in-process Redis stand-in" in r.getMessage()]
    assert len(told) == (1 if stand_in else 0)


async def test_health_after_aclose_says_closed_and_opens_nothing(mock_config: MemoryConfig) -> None:
    """A closed object reports both tiers unavailable because it is closed (it used to
    report both available, opening the long-term store again behind the caller's back)."""
    mem = AsyncUnifiedMemory("agent", mock_config)
    await mem.stash("k", {"a": 1})
    assert (await mem.health_check())["long_term"]["available"] is True
    await mem.aclose()
    health = await mem.health_check()
    for tier in ("short_term", "long_term"):
        assert health[tier] == {
            "available": False,
            "error": "AsyncUnifiedMemory is closed; create a new one",
        }
    assert health["environment"] == "development"
    # The store's connection of this loop was closed by aclose, and not opened again.
    assert len(mem.long_term._conns) == 0  # type: ignore[attr-defined]


def test_health_after_close_on_the_blocking_facade(mock_config: MemoryConfig) -> None:
    mem = UnifiedMemory("agent", mock_config)
    mem.close()
    health = mem.health_check()
    assert health["short_term"]["available"] is False
    assert "closed" in health["long_term"]["error"]
