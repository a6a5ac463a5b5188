"""The audit outbox: a persist's audit events are committed with its record (one fsync),
appended to the log without fsync, and replayed into the log by the next store to open
if the writer died or the log lost its unsynced tail."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from records import pattern_record as _record
from waiting import wait_until

from attune.errors import LongTermUnavailableError, SecurityPipelineError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import Audited, InsertOp, SQLiteLongTermStore
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.audit import AuditEvent, AuditLogger, replay_outbox
from attune.memory.security.audit import codec as audit_codec
from attune.memory.security.audit import logfile as audit_logfile


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


def _outbox_rows(storage: Path) -> list[str]:
    with sqlite3.connect(storage / DB_FILENAME) as db:
        return [row[0] for row in db.execute("SELECT payload FROM audit_outbox")]


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _stored_ids(path: Path) -> list[str]:
    return [e["target_id"] for e in _events(path) if e["event"] == "pattern.store"]


# -- the write path ---------------------------------------------------------------------------


async def test_a_persist_commits_its_events_with_the_record(mock_config: MemoryConfig) -> None:
    """Inside the transaction: the record and an outbox row holding the operation's events.
    A reader that locks the log sees the line when persist returns; the row goes once the
    writer has appended and fsynced it."""
    storage = mock_config.ensure_storage_dir()
    path = storage / "audit.jsonl"
    async with AsyncUnifiedMemory("agent-1", mock_config) as mem:
        # Open the store first: opening it inside the persist takes longer than the
        # writer's linger, which then appends the queued decisions on its own, before
        # the outbox could take them (the test failed under CPU load).
        await mem.long_term.count()  # type: ignore[attr-defined]
        stored = await mem.persist_pattern("Prefer small commits", "style")
        logged = mem.pipeline.audit_logger.query(event_type="pattern.store")
        assert [e["target_id"] for e in logged] == [stored["pattern_id"]]
        rows = _outbox_rows(storage)
        assert len(rows) == 1
        log, *entries = rows[0].split("\n")
        assert json.loads(log) == str(path.resolve())
        bodies = [entry.split(" ", 1)[1] for entry in entries]
        assert [json.loads("{" + b + "}")["event"] for b in bodies] == [
            "access.check",
            "classification.decision",
            "pattern.store",
        ]
        # Once the log has fsynced the lines (the writer does a linger later; a flush at
        # once), the next transaction deletes their row.
        await asyncio.to_thread(mem.pipeline.audit_logger.flush)
        await mem.persist_pattern("Name things plainly", "style")
        assert len(_outbox_rows(storage)) == 1  # only the newest write's row remains
    assert _outbox_rows(storage) == []  # closing settles the rest
    assert AuditLogger(log_file=path).verify().ok


async def test_concurrent_persists_share_one_outbox_row(mock_config: MemoryConfig) -> None:
    storage = mock_config.ensure_storage_dir()
    async with AsyncUnifiedMemory("agent-1", mock_config) as mem:
        await mem.persist_pattern("Warm up", "style")
        results = await asyncio.gather(
            *(mem.persist_pattern(f"Concurrent {i}", "style") for i in range(32))
        )
        rows = _outbox_rows(storage)
        assert len(rows) < 33  # one row per group commit, not per record
        payload = "\n".join(rows)
        assert all(r["pattern_id"] in payload for r in results)
    path = storage / "audit.jsonl"
    ids = _stored_ids(path)
    assert len(ids) == len(set(ids)) == 33
    assert AuditLogger(log_file=path).verify().ok


async def test_audit_sync_off_keeps_no_outbox(key_prefix: str, storage_dir: Path) -> None:
    config = MemoryConfig(
        redis_mock=True, storage_dir=storage_dir, key_prefix=key_prefix, audit_sync=False
    )
    async with AsyncUnifiedMemory("agent-1", config) as mem:
        await mem.persist_pattern("Prefer small commits", "style")
        assert _outbox_rows(storage_dir) == []


# -- the store's side, with a stand-in journal ---------------------------------------------------


class _Write:
    def __init__(self, journal: _Journal, payload: Any) -> None:
        self.journal, self.payload = journal, payload
        self.synced = False

    def finish(self, committed: bool) -> None:
        self.journal.calls.append(f"finish committed={committed}")
        if committed and self.journal.fail_finish:
            raise SecurityPipelineError("the audit log could not be written (test)")

    def durable(self) -> bool:
        return self.synced

    def sync(self) -> None:
        self.synced = True


class _Journal:
    def __init__(self, payload: Any = "payload", *, fail_begin: bool = False) -> None:
        self.payload, self.fail_begin, self.fail_finish = payload, fail_begin, False
        self.calls: list[str] = []

    def begin(self, events: list[Any]) -> _Write:
        self.calls.append(f"begin {events}")
        if self.fail_begin:
            raise SecurityPipelineError("cannot lock the log (test)")
        return _Write(self, self.payload)

    async def append(self, events: Sequence[Any]) -> None:
        self.calls.append(f"append {list(events)}")


async def test_the_store_keeps_the_payload_until_the_journal_is_durable(
    mock_config: MemoryConfig,
) -> None:
    journal = _Journal()
    replayed: list[list[str]] = []
    storage = mock_config.ensure_storage_dir()
    store = SQLiteLongTermStore(storage, outbox_replay=replayed.append)
    try:
        assert await store.write(InsertOp(_record("pat_a"), Audited(journal, "a")))
        assert journal.calls == ["begin ['a']", "finish committed=True"]
        assert _outbox_rows(storage) == ["payload"]
        # A duplicate id stores nothing, so it has nothing to record.
        assert not await store.write(InsertOp(_record("pat_a"), Audited(journal, "dup")))
        assert len(journal.calls) == 2
    finally:
        await store.aclose()
    # The outbox took the event: nothing was appended after the commit.
    assert journal.calls == ["begin ['a']", "finish committed=True"]
    assert _outbox_rows(storage) == []  # closing synced the journal and deleted the row
    assert replayed == []


async def test_a_journal_that_cannot_begin_refuses_its_records(
    mock_config: MemoryConfig,
) -> None:
    """The journal cannot take the events (its log is garbled or cannot be written): the
    records they describe are taken out of the transaction before COMMIT and their
    callers get the journal's error; the rest of the group commit is stored."""
    journal = _Journal(fail_begin=True)
    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    try:
        await store.count()  # open first, so both inserts share one transaction
        refused, plain = await asyncio.gather(
            store.write(InsertOp(_record("pat_a"), Audited(journal, "a"))),
            store.write(InsertOp(_record("pat_b"))),
            return_exceptions=True,
        )
        assert isinstance(refused, SecurityPipelineError) and "cannot lock" in str(refused)
        assert plain is True
        assert await store.get("pat_a", 0) is None
        assert await store.get("pat_b", 0) is not None
        assert await store.write(InsertOp(_record("pat_a")))  # the id was never taken
    finally:
        await store.aclose()
    assert journal.calls == ["begin ['a']"]  # no append: nothing was stored to record
    assert _outbox_rows(mock_config.storage_dir) == []


