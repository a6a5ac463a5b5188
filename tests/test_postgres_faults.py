"""Faults injected into the PostgreSQL long-term store for real: sessions the server ends
(``pg_terminate_backend``) while the store's connections sit idle in its pool or in the
middle of a transaction, and databases attune must not take over. What a caller sees is
a typed error that says whether its write may have been applied; the same store (and the
same memory object) works again on its next call, with no acknowledged write lost and the
audit chain intact. (Connection errors at open, migrations and a newer schema are in
test_postgres_store.py.)"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from conftest import _postgres_admin
from records import pattern_record

from attune.errors import ConfigurationError, LongTermUnavailableError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import InsertOp, Match, PatternQuery, SearchEntry

asyncpg = pytest.importorskip("asyncpg")

from attune.memory.long_term.postgres_store import PostgresLongTermStore  # noqa: E402


async def _end_sessions(url: str) -> int:
    """Ends every other session of the database and waits until they are gone."""
    conn = await asyncpg.connect(url)
    try:
        ended = int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        for _ in range(500):
            if not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ):
                break
            await asyncio.sleep(0.01)
        return ended
    finally:
        await conn.close()


def _end_sessions_behind_the_loop(url: str) -> int:
    """Ends the database's other sessions from another thread while the calling event loop
    is blocked: its connections sit idle, and asyncpg has not yet read the server's
    goodbye on their sockets when the next call uses them (what a server restart or a
    failover does to a pool between two calls)."""
    ended: list[int] = []
    thread = threading.Thread(target=lambda: ended.append(asyncio.run(_end_sessions(url))))
    thread.start()
    thread.join()
    assert ended and ended[0] > 0
    return ended[0]


async def test_writes_on_connections_the_server_ended_while_idle_succeed(fresh_url: str) -> None:
    """Every pooled connection ended by the server while idle: a group commit of 64 writes
    is not failed for it (nothing was sent on a dead connection, so the batch goes to a
    new one), and each write is stored once."""
    store = PostgresLongTermStore(fresh_url, pool_size=4)
    try:
        warm = await asyncio.gather(
            *(store.write(InsertOp(pattern_record(f"pat_w{n}"))) for n in range(16))
        )
        assert warm == [True] * 16
        for round_ in range(3):
            _end_sessions_behind_the_loop(fresh_url)
            ids = [f"pat_{round_}_{n}" for n in range(64)]
            results = await asyncio.gather(
                *(store.write(InsertOp(pattern_record(i))) for i in ids), return_exceptions=True
            )
            assert results == [True] * 64
            assert await store.existing(ids) == set(ids)
    finally:
        await asyncio.wait_for(store.aclose(), 10)


async def test_reads_on_connections_the_server_ended_while_idle_succeed(fresh_url: str) -> None:
    """A read is safe to repeat: one that met a dead connection (its pool's, or the one
    sequential reads hold) is answered from a new one, whatever the read."""
    store = PostgresLongTermStore(fresh_url, pool_size=3)
    try:
        for n in range(4):
            entry = SearchEntry(words=("needle", f"w{n}"))
            assert await store.write(InsertOp(pattern_record(f"pat_{n}"), index=entry))
        query = PatternQuery(now_ms=0, match=Match((("needle",),)), limit=10)
        reads = {
            "get": lambda: store.get("pat_1", 0),
            "existing": lambda: store.existing(["pat_0", "pat_3"]),
            "find": lambda: store.find(query),
            "count": lambda: store.count(query),
            "key_ring": lambda: store.key_ring(),
        }
        for name, read in reads.items():
            assert await store.get("pat_0", 0) is not None  # the held reader is in use
            _end_sessions_behind_the_loop(fresh_url)
            # Concurrent reads too: each takes a pooled connection, all of them dead.
            answers = await asyncio.gather(read(), read(), read(), return_exceptions=True)
            errors = [a for a in answers if isinstance(a, BaseException)]
            assert errors == [], name
        assert len(await store.find(query)) == 4
    finally:
        await asyncio.wait_for(store.aclose(), 10)


async def end_own_session(conn: Any, name: str, when: str, trigger: str) -> None:
    """Make the trigger function ``name`` end its own session (the connection is lost in
    the middle of the statement, as by ``pg_terminate_backend``) for the row for which
    ``when`` (a SQL condition) holds; ``trigger``: the ``CREATE ... TRIGGER ... FOR EACH
    ROW`` statement that fires it, without its ``EXECUTE FUNCTION``."""
    await conn.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF {when} THEN
            PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);
        END IF; RETURN NEW; END $$"""
    )
    await conn.execute(f"{trigger} EXECUTE FUNCTION {name}()")


async def _kill_on_insert(url: str, pattern_id: str) -> None:
    """A trigger that ends its own session when ``pattern_id`` is inserted: the connection
    is lost in the middle of the write's transaction, before its COMMIT."""
    conn = await asyncpg.connect(url)
    try:
        await end_own_session(
            conn,
            "end_session",
            f"NEW.pattern_id = '{pattern_id}'",
            "CREATE TRIGGER end_session BEFORE INSERT ON patterns FOR EACH ROW",
        )
    finally:
        await conn.close()


