"""Access tiers are enforced before any write, and denials are typed."""

from __future__ import annotations

import pytest

from attune import AccessDeniedError, AccessTier
from attune.errors import ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig


def test_tier_order() -> None:
    assert AccessTier.OBSERVER < AccessTier.CONTRIBUTOR < AccessTier.VALIDATOR < AccessTier.STEWARD
    assert AccessTier.parse("validator") is AccessTier.VALIDATOR
    with pytest.raises(ValidationError):
        AccessTier.parse("admin")


def test_default_tier_is_contributor(mock_config: MemoryConfig) -> None:
    from attune import EmpathyOS

    agent = EmpathyOS(user_id="someone", config=mock_config)
    assert agent.access_tier is AccessTier.CONTRIBUTOR


async def test_observer_reads_but_cannot_write(mock_config: MemoryConfig) -> None:
    writer = AsyncUnifiedMemory("writer", mock_config)
    observer = AsyncUnifiedMemory("watcher", mock_config, access_tier=AccessTier.OBSERVER)
    await writer.stash("k", "v")
    stored = await writer.persist_pattern("Prefer composition", "architecture")
    assert await observer.retrieve("k", agent_id="writer") == "v"
    assert (await observer.recall_pattern(stored["pattern_id"])) is not None
    assert await observer.get_staged_patterns() == []

    with pytest.raises(AccessDeniedError) as info:
        await observer.stash("k", "v")
    assert isinstance(info.value, PermissionError)
    assert "CONTRIBUTOR" in str(info.value) and "OBSERVER" in str(info.value)
    with pytest.raises(AccessDeniedError):
        await observer.stage_pattern({"content": "x"}, "misc")
    with pytest.raises(AccessDeniedError):
        await observer.persist_pattern("x", "misc")
    with pytest.raises(AccessDeniedError):
        await observer.forget("k")
    assert await observer.retrieve("k") is None  # nothing written under the observer
    assert await writer.get_staged_patterns() == []
    await writer.aclose()
    await observer.aclose()


async def test_contributor_cannot_promote_or_reject(mock_config: MemoryConfig) -> None:
    contributor = AsyncUnifiedMemory("c", mock_config)
    staged_id = await contributor.stage_pattern({"content": "Keep functions short"}, "style")
    with pytest.raises(AccessDeniedError, match="VALIDATOR"):
        await contributor.promote_pattern(staged_id)
    with pytest.raises(AccessDeniedError, match="VALIDATOR"):
        await contributor.reject_pattern(staged_id)
    assert [p["pattern_id"] for p in await contributor.get_staged_patterns()] == [staged_id]
    await contributor.aclose()


async def test_only_steward_deletes_long_term(mock_config: MemoryConfig) -> None:
    validator = AsyncUnifiedMemory("v", mock_config, access_tier="VALIDATOR")
    steward = AsyncUnifiedMemory("s", mock_config, access_tier=AccessTier.STEWARD)
    stored = await validator.persist_pattern("Name things clearly", "style")
    with pytest.raises(AccessDeniedError, match="STEWARD"):
        await validator.delete_pattern(stored["pattern_id"])
    assert await validator.recall_pattern(stored["pattern_id"]) is not None
    assert await steward.delete_pattern(stored["pattern_id"]) is True
    assert await steward.recall_pattern(stored["pattern_id"]) is None
    assert await steward.delete_pattern(stored["pattern_id"]) is False
    await validator.aclose()
    await steward.aclose()


@pytest.mark.parametrize("tier", list(AccessTier))
async def test_recall_refuses_a_closed_memory_and_audits_once(
    mock_config: MemoryConfig, tier: AccessTier
) -> None:
    """An allowed recall leaves exactly its one read event (no access event of its own),
    and a closed memory refuses it."""
    from attune import AttuneError
    from attune.memory import access

    async with AsyncUnifiedMemory("writer", mock_config) as writer:
        stored = await writer.persist_pattern("Prefer composition", "architecture")
    reader = AsyncUnifiedMemory("reader", mock_config, access_tier=tier)
    assert access.is_allowed(tier, "recall_pattern")
    assert not access.audit_when_allowed("recall_pattern")  # its read event says it all
    assert (await reader.recall_pattern(stored["pattern_id"]) or {})["content"] == (
        "Prefer composition"
    )
    with pytest.raises(ValidationError):
        await reader.recall_pattern("")
    name = await reader.audit_pseudonym()  # how the log names the reader (quiet: no event)
    await reader.aclose()
    with pytest.raises(AttuneError, match="closed"):
        await reader.recall_pattern(stored["pattern_id"])
    audit = reader.pipeline.audit_logger
    events = [e for e in audit.query() if e["user_id"] == name]
    assert [(e["event"], e["tier"], e["target_id"]) for e in events] == [
        ("pattern.retrieve", tier.name, stored["pattern_id"])
    ]


def test_reads_and_working_data_have_no_allowed_event_of_their_own() -> None:
    from attune.memory import access

    quiet = {a for a in access.REQUIRED_TIER if not access.audit_when_allowed(a)}
    assert quiet == {
        "retrieve",
        "recall_pattern",
        "search_patterns",
        "list_patterns",
        "count_patterns",
        "get_staged_patterns",
        "audit_pseudonym",
        "stash",
        "forget",
    }
    assert access.audit_when_allowed("persist_pattern")  # an allowed write is audited
    assert not access.is_allowed(AccessTier.OBSERVER, "stash")  # denied: audited
