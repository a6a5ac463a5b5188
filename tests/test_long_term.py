"""Long-term tier: persist / recall on SQLite, schema versioning, durability."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from records import pattern_record as _record

from attune.errors import AuditLogError, LongTermUnavailableError, ValidationError
from attune.memory import AsyncUnifiedMemory, Classification, MemoryConfig
from attune.memory.long_term import Audited, InsertOp
from attune.memory.long_term.sqlite_store import DB_FILENAME, SCHEMA_VERSION


async def test_persist_and_recall(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("analyst@company.com", mock_config) as mem:
        result = await mem.persist_pattern(
            "Use dependency injection for testable code",
            "architecture",
            metadata={"source": "review", "tags": ["di", "testing"]},
        )
        assert set(result) >= {"pattern_id", "classification", "encrypted", "created_at"}
        assert result["pattern_id"].startswith("pat_")
        pattern = await mem.recall_pattern(result["pattern_id"])
        assert pattern is not None
        assert pattern["pattern_id"] == result["pattern_id"]
        assert pattern["content"] == "Use dependency injection for testable code"
        assert pattern["pattern_type"] == "architecture"
        assert pattern["classification"] == result["classification"]
        assert pattern["created_at"] == result["created_at"]
        assert pattern["created_by"] == "analyst@company.com"
        assert pattern["metadata"] == {"source": "review", "tags": ["di", "testing"]}
        assert await mem.recall_pattern("pat_unknown") is None


async def test_recall_sees_other_instances_and_restarts(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as writer:
        stored = await writer.persist_pattern("Log with request ids", "observability")
    async with AsyncUnifiedMemory("b", mock_config) as reader:
        pattern = await reader.recall_pattern(stored["pattern_id"])
    assert pattern is not None and pattern["content"] == "Log with request ids"


async def test_database_file_wal_and_schema_version(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        await mem.persist_pattern("x marks the spot", "misc")
    db = mock_config.storage_dir / DB_FILENAME
    assert (db.stat().st_mode & 0o777) == 0o600
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


async def test_newer_schema_is_refused(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        await mem.persist_pattern("first", "misc")
    conn = sqlite3.connect(mock_config.storage_dir / DB_FILENAME)
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        with pytest.raises(LongTermUnavailableError, match="upgrade attune"):
            await mem.persist_pattern("second", "misc")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"content": "", "pattern_type": "x"}, "content"),
        ({"content": 12, "pattern_type": "x"}, "content"),
        ({"content": "ok", "pattern_type": ""}, "pattern_type"),
        ({"content": "ok", "pattern_type": "x", "classification": "TOP_SECRET"}, "classification"),
        ({"content": "ok", "pattern_type": "x", "metadata": ["not", "a", "dict"]}, "metadata"),
        ({"content": "ok", "pattern_type": "x", "metadata": {"o": object()}}, "JSON"),
        ({"content": "ok", "pattern_type": "x", "auto_classify": "yes"}, "auto_classify"),
    ],
)
async def test_bad_persist_input_writes_nothing(
    mock_config: MemoryConfig, kwargs: dict[str, object], fragment: str
) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        with pytest.raises((ValidationError, TypeError), match=fragment):
            await mem.persist_pattern(**kwargs)  # type: ignore[arg-type]
        assert await mem.long_term.count() == 0  # type: ignore[attr-defined]


async def test_classification_enum_and_names(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        for given in (Classification.PUBLIC, "public", "Public", "PUBLIC"):
            result = await mem.persist_pattern("Write tests first", "process", classification=given)
            assert result["classification"] == "PUBLIC"


async def test_concurrent_persists_share_commits(mock_config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        results = await asyncio.gather(
            *(
                mem.persist_pattern(f"Pattern number {i}", "misc", classification="PUBLIC")
                for i in range(64)
            )
        )
        assert len({r["pattern_id"] for r in results}) == 64
        assert await mem.long_term.count() == 64  # type: ignore[attr-defined]
        # Private: how many transactions the group commit made is internal (no counter).
        conn = mem.long_term._conns.peek()  # type: ignore[attr-defined]
        assert conn is not None and conn.commits < 64  # group commit batched them


def test_persist_is_durable_across_sigkill(tmp_path: Path) -> None:
    """A child persists, prints the id, and is killed with SIGKILL right after."""
    storage = tmp_path / "store"
    child = textwrap.dedent(
        f"""
        import os, sys
        from attune import EmpathyOS
        from attune.memory import MemoryConfig
        cfg = MemoryConfig(redis_mock=True, storage_dir={str(storage)!r})
        agent = EmpathyOS(user_id="durable", config=cfg)
        result = agent.persist_pattern("Survives SIGKILL", "durability", classification="PUBLIC")
        print(result["pattern_id"], flush=True)
        sys.stdin.read()  # wait to be killed
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_") and k != "REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    pattern_id = proc.stdout.readline().decode().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert pattern_id.startswith("pat_")

    async def recall() -> dict[str, object] | None:
        cfg = MemoryConfig(redis_mock=True, storage_dir=storage)
        async with AsyncUnifiedMemory("checker", cfg) as mem:
            return await mem.recall_pattern(pattern_id)

    pattern = asyncio.run(recall())
    assert pattern is not None and pattern["content"] == "Survives SIGKILL"


