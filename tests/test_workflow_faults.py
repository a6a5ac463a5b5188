"""The staging workflow under races and faults (issue 13).

A staged pattern has exactly one fate -- promoted or rejected -- whatever runs
concurrently, whatever Redis does between the long-term commit and the unstage
step, and whether or not a reply arrives; the audit trail never depends on a reply.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import fakeredis
import pytest
import redis.asyncio as aioredis
from faults import RedisProcess, ReplyDroppingProxy
from redis.asyncio.client import Pipeline

from attune.errors import (
    CorruptRecordError,
    PatternNotFoundError,
    PromotionCommittedError,
    SecurityPipelineError,
    ShortTermUnavailableError,
)
from attune.memory import AccessTier, AsyncUnifiedMemory, MemoryConfig, staging
from attune.memory.long_term import InsertOp
from attune.memory.security import pipeline as security_pipeline
from attune.memory.short_term.connect import shared_fake_server

T = TypeVar("T")

#: Short, so a fault costs the test about a second; generous for a loaded machine.
FAULT_TIMEOUT_S = 1.0


def _validator(config: MemoryConfig, name: str = "senior_architect") -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory(name, config, access_tier=AccessTier.VALIDATOR)


def _pattern_id(staged_id: str) -> str:
    return "pat_" + staged_id.removeprefix("stg_")


def _events(memory: AsyncUnifiedMemory, **filters: Any) -> list[dict[str, Any]]:
    return memory.pipeline.audit_logger.query(**filters)


async def _staged_ids(memory: AsyncUnifiedMemory) -> list[str]:
    return [p["pattern_id"] for p in await memory.get_staged_patterns()]


async def _raw(memory: AsyncUnifiedMemory, op: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``op`` with a Redis client of the test's own on the memory's server (for the
    stand-in, its in-process server): the raw keys are the subject here, which no public
    API reads or plants, so this goes beside the store rather than through it."""
    config = memory.config
    client: Any = (
        fakeredis.FakeAsyncRedis(server=shared_fake_server())
        if config.short_term_backend == "mock"
        else aioredis.Redis.from_url(config.redis_url or "", socket_timeout=10)
    )
    try:
        return await op(client)
    finally:
        await client.aclose()


async def _raw_keys(memory: AsyncUnifiedMemory, staged_id: str) -> tuple[bool, bool]:
    """(whether the staged entry's key exists, whether the index holds its id)."""
    keys = memory.short_term.keys  # type: ignore[attr-defined]

    async def op(r: Any) -> tuple[bool, bool]:
        exists = await r.exists(keys.staged_pattern(staged_id))
        score = await r.zscore(keys.staging_index(), staged_id)
        return bool(exists), score is not None

    return await _raw(memory, op)


def _fault_config(url: str, storage_dir: Path, key_prefix: str) -> MemoryConfig:
    return MemoryConfig(
        redis_url=url,
        storage_dir=storage_dir,
        key_prefix=key_prefix,
        redis_socket_timeout=FAULT_TIMEOUT_S,
    )


async def _after_yields(count: int, call: Awaitable[T]) -> T:
    """``call``, started ``count`` event-loop turns late."""
    for _ in range(count):
        await asyncio.sleep(0)
    return await call


# -- item 2: one fate per staged pattern ----------------------------------------------------------