async def test_a_duplicate_of_a_refused_record_is_refused_too(mock_config: MemoryConfig) -> None:
    """Two inserts of one id in one transaction (two promotions of one staged pattern):
    the second loses to the first. If the journal refuses the first, the second must not
    be told the id exists (a promotion would then drop its staged pattern)."""
    journal = _Journal(fail_begin=True)
    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    try:
        await store.count()
        outcomes = await asyncio.gather(
            store.write(InsertOp(_record("pat_a"), Audited(journal, "a"))),
            store.write(InsertOp(_record("pat_a"), Audited(journal, "a"))),
            return_exceptions=True,
        )
        assert all(isinstance(o, SecurityPipelineError) for o in outcomes), outcomes
        assert await store.count() == 0
    finally:
        await store.aclose()


async def test_each_journal_gets_a_transaction_of_its_own(mock_config: MemoryConfig) -> None:
    """Inserts whose events go to two journals (two audit logs) in one group commit: each
    journal's events go into the outbox of its own transaction, none is appended after
    the commit."""
    first, second = _Journal(payload="row 1"), _Journal(payload="row 2")
    storage = mock_config.ensure_storage_dir()
    store = SQLiteLongTermStore(storage, outbox_replay=lambda payloads: None)
    try:
        await store.count()
        assert await asyncio.gather(
            store.write(InsertOp(_record("pat_a"), Audited(first, "a"))),
            store.write(InsertOp(_record("pat_b"), Audited(second, "b"))),
            store.write(InsertOp(_record("pat_c"), Audited(first, "c"))),
        ) == [True, True, True]
        # Split where the journal changes: [a], then [b], then [c].
        assert sorted(_outbox_rows(storage)) == ["row 1", "row 1", "row 2"]
    finally:
        await store.aclose()
    assert not [c for c in first.calls + second.calls if c.startswith("append")]
    assert first.calls[0] == "begin ['a']" and second.calls[0] == "begin ['b']"
    assert first.calls[2] == "begin ['c']"