async def test_batched_inserts_answer_each_caller(mock_config: MemoryConfig) -> None:
    """Concurrent inserts share one executemany; duplicates in one batch have one winner."""
    from attune.memory.long_term import PatternRecord, SQLiteLongTermStore

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    try:
        await store.write(InsertOp(_record("pat_existing")))

        ids = ["pat_existing", "pat_a", "pat_b", "pat_a", "pat_c", "pat_b"]
        results = await asyncio.gather(*(store.write(InsertOp(_record(i))) for i in ids))
        assert results == [False, True, True, False, True, False]
        assert await store.count() == 4
        got = await store.get("pat_c", 0)
        assert isinstance(got, PatternRecord) and got.content == b"body of pat_c"
    finally:
        await store.aclose()


def test_rows_are_read_and_written_in_the_records_field_order(tmp_path: Path) -> None:
    """Records are built from rows by position: the columns follow the record's fields, and
    what an insert binds is what a select of those columns reads back."""
    from attune.memory.long_term import PatternRecord
    from attune.memory.long_term.sqlite_schema import (
        COLUMNS,
        INSERT,
        MIGRATIONS,
        SELECT_ONE,
        params,
        to_record,
    )

    columns = [c.strip() for c in COLUMNS.split(",")]
    assert len(columns) == len(PatternRecord._fields)
    for column, name in zip(columns, PatternRecord._fields, strict=True):
        assert column == {"metadata_json": "metadata", "record_format": "format"}.get(name, name)
    record = _record("pat_order")._replace(
        expires_at_ms=9, encrypted=True, key_id="k", wrapped_key=b"w", nonce=b"n"
    )
    assert to_record(params(record)) == record
    db = sqlite3.connect(tmp_path / "order.db")
    for version in sorted(MIGRATIONS):
        for statement in MIGRATIONS[version]:
            db.execute(statement)
    db.execute(INSERT, params(record))
    assert to_record(db.execute(SELECT_ONE, ("pat_order", 0)).fetchone()) == record
    db.close()