async def test_a_connection_lost_before_the_commit_says_nothing_was_stored(
    fresh_url: str,
) -> None:
    """The session ends in the middle of a group commit's transaction, before its COMMIT:
    the server rolled it back, so its callers hear that nothing was stored (not that it
    is unknown), nothing is, and the same store writes again at once."""
    store = PostgresLongTermStore(fresh_url)
    try:
        assert await store.write(InsertOp(pattern_record("pat_first")))
        await _kill_on_insert(fresh_url, "pat_kill")
        ids = ["pat_a", "pat_kill", "pat_b", "pat_c"]
        results = await asyncio.gather(
            *(store.write(InsertOp(pattern_record(i))) for i in ids), return_exceptions=True
        )
        assert all(isinstance(r, LongTermUnavailableError) for r in results), results
        for error in results:
            text = str(error)
            assert "nothing of it was stored" in text and "unknown" not in text
            assert "body of" not in text
        assert await store.existing([*ids, "pat_first"]) == {"pat_first"}
        assert await store.write(InsertOp(pattern_record("pat_after")))
        assert await store.existing(["pat_after"]) == {"pat_after"}
    finally:
        await asyncio.wait_for(store.aclose(), 10)


async def test_an_audit_append_whose_connection_was_lost_is_written_once(
    fresh_url: str,
) -> None:
    """The audit log's own connection lost in the middle of an append (its session ended
    by the server): the events are written on a new connection, once, not lost; the
    caller waiting for them is not told they failed, and the chain verifies."""
    from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger
    from attune.memory.security.audit import AuditEvent

    log = DatabaseAuditLogger(fresh_url)
    try:
        log.log(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id="pat_0"))
        conn = await asyncpg.connect(fresh_url)
        try:  # the next append's session ends in the middle of it, once
            await conn.execute("CREATE SEQUENCE end_once")
            await end_own_session(
                conn,
                "end_once",
                "nextval('end_once') = 1",
                "CREATE TRIGGER end_once BEFORE INSERT ON audit_events FOR EACH ROW",
            )
            log.log(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id="pat_1"))
            log.log(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id="pat_2"))
            assert await conn.fetchval("SELECT last_value FROM end_once") > 1
        finally:
            await conn.close()
        targets = [e["target_id"] for e in log.query(event_type="pattern.store")]
        assert targets == ["pat_0", "pat_1", "pat_2"]
        assert log.verify().ok
    finally:
        log.close()


@pytest.fixture
def pg_config(fresh_url: str, mock_config: MemoryConfig) -> MemoryConfig:
    return mock_config.model_copy(update={"database_url": fresh_url})


async def test_the_same_memory_works_after_its_sessions_were_ended(
    pg_config: MemoryConfig, fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Persists, recalls, searches and the audit log's own connection, all ended by the
    server while idle: the same memory object answers its next calls (no AuditLogError for
    events "lost" on a dead connection), no acknowledged write is missing, and the chain
    in audit_events verifies."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", _master_key())
    async with AsyncUnifiedMemory("agent", pg_config, access_tier="STEWARD") as mem:
        first = await mem.persist_pattern("kept before the restart", "note")
        acked = [first["pattern_id"]]
        for round_ in range(3):
            _end_sessions_behind_the_loop(fresh_url)
            stored = await asyncio.gather(
                *(
                    mem.persist_pattern(
                        f"written {round_} {n}",
                        "note",
                        classification=("PUBLIC", "INTERNAL")[n % 2],
                    )
                    for n in range(64)
                )
            )
            acked += [s["pattern_id"] for s in stored]
            _end_sessions_behind_the_loop(fresh_url)
            recalled = await mem.recall_pattern(first["pattern_id"])
            assert recalled is not None and recalled["content"] == "kept before the restart"
            _end_sessions_behind_the_loop(fresh_url)
            page = await mem.search_patterns("written")
            assert len(page) > 0
            assert await mem.count_patterns() == len(acked)
        assert (await mem.health_check())["long_term"]["available"] is True
        logger = mem.pipeline.audit_logger
        assert (await asyncio.to_thread(logger.verify)).ok
    conn = await asyncpg.connect(fresh_url)
    try:
        rows = {r[0] for r in await conn.fetch("SELECT pattern_id FROM patterns")}
    finally:
        await conn.close()
    assert set(acked) <= rows


def _master_key() -> str:
    from attune.memory.security.keyring import generate_master_key

    return generate_master_key()


async def test_a_database_holding_another_applications_patterns_table_is_refused(
    fresh_url: str,
) -> None:
    """A database that is not attune's (a ``patterns`` table of its own, no attune schema
    version) is the configuration's error, named as such; nothing is created in it."""
    conn = await asyncpg.connect(fresh_url)
    try:
        await conn.execute("CREATE TABLE patterns (id int PRIMARY KEY, body text)")
        store = PostgresLongTermStore(fresh_url)
        try:
            with pytest.raises(ConfigurationError) as raised:
                await store.get("pat_1", 0)
            text = str(raised.value)
            assert "patterns" in text and "database of its own" in text
            assert "ATTUNE_DATABASE_URL" in text
        finally:
            await store.aclose()
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        assert [r[0] for r in tables] == ["patterns"]
    finally:
        await conn.close()


async def test_a_statement_the_servers_timeout_cancelled_says_so(fresh_url: str) -> None:
    """A ``statement_timeout`` set on the database cancels a slow statement: the caller's
    error names the cause and what to change, not an unreachable server; the store goes
    on."""
    store = PostgresLongTermStore(fresh_url)
    try:
        assert await store.write(InsertOp(pattern_record("pat_1")))
        await _postgres_admin(
            f'ALTER DATABASE "{fresh_url.rsplit("/", 1)[1]}" SET statement_timeout = 50'
        )
        await _end_sessions(fresh_url)  # new sessions take the setting
        with pytest.raises(LongTermUnavailableError) as raised:
            await store._read(lambda db: db.fetchval("SELECT pg_sleep(1)"))
        text = str(raised.value)
        assert "statement_timeout" in text and "applied nothing" in text
        assert "reachable server" not in text
        assert await store.get("pat_1", 0) is not None
    finally:
        await asyncio.wait_for(store.aclose(), 10)
