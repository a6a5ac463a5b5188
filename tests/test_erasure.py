"""Erasure (right to be forgotten) and audit pseudonyms: ``erase_user`` removes everything a
user wrote, from both tiers and from the files, and the audit log never names a user in
clear, so it stays whole (and verifiable) after an erasure."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis

from attune.errors import AccessDeniedError, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.security.audit import AuditLogger
from attune.memory.security.pipeline import close_shared

ALICE = "alice-7f3k"
#: Words only Alice's content holds (no other record, no code, has them).
HER_WORDS = ("quorbliness", "zentravixal", "glimmerwort", "flumpadoodle", "snorkelbane")


def _files(storage: Path) -> dict[str, bytes]:
    return {str(p.relative_to(storage)): p.read_bytes() for p in storage.rglob("*") if p.is_file()}


def _traces(blobs: dict[str, bytes], needles: tuple[str, ...]) -> dict[str, list[str]]:
    """Which needles each blob holds (as UTF-8 bytes)."""
    found = {name: [n for n in needles if n.encode() in blob] for name, blob in blobs.items()}
    return {name: hits for name, hits in found.items() if hits}


def _redis_blobs(url: str, prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix`` with its value(s), as bytes."""
    client = redis.Redis.from_url(url)
    blobs: dict[str, bytes] = {}
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            kind = client.type(key)
            if kind == b"string":
                value = client.get(key) or b""
            elif kind == b"zset":
                value = b" ".join(m for m, _s in client.zrange(key, 0, -1, withscores=True))
            else:
                value = repr(client.dump(key)).encode()
            blobs[key.decode()] = key + b" " + value
    finally:
        client.close()
    return blobs


async def _alice_writes(config: MemoryConfig) -> dict[str, Any]:
    """Alice writes in every way (both tiers, every classification, two namespaces); Bob
    promotes one of her staged patterns; Carol writes one record of her own."""
    alice = AsyncUnifiedMemory(ALICE, config, namespace="team-a")
    bob = AsyncUnifiedMemory("bob-validator", config, access_tier="VALIDATOR", namespace="team-a")
    carol = AsyncUnifiedMemory("carol", config, namespace="team-a")
    try:
        await alice.stash("notes", {"draft": "quorbliness draft"})
        ids = [
            (await alice.persist_pattern(text, "note", classification=label))["pattern_id"]
            for text, label in (
                ("quorbliness checks come first", "PUBLIC"),
                ("zentravixal rollout notes", "INTERNAL"),
                ("snorkelbane incident details", "SENSITIVE"),
            )
        ]
        other_ns = AsyncUnifiedMemory(ALICE, config, namespace="team-b")
        ids.append((await other_ns.persist_pattern("quorbliness in team b", "note"))["pattern_id"])
        await other_ns.aclose()
        kept = await alice.stage_pattern({"content": "glimmerwort staged idea"}, "note")
        to_promote = await alice.stage_pattern({"content": "flumpadoodle reviewed idea"}, "note")
        promoted = await bob.promote_pattern(to_promote)
        theirs = await carol.persist_pattern("Carol keeps her own notes", "note")
        await carol.stash("notes", {"mine": True})
        return {
            "alice_ids": ids,
            "staged": kept,
            "promoted": promoted["pattern_id"],
            "carol": theirs["pattern_id"],
            "alice_pseudonym": await alice.audit_pseudonym(),
        }
    finally:
        for m in (alice, bob, carol):
            await m.aclose()