async def test_opening_retries_a_lock_reported_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite may report a busy file at once while preparing a connection (switching to
    WAL, recovering the WAL index) instead of waiting: opening retries, then succeeds."""
    from attune.memory.long_term import SQLiteLongTermStore

    # Private: a busy file at this point cannot be produced on demand; injected instead.
    real = SQLiteLongTermStore._migrate
    failures = iter([sqlite3.OperationalError("database is locked")] * 3)

    async def flaky(self: SQLiteLongTermStore, db: Any) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        await real(self, db)

    monkeypatch.setattr(SQLiteLongTermStore, "_migrate", flaky)
    store = SQLiteLongTermStore(tmp_path)
    try:
        assert await store.write(InsertOp(_record("pat_after_retries")))
        assert await store.count() == 1
        assert next(failures, None) is None  # all three were met and retried
    finally:
        await store.aclose()


async def test_opening_gives_up_on_other_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune.memory.long_term import SQLiteLongTermStore

    async def broken(self: SQLiteLongTermStore, db: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SQLiteLongTermStore, "_migrate", broken)  # an I/O error, injected
    store = SQLiteLongTermStore(tmp_path)
    try:
        with pytest.raises(LongTermUnavailableError, match="disk I/O error"):
            await store.count()
    finally:
        await store.aclose()


async def test_each_connection_gets_the_configured_page_cache(tmp_path: Path) -> None:
    """Recalls pick records at random: SQLite's 2 MiB default would send most of them to
    the OS once a store holds a few thousand patterns."""
    from attune.memory.long_term import SQLiteLongTermStore
    from attune.memory.long_term.sqlite_store import DEFAULT_CACHE_MIB

    for store, mib in (
        (SQLiteLongTermStore(tmp_path), DEFAULT_CACHE_MIB),
        (SQLiteLongTermStore(tmp_path, cache_mib=3), 3),
    ):
        try:
            # Private: the connection's pragmas have no public reader.
            rows = await store._read("PRAGMA cache_size", ())
            assert rows[0][0] == -mib * 1024  # negative: KiB
        finally:
            await store.aclose()
    assert DEFAULT_CACHE_MIB > 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "64", True, None])
def test_a_bad_page_cache_size_is_refused(tmp_path: Path, bad: Any) -> None:
    from attune.errors import ConfigurationError
    from attune.memory.long_term import SQLiteLongTermStore

    with pytest.raises(ConfigurationError, match="cache_mib"):
        SQLiteLongTermStore(tmp_path, cache_mib=bad)
    assert not (tmp_path / DB_FILENAME).exists()  # nothing opened or created


class _AppendingJournal:
    """A journal that takes no outbox (as a store without one, or ``audit_sync=False``):
    the store appends a batch's events once its COMMIT is done, on the event loop."""

    def __init__(self, store_path: Path, fail: Exception | None = None) -> None:
        self.store_path, self.fail = store_path, fail
        self.appends: list[tuple[list[Any], list[int], int]] = []

    def begin(self, events: Sequence[Any]) -> None:
        return None

    async def append(self, events: Sequence[Any]) -> None:
        import threading

        with sqlite3.connect(self.store_path) as other:  # what a fresh connection sees
            visible = [
                other.execute(
                    "SELECT count(*) FROM patterns WHERE pattern_id = ?", (event,)
                ).fetchone()[0]
                for event in events
            ]
        self.appends.append((list(events), visible, threading.get_ident()))
        if self.fail is not None:
            raise self.fail


async def test_events_without_an_outbox_are_appended_once_per_batch_after_the_commit(
    mock_config: MemoryConfig,
) -> None:
    """A journal that keeps no outbox gets the events of a group commit's new records in
    one awaited ``append``, after the COMMIT (a fresh connection sees the records), on the
    event loop (no hook blocks the store's thread), before the callers are answered."""
    import threading

    from attune.memory.long_term import SQLiteLongTermStore

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    journal = _AppendingJournal(store.path)
    try:
        await store.write(InsertOp(_record("pat_existing")))
        ids = ["pat_existing", "pat_a", "pat_b", "pat_a"]
        results = await asyncio.gather(
            *(store.write(InsertOp(_record(i), Audited(journal, i))) for i in ids)
        )
        assert results == [False, True, True, False]
        # Only the new records' events (a duplicate id stores nothing, so nothing to record).
        assert journal.appends == [(["pat_a", "pat_b"], [1, 1], threading.get_ident())]
    finally:
        await store.aclose()