async def test_a_failed_outbox_insert_rolls_back_the_batch(mock_config: MemoryConfig) -> None:
    """The row cannot be stored (here: a NULL payload): the whole transaction rolls back,
    the journal hears it did not commit, every caller gets a clear error, nothing is kept."""
    journal = _Journal(payload=None)
    storage = mock_config.ensure_storage_dir()
    store = SQLiteLongTermStore(storage)
    try:
        with pytest.raises(LongTermUnavailableError, match="cannot commit"):
            await store.write(InsertOp(_record("pat_a"), Audited(journal, "a")))
        assert journal.calls == ["begin ['a']", "finish committed=False"]
        assert await store.count() == 0
        assert await store.write(InsertOp(_record("pat_a")))  # the store still works
    finally:
        await store.aclose()
    assert _outbox_rows(storage) == []


async def test_a_failed_append_fails_the_caller_and_keeps_the_row_for_replay(
    mock_config: MemoryConfig,
) -> None:
    journal = _Journal()
    journal.fail_finish = True
    replayed: list[list[str]] = []
    storage = mock_config.ensure_storage_dir()
    store = SQLiteLongTermStore(storage, outbox_replay=replayed.append)
    try:
        with pytest.raises(SecurityPipelineError, match="could not be written"):
            await store.write(InsertOp(_record("pat_a"), Audited(journal, "a")))
        assert await store.count() == 1  # the record is stored
    finally:
        await store.aclose()
    assert _outbox_rows(storage) == ["payload"]  # not settled: nobody appended it
    reopened = SQLiteLongTermStore(storage, outbox_replay=replayed.append)
    try:
        assert await reopened.count() == 1
    finally:
        await reopened.aclose()
    assert replayed == [["payload"]]
    assert _outbox_rows(storage) == []


async def test_a_replay_that_fails_refuses_to_open_and_keeps_the_rows(
    mock_config: MemoryConfig,
) -> None:
    storage = mock_config.ensure_storage_dir()
    with sqlite3.connect(storage / DB_FILENAME) as db:  # an empty store first
        pass
    store = SQLiteLongTermStore(storage)
    await store.count()
    await store.aclose()
    with sqlite3.connect(storage / DB_FILENAME) as db:
        db.execute("INSERT INTO audit_outbox (id, payload) VALUES (7, 'not a payload')")

    store = SQLiteLongTermStore(storage)
    try:
        with pytest.raises(SecurityPipelineError, match="outbox row"):
            await store.count()
    finally:
        await store.aclose()
    assert _outbox_rows(storage) == ["not a payload"]


# -- replay -------------------------------------------------------------------------------------


def _entries(logger: AuditLogger, count: int, start: int = 0) -> list[tuple[str, str]]:
    """(ts, body) entries as an outbox holds them."""
    stamped = [
        (time.time(), AuditEvent("pattern.store", user_id="u", tier="T", target_id=f"p{i}"))
        for i in range(start, start + count)
    ]
    return audit_codec._encode(stamped)


