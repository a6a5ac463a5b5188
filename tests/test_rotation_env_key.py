"""Rotation with ``ATTUNE_MASTER_KEY`` set, then following its warning, keeps search working.

Before: ``rotate_keys()`` wrote only the new key to the key file. The operator then set
``ATTUNE_MASTER_KEY`` to that new key, as the warning said; records had been rewrapped, so
recall still worked, but the search index is keyed by the master key the store remembers
(the old environment key), which was nowhere on disk any more: ``search_patterns`` raised
``ConfigurationError: ... not in the key ring``. Now a rotation also keeps the environment
key in the key file (not active), so every key the store was ever used with stays there.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security import keyfile
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.keyring import KeyRing, generate_master_key
from attune.memory.security.keyring import key_id as key_id_of

SECRET = "secret otter plan"


def memory(config: MemoryConfig, tier: str = "CONTRIBUTOR") -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("a", config, access_tier=tier)


def key_id(b64: str) -> str:
    return key_id_of(base64.b64decode(b64))


def key_file(storage: Path) -> keyfile.KeyFile:
    return keyfile.read(storage / "master.key")


def active_key_b64(storage: Path) -> str:
    stored = key_file(storage)
    return base64.b64encode(stored.keys[stored.active]).decode("ascii")


async def write_secret(config: MemoryConfig) -> str:
    async with memory(config) as mem:
        stored = await mem.persist_pattern(SECRET, "t", classification="SENSITIVE")
    security_pipeline.close_shared()
    return str(stored["pattern_id"])


async def rotate(config: MemoryConfig) -> dict[str, object]:
    async with memory(config, "STEWARD") as mem:
        rotated = await mem.rotate_keys()
    security_pipeline.close_shared()  # the next step is "a new process"
    return rotated


async def assert_readable(config: MemoryConfig, pattern_id: str) -> None:
    async with memory(config) as mem:
        found = [r["pattern_id"] for r in await mem.search_patterns("otter")]
        assert found == [pattern_id]
        pattern = await mem.recall_pattern(pattern_id)
        assert pattern is not None and pattern["content"] == SECRET
        listed = [p["pattern_id"] for p in await mem.list_patterns()]
        assert listed == [pattern_id]
    security_pipeline.close_shared()


async def test_following_the_rotation_warning_keeps_search_working(
    mock_config: MemoryConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = mock_config.storage_dir
    old = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", old)
    pattern_id = await write_secret(mock_config)
    assert not (storage / "master.key").exists()  # the environment key is not on disk yet

    with caplog.at_level(logging.WARNING):
        rotated = await rotate(mock_config)
    assert rotated["rewrapped"] == 1
    assert "set ATTUNE_MASTER_KEY to the new key" in caplog.text
    assert old not in caplog.text

    path = storage / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = key_file(storage)
    assert stored.active == rotated["key_id"]
    assert set(stored.keys) == {key_id(old), rotated["key_id"]}

    # What the warning says: ATTUNE_MASTER_KEY is now the new key.
    new = active_key_b64(storage)
    assert key_id(new) == rotated["key_id"]
    monkeypatch.setenv("ATTUNE_MASTER_KEY", new)
    await assert_readable(mock_config, pattern_id)

    # Without ATTUNE_MASTER_KEY the key file alone is enough too.
    monkeypatch.delenv("ATTUNE_MASTER_KEY")
    await assert_readable(mock_config, pattern_id)


async def test_a_second_rotation_after_following_the_warning(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment key and the key file's active key agree: nothing is duplicated,
    every key stays, and following the warning again still leaves search working."""
    storage = mock_config.storage_dir
    first = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", first)
    pattern_id = await write_secret(mock_config)
    await rotate(mock_config)
    second = active_key_b64(storage)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", second)
    await assert_readable(mock_config, pattern_id)

    rotated = await rotate(mock_config)
    stored = key_file(storage)
    assert stored.active == rotated["key_id"]
    assert set(stored.keys) == {key_id(first), key_id(second), rotated["key_id"]}
    third = active_key_b64(storage)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", third)
    await assert_readable(mock_config, pattern_id)


