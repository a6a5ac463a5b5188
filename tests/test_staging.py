"""Staging area and the promotion workflow."""

from __future__ import annotations

import asyncio

import pytest
import redis

from attune.errors import PatternNotFoundError, ValidationError
from attune.memory import AccessTier, AsyncUnifiedMemory, MemoryConfig


def _agents(config: MemoryConfig) -> tuple[AsyncUnifiedMemory, AsyncUnifiedMemory]:
    contributor = AsyncUnifiedMemory("code_reviewer", config, access_tier=AccessTier.CONTRIBUTOR)
    validator = AsyncUnifiedMemory("senior_architect", config, access_tier=AccessTier.VALIDATOR)
    return contributor, validator


async def test_stage_and_list_flattens_pattern_data(config: MemoryConfig) -> None:
    contributor, validator = _agents(config)
    staged_id = await contributor.stage_pattern(
        {
            "content": "Use connection pooling for database access",
            "confidence": 0.92,
            "discovered_in": "performance_review",
        },
        "optimization",
    )
    assert isinstance(staged_id, str) and staged_id.startswith("stg_")
    staged = await validator.get_staged_patterns()
    assert len(staged) == 1
    p = staged[0]
    assert p["pattern_id"] == staged_id
    assert p["content"] == "Use connection pooling for database access"
    assert p.get("confidence") == 0.92
    assert p["discovered_in"] == "performance_review"
    assert p["pattern_type"] == "optimization"
    assert p["staged_by"] == "code_reviewer"
    assert p["staged_at"] < p["expires_at"]
    await contributor.aclose()
    await validator.aclose()


async def test_promote_moves_to_long_term(config: MemoryConfig) -> None:
    contributor, validator = _agents(config)
    staged_id = await contributor.stage_pattern(
        {"content": "Use connection pooling for database access", "confidence": 0.92},
        "optimization",
    )
    result = await validator.promote_pattern(staged_pattern_id=staged_id, classification="INTERNAL")
    assert result["pattern_id"].startswith("pat_")
    assert result["classification"] == "INTERNAL"
    assert result["staged_pattern_id"] == staged_id
    assert await validator.get_staged_patterns() == []
    recalled = await contributor.recall_pattern(result["pattern_id"])
    assert recalled is not None
    assert recalled["content"] == "Use connection pooling for database access"
    assert recalled["metadata"]["confidence"] == 0.92
    assert recalled["metadata"]["staged_by"] == "code_reviewer"
    assert recalled["metadata"]["promoted_by"] == "senior_architect"
    assert set(recalled["metadata"]) == {"confidence", "staged_by", "promoted_by", "promoted_from"}
    assert recalled["created_by"] == "senior_architect"
    with pytest.raises(PatternNotFoundError, match="not found"):
        await validator.promote_pattern(staged_id)
    await contributor.aclose()
    await validator.aclose()


async def test_concurrent_promotion_has_exactly_one_winner(config: MemoryConfig) -> None:
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    staged_id = await contributor.stage_pattern(
        {"content": "Cache the parsed config"}, "optimization"
    )
    validators = [
        AsyncUnifiedMemory(f"validator_{i}", config, access_tier=AccessTier.VALIDATOR)
        for i in range(10)
    ]
    results = await asyncio.gather(
        *(v.promote_pattern(staged_id) for v in validators), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 9
    assert all(isinstance(e, PatternNotFoundError) for e in losers)
    assert all("already promoted" in str(e) or "not found" in str(e) for e in losers)
    assert await contributor.get_staged_patterns() == []
    assert await contributor.long_term.count() == 1  # type: ignore[attr-defined]
    for m in (contributor, *validators):
        await m.aclose()


def test_concurrent_promotion_from_threads_has_one_winner(config: MemoryConfig) -> None:
    """Ten validators in ten threads, each on its own event loop, through the sync facade."""
    from concurrent.futures import ThreadPoolExecutor

    from attune.memory import UnifiedMemory

    contributor = UnifiedMemory("code_reviewer", config)
    staged_id = contributor.stage_pattern({"content": "Batch small writes"}, "optimization")
    validators = [UnifiedMemory(f"v{i}", config, access_tier="VALIDATOR") for i in range(10)]

    def promote(v: UnifiedMemory) -> object:
        try:
            return v.promote_pattern(staged_id)
        except PatternNotFoundError as exc:
            return exc

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(promote, validators))
    assert sum(isinstance(r, dict) for r in results) == 1
    assert sum(isinstance(r, PatternNotFoundError) for r in results) == 9
    for m in (contributor, *validators):
        m.close()


async def test_reject_pattern(config: MemoryConfig) -> None:
    contributor, validator = _agents(config)
    staged_id = await contributor.stage_pattern({"content": "Always retry forever"}, "reliability")
    assert await validator.reject_pattern(staged_id, reason="retries must be bounded") is True
    assert await validator.get_staged_patterns() == []
    with pytest.raises(PatternNotFoundError):
        await validator.reject_pattern(staged_id)
    with pytest.raises(PatternNotFoundError):
        await validator.promote_pattern(staged_id)
    await contributor.aclose()
    await validator.aclose()


@pytest.mark.parametrize("bad_id", ["stg_doesnotexist", "pat_123", "", None, 42])
async def test_unknown_staged_id(config: MemoryConfig, bad_id: object) -> None:
    _, validator = _agents(config)
    with pytest.raises(PatternNotFoundError):
        await validator.promote_pattern(bad_id)  # type: ignore[arg-type]
    await validator.aclose()