def test_replay_appends_missing_lines_once_and_chains_them(log_path: Path) -> None:
    logger = AuditLogger(log_path)
    logger.log(AuditEvent("first", user_id="u", tier="T"))
    entries = _entries(logger, 3)
    payload = audit_codec._outbox_payload(log_path.resolve(), entries)
    replay_outbox([payload])
    replay_outbox([payload])  # idempotent: found, not repeated
    events = _events(log_path)
    assert [e["event"] for e in events] == ["first", *["pattern.store"] * 3]
    assert [e["target_id"] for e in events[1:]] == ["p0", "p1", "p2"]
    assert [e["ts"] for e in events[1:]] == [ts for ts, _body in entries]  # original times
    assert AuditLogger(log_path).verify().ok
    logger.close()


def test_replay_finds_lines_already_written_and_in_rotated_files(log_path: Path) -> None:
    """A live writer's lines (or lines since rotated to .1) are found, not appended again;
    the missing one of the same row is appended after the current head."""
    logger = AuditLogger(log_path)
    present = _entries(logger, 2)
    missing = _entries(logger, 1, start=2)
    sink = audit_logfile._Sink(log_path, 10 * 1024 * 1024)  # a live writer's append
    sink.commit(present, fsync=False)
    sink.close()
    logger.close()
    log_path.rename(log_path.with_name(log_path.name + ".1"))
    after = AuditLogger(log_path)
    after.log(AuditEvent("after_rotation", user_id="u", tier="T"))
    after.close()
    replay_outbox([audit_codec._outbox_payload(log_path, present + missing)])
    rotated = _events(log_path.with_name(log_path.name + ".1"))
    current = _events(log_path)
    assert [e["target_id"] for e in rotated] == ["p0", "p1"]
    assert [e["event"] for e in current] == ["after_rotation", "pattern.store"]
    assert current[-1]["target_id"] == "p2"
    assert AuditLogger(log_path).verify().ok


def test_replay_restores_a_lost_unsynced_tail(log_path: Path) -> None:
    """The machine lost the log's unsynced tail: the rows bring those lines back, after the
    last surviving line, so the chain stays valid."""
    logger = AuditLogger(log_path)
    logger.log(AuditEvent("kept", user_id="u", tier="T"))
    entries = _entries(logger, 2)
    logger.flush()
    logger._sink.commit(entries, fsync=False)  # type: ignore[union-attr]
    logger.close()
    kept = log_path.read_bytes().splitlines(keepends=True)[0]
    log_path.write_bytes(kept)  # the tail is gone
    replay_outbox([audit_codec._outbox_payload(log_path, entries)])
    assert [e.get("target_id") for e in _events(log_path)] == [None, "p0", "p1"]
    assert AuditLogger(log_path).verify().ok


def test_a_malformed_payload_is_a_clear_error(log_path: Path) -> None:
    for bad in ("", "not json\n1 2", json.dumps("relative/log") + "\nnot-a-time {}"):
        with pytest.raises(SecurityPipelineError, match="outbox row"):
            replay_outbox([bad])
    assert not log_path.exists()


# -- the logger's side -------------------------------------------------------------------------


def test_an_outbox_write_that_did_not_commit_writes_only_what_was_queued(
    log_path: Path,
) -> None:
    logger = AuditLogger(log_path)
    queued = AuditEvent("access.check", user_id="u", tier="T")
    logger.submit(queued)
    final = AuditEvent("pattern.store", user_id="u", tier="T", target_id="p")
    write = logger.begin([final])
    assert "pattern.store" in write.payload and "access.check" in write.payload
    write.finish(committed=False)
    assert [e["event"] for e in _events(log_path)] == ["access.check"]
    assert write.durable() is False
    logger.close()


def test_outbox_lines_become_durable_a_linger_later(log_path: Path) -> None:
    """The writer appends and fsyncs committed outbox lines a linger later, on its own;
    until then the log's lock stays held, so a reader that locks it waits for them."""
    logger = AuditLogger(log_path)
    write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T")])
    write.finish(committed=True)
    assert [e["event"] for e in AuditLogger(log_path).query()] == ["pattern.store"]
    wait_until(write.durable, "the writer fsyncing the outbox lines a linger later")
    assert [e["event"] for e in _events(log_path)] == ["pattern.store"]
    logger.close()


