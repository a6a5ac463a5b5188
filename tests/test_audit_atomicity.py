"""A write and its audit event happen together or not at all, and errors tell the truth.

When the audit log cannot be extended (a garbled last line, a file that cannot be
opened for writing, a full disk), a long-term write either stores nothing and says it
was refused, or is stored with its events held in the store's outbox and says so.
Reads refused for the same reason say "read", and operations whose event comes after
them (delete, purge, key rotation) never claim to have been refused once done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from waiting import await_until

from attune.errors import AuditLogError, PatternNotFoundError, SecurityPipelineError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import Audited, InsertOp, Journal, SQLiteLongTermStore
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.audit import AuditEvent, AuditLogger
from attune.memory.security.audit import logfile as audit_logfile
from attune.memory.types import AccessTier

FAULTS = ["garbled", "unwritable"]


def _memory(config: MemoryConfig, tier: AccessTier = AccessTier.STEWARD) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("agent-1", config, access_tier=tier)


def _log(config: MemoryConfig) -> Path:
    return config.storage_dir / "audit.jsonl"


def _break(log: Path, fault: str) -> None:
    """Make the log impossible to extend, for real: a foreign last line, or a directory
    where the file should be (open for writing fails with EISDIR, even for root)."""
    if fault == "garbled":
        with log.open("ab") as f:
            f.write(b"a line some other program wrote\n")
    else:
        log.rename(log.with_name("audit.jsonl.aside"))
        log.mkdir()


def _repair(log: Path, fault: str) -> None:
    if fault == "garbled":
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:-1]))
    else:
        log.rmdir()
        log.with_name("audit.jsonl.aside").rename(log)


def _rows(config: MemoryConfig) -> list[str]:
    """Pattern ids in the database, read with plain sqlite3."""
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME)) as db:
        return sorted(row[0] for row in db.execute("SELECT pattern_id FROM patterns"))


def _outbox(config: MemoryConfig) -> int:
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME)) as db:
        return int(db.execute("SELECT count(*) FROM audit_outbox").fetchone()[0])


def _events(config: MemoryConfig) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _log(config).read_bytes().splitlines()]


def _written(config: MemoryConfig, event: str) -> list[str]:
    """Target ids of ``event`` lines in the log."""
    return [e["target_id"] for e in _events(config) if e["event"] == event]


async def _reopen_and_close(config: MemoryConfig) -> list[str]:
    """Open the store afresh (replaying its outbox), then close everything."""
    security_pipeline.close_shared()
    async with _memory(config) as mem:
        await mem.long_term.count()  # type: ignore[attr-defined]
    security_pipeline.close_shared()
    return _rows(config)


def _refused(exc: BaseException) -> None:
    text = str(exc)
    assert "refused" in text and "nothing was stored" in text, text
    assert isinstance(exc, AuditLogError) and not exc.committed


# -- a write the log cannot take --------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_persist_the_log_cannot_take_stores_nothing(
    mock_config: MemoryConfig, fault: str
) -> None:
    async with _memory(mock_config) as mem:
        first = await mem.persist_pattern("Prefer small commits", "style")
        mem.pipeline.audit_logger.flush()
        _break(_log(mock_config), fault)
        with pytest.raises(SecurityPipelineError) as raised:
            await mem.persist_pattern("Refused while the log is broken", "style")
        _refused(raised.value)
        assert _rows(mock_config) == [first["pattern_id"]]
        assert _outbox(mock_config) <= 1  # the first write's row, until it is settled
        _repair(_log(mock_config), fault)
        later = await mem.persist_pattern("Accepted once repaired", "style")
    assert await _reopen_and_close(mock_config) == sorted(
        [first["pattern_id"], later["pattern_id"]]
    )
    assert _written(mock_config, "pattern.store") == [first["pattern_id"], later["pattern_id"]]
    assert _outbox(mock_config) == 0
    assert AuditLogger(_log(mock_config)).verify().ok


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_promotion_the_log_cannot_take_stays_staged(
    mock_config: MemoryConfig, fault: str
) -> None:
    async with _memory(mock_config) as mem:
        staged = await mem.stage_pattern({"content": "Review before merging"}, "process")
        mem.pipeline.audit_logger.flush()
        _break(_log(mock_config), fault)
        with pytest.raises(SecurityPipelineError) as raised:
            await mem.promote_pattern(staged)
        _refused(raised.value)
        assert _rows(mock_config) == []
        assert await mem.short_term.get_staged(staged) is not None  # still awaiting review
        _repair(_log(mock_config), fault)
        assert await mem.recall_pattern("pat_" + staged.removeprefix("stg_")) is None
        promoted = await mem.promote_pattern(staged)  # the promotion can be retried
    assert await _reopen_and_close(mock_config) == [promoted["pattern_id"]]
    assert _written(mock_config, "pattern.promote") == [promoted["pattern_id"]]
    assert AuditLogger(_log(mock_config)).verify().ok


@pytest.mark.parametrize("fault", FAULTS)
async def test_concurrent_promotions_the_log_cannot_take_leave_the_pattern_staged(
    mock_config: MemoryConfig, fault: str
) -> None:
    """Two promotions of one staged pattern at once: one claims it, the other loses the
    claim. When the log refuses the claimer, nothing is stored, the loser is not told
    "already promoted", and the entry stays staged for a retry. (Two inserts of one id
    in one group commit are covered at the store level in test_audit_outbox.py.)"""
    async with _memory(mock_config) as mem:
        staged = await mem.stage_pattern({"content": "Review before merging"}, "process")
        await mem.long_term.count()  # type: ignore[attr-defined]
        mem.pipeline.audit_logger.flush()
        _break(_log(mock_config), fault)
        outcomes = await asyncio.gather(
            mem.promote_pattern(staged), mem.promote_pattern(staged), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, AuditLogError)]
        assert len(refused) == 1, outcomes
        _refused(refused[0])
        (lost,) = [o for o in outcomes if o is not refused[0]]
        assert isinstance(lost, PatternNotFoundError), lost
        assert "already promoted" not in str(lost)
        assert _rows(mock_config) == []
        assert await mem.short_term.get_staged(staged) is not None
        _repair(_log(mock_config), fault)
        promoted = await mem.promote_pattern(staged)
    assert await _reopen_and_close(mock_config) == [promoted["pattern_id"]]


# -- a failure found only after COMMIT --------------------------------------------------------


def _disk_full(fd: int, data: bytes) -> None:
    """Patched over ``logfile._write_all`` (private on purpose: the fault is an OS error
    inside the file sink's write, which no public seam should be able to inject)."""
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_after_a_failed_append_writes_are_refused_until_the_log_takes_them(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills after a persist returned: its events are kept in the outbox (the
    write and its event both exist). Every later write is refused, storing nothing,
    until the log can be written again; then the kept events are appended, once."""
    async with _memory(mock_config) as mem:
        logger = mem.pipeline.audit_logger
        await mem.persist_pattern("Warm up", "style")
        logger.flush()
        with monkeypatch.context() as patch:
            patch.setattr(audit_logfile, "_write_all", _disk_full)
            kept = await mem.persist_pattern("Kept in the outbox", "style")
            with pytest.raises(SecurityPipelineError):
                logger.flush()  # the writer's append fails
            stored = _rows(mock_config)
            for attempt in range(3):
                with pytest.raises(SecurityPipelineError) as raised:
                    await mem.persist_pattern(f"Refused {attempt}", "style")
                _refused(raised.value)
                assert "No space left on device" in str(raised.value)
            assert _rows(mock_config) == stored
        later = await mem.persist_pattern("The disk has room again", "style")
        logger.flush()
        # Appended by the write that found the log writable again, before its own.
        assert _written(mock_config, "pattern.store")[-2:] == [
            kept["pattern_id"],
            later["pattern_id"],
        ]
    assert len(await _reopen_and_close(mock_config)) == 3
    written = _written(mock_config, "pattern.store")
    assert len(written) == len(set(written)) == 3  # the replay found them: not repeated
    assert _outbox(mock_config) == 0
    assert AuditLogger(_log(mock_config)).verify().ok


async def test_an_append_failing_right_after_commit_says_the_write_was_stored(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With another writer of the log active, lines are appended right after the COMMIT;
    if that fails the record is stored and its events are in the outbox: the caller is
    told exactly that, not that the write was refused."""
    async with _memory(mock_config) as mem:
        await mem.persist_pattern("Warm up", "style")
        mem.pipeline.audit_logger.flush()
        other = AuditLogger(_log(mock_config))  # another process's logger, as it were
        other.log(AuditEvent("foreign", user_id="v", tier="T"))
        other.close()
        with monkeypatch.context() as patch:
            patch.setattr(audit_logfile, "_write_all", _disk_full)
            with pytest.raises(SecurityPipelineError) as raised:
                await mem.persist_pattern("Stored, event in the outbox", "style")
        text = str(raised.value)
        assert "refused" not in text and "stored" in text and "outbox" in text, text
        assert isinstance(raised.value, AuditLogError) and raised.value.committed
        assert len(_rows(mock_config)) == 2
    assert len(await _reopen_and_close(mock_config)) == 2
    written = _written(mock_config, "pattern.store")
    assert len(written) == len(set(written)) == 2
    assert AuditLogger(_log(mock_config)).verify().ok


async def test_audit_sync_off_refuses_writes_once_an_event_was_lost(
    key_prefix: str, storage_dir: Path
) -> None:
    """audit_sync=False writes events after the call returned: a write whose event then
    fails is stored (documented), and the next write is refused, storing nothing."""
    config = MemoryConfig(
        redis_mock=True, storage_dir=storage_dir, key_prefix=key_prefix, audit_sync=False
    )
    async with _memory(config) as mem:
        await mem.persist_pattern("Warm up", "style")
        mem.pipeline.audit_logger.flush()
        _break(_log(config), "unwritable")
        await mem.persist_pattern("Stored; its event is lost", "style")
        await _wait_for_failure(mem.pipeline.audit_logger)
        stored = _rows(config)
        with pytest.raises(SecurityPipelineError) as raised:
            await mem.persist_pattern("Refused", "style")
        _refused(raised.value)
        assert _rows(config) == stored
        _repair(_log(config), "unwritable")
    security_pipeline.close_shared()


async def _wait_for_failure(logger: AuditLogger) -> None:
    """Until the writer's failure is recorded for the next call (it writes on its own,
    and tells nobody until that call)."""
    await await_until(lambda: logger.failure_pending, "the audit writer's failure")


# -- reads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["unwritable", "disk_full"])
async def test_a_read_refused_for_the_log_says_read(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    async with _memory(mock_config, AccessTier.CONTRIBUTOR) as mem:
        stored = await mem.persist_pattern("Prefer small commits", "style")
        await mem.stage_pattern({"content": "Review before merging"}, "process")
        logger = mem.pipeline.audit_logger
        logger.flush()
        if fault == "unwritable":
            _break(_log(mock_config), "unwritable")
            await mem.recall_pattern(stored["pattern_id"])  # its event cannot be written
        else:
            monkeypatch.setattr(audit_logfile, "_write_all", _disk_full)
            await mem.persist_pattern("Kept in the outbox", "style")
        await _wait_for_failure(logger)
        for read in (lambda: mem.recall_pattern(stored["pattern_id"]), mem.get_staged_patterns):
            with pytest.raises(SecurityPipelineError) as raised:
                await read()
            text = str(raised.value)
            assert "read was refused" in text and "write" not in text, text
            assert ("No space left" if fault == "disk_full" else "Is a directory") in text
            await mem.recall_pattern(stored["pattern_id"])  # its event fails again
            await _wait_for_failure(logger)
        monkeypatch.undo()
        if fault == "unwritable":
            _repair(_log(mock_config), "unwritable")
        while logger.failure_pending:  # told to nobody else: drop it, as before the test
            with contextlib.suppress(SecurityPipelineError):
                logger.report_failures()
    security_pipeline.close_shared()


# -- operations whose event follows them ----------------------------------------------------------


def _operations(mem: AsyncUnifiedMemory, pattern_id: str) -> dict[str, Any]:
    return {
        "delete": lambda: mem.delete_pattern(pattern_id),
        "purge": mem.purge_expired,
        "rotate": mem.rotate_keys,
    }


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("operation", ["delete", "purge", "rotate"])
async def test_an_operation_the_log_cannot_take_is_refused_before_it_runs(
    mock_config: MemoryConfig, fault: str, operation: str
) -> None:
    """Delete, purge and key rotation write their event after they ran: a log known not
    to take it (garbled, cannot be opened) refuses them first, and nothing is changed."""
    async with _memory(mock_config) as mem:
        stored = await mem.persist_pattern("Short lived", "style", classification="SENSITIVE")
        key_id = mem.pipeline.cipher.ring.active_key_id
        mem.pipeline.audit_logger.flush()
        _break(_log(mock_config), fault)
        with pytest.raises(SecurityPipelineError) as raised:
            await _operations(mem, stored["pattern_id"])[operation]()
        text = str(raised.value)
        assert "refused" in text and "nothing was stored, changed or read" in text, text
        assert isinstance(raised.value, AuditLogError) and not raised.value.committed
        assert _rows(mock_config) == [stored["pattern_id"]]
        assert mem.pipeline.cipher.ring.active_key_id == key_id
        _repair(_log(mock_config), fault)
        await _operations(mem, stored["pattern_id"])[operation]()  # fine once repaired
    security_pipeline.close_shared()


@pytest.mark.parametrize("operation", ["delete", "purge", "rotate"])
async def test_an_operation_done_before_its_event_failed_never_says_refused(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """The disk fills between the check and the event: the operation is done, and the
    error says so."""
    async with _memory(mock_config) as mem:
        stored = await mem.persist_pattern("Short lived", "style", classification="SENSITIVE")
        key_id = mem.pipeline.cipher.ring.active_key_id
        mem.pipeline.audit_logger.flush()
        monkeypatch.setattr(audit_logfile, "_write_all", _disk_full)
        with pytest.raises(SecurityPipelineError) as raised:
            await _operations(mem, stored["pattern_id"])[operation]()
        monkeypatch.undo()
        text = str(raised.value)
        assert "refused" not in text, text
        assert "WAS done, but its audit event could not be written" in text, text
        assert isinstance(raised.value, AuditLogError) and raised.value.committed
        if operation == "delete":
            assert _rows(mock_config) == []
        if operation == "rotate":
            assert mem.pipeline.cipher.ring.active_key_id != key_id
    security_pipeline.close_shared()


# -- health ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [*FAULTS, "disk_full"])
async def test_health_reports_a_log_that_cannot_be_written(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    async with _memory(mock_config) as mem:
        await mem.persist_pattern("Prefer small commits", "style")
        mem.pipeline.audit_logger.flush()
        assert (await mem.health_check())["audit"]["available"] is True
        if fault == "disk_full":  # a committed write's lines cannot be appended
            monkeypatch.setattr(audit_logfile, "_write_all", _disk_full)
            await mem.persist_pattern("Kept in the outbox", "style")
            await _wait_for_failure(mem.pipeline.audit_logger)
        else:
            _break(_log(mock_config), fault)
        health = (await mem.health_check())["audit"]
        assert health["available"] is False
        assert health["path"] == str(_log(mock_config).resolve())
        why = {"garbled": "not an audit event", "unwritable": "Is a directory"}
        assert why.get(fault, "No space left on device") in health["error"]
        assert "refused" not in health["error"]
        assert health["held_events"] == (3 if fault == "disk_full" else 0)
        monkeypatch.undo()
        if fault != "disk_full":
            _repair(_log(mock_config), fault)
        health = (await mem.health_check())["audit"]
        assert health["available"] is True and health["held_events"] == 0
    security_pipeline.close_shared()


def _file_in_the_way(storage_dir: Path) -> Path:
    storage_dir.mkdir(parents=True, exist_ok=True)
    blocker = storage_dir / "not-a-dir"
    blocker.write_text("a file")
    return blocker


def _exists(path: Path) -> bool:
    return path.exists()


async def test_health_reports_a_log_not_yet_written_that_could_not_be_created(
    storage_dir: Path,
) -> None:
    """A log is created by its first event, not by a health check; but a log configured
    where it cannot be created (under a file) is reported, not "available"."""
    blocker = _file_in_the_way(storage_dir)
    config = MemoryConfig(
        redis_mock=True, storage_dir=storage_dir, audit_log_file=blocker / "audit.jsonl"
    )
    async with AsyncUnifiedMemory("a", config) as mem:
        health = (await mem.health_check())["audit"]
        assert health["available"] is False
        assert "not a directory" in health["error"]
        assert not _exists(blocker / "audit.jsonl")
    fine = MemoryConfig(
        redis_mock=True, storage_dir=storage_dir, audit_log_file=storage_dir / "new" / "a.jsonl"
    )
    async with AsyncUnifiedMemory("a", fine) as mem:
        health = (await mem.health_check())["audit"]
        assert health["available"] is True
        assert not _exists(storage_dir / "new")  # nothing created by the check
    security_pipeline.close_shared()


class _NoOutbox:
    """A journal seen by a store that keeps no outbox: ``begin`` declines, so the events
    are appended after the COMMIT."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def begin(self, events: Sequence[Any]) -> None:
        return None

    async def append(self, events: Sequence[Any]) -> None:
        await self.journal.append(events)


class _StoreWithoutOutbox(SQLiteLongTermStore):
    """A long-term store that keeps no outbox (as a third-party backend may): the audit
    event is appended (awaited) after the COMMIT."""

    def __init__(self, storage_dir: Path) -> None:
        super().__init__(storage_dir)
        # One wrapper per journal: a batch's events are grouped by journal identity.
        self._journals: dict[int, tuple[Journal, _NoOutbox]] = {}

    async def write(self, op: Any) -> Any:
        if isinstance(op, InsertOp) and op.audit is not None:
            journal = op.audit.journal
            _kept, wrapper = self._journals.setdefault(id(journal), (journal, _NoOutbox(journal)))
            op = InsertOp(op.record, Audited(wrapper, op.audit.event))
        return await super().write(op)


async def test_without_an_outbox_the_event_is_durable_when_the_write_returns(
    mock_config: MemoryConfig,
) -> None:
    """A store that keeps no outbox awaits the journal's append after its COMMIT: the
    write's events are in the log (fsynced: read back by another reader at once) when
    persist returns, behind the operation's queued decisions, and no outbox row exists."""
    store = _StoreWithoutOutbox(mock_config.ensure_storage_dir())
    async with AsyncUnifiedMemory("agent-1", mock_config, long_term=store) as mem:
        stored = await mem.persist_pattern("Prefer small commits", "style")
        assert stored is not None
        lines = [json.loads(line) for line in _log(mock_config).read_bytes().splitlines()]
        names = [(line["event"], line["target_id"]) for line in lines]
        assert names[-1] == ("pattern.store", stored["pattern_id"])
        # The operation's queued decision is written before it.
        assert ("classification.decision", stored["pattern_id"]) in names[:-1]
        assert _rows(mock_config) == [stored["pattern_id"]]
        assert _outbox(mock_config) == 0
    await store.aclose()
    security_pipeline.close_shared()


@pytest.mark.parametrize("fault", FAULTS)
async def test_without_an_outbox_a_failed_event_says_the_write_was_stored(
    mock_config: MemoryConfig, fault: str
) -> None:
    store = _StoreWithoutOutbox(mock_config.ensure_storage_dir())
    async with AsyncUnifiedMemory("agent-1", mock_config, long_term=store) as mem:
        await mem.persist_pattern("Prefer small commits", "style")
        mem.pipeline.audit_logger.flush()
        _break(_log(mock_config), fault)
        with pytest.raises(SecurityPipelineError) as raised:
            await mem.persist_pattern("Stored, but not logged", "style")
        text = str(raised.value)
        assert "refused" not in text and "WAS stored" in text, text
        assert isinstance(raised.value, AuditLogError) and raised.value.committed
        assert len(_rows(mock_config)) == 2
        _repair(_log(mock_config), fault)
    await store.aclose()
    security_pipeline.close_shared()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_leaves_held_lines_to_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines a failed append left with the logger are the parent's to append: a forked
    child appending them too would log those events twice."""
    log = tmp_path / "audit.jsonl"
    logger = AuditLogger(log)
    logger.log(AuditEvent("before", user_id="u", tier="T"))
    write = logger.begin([AuditEvent("pattern.store", user_id="u", tier="T", target_id="p")])
    monkeypatch.setattr(audit_logfile, "_write_all", _disk_full)
    write.finish(committed=True)
    with pytest.raises(SecurityPipelineError):
        logger.flush()  # the writer's append fails: the logger keeps the lines
    monkeypatch.undo()
    assert logger.held_events == 1
    pid = os.fork()
    if pid == 0:  # the child checks the log (which appends held lines), then leaves
        code = 1
        try:
            logger.check()
            code = 0 if logger.held_events == 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.check()
    assert logger.held_events == 0
    assert [e["event"] for e in logger.query()] == ["before", "pattern.store"]
    assert logger.verify().ok
    logger.close()


def test_verify_and_query_of_a_log_that_cannot_be_read_raise_a_clear_error(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.jsonl"
    log.mkdir()  # where the file should be: opening it for reading fails (EISDIR)
    logger = AuditLogger(log)
    for call in (logger.verify, logger.query):
        with pytest.raises(AuditLogError) as raised:
            call()
        text = str(raised.value)
        assert "could not be read (Is a directory)" in text and "permissions" in text, text
    logger.close()