async def test_promote_and_reject_race_gives_one_fate(config: MemoryConfig) -> None:
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    promoter, rejecter = _validator(config, "promoter"), _validator(config, "rejecter")
    promotions = rejections = 0
    for round_no in range(50):
        staged_id = await contributor.stage_pattern(
            {"content": f"Bound every retry loop ({round_no})"}, "reliability"
        )
        promote = promoter.promote_pattern(staged_id)
        reject = rejecter.reject_pattern(staged_id)
        first, second = (promote, reject) if round_no % 2 == 0 else (reject, promote)
        calls = (first, _after_yields(round_no % 7, second))  # vary the interleaving
        results = await asyncio.gather(*calls, return_exceptions=True)
        promoted, rejected = results if round_no % 2 == 0 else results[::-1]
        pattern_id = _pattern_id(staged_id)
        if isinstance(promoted, dict):
            promotions += 1
            assert isinstance(rejected, PatternNotFoundError), rejected
            assert promoted["pattern_id"] == pattern_id
            assert await promoter.recall_pattern(pattern_id) is not None
        else:
            rejections += 1
            assert rejected is True, rejected
            assert isinstance(promoted, PatternNotFoundError), promoted
            assert await promoter.recall_pattern(pattern_id) is None
            assert _events(promoter, event_type="pattern.promote", target_id=pattern_id) == []
    assert promotions + rejections == 50
    assert await _staged_ids(contributor) == []
    assert await contributor.long_term.count() == promotions  # type: ignore[attr-defined]
    for m in (contributor, promoter, rejecter):
        await m.aclose()


async def test_concurrent_promotions_have_one_winner_and_one_event(config: MemoryConfig) -> None:
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    validators = [_validator(config, f"validator_{i}") for i in range(6)]
    for round_no in range(10):
        staged_id = await contributor.stage_pattern(
            {"content": f"Cache parsed configs ({round_no})"}, "optimization"
        )
        results = await asyncio.gather(
            *(v.promote_pattern(staged_id) for v in validators), return_exceptions=True
        )
        assert sum(isinstance(r, dict) for r in results) == 1
        losers = [r for r in results if not isinstance(r, dict)]
        assert all(isinstance(e, PatternNotFoundError) for e in losers), losers
        pattern_id = _pattern_id(staged_id)
        promoted = _events(contributor, event_type="pattern.promote", target_id=pattern_id)
        assert len(promoted) == 1
    assert await _staged_ids(contributor) == []
    for m in (contributor, *validators):
        await m.aclose()


async def test_loser_learns_the_fate(config: MemoryConfig) -> None:
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    promoted_id = await contributor.stage_pattern({"content": "Pin dependencies"}, "ops")
    rejected_id = await contributor.stage_pattern({"content": "Retry forever"}, "ops")
    result = await validator.promote_pattern(promoted_id)
    assert await validator.reject_pattern(rejected_id) is True
    with pytest.raises(PatternNotFoundError, match=f"promoted.*{result['pattern_id']}"):
        await validator.reject_pattern(promoted_id)
    with pytest.raises(PatternNotFoundError, match=f"promoted.*{result['pattern_id']}"):
        await validator.promote_pattern(promoted_id)
    with pytest.raises(PatternNotFoundError, match="rejected"):
        await validator.promote_pattern(rejected_id)
    await contributor.aclose()
    await validator.aclose()


