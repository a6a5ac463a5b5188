"""The audit log of a PostgreSQL deployment: the ``audit_events`` table, one hash chain
for every host (attune/memory/long_term/postgres_audit.py, postgres_audit_log.py).

Against the real PostgreSQL (a database of the test session's own, see conftest.py):
events commit in their write's own transaction (a write that fails leaves no event; no
event without its record), two OS processes that share no directory make one chain that
verifies, tampering as a superuser is found, the CLI verifies and queries the table, and
a writer killed by SIGKILL during 64 concurrent persists loses no acknowledged write and
leaves the chain verifiable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from records import pattern_record
from waiting import WriteRecorder

from attune.cli import main
from attune.errors import (
    AuditLogError,
    ConfigurationError,
    LongTermUnavailableError,
    ValidationError,
)
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import Audited, InsertOp
from attune.memory.security import pipeline
from attune.memory.security.audit import AuditEvent, AuditLogger
from attune.memory.security.keyring import generate_master_key

asyncpg = pytest.importorskip("asyncpg")

from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger  # noqa: E402
from attune.memory.long_term.postgres_schema import SCHEMA_VERSION  # noqa: E402
from attune.memory.long_term.postgres_store import PostgresLongTermStore  # noqa: E402


@pytest.fixture
def pg_config(postgres_url: str, mock_config: MemoryConfig) -> MemoryConfig:
    return mock_config.model_copy(update={"database_url": postgres_url})


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresLongTermStore]:
    opened = PostgresLongTermStore(postgres_url)
    yield opened
    await opened.aclose()


@pytest.fixture
def log(postgres_url: str) -> Iterator[DatabaseAuditLogger]:
    opened = DatabaseAuditLogger(postgres_url)
    yield opened
    opened.close()


async def _sql(url: str, *statements: str) -> list[Any]:
    """Run statements as the superuser; the rows of the last."""
    conn = await asyncpg.connect(url)
    try:
        rows: list[Any] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


def _event(target: str) -> AuditEvent:
    return AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id=target)


# -- one transaction ----------------------------------------------------------------------


async def test_events_of_a_group_commit_are_in_its_transaction(
    store: PostgresLongTermStore, log: DatabaseAuditLogger, postgres_url: str
) -> None:
    """A record whose write fails leaves no event; every event's record is stored."""
    await store.count()  # migrated
    await _sql(
        postgres_url,
        """CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.pattern_id = 'pat_bad' THEN RAISE EXCEPTION 'refused'; END IF;
        RETURN NEW; END $$""",
        "CREATE TRIGGER refuse_bad BEFORE INSERT ON patterns FOR EACH ROW "
        "EXECUTE FUNCTION refuse_bad()",
    )
    try:
        ids = [f"pat_{n}" for n in range(8)] + ["pat_bad"]
        results = await asyncio.gather(
            *(
                store.write(InsertOp(pattern_record(i), Audited(log.journal, _event(i))))
                for i in ids
            ),
            return_exceptions=True,
        )
    finally:
        await _sql(postgres_url, "DROP TRIGGER refuse_bad ON patterns")
    assert results[:-1] == [True] * 8
    assert isinstance(results[-1], LongTermUnavailableError)
    targets = {e["target_id"] for e in log.query(event_type="pattern.store")}
    assert targets == set(ids[:-1])
    assert await store.existing(ids) == targets
    assert log.verify().ok


async def test_queued_events_go_with_the_write_or_are_written_without_it(
    store: PostgresLongTermStore, postgres_url: str
) -> None:
    """An event queued before a write (a decision nobody waits for) is committed in the
    write's transaction, before its event; if that transaction fails, it is still
    written, by the logger, once."""
    recorder = WriteRecorder()
    log = DatabaseAuditLogger(postgres_url, linger_s=60, on_write=recorder)  # kept queued
    try:
        await store.count()
        decision = AuditEvent("classification.decision", "agent", "CONTRIBUTOR")
        log.submit(decision)
        assert await store.write(
            InsertOp(pattern_record("pat_1"), Audited(log.journal, _event("pat_1")))
        )
        assert recorder.batches == [1]  # the decision, told by the store's commit
        assert [e["event"] for e in log.query()] == ["classification.decision", "pattern.store"]

        # The event of pat_2 is refused by the table, after the queued one was taken.
        await _sql(
            postgres_url,
            "CREATE FUNCTION refuse_pat_2() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.line LIKE '%pat_2%' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER refuse_pat_2 BEFORE INSERT ON audit_events FOR EACH ROW "
            "EXECUTE FUNCTION refuse_pat_2()",
        )
        try:
            log.submit(decision)
            with pytest.raises(LongTermUnavailableError):
                await store.write(
                    InsertOp(pattern_record("pat_2"), Audited(log.journal, _event("pat_2")))
                )
            await asyncio.to_thread(recorder.wait_for, 2)  # given back, written by the logger
        finally:
            await _sql(postgres_url, "DROP TRIGGER refuse_pat_2 ON audit_events")
        assert await store.existing(["pat_2"]) == set()
        events = [e["event"] for e in log.query()]
        assert events == ["classification.decision", "pattern.store", "classification.decision"]
        assert log.verify().ok
    finally:
        log.close()


