"""``attune migrate --to postgresql://...``: a SQLite store copied into PostgreSQL as stored,
resumable, verified, anchored in the audit chain; bad input refused before any write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attune.errors import AuditLogError, ConfigurationError, MigrationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.migration import Migration

asyncpg = pytest.importorskip("asyncpg")

LABELS = ("PUBLIC", "INTERNAL", "SENSITIVE")
#: The installed command, beside this interpreter.
ATTUNE = str(Path(sys.executable).parent / "attune")


def _config(storage: Path, database_url: str | None = None) -> MemoryConfig:
    return MemoryConfig(
        storage_dir=storage, environment="development", redis_mock=True, database_url=database_url
    )


async def _fill(storage: Path, n: int) -> dict[str, tuple[str, str]]:
    """``n`` records across classifications and two namespaces; id -> (text, namespace)."""
    written = {}
    for namespace in ("default", "team-b"):
        async with AsyncUnifiedMemory(
            "author", _config(storage), access_tier="STEWARD", namespace=namespace
        ) as memory:
            for i in range(n):
                if (i % 4 == 0) != (namespace == "team-b"):
                    continue
                text = f"harbour lighthouse note {i} about retries and backoff"
                result = await memory.persist_pattern(
                    text, "practice", classification=LABELS[i % 3], metadata={"n": i}
                )
                written[result["pattern_id"]] = (text, namespace)
    return written


async def _rows(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM patterns"))
    finally:
        await conn.close()


async def test_a_sqlite_store_is_copied_as_stored_and_found_in_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    written = await _fill(tmp_path, 30)
    report = await Migration(postgres_url, _config(tmp_path)).run()
    assert report["records"] == 30 and report["imported"] == 30 and report["skipped"] == 0
    assert report["verified"] == 30 and len(report["sha256"]) == 64
    assert report["keys_imported"] >= 1  # the key file's key, now in the database's ring
    assert report["by_classification"] == {"PUBLIC": 10, "INTERNAL": 10, "SENSITIVE": 10}
    assert list((tmp_path / "migrate").iterdir()) == [], "the export is deleted once verified"
    async with AsyncUnifiedMemory(
        "reader", _config(tmp_path, postgres_url), access_tier="STEWARD"
    ) as memory:
        for pattern_id, (text, namespace) in written.items():
            found = await memory.recall_pattern(pattern_id, namespace="*")
            assert found is not None and found["content"] == text
            assert found["namespace"] == namespace
        hits = await memory.search_patterns("lighthouse", namespace="*", limit=50)
        assert {h["pattern_id"] for h in hits} == set(written)
        events = memory.pipeline.audit_logger.query(event_type="store.migrate")
    assert len(events) == 1
    details = events[0]["details"]
    assert details["records"] == 30 and details["sha256"] == report["sha256"]
    assert details["source_audit_head"] == report["source_audit"]["head"]
    assert report["source_audit"]["events"] >= 30
    # The source is left as it was.
    async with AsyncUnifiedMemory("reader", _config(tmp_path), access_tier="STEWARD") as memory:
        assert await memory.count_patterns(namespace="*") == 30


async def _analyze_count(url: str) -> int:
    """How many times ANALYZE ran on the patterns table (autovacuum's not counted)."""
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'patterns'"
            )
        )
    finally:
        await conn.close()


async def test_an_interrupted_migration_resumes_where_it_stopped(
    tmp_path: Path, postgres_url: str
) -> None:
    await _fill(tmp_path, 24)
    first = Migration(postgres_url, _config(tmp_path))
    await first.export()
    await first.load()
    conn = await asyncpg.connect(postgres_url)
    try:  # as if the copy had stopped part way: 10 records never arrived
        await conn.execute(
            "DELETE FROM patterns WHERE pattern_id IN "
            "(SELECT pattern_id FROM patterns ORDER BY pattern_id LIMIT 10)"
        )
    finally:
        await conn.close()
    report = await Migration(postgres_url, _config(tmp_path)).run()
    assert (report["imported"], report["skipped"], report["verified"]) == (10, 14, 24)
    assert await _rows(postgres_url) == 24


async def test_a_copy_that_differs_from_its_source_fails_verification(
    tmp_path: Path, postgres_url: str
) -> None:
    await _fill(tmp_path, 6)
    migration = Migration(postgres_url, _config(tmp_path))
    await migration.export()
    await migration.load()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            "UPDATE patterns SET metadata = '{\"n\": 99}' WHERE pattern_id = "
            "(SELECT min(pattern_id) FROM patterns)"
        )
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="differ"):
        await migration.verify()


