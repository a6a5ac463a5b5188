"""An export of a PostgreSQL store opens in another store with the same root key.

Its encrypted records' data keys are wrapped under ring keys that live in the database's
``key_ring_keys`` table; the export carries those ring keys, wrapped under the root key as
the database keeps them, and the importer joins them to its own ring or key file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from exports import tamper_ciphertext

from attune.errors import CorruptRecordError, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.crypto import generate_master_key

LABELS = ("PUBLIC", "INTERNAL", "SENSITIVE")


async def _export_from_postgres(postgres_url: str, tmp_path: Path) -> tuple[dict[str, str], Path]:
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "pg", database_url=postgres_url)
    async with AsyncUnifiedMemory("admin", config, access_tier="STEWARD") as admin:
        ids = {
            label: (
                await admin.persist_pattern(
                    f"Harbour crane schedule {label.lower()}", "ops", classification=label
                )
            )["pattern_id"]
            for label in LABELS
        }
        await admin.rotate_keys()  # two ring keys: the records' and the new active one
        out = tmp_path / "export.jsonl"
        manifest = await admin.export_patterns(out, namespace="*")
    assert manifest["keys"]  # the ids of the ring keys the records are under, not their bytes
    assert all(isinstance(k, str) and k.startswith("k_") for k in manifest["keys"])
    security_pipeline.close_shared()  # the next memory starts as a new process would
    return ids, out


async def _check_imported(config: MemoryConfig, ids: dict[str, str], out: Path) -> None:
    async with AsyncUnifiedMemory("admin", config, access_tier="STEWARD") as admin:
        counts = await admin.import_patterns(out)
        assert counts == {"imported": 3, "skipped": 0, "expired": 0}
        for label, pid in ids.items():
            recalled = await admin.recall_pattern(pid, namespace="*")
            assert recalled is not None
            assert recalled["content"] == f"Harbour crane schedule {label.lower()}"
        found = await admin.search_patterns("crane schedule", namespace="*")
        assert {r["pattern_id"] for r in found} == set(ids.values())
    security_pipeline.close_shared()


async def test_a_postgresql_export_imports_into_sqlite(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    ids, out = await _export_from_postgres(postgres_url, tmp_path)
    await _check_imported(MemoryConfig(redis_mock=True, storage_dir=tmp_path / "sqlite"), ids, out)


async def test_a_postgresql_export_imports_into_a_fresh_postgresql_database(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    ids, out = await _export_from_postgres(postgres_url, tmp_path)
    conn = await asyncpg.connect(postgres_url)
    try:  # the database as another deployment's: no records, no ring of its own yet
        await conn.execute("TRUNCATE patterns, store_meta, key_ring, key_ring_keys")
    finally:
        await conn.close()
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "pg2", database_url=postgres_url)
    await _check_imported(config, ids, out)


def _alter_first_key(manifest_path: Path) -> None:
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    wrapped = bytearray(manifest["keys"][0]["wrapped"].encode())
    wrapped[20] = ord("A") if wrapped[20] != ord("A") else ord("B")
    manifest["keys"][0]["wrapped"] = wrapped.decode()
    manifest_path.write_text(json.dumps(manifest))


async def test_an_altered_key_in_the_manifest_imports_nothing(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    _ids, out = await _export_from_postgres(postgres_url, tmp_path)
    _alter_first_key(Path(str(out) + ".manifest.json"))
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "sqlite")
    async with AsyncUnifiedMemory("admin", config, access_tier="STEWARD") as admin:
        with pytest.raises(ValidationError, match="does not open"):
            await admin.import_patterns(out)
        assert await admin.count_patterns(namespace="*") == 0
    security_pipeline.close_shared()


def _carried(out: Path) -> set[str]:
    """The ids of the keys the export's manifest carries."""
    return {k["id"] for k in json.loads(Path(str(out) + ".manifest.json").read_text())["keys"]}


async def _empty_database(postgres_url: str) -> None:
    """The database as another deployment's: no records, no ring of its own yet."""
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("TRUNCATE patterns, store_meta, key_ring, key_ring_keys")
    finally:
        await conn.close()


async def test_a_postgresql_export_round_trips_through_sqlite_into_postgresql(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL -> SQLite -> PostgreSQL with one root key: the SQLite store's export
    carries the ring keys it joined to its key file, so the last import opens its records."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    ids, out = await _export_from_postgres(postgres_url, tmp_path)
    sqlite = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "sqlite")
    await _check_imported(sqlite, ids, out)
    again = tmp_path / "again.jsonl"
    async with AsyncUnifiedMemory("admin", sqlite, access_tier="STEWARD") as admin:
        manifest = await admin.export_patterns(again, namespace="*")
    assert manifest["keys"] == sorted(_carried(out))  # the keys it was given, passed on
    security_pipeline.close_shared()
    await _empty_database(postgres_url)
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "pg2", database_url=postgres_url)
    await _check_imported(config, ids, again)


async def test_a_refused_import_leaves_the_key_ring_and_key_file_as_they_were(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    _ids, out = await _export_from_postgres(postgres_url, tmp_path)
    carried = _carried(out)
    tamper_ciphertext(out)
    # Into SQLite: the key file gains none of the export's keys.
    sqlite = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "sqlite")
    async with AsyncUnifiedMemory("admin", sqlite, access_tier="STEWARD") as admin:
        with pytest.raises(CorruptRecordError):
            await admin.import_patterns(out)
        assert await admin.count_patterns(namespace="*") == 0
        assert not carried & set(admin.pipeline.cipher.ring.key_ids)
    key_file = tmp_path / "sqlite" / "master.key"  # none before: ATTUNE_MASTER_KEY is set
    assert not key_file.exists() or not carried & set(json.loads(key_file.read_text())["keys"])
    security_pipeline.close_shared()
    # Into another PostgreSQL deployment: its ring gains none of them.
    await _empty_database(postgres_url)
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "pg2", database_url=postgres_url)
    async with AsyncUnifiedMemory("admin", config, access_tier="STEWARD") as admin:
        with pytest.raises(CorruptRecordError):
            await admin.import_patterns(out)
        assert await admin.count_patterns(namespace="*") == 0
    security_pipeline.close_shared()
    conn = await asyncpg.connect(postgres_url)
    try:
        in_ring = {r[0] for r in await conn.fetch("SELECT key_id FROM key_ring_keys")}
    finally:
        await conn.close()
    assert in_ring and not carried & in_ring
