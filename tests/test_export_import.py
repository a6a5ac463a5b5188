"""Export / import of long-term records (issue 15, item 6): records leave exactly as
stored (never the plaintext of an encrypted one), come back identical in another store that
shares the master key, and a damaged or altered export imports nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from exports import manifest_of, rewrite, tamper_ciphertext

from attune.errors import AccessDeniedError, AttuneError, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.export_file import MANIFEST_SUFFIX
from attune.memory.long_term.sqlite_schema import COLUMNS
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.security.pipeline import close_shared

SECRET = "Vault combination for the harbour lighthouse is 4417"


def _other_store(config: MemoryConfig, tmp_path: Path, name: str = "other") -> MemoryConfig:
    """A fresh storage directory of its own, sharing ``config``'s master key file."""
    return MemoryConfig(
        redis_mock=True,
        storage_dir=tmp_path / name,
        key_prefix=config.key_prefix + name,
        master_key_file=config.storage_dir / "master.key",
    )


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _rows(config: MemoryConfig) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME)) as db:
        return list(db.execute(f"SELECT {COLUMNS} FROM patterns ORDER BY pattern_id"))


async def _seed(config: MemoryConfig) -> dict[str, str]:
    """One record of each classification, in namespace "default"; label -> id."""
    ids = {}
    async with AsyncUnifiedMemory("writer", config) as mem:
        for label, content in (
            ("PUBLIC", "The public lighthouse opens at nine"),
            ("INTERNAL", "The internal lighthouse rota changes weekly"),
            ("SENSITIVE", SECRET),
        ):
            stored = await mem.persist_pattern(
                content, "note", classification=label, metadata={"label": label, "n": 1}
            )
            ids[label] = stored["pattern_id"]
    return ids


