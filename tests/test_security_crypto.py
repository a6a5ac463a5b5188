"""Envelope encryption and master-key management (attune.memory.security.crypto)."""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attune.errors import ConfigurationError, CorruptCiphertextError, DecryptionError
from attune.memory.security import crypto, keyfile
from attune.memory.security.crypto import (
    EncryptedBlob,
    EnvelopeCipher,
    KeyRing,
    generate_master_key,
    key_id,
)
from attune.memory.types import Classification

SENSITIVE = Classification.SENSITIVE
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def load(storage: Path, environment: str = "development", key_file: Path | None = None) -> KeyRing:
    return KeyRing.load(storage_dir=storage, environment=environment, key_file=key_file)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def write_key_file(path: Path, keys: list[bytes], active: bytes, mode: int = 0o600) -> None:
    doc = {"version": 1, "active": key_id(active), "keys": {key_id(k): b64(k) for k in keys}}
    path.write_text(json.dumps(doc))
    path.chmod(mode)


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def with_field(blob: EncryptedBlob, name: str, value: bytes) -> EncryptedBlob:
    parts = {"wrapped_key": blob.wrapped_key, "nonce": blob.nonce, "ciphertext": blob.ciphertext}
    parts[name] = value
    return EncryptedBlob(blob.key_id, parts["wrapped_key"], parts["nonce"], parts["ciphertext"])


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def ring(storage: Path) -> KeyRing:
    return load(storage)


@pytest.fixture
def cipher(ring: KeyRing) -> EnvelopeCipher:
    return EnvelopeCipher(ring)


# -- encryption ---------------------------------------------------------------------------------


def test_round_trip_with_enum_or_name(cipher: EnvelopeCipher) -> None:
    blob = cipher.encrypt(b"hello world", record_id="pat_1", classification=SENSITIVE)
    assert blob.key_id == cipher.ring.active_key_id
    assert b"hello world" not in blob.ciphertext
    assert len(blob.nonce) == 12
    assert len(blob.wrapped_key) == 12 + 32 + 16
    assert cipher.decrypt(blob, record_id="pat_1", classification="sensitive") == b"hello world"
    blob2 = cipher.encrypt(b"", record_id="pat_2", classification="Internal")
    assert cipher.decrypt(blob2, record_id="pat_2", classification=Classification.INTERNAL) == b""