async def test_erase_user_leaves_no_trace_in_the_store_redis_or_the_audit_log(
    redis_config: MemoryConfig, redis_url: str, key_prefix: str
) -> None:
    config = redis_config
    written = await _alice_writes(config)
    storage = config.storage_dir
    close_shared()
    needles = (ALICE, *HER_WORDS)
    # The test can fail: before the erasure her id and her plaintext are there to find.
    before = _traces(_files(storage), needles)
    assert ALICE in before.get(DB_FILENAME, []) + before.get(f"{DB_FILENAME}-wal", [])
    assert ALICE in str(_traces(_redis_blobs(redis_url, key_prefix), needles))

    async with AsyncUnifiedMemory("dpo", config, access_tier="STEWARD") as steward:
        erased = await steward.erase_user(ALICE)
        assert erased == {
            "user_id": ALICE,
            "patterns": 5,  # 3 in team-a, 1 in team-b, 1 promoted by Bob
            "staged_patterns": 1,
            "working_data": 1,
            "pseudonym_erased": True,
        }
        for pid in [*written["alice_ids"], written["promoted"]]:
            assert await steward.recall_pattern(pid, namespace="*") is None
        assert await steward.recall_pattern(written["carol"], namespace="*") is not None
        for word in HER_WORDS:
            assert await steward.search_patterns(word, namespace="*") == []
        assert await steward.count_patterns(created_by=ALICE, namespace="*") == 0
        assert await steward.get_staged_patterns(namespace="*") == []
        assert await steward.retrieve("notes", agent_id=ALICE) is None
        assert await steward.retrieve("notes", agent_id="carol") == {"mine": True}
        assert await steward.audit_pseudonym(ALICE) is None
    close_shared()

    assert _traces(_files(storage), needles) == {}
    assert _traces(_redis_blobs(redis_url, key_prefix), needles) == {}
    # The log is whole: her events are there, under a name nothing links to her now.
    log = AuditLogger(log_file=storage / "audit.jsonl")
    try:
        assert log.verify()
        hers = log.query(user_id=written["alice_pseudonym"], limit=None)
        assert {e["event"] for e in hers} >= {"pattern.store", "pattern.stage"}
        erasures = log.query(event_type="user.erase", limit=None)
        assert [e["target_id"] for e in erasures] == [written["alice_pseudonym"]]
    finally:
        log.close()