async def test_not_following_the_warning_keeps_working(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart with the old environment key: it is active again, the new key (which the
    records are wrapped under now) is read from the key file."""
    old = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", old)
    pattern_id = await write_secret(mock_config)
    await rotate(mock_config)
    await assert_readable(mock_config, pattern_id)
    async with memory(mock_config) as mem:
        newer = await mem.persist_pattern("another otter", "t", classification="SENSITIVE")
        found = {r["pattern_id"] for r in await mem.search_patterns("otter")}
    assert found == {pattern_id, newer["pattern_id"]}


async def test_an_existing_key_file_gains_the_environment_key_and_keeps_its_keys(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key file existed (the development key made before ATTUNE_MASTER_KEY was set):
    its keys stay, the environment key joins them, the new key is active."""
    storage = mock_config.storage_dir
    await write_secret(mock_config)  # creates master.key with a development key
    file_key = key_file(storage).active
    env = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", env)
    pattern_id = await write_secret(mock_config)
    rotated = await rotate(mock_config)
    stored = key_file(storage)
    assert stored.active == rotated["key_id"]
    assert set(stored.keys) == {file_key, key_id(env), rotated["key_id"]}
    monkeypatch.setenv("ATTUNE_MASTER_KEY", active_key_b64(storage))
    async with memory(mock_config) as mem:
        found = {r["pattern_id"] for r in await mem.search_patterns("otter")}
        assert pattern_id in found and len(found) == 2
        assert await mem.recall_pattern(pattern_id) is not None


# -- the key file ----------------------------------------------------------------------------


def test_keep_creates_the_file_with_the_key_active(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "master.key"
    key = os.urandom(32)
    stored = keyfile.keep(path, key_id_of(key), key)
    assert stored.active == key_id_of(key) and stored.keys == {key_id_of(key): key}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyfile.read(path) == stored
    assert not list(path.parent.glob(".master.key-*"))  # no temp file left


def test_keep_adds_without_changing_the_active_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    created = keyfile.create(path)
    key = os.urandom(32)
    kept = keyfile.keep(path, key_id_of(key), key)
    assert kept.active == created.active
    assert kept.keys == {**created.keys, key_id_of(key): key}
    assert keyfile.read(path) == kept
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert keyfile.keep(path, key_id_of(key), key) == kept  # already there: not rewritten
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_keep_and_create_at_once_lose_no_key(tmp_path: Path) -> None:
    """create() takes no lock: a keep() that found no file must not replace one that
    create() put there meanwhile (it links, and merges on finding one)."""
    for attempt in range(20):
        path = tmp_path / f"s{attempt}" / "master.key"
        key = os.urandom(32)
        created: list[keyfile.KeyFile] = []
        barrier = threading.Barrier(2)

        def make(path: Path, out: list[keyfile.KeyFile], barrier: threading.Barrier) -> None:
            barrier.wait()
            out.append(keyfile.create(path))

        thread = threading.Thread(target=make, args=(path, created, barrier))
        thread.start()
        barrier.wait()
        keyfile.keep(path, key_id_of(key), key)
        thread.join()
        final = keyfile.read(path)
        assert key_id_of(key) in final.keys
        assert set(created[0].keys) <= set(final.keys)


def test_keep_env_key_on_a_ring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", env)
    ring = KeyRing.load(storage_dir=tmp_path, environment="production", key_file=None)
    assert ring.keep_env_key() == key_id(env)
    assert set(keyfile.read(tmp_path / "master.key").keys) == {key_id(env)}
    new_kid = ring.add_key()
    stored = keyfile.read(tmp_path / "master.key")
    assert stored.active == new_kid and set(stored.keys) == {key_id(env), new_kid}
    assert ring.keep_env_key() == key_id(env)  # already there: unchanged
    assert keyfile.read(tmp_path / "master.key") == stored
    # Without an environment key, or with an in-memory ring, there is nothing to keep.
    monkeypatch.delenv("ATTUNE_MASTER_KEY")
    restarted = KeyRing.load(storage_dir=tmp_path, environment="production", key_file=None)
    assert restarted.keep_env_key() is None
    assert KeyRing([os.urandom(32)]).keep_env_key() is None


# -- separate processes, as in the report ------------------------------------------------------

_STEP = """
import sys
from attune.memory import UnifiedMemory, MemoryConfig
step = sys.argv[1]
tier = "STEWARD" if step == "rotate" else "CONTRIBUTOR"
with UnifiedMemory("a", MemoryConfig(redis_mock=True), access_tier=tier) as mem:
    if step == "write":
        stored = mem.persist_pattern("secret otter plan", "t", classification="SENSITIVE")
        print(stored["pattern_id"])
    elif step == "rotate":
        print(mem.rotate_keys()["key_id"])
    else:
        print(",".join(r["pattern_id"] for r in mem.search_patterns("otter")))
        print(mem.recall_pattern(sys.argv[2])["content"])
"""


def test_the_report_in_separate_processes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
    env["ATTUNE_STORAGE_DIR"] = str(tmp_path / "r")
    env["ATTUNE_MASTER_KEY"] = generate_master_key()

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _STEP, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    pattern_id = run("write")
    new_kid = run("rotate")
    new = active_key_b64(tmp_path / "r")
    assert key_id(new) == new_kid
    env["ATTUNE_MASTER_KEY"] = new
    assert run("search", pattern_id).splitlines() == [pattern_id, SECRET]