async def test_expired_staged_patterns_never_appear(config: MemoryConfig) -> None:
    contributor, validator = _agents(config)
    gone = await contributor.stage_pattern({"content": "Short lived"}, "misc", ttl_hours=0.1 / 3600)
    kept = await contributor.stage_pattern({"content": "Long lived"}, "misc", ttl_hours=1)
    await asyncio.sleep(0.25)
    ids = [p["pattern_id"] for p in await validator.get_staged_patterns()]
    assert ids == [kept]
    with pytest.raises(PatternNotFoundError, match="expired"):
        await validator.promote_pattern(gone)
    await contributor.aclose()
    await validator.aclose()


@pytest.mark.parametrize(
    ("data", "ptype", "ttl", "fragment"),
    [
        ("just a string", "x", None, "dict"),
        ({"confidence": 0.9}, "x", None, "content"),
        ({"content": "   "}, "x", None, "content"),
        ({"content": "ok", "pattern_id": "mine"}, "x", None, "pattern_id"),
        ({"content": "ok", "classification": "PUBLIC"}, "x", None, "classification"),
        ({"content": "ok"}, "", None, "pattern_type"),
        ({"content": "ok"}, "has space", None, "pattern_type"),
        ({"content": "ok"}, "x", 0, "ttl_hours"),
        ({"content": "ok"}, "x", 10**6, "ttl_hours"),
        ({"content": "ok", "obj": object()}, "x", None, "JSON"),
    ],
)
async def test_bad_stage_input_writes_nothing(
    config: MemoryConfig, data: object, ptype: str, ttl: object, fragment: str
) -> None:
    contributor, _ = _agents(config)
    with pytest.raises((ValidationError, TypeError), match=fragment):
        await contributor.stage_pattern(data, ptype, ttl_hours=ttl)  # type: ignore[arg-type]
    assert await contributor.get_staged_patterns() == []
    await contributor.aclose()


async def test_listing_uses_the_index_not_a_keyspace_scan(redis_config: MemoryConfig) -> None:
    client = redis.Redis.from_url(redis_config.redis_url or "")
    client.mset({f"{redis_config.key_prefix}:noise:{i}": i for i in range(2000)})
    contributor, validator = _agents(redis_config)
    await contributor.stage_pattern({"content": "Indexed"}, "misc")
    client.config_resetstat()
    staged = await validator.get_staged_patterns()
    stats = client.info("commandstats")
    client.close()
    assert [p["content"] for p in staged] == ["Indexed"]
    assert "cmdstat_scan" not in stats and "cmdstat_keys" not in stats
    await contributor.aclose()
    await validator.aclose()


@pytest.mark.parametrize("fate", ["promoted", "rejected", "erased"])
async def test_the_fate_of_another_namespaces_staged_pattern_is_not_told(
    config: MemoryConfig, fate: str
) -> None:
    """A validator of namespace ``b`` holding the id of a staged pattern of ``a`` learns
    nothing from deciding it: before the decision it was "not found in namespace", and
    after it, it was told "already promoted (as pat_...)", "already rejected" or "erased".
    The validator of ``a`` is still told what became of it."""
    async with (
        AsyncUnifiedMemory("scout", config, namespace="team-a") as scout,
        AsyncUnifiedMemory("lead-a", config, access_tier="VALIDATOR", namespace="team-a") as a,
        AsyncUnifiedMemory("lead-b", config, access_tier="VALIDATOR", namespace="team-b") as b,
        AsyncUnifiedMemory("dpo", config, access_tier="STEWARD", namespace="team-a") as dpo,
    ):
        staged = await scout.stage_pattern({"content": "Cache warmup before deploys"}, "ops")
        if fate == "promoted":
            await a.promote_pattern(staged)
        elif fate == "rejected":
            await a.reject_pattern(staged)
        else:
            assert (await dpo.erase_user("scout"))["staged_patterns"] == 1
        for decide in (b.promote_pattern, b.reject_pattern):
            with pytest.raises(PatternNotFoundError) as told:
                await decide(staged)
            assert str(told.value).endswith("not found in namespace 'team-b'"), told.value
            assert "pat_" not in str(told.value)
        with pytest.raises(
            PatternNotFoundError,
            match={
                "promoted": "already promoted",
                "rejected": "already rejected",
                "erased": "it was erased",
            }[fate],
        ):
            await a.reject_pattern(staged)


@pytest.mark.parametrize(
    ("raw", "fate", "namespace", "action"),
    [
        (b"promoted:pat_0123@team-a", "promoted", "team-a", ""),
        (b"promoted:pat_0123", "promoted", None, ""),  # written before markers named it
        (b"rejected@default", "rejected", "default", ""),
        (b"erased", "erased", None, ""),
        (b"promote:subject:0193", None, None, "promote"),
        (b"reject:subject:0193", None, None, "reject"),
        (b"erase:subject:0193", None, None, "erase"),
        (b"promoted", None, None, "promoted"),  # no id: not a fate marker
        (None, None, None, ""),
    ],
)
def test_a_claim_key_parses_as_a_fate_or_a_claim(
    raw: bytes | None, fate: str | None, namespace: str | None, action: str
) -> None:
    from attune.memory.staged_fates import Holder

    assert Holder.parse(raw) == Holder(fate, namespace, action)


def test_a_fate_marker_parses_back_with_its_namespace() -> None:
    from attune.memory.staged_fates import Holder, marker

    for namespace in ("team-a", "default", None, "", 7):
        written = marker("rejected", namespace).encode()
        named = namespace if isinstance(namespace, str) and namespace else None
        assert Holder.parse(written) == Holder("rejected", named, "")


def test_an_entry_held_by_an_erasure_says_so() -> None:
    from attune.memory.staged_fates import busy

    assert "another agent is erasing it" in str(busy("stg_x", "erase"))
    assert "another agent is rejecting it" in str(busy("stg_x", "reject"))
    assert "another agent is promoting it" in str(busy("stg_x", "promote"))