async def test_a_failing_append_tells_its_callers_the_write_was_stored(
    mock_config: MemoryConfig,
) -> None:
    from attune.memory.long_term import SQLiteLongTermStore

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    journal = _AppendingJournal(store.path, fail=OSError("append failed"))
    try:
        await store.count()  # open first, so the three share one transaction
        results = await asyncio.gather(
            store.write(InsertOp(_record("pat_1"), Audited(journal, "pat_1"))),
            store.write(InsertOp(_record("pat_2"), Audited(journal, "pat_2"))),
            store.write(InsertOp(_record("pat_3"))),
            return_exceptions=True,
        )
        for failed in results[:2]:
            assert isinstance(failed, AuditLogError) and failed.committed, failed
            assert "WAS stored" in str(failed) and "refused" not in str(failed)
        assert results[2] is True
        # The records are committed all the same: the events follow the commit.
        assert await store.count() == 3
    finally:
        await store.aclose()


async def test_nothing_is_appended_when_the_insert_fails(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune.memory.long_term import SQLiteLongTermStore, sqlite_batch

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    journal = _AppendingJournal(store.path)
    try:
        await store.write(InsertOp(_record("pat_warm")))  # open and migrate first
        # A failing statement, injected (module constant: no public seam for a fault).
        monkeypatch.setattr(sqlite_batch, "INSERT", "INSERT INTO no_such_table VALUES (?)")
        with pytest.raises(LongTermUnavailableError):
            await store.write(InsertOp(_record("pat_x"), Audited(journal, "pat_x")))
        assert journal.appends == []
        assert await store.get("pat_x", 0) is None
    finally:
        await store.aclose()


async def test_a_store_refuses_what_is_not_a_write_operation(mock_config: MemoryConfig) -> None:
    from attune.memory.long_term import SQLiteLongTermStore

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    try:
        with pytest.raises(TypeError, match="not a long-term write: PatternRecord"):
            await store.write(_record("pat_a"))  # type: ignore[call-overload]
        assert await store.count() == 0
    finally:
        await store.aclose()


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4_102_444_800_000), min_size=1, max_size=4))
def test_result_dates_match_isoformat(values: list[int]) -> None:
    """The cached-second formatting of result dates is isoformat's text exactly."""
    from datetime import UTC, datetime

    from attune.memory.clock import iso_or_none as _iso

    for ms in values + values[::-1]:
        expected = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        assert _iso(ms) == expected
    assert _iso(None) is None