async def test_an_event_that_cannot_be_chained_stores_no_record(
    store: PostgresLongTermStore, log: DatabaseAuditLogger, postgres_url: str
) -> None:
    await store.count()
    await _sql(postgres_url, "ALTER TABLE audit_head RENAME TO audit_head_moved")
    try:
        with pytest.raises(LongTermUnavailableError):
            await store.write(InsertOp(pattern_record("pat_1"), Audited(log.journal, _event("x"))))
    finally:
        await _sql(postgres_url, "ALTER TABLE audit_head_moved RENAME TO audit_head")
    assert await store.existing(["pat_1"]) == set()
    assert await store.write(InsertOp(pattern_record("pat_1"))) is True  # unaudited: fine
    assert log.query() == []


async def test_the_core_writes_every_event_to_the_table_and_it_verifies(
    pg_config: MemoryConfig,
) -> None:
    async with AsyncUnifiedMemory("agent", pg_config) as mem:
        stored = await asyncio.gather(
            *(mem.persist_pattern(f"Pattern number {i}", "misc") for i in range(64))
        )
        await mem.recall_pattern(stored[0]["pattern_id"])
        log = mem.pipeline.audit_logger
        assert isinstance(log, DatabaseAuditLogger)
        events = log.query(event_type="pattern.store")
        assert {e["target_id"] for e in events} == {s["pattern_id"] for s in stored}
        assert (
            log.query(event_type="pattern.retrieve", limit=1)[0]["target_id"]
            == (stored[0]["pattern_id"])
        )
        result = log.verify()
        assert result.ok and result.table == "audit_events", str(result)
        assert result.lines_checked == len(log.query())
        health = await mem.health_check()
        assert health["audit"]["available"] and health["audit"]["table"] == "audit_events"
    assert not (pg_config.storage_dir / "audit.jsonl").exists()  # no mirror by default


async def test_the_mirror_copies_this_processes_events_to_a_file(
    pg_config: MemoryConfig,
) -> None:
    config = pg_config.model_copy(update={"audit_mirror": True})
    async with AsyncUnifiedMemory("agent", config) as mem:
        stored = await mem.persist_pattern("Mirrored pattern", "misc")
        in_table = mem.pipeline.audit_logger.query()
    pipeline.close_shared()
    mirror = AuditLogger(config.audit_log_path)
    try:
        in_file = mirror.query()
        assert mirror.verify().ok
    finally:
        mirror.close()
    # The same events, in the same order: the write's transaction took the decisions its
    # process still queued (or waited for their batch) before its own event.
    assert [e["event"] for e in in_file] == [e["event"] for e in in_table]
    assert in_table[-1]["event"] == "pattern.store"
    assert stored["pattern_id"] in {e["target_id"] for e in in_file}


def test_query_filters_and_keeps_the_most_recent(log: DatabaseAuditLogger) -> None:
    _logged(log, 5)
    log.log(AuditEvent("access.denied", "other", "OBSERVER", outcome="denied"))
    assert [e["seq"] for e in log.query(limit=2)] == [5, 6]
    assert [e["target_id"] for e in log.query(event_type="pattern.store", limit=2)] == [
        "pat_3",
        "pat_4",
    ]
    assert [e["event"] for e in log.query(user_id="other")] == ["access.denied"]
    assert log.query(outcome="denied", target_id="pat_1") == []
    assert len(log.query(since="2000-01-01")) == 6
    assert log.query(since=datetime.now(UTC) + timedelta(days=1)) == []
    assert log.query(limit=0) == []