async def _seed_and_export(config: MemoryConfig, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """:func:`_seed`, then a STEWARD's export of it to ``tmp_path/export.jsonl``."""
    ids = await _seed(config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", config, access_tier="STEWARD") as admin:
        await admin.export_patterns(out)
    return ids, out


async def test_round_trip_to_a_fresh_store_recalls_identically_and_is_searchable(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    ids = await _seed(mock_config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        manifest = await admin.export_patterns(out)
        originals = {pid: await admin.recall_pattern(pid) for pid in ids.values()}
        events = admin.pipeline.audit_logger.query(event_type="pattern.export")
        assert [e["details"]["count"] for e in events] == [3]
    assert manifest["records"] == 3 and manifest["namespace"] == "default"
    assert manifest["by_classification"] == {"PUBLIC": 1, "INTERNAL": 1, "SENSITIVE": 1}
    assert manifest_of(out) == manifest
    assert len(out.read_bytes().splitlines()) == 3
    # Exactly as stored: the SENSITIVE record's plaintext is nowhere in the file.
    data = out.read_bytes()
    assert b"4417" not in data and b"Vault" not in data and b"combination" not in data
    assert _listing(tmp_path) == ["export.jsonl", "export.jsonl" + MANIFEST_SUFFIX, "storage"]

    other = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("admin", other, access_tier="STEWARD") as admin:
        assert await admin.import_patterns(out) == {"imported": 3, "skipped": 0, "expired": 0}
        for pid, original in originals.items():
            assert await admin.recall_pattern(pid) == original
        events = admin.pipeline.audit_logger.query(event_type="pattern.import")
        assert [e["details"]["imported"] for e in events] == [3]
    assert _rows(other) == _rows(mock_config)  # the records as stored, byte for byte
    # Found by search, from a memory object that was not the importer.
    async with AsyncUnifiedMemory("reader", other, access_tier="OBSERVER") as reader:
        found = {r["pattern_id"] for r in await reader.search_patterns("lighthouse")}
        assert found == set(ids.values())
        assert {r["pattern_id"] for r in await reader.search_patterns("4417")} == {ids["SENSITIVE"]}
        assert await reader.count_patterns(metadata={"label": "INTERNAL"}) == 1


async def test_the_importer_finds_what_it_imported_after_searching_before(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    ids, out = await _seed_and_export(mock_config, tmp_path)
    target = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("admin", target, access_tier="STEWARD") as admin:
        assert list(await admin.search_patterns("lighthouse")) == []
        await admin.import_patterns(out)
        found = {r["pattern_id"] for r in await admin.search_patterns("lighthouse")}
        assert found == set(ids.values())


async def test_existing_ids_are_skipped_and_counted(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    await _seed(mock_config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        await admin.export_patterns(out)
        before = _rows(mock_config)
        assert await admin.import_patterns(out) == {"imported": 0, "skipped": 3, "expired": 0}
        assert _rows(mock_config) == before
        await admin.persist_pattern("A record made after the export", "note")
        other = tmp_path / "partial.jsonl"
        await admin.export_patterns(other)
    target = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("admin", target, access_tier="STEWARD") as admin:
        assert (await admin.import_patterns(out))["imported"] == 3
        assert await admin.import_patterns(other) == {"imported": 1, "skipped": 3, "expired": 0}


def _tamper_flip(out: Path) -> None:
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))


def _tamper_digest(out: Path) -> None:
    manifest_path = Path(str(out) + MANIFEST_SUFFIX)
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))


def _tamper_line(out: Path) -> None:
    """A malformed line, with the manifest's digest recomputed to match it."""
    lines = out.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"pattern_id": "pat_x", "not": "a record"}\n'
    rewrite(out, b"".join(lines))


def _tamper_truncate(out: Path) -> None:
    out.write_bytes(out.read_bytes()[:-10])


def _drop_manifest(out: Path) -> None:
    Path(str(out) + MANIFEST_SUFFIX).unlink()


def _out_of_range(field: str, value: int) -> Any:
    """The last record's time set to ``value``, the digest recomputed: a time SQLite cannot
    store (2**63) or no read can show (past the year 9999, before 1970)."""

    def tamper(out: Path) -> None:
        lines = out.read_bytes().splitlines(keepends=True)
        record = json.loads(lines[-1])
        record[field] = value
        lines[-1] = json.dumps(record).encode() + b"\n"
        rewrite(out, b"".join(lines))

    tamper.__name__ = f"_{field}_{value}"
    return tamper


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_flip,
        _tamper_digest,
        _tamper_line,
        tamper_ciphertext,
        _tamper_truncate,
        _drop_manifest,
        _out_of_range("expires_at_ms", 2**63),
        _out_of_range("created_at_ms", 10**15),
        _out_of_range("created_at_ms", -1),
    ],
    ids=lambda tamper: tamper.__name__,
)
async def test_a_damaged_or_altered_export_imports_nothing(
    mock_config: MemoryConfig, tmp_path: Path, tamper: Any
) -> None:

    await _seed(mock_config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        await admin.export_patterns(out)
    tamper(out)
    target = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("admin", target, access_tier="STEWARD") as admin:
        expected = AttuneError if tamper is tamper_ciphertext else ValidationError
        with pytest.raises(expected):
            await admin.import_patterns(out)
        assert await admin.count_patterns(namespace="*") == 0
        assert not admin.pipeline.audit_logger.query(event_type="pattern.import")


async def test_only_a_steward_exports_or_imports(mock_config: MemoryConfig, tmp_path: Path) -> None:
    await _seed(mock_config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("v", mock_config, access_tier="VALIDATOR") as validator:
        with pytest.raises(AccessDeniedError):
            await validator.export_patterns(out)
        with pytest.raises(AccessDeniedError):
            await validator.import_patterns(out)
        denied = validator.pipeline.audit_logger.query(event_type="access.check", outcome="denied")
        assert [e["details"]["action"] for e in denied] == ["export_patterns", "import_patterns"]
    assert _listing(tmp_path) == ["storage"]


async def test_export_keeps_to_its_namespace_and_leaves_expired_records_out(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    async with AsyncUnifiedMemory("writer-a", mock_config, namespace="a") as a:
        live = (await a.persist_pattern("Live in a", "note"))["pattern_id"]
        expired = (await a.persist_pattern("Expired in a", "note"))["pattern_id"]
    async with AsyncUnifiedMemory("writer-b", mock_config, namespace="b") as b:
        other = (await b.persist_pattern("Live in b", "note"))["pattern_id"]
    with closing(sqlite3.connect(mock_config.storage_dir / DB_FILENAME)) as db, db:
        db.execute(
            "UPDATE patterns SET expires_at_ms = ? WHERE pattern_id = ?",
            (int(time.time() * 1000) - 1, expired),
        )

    def exported(path: Path) -> set[str]:
        return {json.loads(line)["pattern_id"] for line in path.read_bytes().splitlines()}

    async with AsyncUnifiedMemory("st", mock_config, access_tier="STEWARD", namespace="a") as st:
        assert (await st.export_patterns(tmp_path / "a.jsonl"))["namespace"] == "a"
        assert exported(tmp_path / "a.jsonl") == {live}
        await st.export_patterns(tmp_path / "b.jsonl", namespace="b")
        assert exported(tmp_path / "b.jsonl") == {other}
        manifest = await st.export_patterns(tmp_path / "all.jsonl", namespace="*")
        assert exported(tmp_path / "all.jsonl") == {live, other}
        assert manifest["namespace"] == "*" and manifest["records"] == 2
    # Imported records keep the namespace they were exported from.
    target = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("st", target, access_tier="STEWARD", namespace="a") as st:
        await st.import_patterns(tmp_path / "all.jsonl")
        recalled = await st.recall_pattern(other, namespace="*")
        assert recalled is not None and recalled["namespace"] == "b"
        assert await st.recall_pattern(other) is None  # not in its own namespace, a


async def test_records_expired_by_import_time_are_not_imported(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    ids, out = await _seed_and_export(mock_config, tmp_path)
    _expire(out, ids["PUBLIC"])
    target = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("admin", target, access_tier="STEWARD") as admin:
        assert await admin.import_patterns(out) == {"imported": 2, "skipped": 0, "expired": 1}


async def test_an_export_that_cannot_be_written_leaves_nothing(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    await _seed(mock_config)
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        with pytest.raises(ValidationError, match="cannot write the export"):
            await admin.export_patterns(tmp_path / "missing-dir" / "export.jsonl")
        with pytest.raises(ValidationError, match="not a regular file"):
            await admin.export_patterns(tmp_path)  # a directory
        with pytest.raises(ValidationError, match="no manifest"):
            await admin.import_patterns(tmp_path / "nothing.jsonl")
    assert _listing(tmp_path) == ["storage"]


def _expire(out: Path, pattern_id: str) -> None:
    lines = []
    for line in out.read_bytes().splitlines():
        record = json.loads(line)
        if record["pattern_id"] == pattern_id:
            record["expires_at_ms"] = int(time.time() * 1000) - 1
        lines.append(json.dumps(record).encode() + b"\n")
    rewrite(out, b"".join(lines))


def test_the_blocking_facade_exports_and_imports(mock_config: MemoryConfig, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    with UnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        stored = admin.persist_pattern("Blocking export works", "note")
        assert admin.export_patterns(str(out))["records"] == 1
    with UnifiedMemory(
        "admin", _other_store(mock_config, tmp_path), access_tier="STEWARD"
    ) as admin:
        assert admin.import_patterns(out)["imported"] == 1
        recalled = admin.recall_pattern(stored["pattern_id"])
        assert recalled is not None and recalled["content"] == "Blocking export works"


async def test_an_export_is_refused_where_its_master_key_is_not(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    _ids, out = await _seed_and_export(mock_config, tmp_path)
    elsewhere = MemoryConfig(
        redis_mock=True, storage_dir=tmp_path / "elsewhere", key_prefix=mock_config.key_prefix
    )
    async with AsyncUnifiedMemory("admin", elsewhere, access_tier="STEWARD") as admin:
        with pytest.raises(AttuneError):
            await admin.import_patterns(out)  # its own new key cannot open the SENSITIVE one
        assert await admin.count_patterns(namespace="*") == 0


async def test_export_pages_through_every_record(
    mock_config: MemoryConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune.memory import transfer

    monkeypatch.setattr(transfer, "_PAGE", 2)
    monkeypatch.setattr(transfer, "_INSERT_CHUNK", 3)
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        stored = {
            (await admin.persist_pattern(f"Record number {n}", "note"))["pattern_id"]
            for n in range(7)
        }
        out = tmp_path / "export.jsonl"
        assert (await admin.export_patterns(out))["records"] == 7
    target = _other_store(mock_config, tmp_path)
    async with AsyncUnifiedMemory("admin", target, access_tier="STEWARD") as admin:
        assert (await admin.import_patterns(out))["imported"] == 7
        assert {r["pattern_id"] for r in await admin.list_patterns(limit=100)} == stored


@pytest.mark.parametrize(
    "name",
    [
        "master.key",
        "patterns.db",
        "patterns.db-wal",
        "audit.jsonl",
        "audit.jsonl.1",
        "attune-store.json",
        "elsewhere/key.json",
        "elsewhere/log.jsonl",
        "elsewhere/log.jsonl.2",
        "key-link",
    ],
)
async def test_an_export_never_replaces_the_stores_own_files(
    mock_config: MemoryConfig, tmp_path: Path, name: str
) -> None:
    """An export replaces what is at its path: aimed (by a slip, or through a symlink) at
    the store's key file, database, audit log or marker, it is refused and nothing changes;
    a new process still reads every record."""
    config = mock_config
    storage = config.storage_dir
    target = storage / name
    if name.startswith(("elsewhere", "key-link")):  # a key file and log set elsewhere
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        config = mock_config.model_copy(
            update={
                "master_key_file": elsewhere / "key.json",
                "audit_log_file": elsewhere / "log.jsonl",
            }
        )
        target = tmp_path / name
    ids = await _seed(config)
    if name == "key-link":  # the key file named through a symlink: its target counts too
        (tmp_path / "key-link").symlink_to(tmp_path / "elsewhere" / "key.json")
        config = config.model_copy(update={"master_key_file": tmp_path / "key-link"})
        target = tmp_path / "elsewhere" / "key.json"
    key_file = config.master_key_file or storage / "master.key"
    key_before = key_file.read_bytes()
    async with AsyncUnifiedMemory("steward", config, access_tier="STEWARD") as mem:
        with pytest.raises(ValidationError, match="own files"):
            await mem.export_patterns(target)
    assert key_file.read_bytes() == key_before
    assert (storage / DB_FILENAME).read_bytes().startswith(b"SQLite format 3")
    assert not (target.parent / (target.name + MANIFEST_SUFFIX)).exists()
    close_shared()  # as a new process sees it: the key file is read again
    async with AsyncUnifiedMemory("reader", config) as mem:
        for pid in ids.values():
            assert (await mem.recall_pattern(pid)) is not None


async def test_an_export_never_replaces_a_link_a_device_or_a_directory(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    """An export is renamed into place, which replaces what its path names: a symbolic link
    (``/dev/stdout`` is one), a pipe or a directory was replaced by a file of records (as
    root even ``/dev/null``). Such a path, or such a manifest path, is refused first."""
    import os

    await _seed(mock_config)
    kept = tmp_path / "kept.txt"
    kept.write_text("mine")
    link = tmp_path / "out.jsonl"
    link.symlink_to(kept)
    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    manifest_link = tmp_path / "m.jsonl"
    (tmp_path / ("m.jsonl" + MANIFEST_SUFFIX)).symlink_to(kept)
    async with AsyncUnifiedMemory("steward", mock_config, access_tier="steward") as memory:
        for path in (link, pipe, folder, manifest_link):
            with pytest.raises(ValidationError, match="not a regular file"):
                await memory.export_patterns(path)
        assert link.is_symlink() and kept.read_text() == "mine"
        assert pipe.is_fifo() and folder.is_dir() and not manifest_link.exists()
        regular = tmp_path / "regular.jsonl"
        regular.write_text("an older export")
        manifest = await memory.export_patterns(regular)  # a regular file is replaced
        assert manifest["records"] == len(_listing_ids(regular))


def _listing_ids(path: Path) -> list[str]:
    return [json.loads(line)["pattern_id"] for line in path.read_text().splitlines() if line]
