"""Stored data altered or damaged outside attune (issue 13, item 6).

Every unreadable record raises a typed error naming it: :class:`CorruptRecordError` for
damage, :class:`DecryptionError` for a missing or wrong key. An encrypted record whose bytes
fail authentication although its key opened raises :class:`CorruptCiphertextError`, which is
both. Never a builtin exception (``UnicodeDecodeError``, ``JSONDecodeError``, ``TypeError``).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from contextlib import closing
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attune.errors import CorruptCiphertextError, CorruptRecordError, DecryptionError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.sqlite_store import DB_FILENAME, MIGRATIONS
from attune.memory.security import crypto
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.crypto import EncryptedBlob, EnvelopeCipher, KeyRing
from attune.memory.security.pipeline import SecurityPipeline
from attune.memory.types import RECORD_FORMAT, Classification

SENSITIVE = Classification.SENSITIVE


def memory(config: MemoryConfig) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("agent-1", config)


def db(config: MemoryConfig) -> sqlite3.Connection:
    return sqlite3.connect(config.storage_dir / DB_FILENAME)


def update(config: MemoryConfig, sql: str, *params: Any) -> None:
    with closing(db(config)) as conn, conn:
        assert conn.execute(sql, params).rowcount == 1


async def stored(config: MemoryConfig, classification: str) -> str:
    async with memory(config) as mem:
        result = await mem.persist_pattern(
            "Prefer small reviewed changes", "process", classification=classification
        )
    security_pipeline.close_shared()
    return str(result["pattern_id"])


async def recall_error(config: MemoryConfig, pattern_id: str) -> BaseException:
    async with memory(config) as mem:
        with pytest.raises(Exception) as info:
            await mem.recall_pattern(pattern_id)
    return info.value


def assert_corrupt(error: BaseException, pattern_id: str) -> None:
    assert isinstance(error, CorruptRecordError), repr(error)
    assert error.record_id == pattern_id
    assert pattern_id in str(error)
    assert "Prefer small" not in str(error)


# -- the cipher: the format is bound into the content's associated data ------------------------


def test_a_record_format_is_bound_into_the_ciphertext() -> None:
    cipher = EnvelopeCipher(KeyRing([b"k" * 32]))
    blob = cipher.encrypt(b"payload", record_id="r", classification=SENSITIVE)
    assert cipher.decrypt(blob, record_id="r", classification=SENSITIVE) == b"payload"
    with pytest.raises(CorruptCiphertextError, match="'r'"):
        cipher.decrypt(blob, record_id="r", classification=SENSITIVE, record_format=1)
    old = cipher.encrypt(b"payload", record_id="r", classification=SENSITIVE, record_format=1)
    assert cipher.decrypt(old, record_id="r", classification=SENSITIVE, record_format=1) == (
        b"payload"
    )
    with pytest.raises(CorruptCiphertextError):
        cipher.decrypt(old, record_id="r", classification=SENSITIVE)
    for bad in (0, 3, -1):
        with pytest.raises(CorruptRecordError, match="format"):
            cipher.decrypt(blob, record_id="r", classification=SENSITIVE, record_format=bad)


def test_damaged_ciphertext_is_both_corrupt_and_a_decryption_error() -> None:
    cipher = EnvelopeCipher(KeyRing([b"k" * 32]))
    blob = cipher.encrypt(b"payload", record_id="r", classification=SENSITIVE)
    damaged = EncryptedBlob(blob.key_id, blob.wrapped_key, blob.nonce, b"x" + blob.ciphertext[1:])
    with pytest.raises(CorruptCiphertextError) as info:
        cipher.decrypt(damaged, record_id="r", classification=SENSITIVE)
    assert isinstance(info.value, CorruptRecordError) and isinstance(info.value, DecryptionError)
    assert info.value.record_id == "r"


# -- long-term records ------------------------------------------------------------------------


@pytest.mark.parametrize("classification", ["PUBLIC", "INTERNAL", "SENSITIVE"])
async def test_a_flipped_encrypted_flag_is_corrupt(
    mock_config: MemoryConfig, classification: str
) -> None:
    pattern_id = await stored(mock_config, classification)
    update(
        mock_config,
        "UPDATE patterns SET encrypted = 1 - encrypted WHERE pattern_id = ?",
        pattern_id,
    )
    assert_corrupt(await recall_error(mock_config, pattern_id), pattern_id)


@pytest.mark.parametrize("value", [2, -1, "1", b"\x01", 1.5])
async def test_an_encrypted_flag_that_is_neither_0_nor_1_is_corrupt(
    mock_config: MemoryConfig, value: object
) -> None:
    pattern_id = await stored(mock_config, "PUBLIC")
    update(mock_config, "UPDATE patterns SET encrypted = ? WHERE pattern_id = ?", value, pattern_id)
    assert_corrupt(await recall_error(mock_config, pattern_id), pattern_id)


async def test_a_public_record_made_sensitive_without_encryption_is_corrupt(
    mock_config: MemoryConfig,
) -> None:
    pattern_id = await stored(mock_config, "PUBLIC")
    update(
        mock_config,
        "UPDATE patterns SET classification = 'SENSITIVE' WHERE pattern_id = ?",
        pattern_id,
    )
    assert_corrupt(await recall_error(mock_config, pattern_id), pattern_id)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("content", b"\xff\xfe not utf-8"),
        ("content", "stored as text"),
        ("metadata", "{not json"),
        ("metadata", "[1, 2]"),
        ("metadata", b"\xff{}"),
        ("metadata", "[" * 100_000),
        ("classification", "TOP-SECRET"),
    ],
)
async def test_a_damaged_public_record_is_corrupt(
    mock_config: MemoryConfig, column: str, value: object
) -> None:
    pattern_id = await stored(mock_config, "PUBLIC")
    update(mock_config, f"UPDATE patterns SET {column} = ? WHERE pattern_id = ?", value, pattern_id)
    assert_corrupt(await recall_error(mock_config, pattern_id), pattern_id)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("format", 1, CorruptCiphertextError),  # authenticated: the old AAD does not open it
        ("format", 7, CorruptRecordError),
        ("format", "two", CorruptRecordError),  # INTEGER affinity keeps "2" a number
        ("nonce", b"short", CorruptCiphertextError),
        ("nonce", "text", CorruptRecordError),
        ("key_id", None, CorruptRecordError),
        ("wrapped_key", None, CorruptRecordError),
        ("content", "text", CorruptRecordError),
        ("classification", "TOP-SECRET", CorruptRecordError),
        ("classification", "INTERNAL", DecryptionError),  # relabelled: the wrap refuses
        ("key_id", "k_0000000000000000", DecryptionError),  # a key this ring lacks
    ],
)
async def test_a_damaged_encrypted_record_raises_a_typed_error(
    mock_config: MemoryConfig, column: str, value: object, expected: type[Exception]
) -> None:
    pattern_id = await stored(mock_config, "SENSITIVE")
    update(mock_config, f"UPDATE patterns SET {column} = ? WHERE pattern_id = ?", value, pattern_id)
    error = await recall_error(mock_config, pattern_id)
    assert isinstance(error, expected), repr(error)
    assert pattern_id in str(error)
    if expected is not DecryptionError:
        assert_corrupt(error, pattern_id)


async def test_a_flipped_ciphertext_byte_is_corrupt(mock_config: MemoryConfig) -> None:
    pattern_id = await stored(mock_config, "SENSITIVE")
    with closing(db(mock_config)) as conn, conn:
        (content,) = conn.execute(
            "SELECT content FROM patterns WHERE pattern_id = ?", (pattern_id,)
        ).fetchone()
        flipped = bytes([content[0] ^ 1]) + content[1:]
        conn.execute("UPDATE patterns SET content = ? WHERE pattern_id = ?", (flipped, pattern_id))
    error = await recall_error(mock_config, pattern_id)
    assert isinstance(error, CorruptCiphertextError)
    assert_corrupt(error, pattern_id)


async def test_new_records_are_written_in_the_current_format(mock_config: MemoryConfig) -> None:
    public = await stored(mock_config, "PUBLIC")
    sensitive = await stored(mock_config, "SENSITIVE")
    with closing(db(mock_config)) as conn:
        rows = dict(conn.execute("SELECT pattern_id, format FROM patterns").fetchall())
    assert rows == {public: RECORD_FORMAT, sensitive: RECORD_FORMAT}
    assert RECORD_FORMAT == 2


def _old_content_aad(record_id: str, label: str) -> bytes:
    """The content AAD as attune wrote it before formats existed (byte for byte)."""
    out = b"attune.content.v1"
    for part in (record_id, label):
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return out


async def test_records_of_the_old_format_stay_readable(mock_config: MemoryConfig) -> None:
    """A schema-version-2 file (no format column) holding records as the old code wrote
    them: after the upgrade they read, and a new record next to them does too."""
    storage = mock_config.ensure_storage_dir()
    ring = KeyRing.load(storage_dir=storage, environment="development", key_file=None)
    # Forging an old-format record needs the master key and the raw key wrap: private on
    # purpose (no public API hands out key material or wraps under an arbitrary key).
    kid, master = ring._active_key()
    data_key, nonce = os.urandom(32), os.urandom(12)
    plaintext = json.dumps({"content": "Old sealed", "metadata": {"n": 1}}).encode()
    ciphertext = AESGCM(data_key).encrypt(
        nonce, plaintext, _old_content_aad("pat_old", "SENSITIVE")
    )
    wrapped = crypto._wrap(master, kid, data_key, "pat_old", "SENSITIVE")
    with closing(sqlite3.connect(storage / DB_FILENAME)) as conn, conn:
        for version in (1, 2):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (2)")
        columns = (
            "pattern_id, pattern_type, classification, created_by, created_at_ms, "
            "expires_at_ms, metadata, content, encrypted, key_id, wrapped_key, nonce"
        )
        conn.execute(
            f"INSERT INTO patterns ({columns}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ("pat_old", "t", "SENSITIVE", "a", 1, None, "{}", ciphertext, 1, kid, wrapped, nonce),
        )
        conn.execute(
            f"INSERT INTO patterns ({columns}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                "pat_plain",
                "t",
                "PUBLIC",
                "a",
                1,
                None,
                '{"m": 2}',
                b"Old plain",
                0,
                None,
                None,
                None,
            ),
        )
    security_pipeline.close_shared()
    async with memory(mock_config) as mem:
        old = await mem.recall_pattern("pat_old")
        plain = await mem.recall_pattern("pat_plain")
        new = await mem.persist_pattern("New sealed", "t", classification="SENSITIVE")
        again = await mem.recall_pattern(new["pattern_id"])
    assert old is not None and (old["content"], old["metadata"]) == ("Old sealed", {"n": 1})
    assert plain is not None and (plain["content"], plain["metadata"]) == ("Old plain", {"m": 2})
    assert again is not None and again["content"] == "New sealed"
    with closing(sqlite3.connect(storage / DB_FILENAME)) as conn:
        formats = dict(conn.execute("SELECT pattern_id, format FROM patterns").fetchall())
    assert formats == {"pat_old": 1, "pat_plain": 1, new["pattern_id"]: RECORD_FORMAT}
    # An old record relabelled as new no longer opens.
    update(mock_config, "UPDATE patterns SET format = 2 WHERE pattern_id = ?", "pat_old")
    assert_corrupt(await recall_error(mock_config, "pat_old"), "pat_old")


async def test_key_rotation_keeps_old_and_new_format_records_readable(
    mock_config: MemoryConfig,
) -> None:
    sensitive = await stored(mock_config, "SENSITIVE")
    async with AsyncUnifiedMemory("steward", mock_config, access_tier="STEWARD") as mem:
        rotated = await mem.rotate_keys()
        assert rotated["rewrapped"] == 1
        pattern = await mem.recall_pattern(sensitive)
    assert pattern is not None and pattern["content"] == "Prefer small reviewed changes"


# -- short-term values ----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"not json", b"\xff\xfe", b"[" * 100_000, b""])
async def test_a_stash_value_that_is_not_json_is_corrupt(
    config: MemoryConfig, payload: bytes
) -> None:
    key = "notes-for-jane.roe@example.org"  # a key is the caller's text: it may hold PII
    async with memory(config) as mem:
        await mem.stash(key, {"ok": True})
        await mem.short_term.stash("agent-1", key, payload, 60_000)  # as if written raw
        with pytest.raises(CorruptRecordError) as info:
            await mem.retrieve(key)
        assert info.value.record_id == key
        message = str(info.value)
        assert "jane.roe" not in message and "agent-1" not in message, message
        assert "not valid JSON" in message
        assert await mem.retrieve("missing") is None


# -- staged patterns ------------------------------------------------------------------------------

ENVELOPE = {
    "pattern_id": "stg_1",
    "pattern_type": "t",
    "staged_at": "2026-01-01T00:00:00.000Z",
    "expires_at": "2026-01-02T00:00:00.000Z",
}
PLAIN = {**ENVELOPE, "v": 1, "staged_by": "a", "classification": "PUBLIC", "data": {"content": "c"}}


@pytest.fixture
def pipe(mock_config: MemoryConfig) -> SecurityPipeline:
    return SecurityPipeline(mock_config)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        [],
        "a string",
        42,
        b"{not json",
        b"\xff\xfe",
        "[[[",
        b"[" * 100_000,
        {},
        {**PLAIN, "v": 99},
        {**PLAIN, "pattern_id": 7},
        {k: v for k, v in PLAIN.items() if k != "staged_by"},
        {k: v for k, v in PLAIN.items() if k != "data"},
        {**PLAIN, "data": ["content"]},
        {**PLAIN, "data": {"no": "content"}},
        {**PLAIN, "data": {"content": 5}},
        {**PLAIN, "classification": "SECRET"},
        {**PLAIN, "classification": "SENSITIVE"},  # SENSITIVE is always sealed
        {**PLAIN, "staged_by": None},
        {**ENVELOPE, "v": 1, "sealed": "x"},
        {**ENVELOPE, "v": 1, "sealed": {}},
        {
            **ENVELOPE,
            "v": 1,
            "sealed": {"key_id": "k", "wrapped_key": "!!", "nonce": "", "ciphertext": ""},
        },
        {
            **ENVELOPE,
            "v": 1,
            "sealed": {"key_id": 1, "wrapped_key": "", "nonce": "", "ciphertext": ""},
        },
    ],
)
def test_open_staged_refuses_malformed_entries(pipe: SecurityPipeline, stored: Any) -> None:
    with pytest.raises(CorruptRecordError) as info:
        pipe.open_staged(stored)
    assert isinstance(info.value.record_id, str)


def test_open_staged_accepts_raw_json_and_names_the_staged_id(pipe: SecurityPipeline) -> None:
    envelope, data = pipe.open_staged(json.dumps(PLAIN).encode())
    assert envelope["pattern_id"] == "stg_1" and data == {"content": "c"}
    with pytest.raises(CorruptRecordError) as info:
        pipe.open_staged(b"garbage", staged_id="stg_2")
    assert info.value.record_id == "stg_2"
    with pytest.raises(CorruptRecordError, match="stg_1"):
        pipe.open_staged({**PLAIN, "data": None})
    with pytest.raises(CorruptRecordError, match="does not match") as info:
        pipe.open_staged(PLAIN, staged_id="stg_other")  # an entry copied under another key
    assert info.value.record_id == "stg_other"
    assert pipe.open_staged(PLAIN, staged_id="stg_1")[0]["staged_by"] == "a"


async def sealed_entry(config: MemoryConfig) -> dict[str, Any]:
    """A SENSITIVE staged pattern as it is held in Redis."""
    async with memory(config) as mem:
        staged_id = await mem.stage_pattern({"content": "Patient handoff protocol"}, "clinical")
        raw = await mem.short_term.get_staged(staged_id)
    assert raw is not None
    entry: dict[str, Any] = json.loads(raw)
    assert "sealed" in entry
    return entry


def _flip_b64(text: str) -> str:
    raw = base64.b64decode(text)
    return base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
async def test_open_staged_of_a_damaged_sealed_entry_is_corrupt(
    mock_config: MemoryConfig, pipe: SecurityPipeline, field: str
) -> None:
    entry = await sealed_entry(mock_config)
    envelope, data = pipe.open_staged(entry)
    assert data["content"] == "Patient handoff protocol"
    entry["sealed"][field] = _flip_b64(entry["sealed"][field])
    with pytest.raises(CorruptRecordError) as info:
        pipe.open_staged(entry)
    assert info.value.record_id == envelope["pattern_id"]


async def test_open_staged_binds_the_entry_version(
    mock_config: MemoryConfig, pipe: SecurityPipeline
) -> None:
    entry = await sealed_entry(mock_config)
    assert entry["v"] == RECORD_FORMAT
    for other in (1, 3):
        with pytest.raises(CorruptRecordError):
            pipe.open_staged({**entry, "v": other})


async def test_open_staged_of_an_entry_under_a_missing_key_is_a_decryption_error(
    mock_config: MemoryConfig, pipe: SecurityPipeline
) -> None:
    entry = await sealed_entry(mock_config)
    entry["sealed"]["key_id"] = "k_0000000000000000"
    with pytest.raises(DecryptionError, match="k_0000000000000000"):
        pipe.open_staged(entry)


async def test_a_sealed_entry_of_the_old_format_still_opens(
    mock_config: MemoryConfig, pipe: SecurityPipeline
) -> None:
    """Staged before the entry version was bound: ``"v": 1``, the old associated data."""
    entry = await sealed_entry(mock_config)
    # Private on purpose: forging needs key material no public API hands out (see above).
    kid, master = pipe.cipher.ring._active_key()
    data_key, nonce = os.urandom(32), os.urandom(12)
    secret = json.dumps({"staged_by": "a", "data": {"content": "old"}}).encode()
    aad = _old_content_aad(entry["pattern_id"], "SENSITIVE")
    entry["v"] = 1
    entry["sealed"] = {
        "key_id": kid,
        "wrapped_key": base64.b64encode(
            crypto._wrap(master, kid, data_key, entry["pattern_id"], "SENSITIVE")
        ).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(AESGCM(data_key).encrypt(nonce, secret, aad)).decode(),
    }
    envelope, data = pipe.open_staged(json.dumps(entry))
    assert (envelope["staged_by"], data) == ("a", {"content": "old"})
    with pytest.raises(CorruptRecordError):
        pipe.open_staged({**entry, "v": 2})


async def test_a_corrupt_recall_is_audited_without_its_label(mock_config: MemoryConfig) -> None:
    pattern_id = await stored(mock_config, "PUBLIC")
    update(
        mock_config, "UPDATE patterns SET classification = '<x>' WHERE pattern_id = ?", pattern_id
    )
    assert_corrupt(await recall_error(mock_config, pattern_id), pattern_id)
    security_pipeline.close_shared()
    lines = (mock_config.storage_dir / "audit.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    corrupt = [e for e in events if e["outcome"] == "corrupt"]
    assert [(e["event"], e["target_id"], e["classification"]) for e in corrupt] == [
        ("pattern.retrieve", pattern_id, None)
    ]


# -- one damaged record breaks no read, export or rotation -------------------------------------


def _events(config: MemoryConfig) -> list[dict[str, Any]]:
    security_pipeline.close_shared()
    lines = (config.storage_dir / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def _three(config: MemoryConfig, classification: str) -> list[str]:
    async with AsyncUnifiedMemory("agent-1", config) as mem:
        ids = [
            (
                await mem.persist_pattern(
                    f"kiwi harvest note {n}", "fruit", classification=classification
                )
            )["pattern_id"]
            for n in range(3)
        ]
    security_pipeline.close_shared()
    return [str(i) for i in ids]


def _flip_wrapped_key(config: MemoryConfig, pattern_id: str) -> None:
    with closing(db(config)) as conn:
        (wrapped,) = conn.execute(
            "SELECT wrapped_key FROM patterns WHERE pattern_id = ?", (pattern_id,)
        ).fetchone()
    damaged = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    update(config, "UPDATE patterns SET wrapped_key = ? WHERE pattern_id = ?", damaged, pattern_id)


@pytest.mark.parametrize("damage", ["classification", "wrapped_key"])
async def test_an_encrypted_record_whose_data_key_does_not_open_is_corrupt_not_a_key_problem(
    mock_config: MemoryConfig, damage: str
) -> None:
    """The key with the record's key id is in the ring (an id is its material's), so a
    data key that does not open under it means the row was altered: recall raises
    CorruptRecordError, search and list leave it out, rotation re-wraps the others; each
    time the log reports it. Before, it was a DecryptionError that broke every search,
    list and rotation of the store."""
    ids = await _three(mock_config, "SENSITIVE")
    bad = ids[1]
    if damage == "classification":
        update(
            mock_config,
            "UPDATE patterns SET classification = 'INTERNAL' WHERE pattern_id = ?",
            bad,
        )
    else:
        _flip_wrapped_key(mock_config, bad)
    assert_corrupt(await recall_error(mock_config, bad), bad)
    async with AsyncUnifiedMemory("steward", mock_config, access_tier="STEWARD") as mem:
        found = await mem.search_patterns("kiwi")
        assert {r["pattern_id"] for r in found} == {ids[0], ids[2]}
        listed = await mem.list_patterns()
        assert {r["pattern_id"] for r in listed} == {ids[0], ids[2]}
        rotated = await mem.rotate_keys()
        assert (rotated["rewrapped"], rotated["corrupt"]) == (2, 1)
        for good in (ids[0], ids[2]):
            assert (await mem.recall_pattern(good)) is not None
    corrupt = {e["target_id"] for e in _events(mock_config) if e["outcome"] == "corrupt"}
    assert corrupt == {bad}
    rotations = [e for e in _events(mock_config) if e["event"] == "keys.rotate"]
    assert [e["details"]["corrupt"] for e in rotations] == [1]


async def test_a_record_with_a_damaged_time_is_corrupt_and_left_out_of_an_export(
    mock_config: MemoryConfig, tmp_path: Any
) -> None:
    """A creation time that is not whole milliseconds (text in an INTEGER column) raised a
    bare TypeError from recall, search, list and export; now it is a damaged record like
    any other, and an export leaves it out and says so."""
    ids = await _three(mock_config, "PUBLIC")
    bad = ids[0]
    update(mock_config, "UPDATE patterns SET created_at_ms = 'x' WHERE pattern_id = ?", bad)
    assert_corrupt(await recall_error(mock_config, bad), bad)
    async with AsyncUnifiedMemory("steward", mock_config, access_tier="STEWARD") as mem:
        assert {r["pattern_id"] for r in await mem.list_patterns()} == set(ids[1:])
        assert {r["pattern_id"] for r in await mem.search_patterns("kiwi")} == set(ids[1:])
        manifest = await mem.export_patterns(tmp_path / "out.jsonl")
    assert (manifest["records"], manifest["corrupt"]) == (2, 1)
    exported = (tmp_path / "out.jsonl").read_text()
    assert bad not in exported and all(i in exported for i in ids[1:])
    fresh = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "fresh")
    async with AsyncUnifiedMemory("steward", fresh, access_tier="STEWARD") as other:
        assert (await other.import_patterns(tmp_path / "out.jsonl"))["imported"] == 2


async def test_a_rotation_that_fails_part_way_is_audited_and_another_finishes_it(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store goes away after the first batch: the rotation raises, its event says
    ``failed`` with what was done, every record stays readable, and a second rotation
    re-wraps the rest."""
    from attune.errors import LongTermUnavailableError
    from attune.memory.long_term.protocol import RewrapOp

    ids = await _three(mock_config, "SENSITIVE")
    async with AsyncUnifiedMemory("steward", mock_config, access_tier="STEWARD") as mem:
        write = mem.long_term.write
        rewraps = 0

        async def failing(op: Any) -> Any:
            nonlocal rewraps
            if isinstance(op, RewrapOp):
                rewraps += 1
                if rewraps == 2:
                    raise LongTermUnavailableError("the store went away (test)")
            return await write(op)

        monkeypatch.setattr(mem.long_term, "write", failing)
        with pytest.raises(LongTermUnavailableError):
            await mem.rotate_keys(batch_size=1)
        monkeypatch.setattr(mem.long_term, "write", write)
        for pid in ids:
            assert (await mem.recall_pattern(pid)) is not None
        again = await mem.rotate_keys()
        assert again["rewrapped"] == 3 and again["corrupt"] == 0
    rotations = [e for e in _events(mock_config) if e["event"] == "keys.rotate"]
    assert [(e["outcome"], e["details"]["rewrapped"]) for e in rotations] == [
        ("failed", 1),
        ("success", 3),
    ]