async def test_the_audit_log_names_agents_by_pseudonym_only(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory(ALICE, mock_config) as alice:
        await alice.persist_pattern("Prefer small commits", "process")
        await alice.stage_pattern({"content": "Try smaller batches"}, "process")
        mine = await alice.audit_pseudonym()
    async with AsyncUnifiedMemory(ALICE, mock_config) as again:
        assert await again.audit_pseudonym() == mine  # stable across objects and opens
    async with AsyncUnifiedMemory("bob", mock_config) as bob:
        assert await bob.audit_pseudonym() != mine
        with pytest.raises(AccessDeniedError):
            await bob.audit_pseudonym(ALICE)  # another user's: STEWARD only
    async with AsyncUnifiedMemory("dpo", mock_config, access_tier="STEWARD") as steward:
        assert await steward.audit_pseudonym(ALICE) == mine
        assert await steward.audit_pseudonym("never-seen") is None
    close_shared()
    log = (mock_config.storage_dir / "audit.jsonl").read_bytes()
    assert mine.encode() in log
    assert ALICE.encode() not in log


async def test_erase_user_is_for_stewards_and_refuses_bad_ids(config: MemoryConfig) -> None:
    await _alice_writes(config)
    db = config.storage_dir / DB_FILENAME

    def stored() -> list[Any]:
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute("SELECT pattern_id FROM patterns ORDER BY 1").fetchall()

    rows = stored()
    for tier in ("OBSERVER", "CONTRIBUTOR", "VALIDATOR"):
        async with AsyncUnifiedMemory("someone", config, access_tier=tier) as mem:
            with pytest.raises(AccessDeniedError):
                await mem.erase_user(ALICE)
    async with AsyncUnifiedMemory("dpo", config, access_tier="STEWARD") as steward:
        for bad in ("", "a b", "x{y}", 7, None, "\x00", "a" * 129):
            with pytest.raises(ValidationError):
                await steward.erase_user(bad)  # type: ignore[arg-type]
        assert stored() == rows
        assert await steward.retrieve("notes", agent_id=ALICE) is not None
        # An unknown user: nothing to erase, nothing else touched.
        assert await steward.erase_user("nobody") == {
            "user_id": "nobody",
            "patterns": 0,
            "staged_patterns": 0,
            "working_data": 0,
            "pseudonym_erased": False,
        }
        assert stored() == rows


async def test_working_data_erasure_touches_only_that_agents_keys(
    redis_config: MemoryConfig,
) -> None:
    """Glob characters in ids are literal, and a longer id sharing the prefix is spared."""
    agents = ["a*", "a", "ab", "a?", "a[b]"]
    for agent in agents:
        async with AsyncUnifiedMemory(agent, redis_config) as mem:
            for n in range(3):
                await mem.stash(f"k{n}", n)
    async with AsyncUnifiedMemory("dpo", redis_config, access_tier="STEWARD") as steward:
        assert (await steward.erase_user("a*"))["working_data"] == 3
        assert await steward.retrieve("k0", agent_id="a*") is None
        for agent in agents[1:]:
            assert [await steward.retrieve(f"k{n}", agent_id=agent) for n in range(3)] == [0, 1, 2]
        assert (await steward.erase_user("a"))["working_data"] == 3
        assert await steward.retrieve("k1", agent_id="ab") == 1


async def test_promoted_sensitive_content_is_erased_without_search_tokens(
    key_prefix: str, storage_dir: Path
) -> None:
    """With ``search_index_sensitive=False`` SENSITIVE records carry no word tokens, but
    their metadata facets stay: the erasure still finds what the user staged."""
    config = MemoryConfig(
        redis_mock=True,
        storage_dir=storage_dir,
        key_prefix=key_prefix,
        search_index_sensitive=False,
    )
    async with (
        AsyncUnifiedMemory(ALICE, config) as alice,
        AsyncUnifiedMemory("bob", config, access_tier="VALIDATOR") as bob,
        AsyncUnifiedMemory("dpo", config, access_tier="STEWARD") as steward,
    ):
        staged = await alice.stage_pattern({"content": "Internal ticket rota"}, "process")
        promoted = await bob.promote_pattern(staged, classification="SENSITIVE")
        kept = await bob.persist_pattern("Bob's own", "process", classification="SENSITIVE")
        assert (await steward.erase_user(ALICE))["patterns"] == 1
        assert await steward.recall_pattern(promoted["pattern_id"]) is None
        assert await steward.recall_pattern(kept["pattern_id"]) is not None


def test_blocking_facade_erases_too(mock_config: MemoryConfig) -> None:
    alice = UnifiedMemory(ALICE, mock_config)
    stored = alice.persist_pattern("quorbliness again", "note")
    alice.close()
    steward = UnifiedMemory("dpo", mock_config, access_tier="STEWARD")
    try:
        assert steward.erase_user(ALICE)["patterns"] == 1
        assert steward.recall_pattern(stored["pattern_id"]) is None
    finally:
        steward.close()


async def test_an_erased_agent_that_writes_again_gets_a_new_pseudonym(
    mock_config: MemoryConfig,
) -> None:
    async with AsyncUnifiedMemory("dpo", mock_config, access_tier="STEWARD") as steward:
        await steward.persist_pattern("Steward's note", "process")
        old = await steward.audit_pseudonym()
        assert (await steward.erase_user("dpo"))["patterns"] == 1
        await steward.persist_pattern("A new note", "process")
        new = await steward.audit_pseudonym()
        assert new is not None and new != old


async def test_a_promotion_whose_search_row_is_not_written_yet_is_erased(
    mock_config: MemoryConfig,
) -> None:
    """Another process's new record has no search row for up to 50 ms: the erasure indexes
    such records first, even on a memory object that searched (and backfilled) before."""
    async with (
        AsyncUnifiedMemory(ALICE, mock_config) as alice,
        AsyncUnifiedMemory("bob", mock_config, access_tier="VALIDATOR") as bob,
        AsyncUnifiedMemory("dpo", mock_config, access_tier="STEWARD") as steward,
    ):
        staged = await alice.stage_pattern({"content": "Rotate the pager weekly"}, "process")
        promoted = (await bob.promote_pattern(staged))["pattern_id"]
        assert await steward.search_patterns("pager")  # indexed; the steward has backfilled
        with closing(sqlite3.connect(mock_config.storage_dir / DB_FILENAME)) as db, db:
            (rowid,) = db.execute(
                "SELECT search_rowid FROM patterns WHERE pattern_id = ?", (promoted,)
            ).fetchone()
            db.execute("UPDATE patterns SET search_rowid = NULL WHERE pattern_id = ?", (promoted,))
            db.execute("DELETE FROM pattern_search WHERE rowid = ?", (rowid,))
        assert (await steward.erase_user(ALICE))["patterns"] == 1
        assert await steward.recall_pattern(promoted) is None


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_a_promotion_from_a_user_whose_id_looks_like_an_email_is_erased(
    mock_config: MemoryConfig, classification: str
) -> None:
    """A promoted record keeps who staged it as the agent id itself: the PII scrubber
    would make an email-shaped id "[EMAIL]", which erasure could then not find (and a
    user named "[EMAIL]" would erase everyone's promotions)."""
    user = "analyst@company.com"
    async with (
        AsyncUnifiedMemory(user, mock_config) as analyst,
        AsyncUnifiedMemory("lead", mock_config, access_tier="VALIDATOR") as lead,
        AsyncUnifiedMemory("dpo", mock_config, access_tier="STEWARD") as steward,
    ):
        staged = await analyst.stage_pattern(
            {"content": "Validate user input at API boundaries", "owner": "ops@company.com"},
            "practice",
        )
        promoted = (await lead.promote_pattern(staged, classification=classification))["pattern_id"]
        recalled = await steward.recall_pattern(promoted)
        assert recalled is not None
        assert recalled["metadata"]["staged_by"] == user
        assert recalled["metadata"]["promoted_by"] == "lead"
        assert recalled["metadata"]["owner"] == "[EMAIL]"  # the data is scrubbed as before
        assert (await steward.erase_user("[EMAIL]"))["patterns"] == 0
        assert (await steward.erase_user(user))["patterns"] == 1
        assert await steward.recall_pattern(promoted) is None


async def test_erasure_never_takes_a_record_that_only_claims_to_be_a_promotion(
    mock_config: MemoryConfig,
) -> None:
    """Any writer may put ``staged_by`` (and ``promoted_from``) in its metadata; only a
    real promotion's record has the id its staged pattern gives, so erasing that user
    leaves another user's record alone."""
    async with (
        AsyncUnifiedMemory("bob", mock_config) as bob,
        AsyncUnifiedMemory("dpo", mock_config, access_tier="STEWARD") as steward,
    ):
        forged = await bob.persist_pattern(
            "bob's own retry note",
            "tip",
            metadata={"staged_by": ALICE, "promoted_from": "stg_" + "0" * 32},
        )
        assert (await steward.erase_user(ALICE))["patterns"] == 0
        assert await steward.recall_pattern(forged["pattern_id"]) is not None


async def test_deciding_a_staged_pattern_that_was_erased_says_so(config: MemoryConfig) -> None:
    """A validator holding the id of a staged pattern whose author was erased is told it
    was erased; it was told another agent was deciding it right now, for a day."""
    from attune.errors import PatternNotFoundError

    async with AsyncUnifiedMemory(ALICE, config) as alice:
        staged = await alice.stage_pattern({"content": "quorbliness in staging"}, "note")
    async with AsyncUnifiedMemory("dpo", config, access_tier="STEWARD") as steward:
        assert (await steward.erase_user(ALICE))["staged_patterns"] == 1
    async with AsyncUnifiedMemory("val", config, access_tier="VALIDATOR") as validator:
        for decide in (validator.promote_pattern, validator.reject_pattern):
            with pytest.raises(PatternNotFoundError, match="it was erased") as info:
                await decide(staged)
            assert "right now" not in str(info.value)


@pytest.mark.parametrize("promotion", ["commits", "fails"])
async def test_a_promotion_in_progress_is_waited_for_and_its_record_erased(
    config: MemoryConfig, monkeypatch: pytest.MonkeyPatch, promotion: str
) -> None:
    """A validator had claimed Alice's staged pattern and was about to commit its record
    when the erasure ran: the erasure skipped the claimed entry, found no record yet, and
    the promoted record (her content, ``staged_by`` her id) was committed after it and
    kept for good. The erasure now waits for the claim's fate: a committed promotion's
    record is erased with hers; a promotion that fails leaves the entry, which is erased."""
    import asyncio

    from attune.memory.staging import StagingArea

    checked, go_on = asyncio.Event(), asyncio.Event()
    check_claim = StagingArea.check_claim

    async def paused(self: StagingArea, claimed: Any) -> None:
        checked.set()
        await go_on.wait()
        if promotion == "fails":
            raise RuntimeError("the validator's process gave up")
        await check_claim(self, claimed)

    async with (
        AsyncUnifiedMemory(ALICE, config) as alice,
        AsyncUnifiedMemory("bob", config, access_tier="VALIDATOR") as bob,
        AsyncUnifiedMemory("dpo", config, access_tier="STEWARD") as steward,
    ):
        staged = await alice.stage_pattern({"content": "quorbliness in review"}, "note")
        monkeypatch.setattr(StagingArea, "check_claim", paused)
        promoting = asyncio.ensure_future(bob.promote_pattern(staged))
        await asyncio.wait_for(checked.wait(), 10)  # claimed, its record not committed
        erasing = asyncio.ensure_future(steward.erase_user(ALICE))
        await asyncio.sleep(0.2)  # the erasure meets the claim and waits for its fate
        assert not erasing.done()
        go_on.set()
        if promotion == "commits":
            pattern_id = (await promoting)["pattern_id"]
            counts = await asyncio.wait_for(erasing, 10)
            assert (counts["patterns"], counts["staged_patterns"]) == (1, 0)
            assert await steward.recall_pattern(pattern_id, namespace="*") is None
        else:
            with pytest.raises(RuntimeError):
                await promoting
            counts = await asyncio.wait_for(erasing, 10)
            assert (counts["patterns"], counts["staged_patterns"]) == (0, 1)
        assert await steward.get_staged_patterns(namespace="*") == []
        assert await steward.search_patterns("quorbliness", namespace="*") == []
