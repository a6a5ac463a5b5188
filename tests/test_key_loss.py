"""A lost master key or an emptied database is refused, never papered over (issue 13, item 7).

Before: in development a missing key file was silently replaced by a new key (every earlier
encrypted record unreadable), and an empty or missing ``patterns.db`` was silently started
afresh (every id recalled as None). Now a directory that shows it held data refuses with a
:class:`ConfigurationError` saying what is missing and how to restore it, and touches nothing.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from attune.cli import main
from attune.errors import ConfigurationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security import pipeline as security_pipeline

MARKER = "attune-store.json"


def memory(config: MemoryConfig, tier: str = "CONTRIBUTOR") -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("agent-1", config, access_tier=tier)


async def write_some(config: MemoryConfig) -> tuple[str, str]:
    """A PUBLIC and a SENSITIVE record; returns their ids (everything closed after)."""
    async with memory(config) as mem:
        public = await mem.persist_pattern("Prefer small commits", "process")
        sensitive = await mem.persist_pattern(
            "Patient handoff protocol", "clinical", classification="SENSITIVE"
        )
    security_pipeline.close_shared()
    return str(public["pattern_id"]), str(sensitive["pattern_id"])


def listing(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(path.iterdir())}


# -- the master key ----------------------------------------------------------------------------


@pytest.mark.parametrize("marker", [True, False], ids=["with-marker", "older-store"])
async def test_a_deleted_key_file_is_refused_and_no_key_is_created(
    mock_config: MemoryConfig, marker: bool
) -> None:
    storage = mock_config.storage_dir
    public, sensitive = await write_some(mock_config)
    (storage / "master.key").unlink()
    if not marker:  # a directory from before the marker: patterns.db is the evidence
        (storage / MARKER).unlink()
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError) as info:
            await mem.recall_pattern(sensitive)
        message = str(info.value)
        assert str(storage / "master.key") in message
        assert "Restore the key file from a backup" in message and "ATTUNE_MASTER_KEY" in message
        assert "move the storage directory" in message
        with pytest.raises(ConfigurationError, match="master key file"):
            await mem.persist_pattern("Patient follow-up", "clinical", classification="SENSITIVE")
        # What needs no key keeps working.
        pattern = await mem.recall_pattern(public)
        assert pattern is not None and pattern["content"] == "Prefer small commits"
    assert not (storage / "master.key").exists()


async def test_the_restored_key_file_reads_everything_again(mock_config: MemoryConfig) -> None:
    storage = mock_config.storage_dir
    _public, sensitive = await write_some(mock_config)
    backup = (storage / "master.key").read_bytes()
    (storage / "master.key").unlink()
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError):
            await mem.recall_pattern(sensitive)
    security_pipeline.close_shared()
    (storage / "master.key").write_bytes(backup)
    (storage / "master.key").chmod(0o600)
    async with memory(mock_config) as mem:
        pattern = await mem.recall_pattern(sensitive)
    assert pattern is not None and pattern["content"] == "Patient handoff protocol"


async def test_an_environment_key_that_is_unset_is_not_replaced(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", key)
    _public, sensitive = await write_some(mock_config)
    assert not (mock_config.storage_dir / "master.key").exists()
    monkeypatch.delenv("ATTUNE_MASTER_KEY")
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError, match="ATTUNE_MASTER_KEY"):
            await mem.recall_pattern(sensitive)
    assert not (mock_config.storage_dir / "master.key").exists()
    security_pipeline.close_shared()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", key)
    async with memory(mock_config) as mem:
        assert await mem.recall_pattern(sensitive) is not None


async def test_rotation_still_works_and_a_rotated_key_file_is_protected(
    mock_config: MemoryConfig,
) -> None:
    storage = mock_config.storage_dir
    _public, sensitive = await write_some(mock_config)
    async with memory(mock_config, "STEWARD") as mem:
        rotated = await mem.rotate_keys()
        assert rotated["rewrapped"] == 1
        newer = await mem.persist_pattern("Patient intake", "clinical", classification="SENSITIVE")
    security_pipeline.close_shared()
    async with memory(mock_config) as mem:
        for pattern_id in (sensitive, newer["pattern_id"]):
            assert await mem.recall_pattern(pattern_id) is not None
    security_pipeline.close_shared()
    (storage / "master.key").unlink()
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError, match=rotated["key_id"]):
            await mem.recall_pattern(sensitive)
    assert not (storage / "master.key").exists()


# -- the database --------------------------------------------------------------------------------


async def test_an_emptied_database_is_refused_and_left_untouched(
    mock_config: MemoryConfig,
) -> None:
    storage = mock_config.storage_dir
    public, _sensitive = await write_some(mock_config)
    db = storage / "patterns.db"
    db.write_bytes(b"")  # emptied: 0 bytes
    before = listing(storage)
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError) as info:
            await mem.recall_pattern(public)
        message = str(info.value)
        assert str(db) in message and "0 bytes" in message
        assert "restore patterns.db from a backup" in message
        assert "move the storage directory" in message
        with pytest.raises(ConfigurationError):
            await mem.persist_pattern("Another", "process")
        health = await mem.health_check()
    assert health["long_term"]["available"] is False
    assert "restore patterns.db" in health["long_term"]["error"]
    after = listing(storage)
    assert after.pop("audit.jsonl") >= before.pop("audit.jsonl")  # the refusals' events
    assert after == before  # nothing created, nothing grown


@pytest.mark.parametrize("marker", [True, False], ids=["with-marker", "older-store"])
async def test_a_missing_database_is_refused_and_not_recreated(
    mock_config: MemoryConfig, marker: bool
) -> None:
    storage = mock_config.storage_dir
    public, _sensitive = await write_some(mock_config)
    for name in ("patterns.db", "patterns.db-wal", "patterns.db-shm"):
        (storage / name).unlink(missing_ok=True)
    if not marker:  # older directory: the audit log shows patterns were stored
        (storage / MARKER).unlink()
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError, match="is missing"):
            await mem.recall_pattern(public)
    assert not (storage / "patterns.db").exists()


async def test_a_database_without_its_tables_is_refused(mock_config: MemoryConfig) -> None:
    storage = mock_config.storage_dir
    public, _sensitive = await write_some(mock_config)
    (storage / "patterns.db").unlink()
    with closing(sqlite3.connect(storage / "patterns.db")) as conn:
        conn.execute("PRAGMA user_version = 7")  # a valid, non-empty, table-less file
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError, match="no attune tables"):
            await mem.recall_pattern(public)
    with closing(sqlite3.connect(storage / "patterns.db")) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


async def test_an_audit_log_of_staging_only_does_not_block_a_first_database(
    mock_config: MemoryConfig,
) -> None:
    """Events in the audit log, no patterns.db: only a stored pattern proves one existed.
    (Staging keeps only the agent's audit pseudonym in patterns.db; here that file is gone,
    as on a deployment that staged before it kept pseudonyms there.)"""
    storage = mock_config.storage_dir
    async with memory(mock_config) as mem:
        await mem.stage_pattern({"content": "Try smaller batches"}, "process")
    security_pipeline.close_shared()
    assert (storage / "audit.jsonl").stat().st_size > 0
    for name in ("patterns.db", "patterns.db-wal", "patterns.db-shm"):
        (storage / name).unlink(missing_ok=True)
    (storage / MARKER).unlink(missing_ok=True)
    async with memory(mock_config) as mem:
        stored = await mem.persist_pattern("Prefer small commits", "process")
        assert await mem.recall_pattern(stored["pattern_id"]) is not None


# -- fresh directories ---------------------------------------------------------------------------


async def test_a_fresh_directory_starts_as_before(mock_config: MemoryConfig) -> None:
    storage = mock_config.storage_dir
    assert not storage.exists()
    public, sensitive = await write_some(mock_config)
    names = set(listing(storage))
    assert {"patterns.db", "master.key", "audit.jsonl", MARKER} <= names
    async with memory(mock_config) as mem:
        assert await mem.recall_pattern(public) is not None
        assert await mem.recall_pattern(sensitive) is not None


async def test_a_store_moved_aside_starts_over(mock_config: MemoryConfig, tmp_path: Path) -> None:
    storage = mock_config.storage_dir
    await write_some(mock_config)
    (storage / "master.key").unlink()
    storage.rename(tmp_path / "moved-aside")
    _public, sensitive = await write_some(mock_config)
    async with memory(mock_config) as mem:
        assert await mem.recall_pattern(sensitive) is not None


def test_the_demo_runs_twice_in_one_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--storage-dir", str(tmp_path)]) == 0
    security_pipeline.close_shared()
    assert main(["demo", "--storage-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("Audit log: audit log intact") == 2


# -- the marker ----------------------------------------------------------------------------------


async def test_the_marker_records_the_database_and_the_keys_in_use(
    mock_config: MemoryConfig,
) -> None:
    await write_some(mock_config)
    doc = json.loads((mock_config.storage_dir / MARKER).read_text())
    key_file = json.loads((mock_config.storage_dir / "master.key").read_text())
    assert doc["long_term"] is True
    assert doc["key_ids"] == [key_file["active"]]
    assert (mock_config.storage_dir / MARKER).stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"long_term": true, "key_ids": "k"}'])
async def test_a_damaged_marker_still_counts_and_is_repaired(
    mock_config: MemoryConfig, damage: bytes
) -> None:
    storage = mock_config.storage_dir
    public, _sensitive = await write_some(mock_config)
    (storage / MARKER).write_bytes(damage)
    async with memory(mock_config) as mem:  # everything present: works, marker rewritten
        assert await mem.recall_pattern(public) is not None
        await mem.persist_pattern("Patient intake", "clinical", classification="SENSITIVE")
    security_pipeline.close_shared()
    doc = json.loads((storage / MARKER).read_text())
    assert doc["long_term"] is True and all(k.startswith("k_") for k in doc["key_ids"])
    (storage / MARKER).write_bytes(damage)
    (storage / "patterns.db").write_bytes(b"")
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError, match="0 bytes"):
            await mem.recall_pattern(public)


@pytest.mark.parametrize("environment", ["staging", "production"])
async def test_outside_development_a_lost_key_is_named_not_replaced(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    """No key is ever created there; the error says to restore it (not to generate one)."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    _public, sensitive = await write_some(mock_config)
    monkeypatch.delenv("ATTUNE_MASTER_KEY")
    config = MemoryConfig(
        environment=environment,
        redis_url="redis://127.0.0.1:1/0",  # never reached: only the long-term tier is used
        storage_dir=mock_config.storage_dir,
    )
    async with memory(config) as mem:
        with pytest.raises(ConfigurationError, match="Restore the key file from a backup"):
            await mem.recall_pattern(sensitive)
        with pytest.raises(ConfigurationError, match="Restore the key file from a backup"):
            await mem.persist_pattern("Patient intake", "clinical", classification="SENSITIVE")
    assert not (mock_config.storage_dir / "master.key").exists()
