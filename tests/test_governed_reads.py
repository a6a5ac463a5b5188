"""One governed read path: every public read respects the tier, the namespace and
retention, and is audited. The list of reads is enumerated from the class, so a new read
method that skips the path fails here until it is classified and checked."""

from __future__ import annotations

import inspect
import json
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from attune.errors import AccessDeniedError, PatternNotFoundError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.sqlite_schema import MIGRATIONS
from attune.memory.long_term.sqlite_store import DB_FILENAME

#: Reads of long-term records: each must pass the checks below.
LONG_TERM_READS: dict[str, Callable[[AsyncUnifiedMemory], Awaitable[set[str]]]] = {}


def _read(name: str) -> Callable[[Any], Any]:
    def register(fn: Any) -> Any:
        LONG_TERM_READS[name] = fn
        return fn

    return register


@_read("recall_pattern")
async def _recall(mem: AsyncUnifiedMemory, ids: list[str]) -> set[str]:
    found = set()
    for pid in ids:
        result = await mem.recall_pattern(pid)
        if result is not None:
            found.add(result["pattern_id"])
    return found


@_read("search_patterns")
async def _search(mem: AsyncUnifiedMemory, ids: list[str]) -> set[str]:
    return {r["pattern_id"] for r in await mem.search_patterns("lighthouse")}


@_read("list_patterns")
async def _list(mem: AsyncUnifiedMemory, ids: list[str]) -> set[str]:
    return {r["pattern_id"] for r in await mem.list_patterns()}


@_read("count_patterns")
async def _count(mem: AsyncUnifiedMemory, ids: list[str]) -> set[str]:
    return {f"count:{await mem.count_patterns()}"}  # a count names no ids


@_read("export_patterns")
async def _export(mem: AsyncUnifiedMemory, ids: list[str]) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.jsonl"
        await mem.export_patterns(out)
        return {json.loads(line)["pattern_id"] for line in out.read_bytes().splitlines()}


#: Reads only a STEWARD may make (checked with a STEWARD reader).
STEWARD_ONLY = {"export_patterns"}
#: The staged listing: namespace-scoped, checked below.
STAGED_READS = {"get_staged_patterns"}
#: Reads of this agent's own working data (per agent by key; no long-term records).
WORKING_DATA_READS = {"retrieve", "ttl"}
#: Everything else the class offers: writes, administration, lifecycle.
OTHERS = {
    "stash",
    "forget",
    "stage_pattern",
    "promote_pattern",
    "reject_pattern",
    "persist_pattern",
    "delete_pattern",
    "delete",
    "purge_expired",
    "rotate_keys",
    "import_patterns",
    "erase_user",
    "audit_pseudonym",
    "health_check",
    "aclose",
}


def test_every_public_coroutine_is_classified() -> None:
    public = {
        name
        for name, member in inspect.getmembers(AsyncUnifiedMemory)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    classified = set(LONG_TERM_READS) | STAGED_READS | WORKING_DATA_READS | OTHERS
    assert public == classified, (
        "classify every public method: a new read must go through the governed path and "
        f"be checked here (unclassified: {sorted(public - classified)})"
    )


async def _scenario(config: MemoryConfig) -> list[str]:
    """Three records that mention a lighthouse: one visible to an agent of namespace a,
    one in namespace b, one in a but past its retention. Returns their ids, in that order."""
    async with AsyncUnifiedMemory("writer-a", config, namespace="a") as a:
        visible = await a.persist_pattern(
            "The lighthouse keeper logs storms", "note", classification="SENSITIVE"
        )
        expired = await a.persist_pattern("Old lighthouse rota", "note")
    async with AsyncUnifiedMemory("writer-b", config, namespace="b") as b:
        other = await b.persist_pattern("A lighthouse in namespace b", "note")
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME)) as db, db:
        db.execute(
            "UPDATE patterns SET expires_at_ms = ? WHERE pattern_id = ?",
            (int(time.time() * 1000) - 1, expired["pattern_id"]),
        )
    return [visible["pattern_id"], other["pattern_id"], expired["pattern_id"]]


@pytest.mark.parametrize("method", sorted(LONG_TERM_READS))
async def test_each_read_sees_its_namespace_only_and_nothing_expired(
    mock_config: MemoryConfig, method: str
) -> None:
    ids = await _scenario(mock_config)
    tier = "STEWARD" if method in STEWARD_ONLY else "OBSERVER"
    async with AsyncUnifiedMemory("reader", mock_config, access_tier=tier, namespace="a") as reader:
        expected = {"count:1"} if method == "count_patterns" else {ids[0]}
        assert await LONG_TERM_READS[method](reader, ids) == expected
        events = reader.pipeline.audit_logger.query(user_id=await reader.audit_pseudonym())
        assert events, f"{method} left no audit event"
        assert all(e["tier"] == tier for e in events)
    async with AsyncUnifiedMemory(
        "steward", mock_config, access_tier="STEWARD", namespace="b"
    ) as steward:
        seen = await LONG_TERM_READS[method](steward, ids)
        assert seen <= {ids[1], "count:1"} and seen != {"count:0"}  # its own namespace: b


