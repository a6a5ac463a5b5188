"""One key ring for many hosts, kept in PostgreSQL (attune.memory.security.ring_store):
hosts are OS processes that share no directory (tests/key_ring_host.py), only the
database and the root master key. A rotation on one is read on the other at once; a host
with another root key, or a damaged ring, fails with a clear error and writes nothing;
hosts that start together on a fresh database make one ring."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attune.cli import main
from attune.errors import ConfigurationError, DecryptionError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.crypto import generate_master_key, key_id

asyncpg = pytest.importorskip("asyncpg")

HOST = Path(__file__).with_name("key_ring_host.py")
TABLES = ("patterns", "store_meta", "audit_subjects", "key_ring", "key_ring_keys")
_ANSWER_S = 60


class Host:
    """A key_ring_host.py process: its own storage directory, the given root key."""

    def __init__(self, tmp: Path, name: str, url: str, master_key: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
        env.pop("REDIS_URL", None)
        env.update(ATTUNE_DATABASE_URL=url, ATTUNE_STORAGE_DIR=str(tmp / name / "storage"))
        if master_key is not None:
            env["ATTUNE_MASTER_KEY"] = master_key
        (tmp / name).mkdir(parents=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(HOST)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp / name,
        )

    def send(self, *command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(list(command)) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], _ANSWER_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            _out, err = self.proc.communicate()
            raise AssertionError(f"the host process gave no answer; its stderr:\n{err}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, *command: Any) -> Any:
        self.send(*command)
        reply = self.answer()
        assert "ok" in reply, reply
        return reply["ok"]

    def close(self) -> None:
        if self.proc.poll() is None:
            with_quit = self.proc.stdin is not None and not self.proc.stdin.closed
            if with_quit:
                self.send("quit")
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.close()


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}
    finally:
        await conn.close()


async def _sql(url: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


# -- two hosts -------------------------------------------------------------------------------


def test_a_rotation_on_one_host_is_read_on_the_other_at_once(
    postgres_url: str, tmp_path: Path, hosts: list[Host]
) -> None:
    root = generate_master_key()
    a = Host(tmp_path, "a", postgres_url, root)
    b = Host(tmp_path, "b", postgres_url, root)
    hosts += [a, b]
    first = [a.ask("persist", f"Vault {n} opens with code 44{n}7", "SENSITIVE") for n in range(3)]
    ring_key = first[0]["key_id"]
    assert ring_key != key_id(base64.b64decode(root))  # a ring key, not the root
    assert b.ask("recall", first[0]["pattern_id"]) == "Vault 0 opens with code 4407"
    assert b.ask("active") == ring_key

    rotated = a.ask("rotate")
    assert rotated != ring_key
    # At once, without a restart: the records now under the new key open on B...
    for n, stored in enumerate(first):
        assert b.ask("recall", stored["pattern_id"]) == f"Vault {n} opens with code 44{n}7"
    # ...search finds them (one search key for every host, across the rotation)...
    assert sorted(b.ask("search", "vault")) == sorted(s["pattern_id"] for s in first)
    # ...and B's next write is under the new active key, which A reads.
    written = b.ask("persist", "Vault 9 is empty", "SENSITIVE")
    assert written["key_id"] == rotated
    assert a.ask("recall", written["pattern_id"]) == "Vault 9 is empty"
    assert a.ask("search", "empty") == [written["pattern_id"]]

    # A second rotation B learns by notification alone (no read that misses a key).
    again = a.ask("rotate")
    assert b.ask("wait_active", again) is True
    assert b.ask("persist", "Vault 10 is full", "SENSITIVE")["key_id"] == again


def test_a_host_with_another_master_key_fails_at_start_and_writes_nothing(
    postgres_url: str, tmp_path: Path, hosts: list[Host]
) -> None:
    root, other = generate_master_key(), generate_master_key()
    a = Host(tmp_path, "a", postgres_url, root)
    hosts.append(a)
    stored = a.ask("persist", "The vault code is 4417", "SENSITIVE")
    before = asyncio.run(_counts(postgres_url))

    c = Host(tmp_path, "c", postgres_url, other)
    hosts.append(c)
    for command in (("persist", "Plain words", "PUBLIC"), ("recall", stored["pattern_id"])):
        c.send(*command)
        reply = c.answer()
        assert reply["error"] == "ConfigurationError"
        message = reply["message"]
        assert key_id(base64.b64decode(other)) in message
        assert key_id(base64.b64decode(root)) in message
        assert root not in message and other not in message
        assert "ATTUNE_MASTER_KEY" in message
    assert asyncio.run(_counts(postgres_url)) == before
    assert a.ask("recall", stored["pattern_id"]) == "The vault code is 4417"


def test_hosts_starting_together_on_a_fresh_database_make_one_ring(
    fresh_url: str, tmp_path: Path, hosts: list[Host]
) -> None:
    root = generate_master_key()
    group = [Host(tmp_path, f"h{n}", fresh_url, root) for n in range(4)]
    hosts += group
    for n, host in enumerate(group):  # all asked before any answers: they race
        host.send("persist", f"Host {n} keeps the lantern lit", "SENSITIVE")
    written = [host.answer()["ok"] for host in group]
    rows = asyncio.run(_sql(fresh_url, "SELECT key_id FROM key_ring_keys"))
    assert len(rows) == 1
    assert len(asyncio.run(_sql(fresh_url, "SELECT * FROM key_ring"))) == 1
    assert {w["key_id"] for w in written} == {rows[0][0]}
    for n, host in enumerate(group):
        other = written[(n + 1) % len(group)]
        assert host.ask("recall", other["pattern_id"]).endswith("keeps the lantern lit")


# -- in one process: damaged rows, a root key change, no master key -----------------------------


def _config(tmp_path: Path, url: str, name: str = "s", **kw: Any) -> MemoryConfig:
    if kw.get("environment", "development") != "development":  # the stand-in is refused there
        kw["redis_url"] = "redis://127.0.0.1:1/0"  # never reached: only the long-term tier
    else:
        kw["redis_mock"] = True
    return MemoryConfig(storage_dir=tmp_path / name, database_url=url, **kw)


async def _first_ring(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, root: str) -> str:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", root)
    async with AsyncUnifiedMemory("a", _config(tmp_path, url), access_tier="STEWARD") as mem:
        stored = await mem.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
        await mem.rotate_keys()
    security_pipeline.close_shared()  # the next memory starts as a new process would
    return str(stored["pattern_id"])


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (
            "UPDATE key_ring_keys SET wrapped = set_byte(wrapped, 20, get_byte(wrapped, 20) # 1)",
            "does not open",
        ),
        (
            "UPDATE key_ring SET root_check = set_byte(root_check, 0, get_byte(root_check, 0) # 1)",
            "check value",
        ),
        ("UPDATE key_ring SET root_check = '\\x00'::bytea", "check value"),
        ("UPDATE key_ring SET active_key_id = 'k_0000000000000000'", "not one of its keys"),
        (
            "UPDATE key_ring_keys SET key_id = 'k_' || md5(key_id)::text WHERE key_id = "
            "(SELECT min(key_id) FROM key_ring_keys)",
            "does not open",
        ),
        ("UPDATE key_ring_keys SET wrapped = substr(wrapped, 1, 10)", "does not open"),
    ],
)
async def test_a_damaged_ring_is_a_typed_error_and_nothing_is_written(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
    why: str,
) -> None:
    root = generate_master_key()
    pattern_id = await _first_ring(tmp_path, postgres_url, monkeypatch, root)
    await _sql(postgres_url, damage)
    before = await _counts(postgres_url)
    async with AsyncUnifiedMemory("b", _config(tmp_path, postgres_url, "t")) as mem:
        with pytest.raises(ConfigurationError, match="damaged or was altered") as raised:
            await mem.persist_pattern("Plain words", "ops", "PUBLIC")
        assert why in str(raised.value) and root not in str(raised.value)
        with pytest.raises(ConfigurationError, match="damaged or was altered"):
            await mem.recall_pattern(pattern_id)
    assert await _counts(postgres_url) == before


def test_the_root_key_is_changed_by_the_cli_without_touching_records(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new = generate_master_key(), generate_master_key()
    pattern_id = asyncio.run(_first_ring(tmp_path, postgres_url, monkeypatch, old))
    records = asyncio.run(_sql(postgres_url, "SELECT key_id, wrapped_key FROM patterns"))
    ring_before = asyncio.run(_sql(postgres_url, "SELECT key_id, wrapped FROM key_ring_keys"))
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ATTUNE_STORAGE_DIR", str(tmp_path / "cli"))
    # A malformed new key: a clear error, the ring untouched.
    monkeypatch.setenv("ATTUNE_NEW_MASTER_KEY", "not-a-key")
    assert main(["keys", "reroot", "--json"]) == 2
    assert "ATTUNE_NEW_MASTER_KEY" in capsys.readouterr().err
    assert asyncio.run(_sql(postgres_url, "SELECT key_id, wrapped FROM key_ring_keys")) == (
        ring_before
    )
    monkeypatch.setenv("ATTUNE_NEW_MASTER_KEY", new)
    assert main(["keys", "reroot", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    new_id = key_id(base64.b64decode(new))
    assert done == {"root_key_id": new_id, "keys": 2}
    security_pipeline.close_shared()
    # Records untouched; the ring's keys the same ones, wrapped anew.
    assert asyncio.run(_sql(postgres_url, "SELECT key_id, wrapped_key FROM patterns")) == records
    ring_after = asyncio.run(_sql(postgres_url, "SELECT key_id, wrapped FROM key_ring_keys"))
    assert sorted(r[0] for r in ring_after) == sorted(r[0] for r in ring_before)
    assert not set(r[1] for r in ring_after) & set(r[1] for r in ring_before)

    async def read_with(root: str, name: str) -> Any:
        monkeypatch.setenv("ATTUNE_MASTER_KEY", root)
        security_pipeline.close_shared()
        async with AsyncUnifiedMemory("b", _config(tmp_path, postgres_url, name)) as mem:
            found = await mem.recall_pattern(pattern_id)
            return found, [r["pattern_id"] for r in await mem.search_patterns("vault")]

    # The old root is refused now, naming the new root; the new one reads everything.
    with pytest.raises(ConfigurationError, match=new_id):
        asyncio.run(read_with(old, "t"))
    found, searched = asyncio.run(read_with(new, "u"))
    assert found["content"] == "The vault code is 4417" and searched == [pattern_id]


async def test_without_a_master_key_only_public_records_are_written(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, postgres_url, environment="staging")
    async with AsyncUnifiedMemory("a", config) as mem:
        await mem.persist_pattern("Open at nine", "ops", "PUBLIC")
        with pytest.raises(ConfigurationError, match="no master key"):
            await mem.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
    assert (await _counts(postgres_url))["key_ring"] == 0  # it made no ring
    security_pipeline.close_shared()
    pattern_id = await _first_ring(tmp_path, postgres_url, monkeypatch, generate_master_key())
    monkeypatch.delenv("ATTUNE_MASTER_KEY")
    async with AsyncUnifiedMemory(
        "b", _config(tmp_path, postgres_url, "t", environment="staging")
    ) as mem:
        with pytest.raises(DecryptionError):
            await mem.recall_pattern(pattern_id)
        await mem.persist_pattern("Close at five", "ops", "PUBLIC")


async def test_without_notifications_a_host_still_learns_a_rotation_from_a_miss(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from attune.memory.long_term import postgres_keyring

    async def refuse(*_args: Any) -> None:
        raise OSError(111, "Connection refused")

    monkeypatch.setattr(postgres_keyring.Listener, "_start", refuse)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    # Two "hosts" in one process: their own storage directories, so their own rings.
    a = AsyncUnifiedMemory("a", _config(tmp_path, postgres_url, "a"), access_tier="STEWARD")
    b = AsyncUnifiedMemory("b", _config(tmp_path, postgres_url, "b"))
    async with a, b:
        stored = await a.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
        assert (await b.recall_pattern(stored["pattern_id"]))["content"].endswith("4417")
        assert "cannot listen for key ring changes" in caplog.text
        rotated = (await a.rotate_keys())["key_id"]
        assert b.pipeline.cipher.ring.active_key_id != rotated  # nothing told it
        assert (await b.recall_pattern(stored["pattern_id"]))["content"].endswith("4417")
        assert b.pipeline.cipher.ring.active_key_id == rotated  # the miss did
        written = await b.persist_pattern("Vault 9 is empty", "ops", "SENSITIVE")
        record = await b.long_term.get(written["pattern_id"], 0)
        assert record is not None and record.key_id == rotated


async def test_keys_of_a_sqlite_store_are_imported_so_its_records_open_on_every_host(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune.memory.security import ring_store

    sqlite = MemoryConfig(redis_mock=True, storage_dir=tmp_path / "laptop")
    async with AsyncUnifiedMemory("a", sqlite, access_tier="STEWARD") as mem:
        stored = await mem.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
        laptop = mem.pipeline.cipher.ring
        old_key = laptop._key(laptop.active_key_id)
        await mem.export_patterns(tmp_path / "export.jsonl")
    assert old_key is not None
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    config = _config(tmp_path, postgres_url, "server")
    async with AsyncUnifiedMemory("b", config, access_tier="STEWARD") as mem:
        # Its records name a key the ring lacks: refused before anything is written.
        with pytest.raises(DecryptionError):
            await mem.import_patterns(tmp_path / "export.jsonl")
        ring = mem.pipeline.cipher.ring
        with pytest.raises(ConfigurationError, match="exactly 32 bytes"):
            await ring_store.import_keys(ring, mem.long_term, [old_key[:31]])
        assert len(ring.key_ids) == 1
        active = ring.active_key_id
        imported = await ring_store.import_keys(ring, mem.long_term, [old_key])
        assert imported == [key_id(old_key)] and ring.active_key_id == active
        assert (await mem.import_patterns(tmp_path / "export.jsonl"))["imported"] == 1
    security_pipeline.close_shared()
    # Another host (its own directory, the same root) reads it and finds it.
    async with AsyncUnifiedMemory("c", _config(tmp_path, postgres_url, "other")) as mem:
        found = await mem.recall_pattern(stored["pattern_id"])
        assert found is not None and found["content"] == "The vault code is 4417"
        assert [r["pattern_id"] for r in await mem.search_patterns("vault")] == [
            stored["pattern_id"]
        ]


async def test_a_running_host_keeps_working_after_the_root_key_changes(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from attune.memory.security import ring_store

    new = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    a = AsyncUnifiedMemory("a", _config(tmp_path, postgres_url, "a"), access_tier="STEWARD")
    b = AsyncUnifiedMemory("b", _config(tmp_path, postgres_url, "b"))
    async with a, b:
        first = await a.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
        assert await b.recall_pattern(first["pattern_id"]) is not None  # B holds the ring
        ring = a.pipeline.cipher.ring
        await ring_store.reroot(ring, a.long_term, base64.b64decode(new))
        await ring_store.reload(b.pipeline.cipher.ring, b.long_term)  # as on its NOTIFY
        assert "moved to root key" in caplog.text
        later = await b.persist_pattern("Vault 9 is empty", "ops", "SENSITIVE")
    security_pipeline.close_shared()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", new)
    async with AsyncUnifiedMemory("c", _config(tmp_path, postgres_url, "c")) as mem:
        for stored in (first, later):
            assert await mem.recall_pattern(stored["pattern_id"]) is not None


async def test_records_written_before_the_database_kept_a_ring_still_open(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database whose records an earlier attune encrypted under the master key itself
    (no ring kept then) gets a ring at its first ring-aware start, and those records still
    open, are found by search, and move to a ring key at the next rotation."""
    from attune.memory.long_term.postgres_store import PostgresLongTermStore

    class Ringless(PostgresLongTermStore):  # the store as an earlier attune used it
        async def key_ring(self, on_change: Any = None) -> None:
            return None

    root = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", root)
    old = Ringless(postgres_url)
    try:
        async with AsyncUnifiedMemory("a", _config(tmp_path, postgres_url), long_term=old) as mem:
            stored = await mem.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
    finally:
        await old.aclose()
    security_pipeline.close_shared()
    rows = await _sql(postgres_url, "SELECT key_id FROM patterns")
    root_id = key_id(base64.b64decode(root))
    assert [r["key_id"] for r in rows] == [root_id]
    config = _config(tmp_path, postgres_url, "upgraded")
    async with AsyncUnifiedMemory("b", config, access_tier="STEWARD") as mem:
        found = await mem.recall_pattern(stored["pattern_id"])
        assert found is not None and found["content"] == "The vault code is 4417"
        assert [r["pattern_id"] for r in await mem.search_patterns("vault")] == [
            stored["pattern_id"]
        ]
        assert mem.pipeline.cipher.ring.active_key_id != root_id
        await mem.rotate_keys()
    rows = await _sql(postgres_url, "SELECT key_id FROM patterns")
    assert [r["key_id"] for r in rows] != [root_id]