@pytest.mark.parametrize("tries", [3, 0])
def test_writers_that_move_each_others_head_keep_one_chain(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tries: int
) -> None:
    """Each logger appends in one statement while the head is the one it left; another
    writer moved it, so it reads the head again (and with ``tries`` 0, locks it first)."""
    from attune.memory.long_term import postgres_audit

    monkeypatch.setattr(postgres_audit, "_TRIES", tries)
    logs = [DatabaseAuditLogger(postgres_url) for _ in range(2)]
    try:

        def write(log: DatabaseAuditLogger, tag: str) -> None:
            for i in range(40):
                log.log(_event(f"{tag}_{i}"))

        threads = [
            threading.Thread(target=write, args=(log, tag))
            for log, tag in zip(logs, ("a", "b"), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        write(logs[0], "c")  # after the other moved the head
        result = logs[1].verify()
        assert result.ok and result.lines_checked == 120, str(result)
        targets = {e["target_id"] for e in logs[0].query()}
        assert targets == {f"{t}_{i}" for t in "abc" for i in range(40)}
    finally:
        for log in logs:
            log.close()


def test_the_table_is_append_only(log: DatabaseAuditLogger, postgres_url: str) -> None:
    log.log(_event("pat_1"))
    for statement in (
        "UPDATE audit_events SET line = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            asyncio.run(_sql(postgres_url, statement))
    assert len(log.query()) == 1 and log.verify().ok


def test_the_schema_version_counts_the_audit_migration(postgres_url: str) -> None:
    rows = asyncio.run(_sql(postgres_url, "SELECT version FROM schema_version"))
    assert rows[0][0] == SCHEMA_VERSION


# -- tampering -------------------------------------------------------------------------------


def _logged(log: DatabaseAuditLogger, n: int) -> None:
    for i in range(n):
        log.log(_event(f"pat_{i}"))


def _tamper(url: str, statement: str) -> None:
    asyncio.run(
        _sql(
            url,
            "ALTER TABLE audit_events DISABLE TRIGGER USER",
            statement,
            "ALTER TABLE audit_events ENABLE TRIGGER USER",
        )
    )


def test_an_altered_row_is_found(log: DatabaseAuditLogger, postgres_url: str) -> None:
    _logged(log, 5)
    assert log.verify().ok
    _tamper(
        postgres_url,
        "UPDATE audit_events SET line = replace(line, 'pat_2', 'pat_9') WHERE seq = 3",
    )
    result = log.verify()
    assert not result.ok and result.line == 3 and "altered" in str(result.reason)
    assert "TAMPERED at table audit_events seq 3" in str(result)


def test_a_deleted_middle_row_is_found(log: DatabaseAuditLogger, postgres_url: str) -> None:
    _logged(log, 5)
    _tamper(postgres_url, "DELETE FROM audit_events WHERE seq = 3")
    result = log.verify()
    assert not result.ok and result.line == 4 and "sequence broken" in str(result.reason)


def test_a_truncated_tail_is_found_by_the_head(log: DatabaseAuditLogger, postgres_url: str) -> None:
    _logged(log, 5)
    _tamper(postgres_url, "DELETE FROM audit_events WHERE seq >= 4")
    result = log.verify()
    assert not result.ok and "chain head" in str(result.reason)


def test_a_row_whose_columns_disagree_with_its_line_is_found(
    log: DatabaseAuditLogger, postgres_url: str
) -> None:
    """The line holds the chain; ``ts`` and ``seq`` are copies of it in columns. A DBA who
    backdates a row's ``ts`` hides its event from queries by time while every line still
    chains; one who renumbers ``seq`` (and the head) keeps the order. Verify finds both."""
    _logged(log, 5)
    first = asyncio.run(_sql(postgres_url, "SELECT ts FROM audit_events WHERE seq = 1"))[0][0]
    _tamper(postgres_url, "UPDATE audit_events SET ts = '2000-01-01T00:00:00Z' WHERE seq = 3")
    assert "pat_2" not in [e["target_id"] for e in log.query(since=first)]  # hidden by time
    result = log.verify()
    assert not result.ok and result.line == 3 and "ts column" in str(result.reason)
    assert "TAMPERED at table audit_events seq 3" in str(result)
    _tamper(
        postgres_url,
        "UPDATE audit_events SET ts = substring(line from 8 for 27) WHERE seq = 3",
    )
    assert log.verify().ok
    _tamper(postgres_url, "UPDATE audit_events SET seq = seq * 10")
    asyncio.run(_sql(postgres_url, "UPDATE audit_head SET seq = 50"))
    result = log.verify()
    assert not result.ok and result.line == 10 and "seq or ts column" in str(result.reason)


def test_a_missing_head_refuses_new_events(log: DatabaseAuditLogger, postgres_url: str) -> None:
    _logged(log, 1)
    asyncio.run(_sql(postgres_url, "DELETE FROM audit_head"))
    with pytest.raises(AuditLogError, match="no row") as caught:
        log.log(_event("pat_2"))
    assert "not logged" in str(caught.value)
    with pytest.raises(AuditLogError, match="no row"):
        log.check()


async def _rewrite_history(url: str) -> None:
    """What a DBA with write access can do: alter row 2, rechain every later row and move
    the head, with the trigger off. The keyless chain alone then verifies."""
    from test_audit_checkpoint import rechain

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT seq, line FROM audit_events ORDER BY seq")
        lines = [str(r["line"]) for r in rows]
        lines[1] = lines[1].replace("pat_1", "pat_X")
        fresh = rechain(lines)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for seq, line in enumerate(fresh, 1):
                await conn.execute("UPDATE audit_events SET line = $2 WHERE seq = $1", seq, line)
            await conn.execute(
                "UPDATE audit_head SET hash = $1",
                hashlib.sha256(fresh[-1].encode()).hexdigest(),
            )
    finally:
        await conn.close()


def test_a_signed_checkpoint_exposes_a_dba_rewriting_or_cutting_history(
    log: DatabaseAuditLogger,
    postgres_url: str,
    mock_config: MemoryConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _logged(log, 5)
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    storage = ["--storage-dir", str(mock_config.storage_dir)]
    point = mock_config.storage_dir / "checkpoint.json"
    assert main(["audit", "checkpoint", "--out", str(point), *storage]) == 0
    _logged(log, 2)
    capsys.readouterr()
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 0

    asyncio.run(_rewrite_history(postgres_url))
    assert log.verify().ok  # the chain alone cannot tell
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 1
    assert "not the one the checkpoint signed" in capsys.readouterr().out

    # Cut back to before the checkpoint, head moved too: only the checkpoint tells.
    _tamper(postgres_url, "DELETE FROM audit_events WHERE seq > 3")
    rows = asyncio.run(_sql(postgres_url, "SELECT line FROM audit_events WHERE seq = 3"))
    head = hashlib.sha256(rows[0][0].encode()).hexdigest()
    asyncio.run(_sql(postgres_url, f"UPDATE audit_head SET seq = 3, hash = '{head}'"))
    assert log.verify().ok
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 1
    assert "ends before the checkpoint (seq 5)" in capsys.readouterr().out


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_verifies_and_queries_the_table(
    pg_config: MemoryConfig,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def fill() -> str:
        async with AsyncUnifiedMemory("agent", pg_config) as mem:
            return str((await mem.persist_pattern("Pattern for the CLI", "misc"))["pattern_id"])

    pattern_id = asyncio.run(fill())
    pipeline.close_shared()
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    storage = ["--storage-dir", str(pg_config.storage_dir)]
    capsys.readouterr()
    assert main(["audit", "verify", "--json", *storage]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["table"] == "audit_events" and report["lines_checked"] > 0
    assert main(["audit", "query", "--json", "--event", "pattern.store", *storage]) == 0
    assert [e["target_id"] for e in json.loads(capsys.readouterr().out)] == [pattern_id]
    assert main(["audit", "tail", "--json", "-n", "1", *storage]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    _tamper(postgres_url, "UPDATE audit_events SET line = line || ' ' WHERE seq = 1")
    assert main(["audit", "verify", *storage]) == 1
    assert "TAMPERED at table audit_events seq 1" in capsys.readouterr().out


# -- several processes ---------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from attune.memory import AsyncUnifiedMemory, MemoryConfig

    async def main(url, storage, tag, rounds):
        config = MemoryConfig(database_url=url, storage_dir=storage, redis_mock=True)
        async with AsyncUnifiedMemory("agent-" + tag, config) as mem:
            async def one(n):
                stored = await mem.persist_pattern(f"{tag} pattern {n}", "misc")
                print(stored["pattern_id"], flush=True)
            for r in range(rounds):
                await asyncio.gather(*(one(r * 64 + i) for i in range(64)))
        print("done", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


def _writer(url: str, storage: Path, tag: str, rounds: int, key: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
    env["ATTUNE_MASTER_KEY"] = key  # the same key, no shared directory
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, str(storage), tag, str(rounds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_processes_make_one_chain(
    postgres_url: str, tmp_path: Path, log: DatabaseAuditLogger
) -> None:
    key = generate_master_key()
    procs = [_writer(postgres_url, tmp_path / tag, tag, 2, key) for tag in ("a", "b")]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.splitlines()[-1] == "done"
    ids = [set(out.splitlines()[:-1]) for out, _err in outputs]
    assert len(ids[0]) == len(ids[1]) == 128
    result = log.verify()
    assert result.ok, str(result)
    events = log.query(event_type="pattern.store")
    assert {e["target_id"] for e in events} == ids[0] | ids[1]
    seqs = [e["seq"] for e in log.query()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert not (tmp_path / "a" / "audit.jsonl").exists()


async def test_sigkill_during_64_concurrent_persists_loses_no_acknowledged_write(
    postgres_url: str, tmp_path: Path, store: PostgresLongTermStore
) -> None:
    """The issue's acceptance item: the child prints each pattern id as its persist is
    acknowledged; it is killed mid-run; every printed id is stored, has its event, and
    the chain verifies."""
    proc = _writer(postgres_url, tmp_path / "victim", "v", 1000, generate_master_key())
    acknowledged: list[str] = []
    assert proc.stdout is not None
    try:
        while len(acknowledged) < 200:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            acknowledged.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    acknowledged += [line.strip() for line in rest.splitlines() if line.strip()]
    assert "done" not in acknowledged  # killed mid-run
    assert await store.existing(acknowledged) == set(acknowledged)
    log = DatabaseAuditLogger(postgres_url)
    try:
        result = log.verify()
        assert result.ok, str(result)
        events = log.query(event_type="pattern.store")
    finally:
        log.close()
    in_log = {e["target_id"] for e in events}
    assert set(acknowledged) <= in_log
    # And no event of a record that is not there (its transaction never committed).
    assert await store.existing(sorted(in_log)) == in_log


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_with_typed_errors(
    log: DatabaseAuditLogger, postgres_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        DatabaseAuditLogger("mysql://db/attune")
    log.log(_event("pat_1"))
    for limit in (-1, True, "3"):
        with pytest.raises(ValidationError, match="limit"):
            log.query(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="since"):
        log.query(since="yesterday")
    assert len(log.query()) == 1 and log.verify().ok  # nothing changed


def test_an_unreachable_database_is_a_typed_error_that_names_no_password(
    free_port_url: str,
) -> None:
    log = DatabaseAuditLogger(free_port_url, connect_timeout_s=2)
    try:
        with pytest.raises(AuditLogError) as caught:
            log.log(_event("pat_1"))
        assert "could not be written" in str(caught.value)
        assert "s3cret" not in str(caught.value)
        with pytest.raises(AuditLogError, match="could not be read") as read:
            log.verify()
        assert "s3cret" not in str(read.value)
    finally:
        log.close()


@pytest.fixture
def free_port_url() -> str:
    from conftest import free_port

    return f"postgresql://attune:s3cret@127.0.0.1:{free_port()}/attune"


async def test_a_write_alone_on_a_stale_head_guess_still_chains_once(
    store: PostgresLongTermStore, log: DatabaseAuditLogger, postgres_url: str
) -> None:
    """A write alone is one statement that inserts the record and its event only if the
    chain head is where this process last left it. Another writer moved it (a stale
    guess): that statement writes nothing and the usual transaction chains the event. A
    duplicate id on a good guess writes neither record nor event."""
    await store.count()
    first = InsertOp(pattern_record("pat_1"), Audited(log.journal, _event("pat_1")))
    assert await store.write(first)
    assert log.journal.head_hint.value is not None  # the next write alone is one statement
    other = DatabaseAuditLogger(postgres_url)  # another host's logger moves the head
    try:
        for i in range(3):
            other.log(_event(f"x{i}"))
    finally:
        other.close()
    stale = log.journal.head_hint.value
    assert await store.write(
        InsertOp(pattern_record("pat_2"), Audited(log.journal, _event("pat_2")))
    )
    assert log.journal.head_hint.value != stale  # learnt from the transaction that chained it
    assert await store.write(
        InsertOp(pattern_record("pat_3"), Audited(log.journal, _event("pat_3")))
    )
    assert await store.write(first) is False  # a duplicate: nothing written
    stored = [e["target_id"] for e in log.query(event_type="pattern.store")]
    assert stored == ["pat_1", "x0", "x1", "x2", "pat_2", "pat_3"]
    rows = await _sql(postgres_url, "SELECT seq FROM audit_events ORDER BY seq")
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    assert log.verify().ok
