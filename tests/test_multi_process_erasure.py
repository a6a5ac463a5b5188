"""Erasure while another process holds the SQLite file: the erasure is committed and
audited even when its traces cannot be cleared yet, and running it again clears them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from attune.errors import LongTermUnavailableError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.sqlite_store import DB_FILENAME, SQLiteLongTermStore
from attune.memory.security.audit import AuditLogger
from attune.memory.security.pipeline import close_shared

ALICE = "alice-held-9q"
HER_WORDS = ("quorbliness", "zentravixal", "snorkelbane")


def _hold_a_read_transaction(db: Path) -> subprocess.Popen[bytes]:
    """Another process with a read transaction open on ``db`` (a backup, a sqlite3 shell),
    which keeps the WAL from being checkpointed until it ends; started once it holds it."""
    child = textwrap.dedent(
        f"""
        import sqlite3, sys
        db = sqlite3.connect({str(db)!r}, isolation_level=None)
        db.execute("BEGIN")
        db.execute("SELECT count(*) FROM patterns").fetchone()
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    return proc


def _traces(storage: Path) -> dict[str, list[str]]:
    found = {}
    for path in storage.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            hits = [n for n in (ALICE, *HER_WORDS) if n.encode() in blob]
            if hits:
                found[path.name] = hits
    return found


async def test_an_erasure_held_back_by_a_reader_is_audited_and_finished_by_a_rerun(
    mock_config: MemoryConfig,
) -> None:
    storage = mock_config.storage_dir
    async with AsyncUnifiedMemory(ALICE, mock_config) as alice:
        for word in HER_WORDS:
            await alice.persist_pattern(f"{word} field notes", "note", classification="PUBLIC")
        her_pseudonym = await alice.audit_pseudonym()
    close_shared()
    holder = _hold_a_read_transaction(storage / DB_FILENAME)
    store = SQLiteLongTermStore(storage, busy_timeout_s=0.5)
    try:
        async with AsyncUnifiedMemory(
            "dpo", mock_config, access_tier="STEWARD", long_term=store
        ) as steward:
            with pytest.raises(LongTermUnavailableError, match="WAS committed") as caught:
                await steward.erase_user(ALICE)
            assert ALICE not in str(caught.value)
            # The erasure stands: her records and her pseudonym are gone...
            assert await steward.count_patterns(created_by=ALICE, namespace="*") == 0
            assert await steward.audit_pseudonym(ALICE) is None
            # ...and the log records it, with its counts.
            log = AuditLogger(log_file=mock_config.audit_log_path)
            try:
                erasures = log.query(event_type="user.erase", limit=None)
                assert [
                    (e["target_id"], e["outcome"], e["details"]["patterns"]) for e in erasures
                ] == [(her_pseudonym, "incomplete", len(HER_WORDS))]
            finally:
                log.close()
            holder.kill()
            holder.wait(timeout=10)
            # Once the reader is gone, running it again clears what was left.
            again = await steward.erase_user(ALICE)
            assert again["patterns"] == 0 and again["pseudonym_erased"] is False
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        await store.aclose()
    close_shared()
    assert _traces(storage) == {}