def test_outbox_lines_wait_for_the_writer_and_keep_the_lock(log_path: Path) -> None:
    """Committed outbox lines are appended by the writer, together, not one write per
    commit (appending right after each commit slowed the next one): until then the file
    stays locked, so nobody else can append between them and the chain."""
    logger = AuditLogger(log_path, linger_s=60.0)
    logger.log(AuditEvent("first", user_id="u", tier="T"))
    writes = []
    for i in range(3):
        write = logger.begin(
            [AuditEvent("pattern.store", user_id="u", tier="T", target_id=f"p{i}")]
        )
        write.finish(committed=True)
        writes.append(write)
    assert [e["event"] for e in _events(log_path)] == ["first"]  # none appended yet
    fd = os.open(log_path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):  # another writer (or reader) must wait
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        logger.flush()  # the writer appends them in one write, fsyncs, and lets go
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert [e.get("target_id") for e in _events(log_path)] == [None, "p0", "p1", "p2"]
    assert all(write.durable() for write in writes)
    assert AuditLogger(log_path).verify().ok
    logger.close()


def test_outbox_lines_become_durable_while_events_keep_coming(log_path: Path) -> None:
    """A steady stream of persists (each queues a decision, then commits its outbox write)
    never leaves the writer a quiet linger: their lines must still be fsynced about a
    linger after they were appended, or the store's outbox rows pile up."""
    logger = AuditLogger(log_path)
    first = None
    deadline = time.monotonic() + 50 * logger.linger_s
    while time.monotonic() < deadline and not (first is not None and first.durable()):
        write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T")])
        write.finish(committed=True)
        first = first or write
        logger.submit(
            AuditEvent("access.check", user_id="u", tier="T")
        )  # the next persist's decision
        time.sleep(logger.linger_s / 20)  # the pace of the stream is the scenario
    assert first is not None and first.durable()
    logger.close()
    assert len(_events(log_path)) >= 2


def test_another_writer_waits_for_pending_lines_and_chains_after_them(log_path: Path) -> None:
    """A second logger of the same file (as another process would be) waits for the
    lock while outbox lines are pending, at most about a linger, then appends after
    them; a replay of their rows finds them instead of repeating them."""
    holder = AuditLogger(log_path, linger_s=0.05)
    write = holder.begin([AuditEvent("pattern.store", user_id="u", tier="T", target_id="p")])
    write.finish(committed=True)
    other = AuditLogger(log_path)
    other.log(AuditEvent("later", user_id="v", tier="T"))  # blocks until the holder's writer let go
    replay_outbox([write.payload])  # finds the line: not repeated
    assert [e["event"] for e in _events(log_path)] == ["pattern.store", "later"]
    assert AuditLogger(log_path).verify().ok
    other.close()
    holder.close()


