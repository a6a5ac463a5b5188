"""What only the PostgreSQL store has: its connection errors, its migrations under an
advisory lock, failed statements in a shared transaction, pools per event loop, the
VACUUM after an erasure. (Everything a long-term store does, it is tested for in
test_long_term_conformance.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from conftest import free_port
from records import pattern_record

from attune._loop_local import release_loop
from attune.errors import ConfigurationError, LongTermUnavailableError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import (
    EraseOp,
    InsertOp,
    Match,
    PatternQuery,
    SearchEntry,
    SubjectOp,
)

asyncpg = pytest.importorskip("asyncpg")

from attune.memory.long_term import postgres_schema  # noqa: E402
from attune.memory.long_term.postgres_store import PostgresLongTermStore  # noqa: E402


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    url = f"postgresql://attune:hunter2-secret@127.0.0.1:{free_port()}/attune"
    store = PostgresLongTermStore(url, connect_timeout_s=2)
    assert "hunter2" not in repr(store)
    with pytest.raises(LongTermUnavailableError) as raised:
        await store.get("pat_1", 0)
    text = str(raised.value)
    assert "hunter2" not in text and "***" in text
    assert "cannot connect" in text and "ATTUNE_DATABASE_URL" in text
    assert (await store.health())["available"] is False
    await store.aclose()


@pytest.mark.parametrize("url", ["mysql://x@h/db", "sqlite:///tmp/x", "", 42])
def test_a_url_of_another_kind_is_refused(url: object) -> None:
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresLongTermStore(url)  # type: ignore[arg-type]


async def test_several_stores_migrate_a_fresh_database_at_once(fresh_url: str) -> None:
    stores = [PostgresLongTermStore(fresh_url) for _ in range(6)]
    try:
        await asyncio.gather(*(s.get("pat_1", 0) for s in stores))
        results = await asyncio.gather(
            *(s.write(InsertOp(pattern_record(f"pat_{n}"))) for n, s in enumerate(stores))
        )
        assert results == [True] * 6
    finally:
        for s in stores:
            await s.aclose()
    conn = await asyncpg.connect(fresh_url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_version")
        assert [r[0] for r in versions] == [postgres_schema.SCHEMA_VERSION]
    finally:
        await conn.close()


async def test_a_newer_schema_is_refused(fresh_url: str) -> None:
    store = PostgresLongTermStore(fresh_url)
    await store.write(InsertOp(pattern_record("pat_1")))
    await store.aclose()
    conn = await asyncpg.connect(fresh_url)
    await conn.execute("UPDATE schema_version SET version = 999")
    await conn.close()
    store = PostgresLongTermStore(fresh_url)
    with pytest.raises(LongTermUnavailableError, match="upgrade attune"):
        await store.get("pat_1", 0)
    await store.aclose()


async def test_a_failed_statement_fails_its_own_caller_only(postgres_url: str) -> None:
    """PostgreSQL aborts a transaction at its first error: the batch is run again one
    write per transaction, so the others of a group commit are stored; the error says
    what failed without quoting the value."""
    store = PostgresLongTermStore(postgres_url)
    try:
        bad = pattern_record("pat_bad")._replace(pattern_type="nul\x00secret-value")
        ops = [InsertOp(pattern_record("pat_1")), InsertOp(bad), InsertOp(pattern_record("pat_2"))]
        results = await asyncio.gather(*(store.write(op) for op in ops), return_exceptions=True)
        assert results[0] is True and results[2] is True
        assert isinstance(results[1], LongTermUnavailableError)
        assert "secret-value" not in str(results[1]) and "cannot write" in str(results[1])
        assert await store.existing(["pat_1", "pat_bad", "pat_2"]) == {"pat_1", "pat_2"}
    finally:
        await store.aclose()


async def test_concurrent_writes_share_transactions(postgres_url: str) -> None:
    store = PostgresLongTermStore(postgres_url)
    try:
        await store.count()
        results = await asyncio.gather(
            *(store.write(InsertOp(pattern_record(f"pat_{n:02}"))) for n in range(64))
        )
        assert all(results)
        pool = store._pools.peek()
        assert pool is not None and pool.commits < 64
    finally:
        await store.aclose()


def test_each_event_loop_and_thread_gets_its_own_pool(postgres_url: str) -> None:
    store = PostgresLongTermStore(postgres_url)

    async def write_and_read(pid: str) -> int:
        await store.write(InsertOp(pattern_record(pid)))
        try:
            return await store.count(PatternQuery(now_ms=0))
        finally:
            await release_loop()  # what the blocking facade does as a thread ends

    assert asyncio.run(write_and_read("pat_1")) == 1
    assert asyncio.run(write_and_read("pat_2")) == 2
    counts: list[int] = []
    thread = threading.Thread(target=lambda: counts.append(asyncio.run(write_and_read("pat_3"))))
    thread.start()
    thread.join()
    assert counts == [3]
    asyncio.run(store.aclose())


async def _relation_files(conn: Any) -> dict[str, bytes]:
    """Every table's, index's and TOAST table's file of the database, as written to disk
    (superuser only: pg_read_binary_file)."""
    await conn.execute("CHECKPOINT")
    rels = await conn.fetch(
        "SELECT c.oid::regclass::text AS name FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 'i', 't') "
        "AND pg_relation_filenode(c.oid) IS NOT NULL AND c.relpersistence = 'p' "
        "AND (n.nspname = 'public' OR c.oid IN "
        "(SELECT reltoastrelid FROM pg_class WHERE relname = 'patterns') OR c.oid IN "
        "(SELECT indexrelid FROM pg_index WHERE indrelid = "
        "(SELECT reltoastrelid FROM pg_class WHERE relname = 'patterns')))"
    )
    files = {}
    for rel in rels:
        path = await conn.fetchval("SELECT pg_relation_filepath($1::regclass)", rel["name"])
        files[rel["name"]] = await conn.fetchval("SELECT pg_read_binary_file($1)", path)
    return files


async def test_an_erasure_leaves_nothing_of_the_user_in_the_database_files(
    postgres_url: str,
) -> None:
    """After an erasure (VACUUM of the tables, the indexes holding words, tokens, facets
    or the creator rebuilt), no table or index file holds the user's id, content, words
    or facets. (The WAL and files PostgreSQL unlinked still may: docs/security.md, 9.)"""
    needles = (b"zqxjcontent", b"zqxjword", b"alicezqxj", b"zqxjfacet")
    store = PostgresLongTermStore(postgres_url)
    conn = await asyncpg.connect(postgres_url)
    try:
        if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            pytest.skip("reading the database's files takes a superuser")
        await store.write(SubjectOp("alicezqxj", b"\x01" * 32))
        for n in range(20):
            mine = n < 5
            record = pattern_record(f"pat_{n}")._replace(
                created_by="alicezqxj" if mine else "bob",
                content=b"zqxjcontent %d" % n if mine else b"other",
            )
            entry = SearchEntry(
                words=("zqxjword",) if mine else ("other",),
                facets=("zqxjfacet",) if mine else ("f",),
            )
            await store.write(InsertOp(record, index=entry))
        before = await _relation_files(conn)
        assert all(any(n in data for data in before.values()) for n in needles)
        assert await store.write(EraseOp("alicezqxj")) == 5
        after = await _relation_files(conn)
        left = {name: [n for n in needles if n in data] for name, data in after.items()}
        assert {name: hits for name, hits in left.items() if hits} == {}
        assert await store.count() == 15
        found = await store.find(PatternQuery(now_ms=0, match=Match((("other",),)), limit=50))
        assert len(found) == 15  # the rebuilt indexes still find the others
    finally:
        await conn.close()
        await store.aclose()


async def test_attune_database_url_puts_long_term_memory_in_postgresql(
    postgres_url: str, mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    config = MemoryConfig(
        redis_mock=True, storage_dir=mock_config.storage_dir, key_prefix=mock_config.key_prefix
    )
    async with AsyncUnifiedMemory("agent", config) as mem:
        assert isinstance(mem.long_term, PostgresLongTermStore)
        stored = await mem.persist_pattern("Kept in PostgreSQL", "note", classification="SENSITIVE")
        health = await mem.health_check()
        assert health["long_term"]["backend"] == "postgres"
        assert health["long_term"]["available"] is True
    conn = await asyncpg.connect(postgres_url)
    try:
        row = await conn.fetchrow(
            "SELECT encrypted, content FROM patterns WHERE pattern_id = $1", stored["pattern_id"]
        )
        assert row["encrypted"] is True and b"PostgreSQL" not in row["content"]
    finally:
        await conn.close()
    async with AsyncUnifiedMemory("reader", config) as reader:
        pattern = await reader.recall_pattern(stored["pattern_id"])
        assert pattern is not None and pattern["content"] == "Kept in PostgreSQL"


async def test_concurrent_erasures_from_two_stores_all_finish(postgres_url: str) -> None:
    """Each erasure's VACUUM and REINDEX CONCURRENTLY wait for one another (their locks
    conflict), never fail or deadlock."""
    one, two = PostgresLongTermStore(postgres_url), PostgresLongTermStore(postgres_url)
    try:
        users = [f"user-{n}" for n in range(4)]
        for n in range(40):
            record = pattern_record(f"pat_{n:02}")._replace(created_by=users[n % 4])
            await one.write(InsertOp(record, index=SearchEntry(words=(f"w{n}",))))
        erased = await asyncio.gather(
            *(store.write(EraseOp(user)) for store, user in zip([one, two] * 2, users, strict=True))
        )
        assert erased == [10, 10, 10, 10]
        assert await two.count() == 0
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_store_recovers_when_the_server_drops_its_connections(postgres_url: str) -> None:
    """Connections the server ends (a restart, pg_terminate_backend) fail at most the
    writes and reads in flight, with attune's error; the next ones get new connections."""
    store = PostgresLongTermStore(postgres_url)
    admin = await asyncpg.connect(postgres_url)
    try:
        assert await store.write(InsertOp(pattern_record("pat_1")))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for pid in ("pat_2", "pat_3", "pat_4"):
            try:
                await store.write(InsertOp(pattern_record(pid)))
            except LongTermUnavailableError as exc:
                assert "lost the connection" in str(exc) or "cannot" in str(exc)
        with contextlib.suppress(LongTermUnavailableError):
            await store.get("pat_1", 0)
        assert await store.write(InsertOp(pattern_record("pat_5")))
        assert await store.get("pat_5", 0) is not None
        assert "pat_5" in await store.existing(["pat_1", "pat_5"])
    finally:
        await admin.close()
        await store.aclose()