async def test_an_unexpected_error_in_a_batch_fails_its_callers_and_rolls_back(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that raises something other than a database error must not leave callers
    waiting forever: the batch rolls back and every caller in it gets the error."""
    from attune.memory.long_term import DeleteOp, SQLiteLongTermStore, sqlite_batch

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())

    def broken(db: sqlite3.Connection, op: Any) -> None:
        raise RuntimeError("a bug in a write")

    try:
        await store.write(InsertOp(_record("pat_before")))
        monkeypatch.setattr(sqlite_batch, "execute", broken)  # a bug, injected
        results = await asyncio.wait_for(
            asyncio.gather(
                store.write(InsertOp(_record("pat_same_batch"))),
                store.write(DeleteOp("pat_before")),
                return_exceptions=True,
            ),
            timeout=10,
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        monkeypatch.undo()
        assert await store.get("pat_same_batch", 0) is None  # rolled back with the batch
        assert await store.write(InsertOp(_record("pat_after"))) is True  # the store still works
        assert await store.count() == 2
    finally:
        await store.aclose()


async def test_a_sequential_writer_keeps_one_drain_task(mock_config: MemoryConfig) -> None:
    """A caller that writes again right after its answer joins the same drain task (no new
    task per write); each write is still its own transaction, answered in order."""
    from attune.memory.long_term import SQLiteLongTermStore

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    try:
        assert await store.write(InsertOp(_record("pat_1")))
        conn = store._conns.peek()  # private: the drain task is internal
        assert conn is not None
        first = conn.draining
        assert first is not None  # still alive for one more loop iteration
        for i in range(2, 6):
            assert await store.write(InsertOp(_record(f"pat_{i}")))
            assert conn.draining is first
        assert conn.commits == 5
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert conn.draining is None  # it ends once nobody writes again
        assert await store.count() == 5
    finally:
        await store.aclose()


async def test_a_version_1_file_is_upgraded_in_place(mock_config: MemoryConfig) -> None:
    """A file written before the audit outbox (schema version 1) gains the table when it is
    opened; its patterns stay readable and new writes use the outbox."""
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        old = await mem.persist_pattern("Written by version 1", "history")
    path = mock_config.storage_dir / DB_FILENAME
    with sqlite3.connect(path) as db:  # as version 1 left it
        db.execute("DROP TABLE audit_outbox")
        db.execute("UPDATE schema_version SET version = 1")
    async with AsyncUnifiedMemory("b", mock_config) as mem:
        pattern = await mem.recall_pattern(old["pattern_id"])
        assert pattern is not None and pattern["content"] == "Written by version 1"
        assert "pattern_id" in await mem.persist_pattern("Written by version 2", "history")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("SELECT count(*) FROM patterns").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM audit_outbox").fetchone() == (0,)


async def test_a_read_record_is_typed_immutable_and_keeps_secrets_out_of_its_repr(
    mock_config: MemoryConfig,
) -> None:
    async with AsyncUnifiedMemory("a", mock_config) as mem:
        plain = await mem.persist_pattern("Prefer small commits", "process")
        sealed = await mem.persist_pattern(
            "Patient follow-up notes", "clinical", classification="SENSITIVE"
        )
        store = mem.long_term
        public = await store.get(plain["pattern_id"], 0)
        secret = await store.get(sealed["pattern_id"], 0)
    assert public is not None and secret is not None
    assert public.encrypted is False and secret.encrypted is True  # bools, not 0 / 1
    assert isinstance(secret.content, bytes) and isinstance(secret.wrapped_key, bytes)
    assert isinstance(secret.nonce, bytes) and secret.key_id
    with pytest.raises(AttributeError):
        public.content = b"changed"  # type: ignore[misc]
    shown = repr(secret)
    assert sealed["pattern_id"] in shown and "SENSITIVE" in shown
    for hidden in (secret.content, secret.wrapped_key, secret.nonce):
        assert repr(hidden) not in shown and hidden.hex() not in shown


async def test_a_failing_read_is_a_clear_error(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune.memory.long_term import sqlite_store

    async with AsyncUnifiedMemory("a", mock_config) as mem:
        stored = await mem.persist_pattern("Prefer small commits", "process")

        def broken(db: sqlite3.Connection, pattern_id: str, now_ms: int) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(sqlite_store, "_select_one", broken)  # an I/O error, injected
        with pytest.raises(LongTermUnavailableError, match=r"cannot read.*disk I/O error"):
            await mem.recall_pattern(stored["pattern_id"])
        monkeypatch.undo()
        assert (await mem.recall_pattern(stored["pattern_id"]) or {}).get("content") == (
            "Prefer small commits"
        )


def test_each_event_loop_reads_through_its_own_connection(mock_config: MemoryConfig) -> None:
    """The store's fast path serves the loop it served last; another loop gets its own."""
    mem = AsyncUnifiedMemory("a", mock_config)
    stored = asyncio.run(mem.persist_pattern("Prefer small commits", "process"))

    async def read() -> tuple[Any, str | None]:
        pattern = await mem.recall_pattern(stored["pattern_id"])
        # Private: which connection served the read is internal (one per event loop).
        return mem.long_term._conns.current(), None if pattern is None else pattern["content"]

    first, second = asyncio.run(read()), asyncio.run(read())
    assert first[1] == second[1] == "Prefer small commits"
    assert first[0] is not None and second[0] is not None and first[0] is not second[0]
    asyncio.run(mem.aclose())