async def test_failed_promotion_releases_the_claim(config: MemoryConfig) -> None:
    """A promotion that fails before its commit leaves the pattern staged and claimable."""
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    staged_id = await contributor.stage_pattern({"content": "Prefer small PRs"}, "process")
    with pytest.raises(ValueError, match="classification"):
        await validator.promote_pattern(staged_id, classification="NOT_A_LEVEL")
    real_insert = validator.long_term.write
    calls = 0

    async def broken_insert(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        raise OSError("disk on fire")

    validator.long_term.write = broken_insert  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk on fire"):
        await validator.promote_pattern(staged_id)
    assert calls == 1
    validator.long_term.write = real_insert  # type: ignore[method-assign]
    assert await _staged_ids(validator) == [staged_id]
    assert await validator.reject_pattern(staged_id) is True
    await contributor.aclose()
    await validator.aclose()


async def test_a_lapsed_claim_frees_the_entry_and_its_holder_loses(
    config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claimer that stalls past its lease (as a crashed one would) blocks the entry only
    for the lease; the holder, if it resumes, finds out before committing anything."""
    monkeypatch.setattr(staging, "CLAIM_LEASE_MS", 300)
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    promoter, rejecter = _validator(config, "promoter"), _validator(config, "rejecter")
    staged_id = await contributor.stage_pattern({"content": "Time out every call"}, "ops")
    claimed, rejected = asyncio.Event(), asyncio.Event()
    real_prepare = promoter.pipeline.prepare_pattern

    async def stalled_prepare(*args: Any, **kwargs: Any) -> Any:
        claimed.set()  # the promoter holds the claim now, and stalls
        await asyncio.wait_for(rejected.wait(), 30)
        return await real_prepare(*args, **kwargs)

    promoter.pipeline.prepare_pattern = stalled_prepare  # type: ignore[method-assign]
    promotion = asyncio.create_task(promoter.promote_pattern(staged_id))
    await asyncio.wait_for(claimed.wait(), 30)
    deadline = time.monotonic() + 30
    while True:
        try:
            assert await rejecter.reject_pattern(staged_id) is True
            break
        except PatternNotFoundError as exc:
            assert "another agent is promoting it" in str(exc)
            assert time.monotonic() < deadline, "the lapsed claim never freed the entry"
            await asyncio.sleep(0.05)
    rejected.set()
    with pytest.raises(PatternNotFoundError, match="claim on it ran out"):
        await promotion
    assert await promoter.recall_pattern(_pattern_id(staged_id)) is None
    with pytest.raises(PatternNotFoundError, match="already rejected"):
        await promoter.promote_pattern(staged_id)
    for m in (contributor, promoter, rejecter):
        await m.aclose()


# -- item 3: Redis fails between the long-term commit and the unstage step ------------------------


@pytest.mark.parametrize("first_touch", ["listing", "reject", "promote"])
async def test_redis_lost_after_the_commit(
    own_redis: RedisProcess,
    reply_proxy: ReplyDroppingProxy,
    storage_dir: Path,
    key_prefix: str,
    first_touch: str,
) -> None:
    config = _fault_config(reply_proxy.url(), storage_dir, key_prefix)
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    other = _validator(config, "second_opinion")
    staged_id = await contributor.stage_pattern({"content": "Use idempotency keys"}, "api")
    pattern_id = _pattern_id(staged_id)
    real_insert = validator.long_term.write

    async def insert_then_go_silent(op: Any) -> Any:
        inserted = await real_insert(op)
        if isinstance(op, InsertOp):
            reply_proxy.silent = True  # Redis hears nothing from now on
        return inserted

    validator.long_term.write = insert_then_go_silent  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(PromotionCommittedError) as caught:
        await validator.promote_pattern(staged_id)
    assert time.monotonic() - started < 30
    assert caught.value.pattern_id == pattern_id
    assert caught.value.staged_pattern_id == staged_id
    assert pattern_id in str(caught.value)
    reply_proxy.silent = False

    # The fault was real: the entry is still in Redis, and the promotion is committed.
    assert await _raw_keys(other, staged_id) == (True, True)
    recalled = await other.recall_pattern(pattern_id)
    assert recalled is not None and recalled["content"] == "Use idempotency keys"
    assert len(_events(other, event_type="pattern.promote", target_id=pattern_id)) == 1

    if first_touch == "listing":
        assert staged_id not in await _staged_ids(other)
    elif first_touch == "reject":
        with pytest.raises(PatternNotFoundError, match=f"promoted.*{pattern_id}"):
            await other.reject_pattern(staged_id)
    else:
        with pytest.raises(PatternNotFoundError, match=f"promoted.*{pattern_id}"):
            await other.promote_pattern(staged_id)
    assert await _raw_keys(other, staged_id) == (False, False)  # the leftover is gone

    assert await _staged_ids(other) == []
    with pytest.raises(PatternNotFoundError, match=f"promoted.*{pattern_id}"):
        await other.reject_pattern(staged_id)
    with pytest.raises(PatternNotFoundError, match=f"promoted.*{pattern_id}"):
        await validator.promote_pattern(staged_id)
    assert await other.recall_pattern(pattern_id) is not None
    assert _events(other, event_type="pattern.reject", target_id=staged_id) == []
    for m in (contributor, validator, other):
        await m.aclose()


async def test_redis_frozen_after_the_commit(
    own_redis: RedisProcess, storage_dir: Path, key_prefix: str
) -> None:
    config = _fault_config(own_redis.url(), storage_dir, key_prefix)
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    staged_id = await contributor.stage_pattern({"content": "Log request ids"}, "ops")
    pattern_id = _pattern_id(staged_id)
    real_insert = validator.long_term.write

    async def insert_then_freeze(op: Any) -> Any:
        inserted = await real_insert(op)
        if isinstance(op, InsertOp):
            own_redis.freeze()
        return inserted

    validator.long_term.write = insert_then_freeze  # type: ignore[method-assign]
    try:
        with pytest.raises(PromotionCommittedError) as caught:
            await validator.promote_pattern(staged_id)
    finally:
        if own_redis.frozen:
            own_redis.thaw()
    assert caught.value.pattern_id == pattern_id
    assert await validator.recall_pattern(pattern_id) is not None
    assert await _staged_ids(validator) == []
    with pytest.raises(PatternNotFoundError, match=pattern_id):
        await validator.reject_pattern(staged_id)
    with pytest.raises(PatternNotFoundError, match=pattern_id):
        await validator.promote_pattern(staged_id)
    await contributor.aclose()
    await validator.aclose()


# -- item 4: a lost reply does not lose the audit event -------------------------------------------


async def test_lost_reply_on_stage_keeps_its_audit_event(
    own_redis: RedisProcess, reply_proxy: ReplyDroppingProxy, storage_dir: Path, key_prefix: str
) -> None:
    config = _fault_config(reply_proxy.url(), storage_dir, key_prefix)
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    assert await _staged_ids(contributor) == []  # connected: the handshake is done
    reply_proxy.drop_next_reply()
    with pytest.raises(ShortTermUnavailableError) as caught:
        await contributor.stage_pattern({"content": "Validate at the edge"}, "security")
    # The command ran, only its reply was lost: the pattern is staged ...
    [staged_id] = await _staged_ids(contributor)
    assert any(staged_id in note for note in caught.value.__notes__)
    # ... and the audit log holds its stage event, then the unknown outcome.
    events = _events(contributor, event_type="pattern.stage", target_id=staged_id)
    assert [e["outcome"] for e in events] == ["success", "unknown"]
    await contributor.aclose()


async def test_lost_reply_on_reject_keeps_its_audit_event(
    own_redis: RedisProcess,
    reply_proxy: ReplyDroppingProxy,
    storage_dir: Path,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _fault_config(reply_proxy.url(), storage_dir, key_prefix)
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    staged_id = await contributor.stage_pattern({"content": "Retry forever"}, "reliability")
    item = validator.short_term.keys.staged_pattern(staged_id)  # type: ignore[attr-defined]
    real_execute = Pipeline.execute

    async def execute(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        removes = any(args[0] == "DEL" and item in args for args, _ in self.command_stack)
        if removes:  # the removal runs; its reply never arrives
            reply_proxy.drop_next_reply()
        return await real_execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", execute)
    with pytest.raises(ShortTermUnavailableError):
        await validator.reject_pattern(staged_id)
    monkeypatch.setattr(Pipeline, "execute", real_execute)
    assert await _raw_keys(validator, staged_id) == (False, False)  # it ran
    events = _events(validator, event_type="pattern.reject", target_id=staged_id)
    assert [e["outcome"] for e in events] == ["success", "unknown"]
    await contributor.aclose()
    await validator.aclose()


# -- item 1 for staging: no audit, no write -------------------------------------------------------


def _garble_audit_log(config: MemoryConfig) -> None:
    security_pipeline.close_shared()  # every pending line written: the garbage ends the file
    with (config.storage_dir / "audit.jsonl").open("ab") as log:
        log.write(b"this line is not an audit event\n")


async def test_stage_with_a_broken_audit_log_stages_nothing(config: MemoryConfig) -> None:
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    await contributor.persist_pattern("Start the audit log", "misc")
    _garble_audit_log(config)
    with pytest.raises(SecurityPipelineError, match="audit log"):
        await contributor.stage_pattern({"content": "Never unaudited"}, "misc")
    assert await contributor.short_term.list_staged(0) == []
    await contributor.aclose()


async def test_reject_with_a_broken_audit_log_removes_nothing(config: MemoryConfig) -> None:
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    staged_id = await contributor.stage_pattern({"content": "Keep me"}, "misc")
    _garble_audit_log(config)
    with pytest.raises(SecurityPipelineError, match="audit log"):
        await validator.reject_pattern(staged_id)
    assert await _raw_keys(validator, staged_id) == (True, True)
    await contributor.aclose()
    await validator.aclose()


# -- item 6 (listing part): a corrupt staged entry is skipped and reported ------------------------

BAD_ID = "stg_" + "0" * 32


def _garbage(staged_id: str) -> dict[str, bytes]:
    envelope = {
        "v": 1,
        "pattern_id": staged_id,
        "pattern_type": "misc",
        "staged_at": "2026-01-01T00:00:00.000Z",
        "expires_at": "2099-01-01T00:00:00.000Z",
    }
    return {
        "not_json": b"\x00\xffnot json at all",
        "a_list": b"[1, 2, 3]",
        "missing_fields": json.dumps({"v": 1, "pattern_id": staged_id}).encode(),
        "data_not_object": json.dumps(
            {**envelope, "classification": "PUBLIC", "staged_by": "x", "data": 7}
        ).encode(),
        # Damaged beyond its id: still reported under the id it is stored under.
        "other_id_malformed": json.dumps(
            {**envelope, "pattern_id": "stg_" + "1" * 32, "staged_by": "x", "data": 7}
        ).encode(),
        "other_id": json.dumps(
            {
                **envelope,
                "pattern_id": "stg_" + "1" * 32,
                "classification": "PUBLIC",
                "staged_by": "x",
                "data": {"content": "copied"},
            }
        ).encode(),
        "bad_seal": json.dumps(
            {
                **envelope,
                "sealed": {
                    "key_id": "nope",
                    "wrapped_key": base64.b64encode(b"k" * 40).decode(),
                    "nonce": base64.b64encode(b"n" * 12).decode(),
                    "ciphertext": base64.b64encode(b"c" * 40).decode(),
                },
            }
        ).encode(),
    }


async def _plant(memory: AsyncUnifiedMemory, staged_id: str, value: bytes) -> None:
    keys = memory.short_term.keys  # type: ignore[attr-defined]
    expires = int(time.time() * 1000) + 600_000

    async def op(r: Any) -> None:
        await r.set(keys.staged_pattern(staged_id), value, pxat=expires)
        await r.zadd(keys.staging_index(), {staged_id: expires})

    await _raw(memory, op)


@pytest.mark.parametrize("kind", list(_garbage(BAD_ID)))
async def test_corrupt_staged_entry_is_skipped_and_reported(
    config: MemoryConfig, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    good = await contributor.stage_pattern({"content": "A sound pattern"}, "misc")
    value = _garbage(BAD_ID)[kind]
    await _plant(contributor, BAD_ID, value)
    with caplog.at_level(logging.WARNING, logger="attune"):
        assert await _staged_ids(validator) == [good]
    warned = [r for r in caplog.records if BAD_ID in r.getMessage()]
    assert warned, "the corrupt entry is reported in the log"
    assert all("copied" not in r.getMessage() and "not json" not in r.getMessage() for r in warned)
    reported = _events(validator, event_type="staging.corrupt", target_id=BAD_ID)
    assert reported and "copied" not in json.dumps(reported)

    for _ in range(2):  # the claim is released: the same error, not "being promoted"
        with pytest.raises(CorruptRecordError, match=BAD_ID) as caught:
            await validator.promote_pattern(BAD_ID)
        assert caught.value.record_id == BAD_ID
    with pytest.raises(CorruptRecordError, match=BAD_ID):
        await validator.reject_pattern(BAD_ID)
    assert await validator.long_term.count() == 0  # type: ignore[attr-defined]
    # The good one is unaffected.
    result = await validator.promote_pattern(good)
    assert result["staged_pattern_id"] == good
    await contributor.aclose()
    await validator.aclose()


async def test_index_member_without_an_entry_is_not_listed(config: MemoryConfig) -> None:
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    keys = contributor.short_term.keys  # type: ignore[attr-defined]
    expires = int(time.time() * 1000) + 600_000

    async def op(r: Any) -> None:
        await r.zadd(keys.staging_index(), {b"\xff-not-an-id": expires})
        await r.zadd(keys.staging_index(), {BAD_ID: expires})

    await _raw(contributor, op)
    good = await contributor.stage_pattern({"content": "Still listed"}, "misc")
    assert await _staged_ids(contributor) == [good]
    await contributor.aclose()


async def test_staged_key_of_another_type_is_corrupt(config: MemoryConfig) -> None:
    contributor, validator = AsyncUnifiedMemory("code_reviewer", config), _validator(config)
    keys = contributor.short_term.keys  # type: ignore[attr-defined]
    expires = int(time.time() * 1000) + 600_000

    async def op(r: Any) -> None:
        await r.hset(keys.staged_pattern(BAD_ID), "content", "a hash, not a string")
        await r.zadd(keys.staging_index(), {BAD_ID: expires})

    await _raw(contributor, op)
    good = await contributor.stage_pattern({"content": "Still listed"}, "misc")
    assert await _staged_ids(validator) == [good]
    for _ in range(2):  # the claim is released: the same error, not "being promoted"
        with pytest.raises(CorruptRecordError, match=BAD_ID):
            await validator.promote_pattern(BAD_ID)
    with pytest.raises(CorruptRecordError, match=BAD_ID):
        await validator.reject_pattern(BAD_ID)
    await contributor.aclose()
    await validator.aclose()


async def test_an_unknown_id_leaves_no_claim_behind(config: MemoryConfig) -> None:
    validator = _validator(config)
    keys = validator.short_term.keys  # type: ignore[attr-defined]
    for call in (validator.promote_pattern, validator.reject_pattern):
        with pytest.raises(PatternNotFoundError, match="not found"):
            await call(BAD_ID)

    async def op(r: Any) -> int:
        found: int = await r.exists(keys.staging_claim(BAD_ID))
        return found

    assert await _raw(validator, op) == 0
    await validator.aclose()


async def test_a_corrupt_entry_with_an_overlong_id_does_not_break_the_listing(
    config: MemoryConfig,
) -> None:
    contributor = AsyncUnifiedMemory("code_reviewer", config)
    long_id = "stg_" + "a" * 400
    await _plant(contributor, long_id, b"not json")
    good = await contributor.stage_pattern({"content": "Still listed"}, "misc")
    assert await _staged_ids(contributor) == [good]
    [reported] = _events(contributor, event_type="staging.corrupt")
    assert reported["target_id"].startswith("stg_aaaa")
    await contributor.aclose()


async def test_long_term_existing_counts_expired_records_and_pages(
    mock_config: MemoryConfig,
) -> None:
    """The source of truth for a promotion: which ids are stored, expired or not."""
    from attune.memory.long_term import InsertOp, PatternRecord, SQLiteLongTermStore

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    try:
        stored = [f"pat_{i:04d}" for i in range(0, 1300, 2)]
        records = [
            PatternRecord(
                pattern_id=pattern_id,
                pattern_type="misc",
                classification="PUBLIC",
                created_by="agent",
                created_at_ms=1,
                expires_at_ms=2,  # long expired
                metadata_json="{}",
                content=b"body",
            )
            for pattern_id in stored
        ]
        assert all(await asyncio.gather(*(store.write(InsertOp(r)) for r in records)))
        asked = [f"pat_{i:04d}" for i in range(1300)]
        assert await store.existing(asked) == set(stored)
        assert await store.existing([]) == set()
    finally:
        await store.aclose()