@pytest.mark.parametrize(
    "url", ["sqlite:///tmp/x.db", "redis://127.0.0.1:6379/0", "postgresql://h:99999/db", ""]
)
def test_a_target_that_is_not_postgresql_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError):
        Migration(url, _config(tmp_path))


def test_a_directory_without_a_sqlite_store_is_refused(tmp_path: Path, postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="no SQLite long-term store"):
        Migration(postgres_url, _config(tmp_path / "empty"))


async def test_a_source_whose_audit_chain_is_broken_migrates_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    await _fill(tmp_path, 4)
    log = _config(tmp_path).audit_log_path
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[2].replace(b"pattern", b"pattErn", 1) + b"".join(lines[3:]))
    with pytest.raises(AuditLogError, match="does not verify"):
        await Migration(postgres_url, _config(tmp_path)).run()
    assert await _rows(postgres_url) == 0


def test_the_cli_migrates_and_reports_json(tmp_path: Path, postgres_url: str) -> None:
    import asyncio

    asyncio.run(_fill(tmp_path, 5))
    env = {**os.environ, "ATTUNE_ENV": "development", "ATTUNE_REDIS_MOCK": "true"}
    env.pop("ATTUNE_DATABASE_URL", None)
    done = subprocess.run(
        [ATTUNE, "--storage-dir", str(tmp_path), "migrate", "--to", postgres_url, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["imported"] == 5 and report["verified"] == 5
    again = subprocess.run(
        [ATTUNE, "--storage-dir", str(tmp_path), "migrate", "--to", postgres_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "Copied 0 record(s)" in again.stdout and "5 already there" in again.stdout


async def test_a_resumed_migration_indexes_the_records_an_interrupted_one_left_unindexed(
    tmp_path: Path, postgres_url: str
) -> None:
    """A copy cut off after its inserts, before it indexed them for search: run again, it
    skips every record (all there) and still indexes those, so search finds them."""
    written = await _fill(tmp_path, 12)
    first = Migration(postgres_url, _config(tmp_path))
    await first.export()
    await first.load()
    conn = await asyncpg.connect(postgres_url)
    try:  # as if the process had died between the inserts and their indexing
        await conn.execute(
            "UPDATE patterns SET indexed = false, words = NULL, tokens = NULL, "
            "sensitive_tokens = NULL, facets = NULL"
        )
    finally:
        await conn.close()
    analyzed = await _analyze_count(postgres_url)
    report = await Migration(postgres_url, _config(tmp_path)).run()
    assert (report["imported"], report["skipped"], report["verified"]) == (0, 12, 12)
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM patterns WHERE NOT indexed") == 0
    finally:
        await conn.close()
    # ... and gathers the planner statistics the interrupted run did not (it imported
    # nothing new, and a filtered listing would sort every match until autovacuum runs).
    assert await _analyze_count(postgres_url) == analyzed + 1
    async with AsyncUnifiedMemory(
        "reader", _config(tmp_path, postgres_url), access_tier="STEWARD"
    ) as memory:
        hits = await memory.search_patterns("lighthouse", namespace="*", limit=50)
        assert {h["pattern_id"] for h in hits} == set(written)


async def test_keys_imported_counts_only_the_keys_the_database_ring_lacked(
    tmp_path: Path, postgres_url: str
) -> None:
    await _fill(tmp_path, 4)
    first = await Migration(postgres_url, _config(tmp_path)).run()
    assert first["keys_imported"] == 1  # the key file's key, new to the database's ring
    again = await Migration(postgres_url, _config(tmp_path)).run()
    assert again["keys_imported"] == 0  # already there: nothing added
    assert (again["imported"], again["skipped"]) == (0, 4)


async def test_two_migrations_at_once_each_keep_their_own_export(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two runs to the same database interleaved: one verifying (and deleting its export)
    never takes away the file the other still reads."""
    await _fill(tmp_path, 6)
    one, two = (
        Migration(postgres_url, _config(tmp_path)),
        Migration(postgres_url, _config(tmp_path)),
    )
    await one.export()
    await two.export()
    await one.load()
    await one.verify()
    await two.load()
    await two.verify()
    assert (one.report["imported"], two.report["skipped"], two.report["verified"]) == (6, 6, 6)
    assert list((tmp_path / "migrate").iterdir()) == [], "each export is deleted once verified"
    assert await _rows(postgres_url) == 6