async def test_a_cancelled_read_gives_its_connection_back_and_reads_go_on(
    postgres_url: str,
) -> None:
    """Sequential reads share one held connection: a read cancelled mid-query hands it
    back to the pool (which waits out the cancellation), concurrent reads take the pool's
    other connections, and closing the store releases the held one (a pool never closes
    while a connection is out)."""
    store = PostgresLongTermStore(postgres_url, pool_size=2)
    try:
        assert await store.write(InsertOp(pattern_record("pat_1")))
        assert await store.get("pat_1", 0) is not None
        slow = asyncio.create_task(store._read(lambda db: db.fetchval("SELECT pg_sleep(30)")))
        await asyncio.sleep(0.2)
        # The held connection is busy: this read goes to the pool and still answers.
        assert "pat_1" in await store.existing(["pat_1", "pat_2"])
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        found = await asyncio.gather(*(store.get("pat_1", 0) for _ in range(8)))
        assert all(record is not None and record.pattern_id == "pat_1" for record in found)
    finally:
        await asyncio.wait_for(store.aclose(), 10)


@pytest.mark.parametrize("pool_size", [1, 2, 3, 4])
async def test_a_small_pool_never_waits_on_a_connection_it_holds(
    postgres_url: str, pool_size: int
) -> None:
    """A loop holds a connection for sequential reads, never the pool's only one (writes
    waited for it forever): a read while the held reader is busy, writes between reads,
    and many of both at once all answer, and closing gives every one back."""
    store = PostgresLongTermStore(postgres_url, pool_size=pool_size)
    try:
        for n in range(3):  # write, read, write: each takes (or keeps) its connection
            assert await asyncio.wait_for(store.write(InsertOp(pattern_record(f"pat_{n}"))), 10)
            assert await asyncio.wait_for(store.get(f"pat_{n}", 0), 10) is not None
        slow = asyncio.create_task(store._read(lambda db: db.fetchval("SELECT pg_sleep(0.5)")))
        await asyncio.sleep(0.1)  # the held reader (or the only connection) is busy
        writes = [store.write(InsertOp(pattern_record(f"pat_w{n}"))) for n in range(8)]
        reads = [store.get("pat_0", 0) for _ in range(8)]
        done = await asyncio.wait_for(asyncio.gather(*writes, *reads, slow), 20)
        assert done[:8] == [True] * 8
        assert all(r is not None and r.pattern_id == "pat_0" for r in done[8:16])
        assert await store.existing([f"pat_w{n}" for n in range(8)]) == {
            f"pat_w{n}" for n in range(8)
        }
    finally:
        await asyncio.wait_for(store.aclose(), 10)