def test_nonce_and_data_key_are_fresh_per_record(
    cipher: EnvelopeCipher, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_used: list[bytes] = []

    def spy(key: bytes) -> AESGCM:
        keys_used.append(key)
        return AESGCM(key)

    monkeypatch.setattr(crypto, "AESGCM", spy)
    a = cipher.encrypt(b"same", record_id="r", classification=SENSITIVE)
    b = cipher.encrypt(b"same", record_id="r", classification=SENSITIVE)
    data_key_a, master_a, data_key_b, master_b = keys_used
    assert master_a == master_b
    assert data_key_a != data_key_b
    assert master_a not in (data_key_a, data_key_b)
    assert a.nonce != b.nonce
    assert a.wrapped_key[:12] != b.wrapped_key[:12]
    assert a.ciphertext != b.ciphertext


@pytest.mark.parametrize(
    ("record_id", "classification"),
    [("other", SENSITIVE), ("pat_1", Classification.INTERNAL), ("pat_1", Classification.PUBLIC)],
)
def test_blob_on_another_record_or_label_is_refused(
    cipher: EnvelopeCipher, record_id: str, classification: Classification
) -> None:
    blob = cipher.encrypt(b"payload", record_id="pat_1", classification=SENSITIVE)
    with pytest.raises(DecryptionError, match=repr(record_id)):
        cipher.decrypt(blob, record_id=record_id, classification=classification)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped_key"])
def test_every_single_byte_tamper_is_detected(cipher: EnvelopeCipher, field: str) -> None:
    blob = cipher.encrypt(b"twenty bytes of data", record_id="r", classification=SENSITIVE)
    original: bytes = getattr(blob, field)
    for index in range(len(original)):
        tampered = with_field(blob, field, flip(original, index))
        with pytest.raises(DecryptionError, match="altered"):
            cipher.decrypt(tampered, record_id="r", classification=SENSITIVE)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped_key"])
@pytest.mark.parametrize("change", ["truncate", "extend", "empty"])
def test_wrong_lengths_are_detected(cipher: EnvelopeCipher, field: str, change: str) -> None:
    blob = cipher.encrypt(b"payload", record_id="r", classification=SENSITIVE)
    value: bytes = getattr(blob, field)
    new = {"truncate": value[:-1], "extend": value + b"\0", "empty": b""}[change]
    with pytest.raises(DecryptionError, match="'r'"):
        cipher.decrypt(with_field(blob, field, new), record_id="r", classification=SENSITIVE)


def test_wrong_master_key_is_refused(tmp_path: Path, cipher: EnvelopeCipher) -> None:
    blob = cipher.encrypt(b"top secret", record_id="r", classification=SENSITIVE)
    other = EnvelopeCipher(load(tmp_path / "other"))
    with pytest.raises(
        DecryptionError, match="neither ATTUNE_MASTER_KEY nor in the key file"
    ) as info:
        other.decrypt(blob, record_id="r", classification=SENSITIVE)
    assert "top secret" not in str(info.value)
    # Same key id claimed, but the wrapping was done by another key: a key's id is its
    # material's, so the row was altered (damage, not a key problem).
    forged = replace(blob, key_id=other.ring.active_key_id)
    with pytest.raises(CorruptCiphertextError, match="does not open under its master key"):
        other.decrypt(forged, record_id="r", classification=SENSITIVE)


def test_blob_repr_hides_bytes_and_ring_repr_hides_keys(cipher: EnvelopeCipher) -> None:
    blob = cipher.encrypt(b"x", record_id="r", classification=SENSITIVE)
    assert repr(blob) == f"EncryptedBlob(key_id={blob.key_id!r})"
    master = cipher.ring._active_key()[1]  # key bytes: no public accessor, by design
    assert b64(master) not in repr(cipher.ring)
    assert repr(master) not in repr(cipher.ring)
    assert cipher.ring.active_key_id in repr(cipher.ring)


def test_pipeline_builds_blob_positionally() -> None:
    blob = EncryptedBlob("k_1", b"w", b"n", b"c")
    assert (blob.key_id, blob.wrapped_key, blob.nonce, blob.ciphertext) == ("k_1", b"w", b"n", b"c")
    with pytest.raises(AttributeError):
        blob.key_id = "k_2"  # type: ignore[misc]


# -- rotation -------------------------------------------------------------------------------------


def test_rotation_rewrap_and_shredding(storage: Path) -> None:
    ring = load(storage)
    cipher = EnvelopeCipher(ring)
    old_kid = ring.active_key_id
    kept = cipher.encrypt(b"rewrapped later", record_id="a", classification=SENSITIVE)
    stale = cipher.encrypt(b"never rewrapped", record_id="b", classification="INTERNAL")

    new_kid = ring.add_key()
    assert new_kid != old_kid
    assert ring.active_key_id == new_kid
    assert set(ring.key_ids) == {old_kid, new_kid}
    doc = json.loads((storage / "master.key").read_text())
    assert doc["active"] == new_kid and set(doc["keys"]) == {old_kid, new_kid}
    assert stat.S_IMODE((storage / "master.key").stat().st_mode) == 0o600

    fresh = cipher.encrypt(b"new write", record_id="c", classification=SENSITIVE)
    assert fresh.key_id == new_kid
    assert cipher.decrypt(kept, record_id="a", classification=SENSITIVE) == b"rewrapped later"

    moved = cipher.rewrap(kept, record_id="a", classification=SENSITIVE)
    assert moved.key_id == new_kid
    assert (moved.nonce, moved.ciphertext) == (kept.nonce, kept.ciphertext)
    assert moved.wrapped_key != kept.wrapped_key
    assert cipher.decrypt(moved, record_id="a", classification=SENSITIVE) == b"rewrapped later"
    assert cipher.rewrap(moved, record_id="a", classification=SENSITIVE) is moved

    # Retire the old key from the file: rewrapped records survive, the others are shredded.
    del doc["keys"][old_kid]
    (storage / "master.key").write_text(json.dumps(doc))
    restarted = EnvelopeCipher(load(storage))
    assert restarted.ring.key_ids == (new_kid,)
    assert restarted.decrypt(moved, record_id="a", classification=SENSITIVE) == b"rewrapped later"
    assert restarted.decrypt(fresh, record_id="c", classification=SENSITIVE) == b"new write"
    with pytest.raises(DecryptionError, match="crypto-shredded"):
        restarted.decrypt(stale, record_id="b", classification="INTERNAL")


def test_rewrap_refuses_a_tampered_wrapped_key(cipher: EnvelopeCipher) -> None:
    blob = cipher.encrypt(b"x", record_id="r", classification=SENSITIVE)
    cipher.ring.add_key()
    with pytest.raises(DecryptionError):
        cipher.rewrap(
            replace(blob, wrapped_key=flip(blob.wrapped_key, 20)),
            record_id="r",
            classification=SENSITIVE,
        )


def test_add_key_with_given_material_and_bad_material(storage: Path) -> None:
    ring = load(storage)
    key = secrets.token_bytes(32)
    assert ring.add_key(key) == key_id(key) == ring.active_key_id
    with pytest.raises(ConfigurationError, match="32 bytes"):
        ring.add_key(b"short")
    assert ring.active_key_id == key_id(key)


def test_key_added_by_another_process_is_picked_up(storage: Path) -> None:
    writer, reader = load(storage), load(storage)
    writer.add_key()
    blob = EnvelopeCipher(writer).encrypt(b"rotated", record_id="r", classification=SENSITIVE)
    assert blob.key_id not in reader.key_ids
    assert EnvelopeCipher(reader).decrypt(blob, record_id="r", classification=SENSITIVE) == (
        b"rotated"
    )
    assert blob.key_id in reader.key_ids


def test_concurrent_add_key_keeps_every_key(storage: Path) -> None:
    rings = [load(storage) for _ in range(4)]
    barrier = threading.Barrier(len(rings))
    added: list[str] = []

    def rotate(ring: KeyRing) -> None:
        barrier.wait()
        added.append(ring.add_key())

    threads = [threading.Thread(target=rotate, args=(r,)) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    on_disk = set(load(storage).key_ids)
    assert set(added) <= on_disk
    assert len(on_disk) == 1 + len(rings)


def test_a_ring_follows_the_key_files_active_key(storage: Path) -> None:
    """Another process's rotation makes a new key active in the key file: this ring's next
    encryption is under it too, without a restart; before, it wrapped new records under the
    retired key until it restarted."""
    here, there = load(storage), load(storage)  # two processes' rings on one key file
    old = here.active_key_id
    cipher = EnvelopeCipher(here)
    assert cipher.encrypt(b"x", record_id="r", classification=SENSITIVE).key_id == old
    new = there.add_key()
    assert new != old
    blob = cipher.encrypt(b"x", record_id="r", classification=SENSITIVE)
    assert blob.key_id == new == here.active_key_id
    assert EnvelopeCipher(there).decrypt(blob, record_id="r", classification=SENSITIVE) == b"x"
    # The file garbled meanwhile: the ring keeps what it has, and says so in the log.
    there_file = storage / "master.key"
    there_file.write_text("not a key file")
    assert cipher.encrypt(b"y", record_id="r", classification=SENSITIVE).key_id == new


def test_an_environment_key_ring_does_not_follow_the_file(
    storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ATTUNE_MASTER_KEY set, the variable decides the active key (documented): a key
    made active in the file by another process does not take over here."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", b64(b"e" * 32))
    here, there = load(storage), load(storage)
    env_id = here.active_key_id
    there.add_key()
    assert here.active_key_id == env_id


# -- key sources -------------------------------------------------------------------------------


def test_dev_key_file_created_once_and_reused(storage: Path) -> None:
    ring = load(storage)
    path = storage / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(storage.stat().st_mode) == 0o700
    blob = EnvelopeCipher(ring).encrypt(b"survives", record_id="r", classification=SENSITIVE)
    content = path.read_bytes()

    again = load(storage)  # a restart
    assert again.active_key_id == ring.active_key_id
    assert path.read_bytes() == content
    assert EnvelopeCipher(again).decrypt(blob, record_id="r", classification=SENSITIVE) == (
        b"survives"
    )
    assert sorted(p.name for p in storage.iterdir()) == ["master.key"]


def test_explicit_key_file_in_a_new_directory(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "attune.key"
    ring = load(tmp_path / "storage", key_file=key_file)
    assert ring.key_file == key_file
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert json.loads(key_file.read_text())["active"] == ring.active_key_id
    assert not (tmp_path / "storage" / "master.key").exists()


def first_loads_at_once(storage: Path, count: int) -> list[str]:
    """Active key ids seen by ``count`` threads loading a fresh storage dir at the same time."""
    barrier = threading.Barrier(count)
    kids: list[str] = []

    def start() -> None:
        barrier.wait()
        kids.append(load(storage).active_key_id)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return kids


def test_concurrent_first_loads_end_with_one_key(tmp_path: Path) -> None:
    for round_ in range(5):
        storage = tmp_path / f"s{round_}"
        kids = first_loads_at_once(storage, 6)
        assert len(kids) == 6
        assert len(set(kids)) == 1
        assert list(json.loads((storage / "master.key").read_text())["keys"]) == [kids[0]]
        assert [p.name for p in storage.iterdir()] == ["master.key"]


def test_losing_the_creation_race_adopts_the_winner(storage: Path) -> None:
    winner = load(storage)
    path = storage / "master.key"
    content = path.read_bytes()
    adopted = keyfile.create(path)  # the racing step itself: internal to load()
    assert adopted.active == winner.active_key_id
    assert path.read_bytes() == content
    assert [p.name for p in storage.iterdir()] == ["master.key"]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_no_key_outside_development_refuses_encryption_only(
    storage: Path, environment: str
) -> None:
    ring = load(storage, environment)
    assert ring.key_ids == ()
    assert not (storage / "master.key").exists()
    with pytest.raises(ConfigurationError, match=r"no master key configured.*ATTUNE_MASTER_KEY"):
        EnvelopeCipher(ring).encrypt(b"x", record_id="r", classification=SENSITIVE)
    with pytest.raises(ConfigurationError, match="ATTUNE_KEY_FILE"):
        _ = ring.active_key_id


def test_env_master_key_is_active_and_has_a_source_independent_id(
    storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = load(storage)
    blob = EnvelopeCipher(dev).encrypt(b"portable", record_id="r", classification=SENSITIVE)
    file_key = dev._active_key()[1]  # key bytes: no public accessor, by design

    monkeypatch.setenv("ATTUNE_MASTER_KEY", b64(file_key))
    prod = load(tmp_path / "prod", "production")
    assert prod.key_ids == (dev.active_key_id,)
    assert not (tmp_path / "prod" / "master.key").exists()
    assert EnvelopeCipher(prod).decrypt(blob, record_id="r", classification=SENSITIVE) == (
        b"portable"
    )


def test_env_key_wins_and_key_file_keys_stay_readable(
    storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = load(storage)
    old_blob = EnvelopeCipher(dev).encrypt(b"old", record_id="r", classification=SENSITIVE)
    env_key = secrets.token_bytes(32)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", b64(env_key) + "\n")
    ring = load(storage, "production")
    assert ring.active_key_id == key_id(env_key)
    assert set(ring.key_ids) == {dev.active_key_id, key_id(env_key)}
    assert EnvelopeCipher(ring).decrypt(old_blob, record_id="r", classification=SENSITIVE) == b"old"


def test_env_key_in_development_creates_no_file(
    storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    ring = load(storage)
    assert len(ring.key_ids) == 1
    assert not (storage / "master.key").exists()


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        base64.b64encode(b"k" * 31).decode(),
        base64.b64encode(b"k" * 33).decode(),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),
    ],
)
def test_invalid_env_master_key_is_refused_without_echo(
    storage: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", value)
    with pytest.raises(ConfigurationError, match="ATTUNE_MASTER_KEY") as info:
        load(storage, "production")
    assert value not in str(info.value)


def test_add_key_with_env_key_persists_and_warns(
    storage: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env_key = secrets.token_bytes(32)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", b64(env_key))
    ring = load(storage, "production")
    with caplog.at_level(logging.WARNING, logger=crypto.__name__):
        new_kid = ring.add_key()
    assert ring.active_key_id == new_kid
    assert "set ATTUNE_MASTER_KEY to the new key" in caplog.text
    new_key = ring._active_key()[1]  # key bytes: no public accessor, by design
    assert b64(new_key) not in caplog.text
    path = storage / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(json.loads(path.read_text())["keys"]) == [new_kid]  # env key not written

    restarted = load(storage, "production")
    assert restarted.active_key_id == key_id(env_key)
    assert set(restarted.key_ids) == {new_kid, key_id(env_key)}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(storage: Path, mode: int) -> None:
    load(storage)
    path = storage / "master.key"
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match=re.escape(f"chmod 600 {path}")):
        load(storage)


def test_unknown_environment_is_refused(storage: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown environment"):
        load(storage, "prod")


KEY = secrets.token_bytes(32)
OTHER = secrets.token_bytes(32)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"",
        b"[1, 2]",
        json.dumps({"version": 2, "active": key_id(KEY), "keys": {key_id(KEY): b64(KEY)}}),
        json.dumps({"version": True, "active": key_id(KEY), "keys": {key_id(KEY): b64(KEY)}}),
        json.dumps({"version": 1, "active": key_id(KEY), "keys": {}}),
        json.dumps({"version": 1, "active": key_id(OTHER), "keys": {key_id(KEY): b64(KEY)}}),
        json.dumps({"version": 1, "active": key_id(KEY), "keys": {key_id(KEY): b64(KEY[:31])}}),
        json.dumps({"version": 1, "active": key_id(KEY), "keys": {key_id(KEY): b64(OTHER)}}),
        json.dumps({"version": 1, "active": key_id(KEY), "keys": {key_id(KEY): 12}}),
    ],
)
def test_corrupt_key_file_is_refused(storage: Path, content: str | bytes) -> None:
    storage.mkdir()
    path = storage / "master.key"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="corrupt") as info:
        load(storage)
    assert str(path) in str(info.value)
    assert b64(KEY) not in str(info.value) and b64(OTHER) not in str(info.value)


def test_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    key_dir = tmp_path / "keydir"
    key_dir.mkdir(mode=0o700)
    with pytest.raises(ConfigurationError, match="cannot read the master key file"):
        load(tmp_path / "s", "production", key_file=key_dir)


def test_key_file_with_several_keys_keeps_all_for_decryption(storage: Path) -> None:
    storage.mkdir()
    write_key_file(storage / "master.key", [KEY, OTHER], active=KEY)
    ring = load(storage, "production")
    assert ring.active_key_id == key_id(KEY)
    assert set(ring.key_ids) == {key_id(KEY), key_id(OTHER)}
    old = EnvelopeCipher(KeyRing([OTHER])).encrypt(b"o", record_id="r", classification=SENSITIVE)
    assert EnvelopeCipher(ring).decrypt(old, record_id="r", classification=SENSITIVE) == b"o"


def test_generate_master_key() -> None:
    a, b = generate_master_key(), generate_master_key()
    assert a != b
    assert len(base64.b64decode(a, validate=True)) == 32
    assert key_id(base64.b64decode(a)).startswith("k_")
    assert len(key_id(base64.b64decode(a))) == 18


def test_in_memory_ring_does_not_touch_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ring = KeyRing([KEY])
    ring.add_key(OTHER)
    assert ring.key_ids == (key_id(KEY), key_id(OTHER))
    assert ring.key_file is None
    assert list(tmp_path.iterdir()) == []


# -- properties ---------------------------------------------------------------------------------

LABELS = st.sampled_from(list(Classification))
IDS = st.text(max_size=40)
MEMORY_CIPHER = EnvelopeCipher(KeyRing([KEY]))


@PROPERTY
@given(plaintext=st.binary(max_size=2048), record_id=IDS, label=LABELS)
def test_property_round_trip(plaintext: bytes, record_id: str, label: Classification) -> None:
    blob = MEMORY_CIPHER.encrypt(plaintext, record_id=record_id, classification=label)
    assert MEMORY_CIPHER.decrypt(blob, record_id=record_id, classification=label.name) == plaintext


@PROPERTY
@given(
    plaintext=st.binary(max_size=256),
    field=st.sampled_from(["ciphertext", "nonce", "wrapped_key"]),
    position=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
)
def test_property_any_byte_flip_is_detected(
    plaintext: bytes, field: str, position: int, mask: int
) -> None:
    blob = MEMORY_CIPHER.encrypt(plaintext, record_id="r", classification=SENSITIVE)
    value: bytes = getattr(blob, field)
    tampered = with_field(blob, field, flip(value, position % len(value), mask))
    with pytest.raises(DecryptionError):
        MEMORY_CIPHER.decrypt(tampered, record_id="r", classification=SENSITIVE)


@PROPERTY
@given(
    plaintext=st.binary(max_size=256),
    first=st.tuples(IDS, LABELS),
    second=st.tuples(IDS, LABELS),
)
def test_property_aad_swap_is_detected(
    plaintext: bytes, first: tuple[str, Classification], second: tuple[str, Classification]
) -> None:
    if first == second:
        return
    blob = MEMORY_CIPHER.encrypt(plaintext, record_id=first[0], classification=first[1])
    with pytest.raises(DecryptionError):
        MEMORY_CIPHER.decrypt(blob, record_id=second[0], classification=second[1])


@PROPERTY
@given(
    records=st.lists(st.tuples(IDS, st.binary(max_size=128), st.booleans()), max_size=6),
    label=LABELS,
)
def test_property_rotation_round_trip(
    records: list[tuple[str, bytes, bool]], label: Classification
) -> None:
    ring = KeyRing([KEY])
    cipher = EnvelopeCipher(ring)
    blobs = [cipher.encrypt(p, record_id=r, classification=label) for r, p, _ in records]
    new_key = secrets.token_bytes(32)
    ring.add_key(new_key)
    only_new = EnvelopeCipher(KeyRing([new_key]))
    for (record_id, plaintext, rotate), blob in zip(records, blobs, strict=True):
        if rotate:
            blob = cipher.rewrap(blob, record_id=record_id, classification=label)
            assert only_new.decrypt(blob, record_id=record_id, classification=label) == plaintext
        else:
            with pytest.raises(DecryptionError):
                only_new.decrypt(blob, record_id=record_id, classification=label)
        assert cipher.decrypt(blob, record_id=record_id, classification=label) == plaintext