@pytest.mark.parametrize("method", sorted(set(LONG_TERM_READS) - {"recall_pattern"} - STEWARD_ONLY))
async def test_naming_another_namespace_needs_a_steward(
    mock_config: MemoryConfig, method: str
) -> None:
    async with AsyncUnifiedMemory(
        "reader", mock_config, access_tier="VALIDATOR", namespace="a"
    ) as reader:
        call = getattr(reader, method)
        with pytest.raises(AccessDeniedError):
            await (
                call("lighthouse", namespace="b")
                if method == "search_patterns"
                else call(namespace="b")
            )
        denied = reader.pipeline.audit_logger.query(event_type="access.check", outcome="denied")
        assert [e["details"]["action"] for e in denied] == ["read_other_namespace"]


async def test_the_staged_listing_and_decisions_keep_to_their_namespace(
    mock_config: MemoryConfig,
) -> None:
    async with (
        AsyncUnifiedMemory("finder-a", mock_config, namespace="a") as a,
        AsyncUnifiedMemory("finder-b", mock_config, namespace="b") as b,
        AsyncUnifiedMemory("judge-b", mock_config, access_tier="VALIDATOR", namespace="b") as judge,
        AsyncUnifiedMemory("steward", mock_config, access_tier="STEWARD", namespace="b") as st,
    ):
        mine = await a.stage_pattern({"content": "Cache warmers run at dawn"}, "ops")
        theirs = await b.stage_pattern(
            {"content": "Rotate the pager weekly"},
            "ops",
        )
        assert [p["pattern_id"] for p in await a.get_staged_patterns()] == [mine]
        assert [p["namespace"] for p in await b.get_staged_patterns()] == ["b"]
        with pytest.raises(PatternNotFoundError, match="namespace"):
            await judge.promote_pattern(mine)
        with pytest.raises(PatternNotFoundError, match="namespace"):
            await judge.reject_pattern(mine)
        assert [p["pattern_id"] for p in await a.get_staged_patterns()] == [mine]  # untouched
        promoted = await judge.promote_pattern(theirs)
        assert (await judge.recall_pattern(promoted["pattern_id"]))["namespace"] == "b"  # type: ignore[index]
        assert {p["pattern_id"] for p in await st.get_staged_patterns(namespace="*")} == {mine}
        with pytest.raises(AccessDeniedError):
            await a.get_staged_patterns(namespace="b")


async def test_a_store_of_the_previous_schema_migrates_and_is_searchable(
    mock_config: MemoryConfig,
) -> None:
    """A file written by schema version 3 (no namespace, no index): opened in place, its
    records belong to the default namespace, recall as before, and are found by search."""
    storage = mock_config.ensure_storage_dir()
    async with AsyncUnifiedMemory("seed", mock_config) as seed:  # seals with the key ring
        plain = seed.pipeline.seal("pat_old_plain", _public(), "Legacy harbour notes", {"k": "v"})
        secret = seed.pipeline.seal("pat_old_secret", _sensitive(), "Legacy harbour codes", {})
    (storage / DB_FILENAME).unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        (storage / (DB_FILENAME + suffix)).unlink(missing_ok=True)
    with closing(sqlite3.connect(storage / DB_FILENAME)) as db, db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version in (1, 2, 3):
            for statement in MIGRATIONS[version]:
                db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (3)")
        now = int(time.time() * 1000)
        for pid, label, sealed in (
            ("pat_old_plain", "PUBLIC", plain),
            ("pat_old_secret", "SENSITIVE", secret),
        ):
            db.execute(
                "INSERT INTO patterns (pattern_id, pattern_type, classification, created_by, "
                "created_at_ms, expires_at_ms, metadata, content, encrypted, key_id, "
                "wrapped_key, nonce, format) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,2)",
                (
                    pid,
                    "note",
                    label,
                    "seed",
                    now,
                    now + 10**9,
                    sealed.metadata_json,
                    sealed.content,
                    int(sealed.encrypted),
                    sealed.key_id,
                    sealed.wrapped_key,
                    sealed.nonce,
                ),
            )
    async with AsyncUnifiedMemory("reader", mock_config, access_tier="OBSERVER") as mem:
        recalled = await mem.recall_pattern("pat_old_secret")
        assert recalled is not None and recalled["content"] == "Legacy harbour codes"
        assert recalled["namespace"] == "default"
        found = {r["pattern_id"] for r in await mem.search_patterns("harbour")}
        assert found == {"pat_old_plain", "pat_old_secret"}
        assert await mem.count_patterns(metadata={"k": "v"}) == 1
    with closing(sqlite3.connect(storage / DB_FILENAME)) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == max(MIGRATIONS)


def _public() -> Any:
    from attune.memory.types import Classification

    return Classification.PUBLIC


def _sensitive() -> Any:
    from attune.memory.types import Classification

    return Classification.SENSITIVE


def test_staged_entries_written_before_namespaces_are_in_the_default_one() -> None:
    from attune.memory.security.staged import open_staged

    old = {
        "v": 2,
        "pattern_id": "stg_x",
        "pattern_type": "ops",
        "staged_at": "2026-01-01T00:00:00.000+00:00",
        "expires_at": "2026-01-02T00:00:00.000+00:00",
        "classification": "PUBLIC",
        "staged_by": "old-agent",
        "data": {"content": "Staged before namespaces"},
    }
    envelope, _data = open_staged(json.dumps(old), lambda: None)  # type: ignore[arg-type,return-value]
    assert envelope["namespace"] == "default"