async def _end_other_sessions(admin: Any) -> None:
    """Ends every other session of the database (as a server restart would) and waits
    until they are gone."""
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    for _ in range(200):
        others = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        if not others:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # asyncpg has seen its sockets close


async def test_reads_after_the_server_ended_idle_sessions_succeed(fresh_url: str) -> None:
    """The connection a loop holds for sequential reads, ended by the server while idle
    (a restart, a failover, idle_session_timeout), is replaced: the next read, and the
    next write's key ring read, do not fail for it."""
    store = PostgresLongTermStore(fresh_url)
    admin = await asyncpg.connect(fresh_url)
    try:
        assert await store.write(InsertOp(pattern_record("pat_1")))
        assert await store.get("pat_1", 0) is not None  # the loop holds its reader now
        await _end_other_sessions(admin)
        assert await store.get("pat_1", 0) is not None
        await _end_other_sessions(admin)
        assert (await store.key_ring()).root_key_id is None
        assert await store.existing(["pat_1"]) == {"pat_1"}
    finally:
        await admin.close()
        await asyncio.wait_for(store.aclose(), 10)


@pytest.mark.parametrize("query", ["sslmode=bogus", "target_session_attrs=nonsense"])
async def test_a_url_asyncpg_refuses_is_a_configuration_error_without_the_password(
    query: str,
) -> None:
    """A URL whose options asyncpg cannot use is the configuration's error (fix the URL),
    not an unavailable server (retry later)."""
    store = PostgresLongTermStore(f"postgresql://attune:hunter2-secret@127.0.0.1:1/db?{query}")
    try:
        with pytest.raises(ConfigurationError) as raised:
            await store.get("pat_1", 0)
        assert not isinstance(raised.value, LongTermUnavailableError)
        text = str(raised.value)
        assert "hunter2" not in text and "ATTUNE_DATABASE_URL" in text
    finally:
        await store.aclose()