def test_with_another_writer_active_lines_are_appended_at_once(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once lines of another writer show up in the log, holding the lock for pending
    lines would stall that writer (and, through the database's write lock, this one):
    outbox lines are then appended right after their commit and the lock let go, until
    the other writer has been quiet for a while."""
    # The quiet period is an internal policy constant, not a setting: shortened here so
    # the test need not wait a second.
    monkeypatch.setattr(audit_logfile, "_SHARED_S", 0.2)
    logger = AuditLogger(log_path, linger_s=60.0)
    first = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T", target_id="p0")])
    first.finish(committed=True)
    logger.flush()  # appended by the writer: alone so far, it held them
    other = AuditLogger(log_path)
    other.log(AuditEvent("foreign", user_id="v", tier="T"))  # another process's line
    other.close()
    write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T", target_id="p1")])
    write.finish(committed=True)
    assert [e.get("target_id") for e in _events(log_path)] == ["p0", None, "p1"]  # at once
    fd = os.open(log_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # and the lock is free
    finally:
        os.close(fd)
    time.sleep(0.3)  # the other writer stays quiet longer than _SHARED_S
    logger.flush()
    for i in (2, 3):  # alone again: held pending until the writer appends them
        later = logger.begin(
            [AuditEvent("pattern.store", user_id="u", tier="T", target_id=f"p{i}")]
        )
        later.finish(committed=True)
    assert len(_events(log_path)) == 3
    fd = os.open(log_path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    logger.close()
    assert [e.get("target_id") for e in _events(log_path)] == ["p0", None, "p1", "p2", "p3"]
    assert AuditLogger(log_path).verify().ok


def test_with_another_writer_active_a_failed_append_fails_its_caller(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appended at once (another writer active), a failed append fails the write that
    made it; its row keeps the lines, and the logger recovers for later events."""
    import errno

    logger = AuditLogger(log_path)
    logger.log(AuditEvent("before", user_id="u", tier="T"))
    other = AuditLogger(log_path)
    other.log(AuditEvent("foreign", user_id="v", tier="T"))
    other.close()
    write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T")])

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_logfile, "_write_all", disk_full)
    with pytest.raises(SecurityPipelineError, match="could not be written"):
        write.finish(committed=True)
    monkeypatch.undo()
    logger.flush()
    assert not write.durable()
    logger.log(AuditEvent("after", user_id="u", tier="T"))
    assert [e["event"] for e in _events(log_path)] == ["before", "foreign", "after"]
    assert AuditLogger(log_path).verify().ok
    logger.close()


def test_a_failed_append_poisons_the_write_and_reports(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    logger = AuditLogger(log_path)
    logger.log(AuditEvent("before", user_id="u", tier="T"))
    write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T")])
    write.finish(committed=True)  # pending: the writer appends it

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_logfile, "_write_all", disk_full)
    with pytest.raises(SecurityPipelineError, match="could not be written"):
        logger.flush()
    monkeypatch.undo()
    assert not write.durable()  # its row must stay for replay
    logger.log(AuditEvent("after", user_id="u", tier="T"))  # the logger recovers for later events
    assert [e["event"] for e in _events(log_path)] == ["before", "after"]
    assert AuditLogger(log_path).verify().ok
    logger.close()


def test_a_failed_append_reaches_the_next_call(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer fails on its own (nobody waits): the next event's caller hears of it,
    once, with what to do; the events are not in the log, and their write not durable."""
    import errno

    logger = AuditLogger(log_path, linger_s=0.01)
    write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T")])

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit_logfile, "_write_all", disk_full)
    write.finish(committed=True)
    wait_until(lambda: logger.failure_pending, "the writer's failed append")
    monkeypatch.undo()
    with pytest.raises(SecurityPipelineError, match="outbox") as raised:
        logger.submit(AuditEvent("next", user_id="u", tier="T"))
    assert "free space" in str(raised.value)
    logger.submit(AuditEvent("after", user_id="u", tier="T"))  # reported once
    logger.close()
    assert not write.durable()
    assert [e["event"] for e in _events(log_path)] == ["after"]


# -- crashes --------------------------------------------------------------------------------------

_CHILD = """
import os, sys
from attune import EmpathyOS
from attune.memory import MemoryConfig
from attune.memory.security import audit
if sys.argv[2] == "before-append":
    # die right after the COMMIT, before the line is handed to the writer
    audit.OutboxWrite.finish = lambda self, committed: os._exit(0) if committed else None
cfg = MemoryConfig(redis_mock=True, storage_dir=sys.argv[1])
agent = EmpathyOS(user_id="crasher", config=cfg)
result = agent.persist_pattern("Survives a crash", "durability", classification="PUBLIC")
if sys.argv[2] == "after-append":  # the writer has appended the line (row not deleted)
    import json, pathlib, time
    log = pathlib.Path(sys.argv[1]) / "audit.jsonl"

    def appended():
        # The persist's own event, not just its id: the queued classification.decision
        # carries the id too, and the writer may append it alone a linger earlier.
        for line in (log.read_bytes() if log.exists() else b"").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            mine = event.get("target_id") == result["pattern_id"]
            if mine and event.get("event") == "pattern.store":
                return True
        return False

    deadline = time.monotonic() + 30
    while not appended():
        if time.monotonic() > deadline:
            sys.exit("the line was never appended")
        time.sleep(0.005)
print(result["pattern_id"], flush=True)
sys.stdin.read()  # wait to be killed
"""


def _crash_after_persist(storage: Path, when: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_") and k != "REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(storage), when],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


async def _open_and_count(storage: Path) -> int:
    cfg = MemoryConfig(redis_mock=True, storage_dir=storage)
    async with AsyncUnifiedMemory("checker", cfg) as mem:
        count: int = await mem.long_term.count()  # type: ignore[attr-defined]
    security_pipeline.close_shared()
    return count


@pytest.mark.parametrize("when", ["before-append", "after-append"])
def test_a_crash_leaves_each_event_in_the_log_exactly_once(tmp_path: Path, when: str) -> None:
    """Killed between COMMIT and the append: the next open appends the events. Killed after
    the append (before its fsync and the row's deletion): found, not repeated."""
    storage = tmp_path / "store"
    _crash_after_persist(storage, when)
    path = storage / "audit.jsonl"
    before = _stored_ids(path) if path.exists() else []
    assert len(before) == (0 if when == "before-append" else 1)
    assert len(_outbox_rows(storage)) == 1  # the crash left the row behind
    assert asyncio.run(_open_and_count(storage)) == 1
    assert _outbox_rows(storage) == []
    assert len(_stored_ids(path)) == 1
    events = [e["event"] for e in _events(path)]
    assert events.count("classification.decision") == 1
    assert AuditLogger(log_file=path).verify().ok


async def test_rows_go_as_their_lines_become_durable_and_a_lost_one_stays(
    mock_config: MemoryConfig,
) -> None:
    """Delivered rows are deleted in the store's next transaction; a write whose lines
    the journal lost never becomes durable, and its row stays (for a replay) without
    holding back the rows after it."""
    storage = mock_config.ensure_storage_dir()
    journals = [_Journal(payload=f"row {i}") for i in range(4)]
    writes: list[_Write] = []
    for journal in journals:
        begin = journal.begin

        def recording(events: list[Any], begin: Any = begin) -> _Write:
            write: _Write = begin(events)
            writes.append(write)
            return write

        journal.begin = recording  # type: ignore[method-assign]
    store = SQLiteLongTermStore(storage, outbox_replay=lambda payloads: None)
    try:
        for i in range(3):
            assert await store.write(InsertOp(_record(f"pat_{i}"), Audited(journals[i], "e")))
        assert sorted(_outbox_rows(storage)) == ["row 0", "row 1", "row 2"]
        writes[1].synced = writes[2].synced = True  # row 0's lines were lost: never durable
        assert await store.write(InsertOp(_record("pat_3"), Audited(journals[3], "e")))
        assert sorted(_outbox_rows(storage)) == ["row 0", "row 3"]
    finally:
        for write in writes:
            write.sync = lambda: None  # type: ignore[method-assign]
        await store.aclose()
    assert sorted(_outbox_rows(storage)) == ["row 0", "row 3"]  # neither became durable


_WRITER = """
import sys
from attune import EmpathyOS
from attune.memory import MemoryConfig
cfg = MemoryConfig(redis_mock=True, storage_dir=sys.argv[1])
agent = EmpathyOS(user_id=sys.argv[2], config=cfg)
for i in range(int(sys.argv[3])):
    agent.persist_pattern(f"Pattern {i} of {sys.argv[2]}", "style")
agent.close()
"""


def test_processes_sharing_a_store_log_every_event_once(tmp_path: Path) -> None:
    """Two processes persist into one store and one audit log at the same time, and a
    third opens the store midway (replaying whatever rows are pending then): every
    persist's event is in the log exactly once, the chain holds, no row is left."""
    storage = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_") and k != "REDIS_URL"}
    count = 200
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(storage), name, str(count)], env=env)
        for name in ("writer-a", "writer-b")
    ]
    log = storage / "audit.jsonl"
    wait_until(
        lambda: log.exists() and log.read_bytes().count(b"pattern.store") >= 10,
        "ten persists of the two writers",
        timeout=60,
    )
    midway = asyncio.run(_open_and_count(storage))  # replays whatever rows are pending now
    assert midway >= 10
    for proc in writers:
        assert proc.wait(timeout=120) == 0
    assert asyncio.run(_open_and_count(storage)) == 2 * count
    path = storage / "audit.jsonl"
    stored = _stored_ids(path)
    assert len(stored) == len(set(stored)) == 2 * count
    assert _outbox_rows(storage) == []
    assert AuditLogger(log_file=path).verify().ok