async def test_an_erasure_drops_the_index_copies_an_interrupted_one_left(fresh_url: str) -> None:
    """A clean-up cut off in REINDEX CONCURRENTLY (cancelled, a lost connection) leaves
    an invalid copy of the index (``<name>_ccnew``) that no later rebuild replaces: the
    next erasure drops it, so nothing it was built from stays in the database's files."""
    store = PostgresLongTermStore(fresh_url)
    conn = await asyncpg.connect(fresh_url)
    try:
        for n in range(6):
            record = pattern_record(f"pat_{n}")._replace(created_by=f"user-{n % 2}")
            await store.write(InsertOp(record, index=SearchEntry(words=(f"w{n}",))))
        # What an interrupted rebuild leaves: an index that failed to build, so invalid.
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY patterns_words_ccnew ON patterns (created_by)"
            )
        invalid = "SELECT count(*) FROM pg_index WHERE NOT indisvalid"
        assert await conn.fetchval(invalid) == 1
        assert await store.write(EraseOp("user-0")) == 3
        assert await conn.fetchval(invalid) == 0
        names = await conn.fetch(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'patterns'::regclass"
        )
        assert "patterns_words_ccnew" not in {row[0] for row in names}
        found = await store.find(PatternQuery(now_ms=0, match=Match((("w1",),)), limit=5))
        assert [f.record.pattern_id for f in found] == ["pat_1"]
    finally:
        await conn.close()
        await store.aclose()
