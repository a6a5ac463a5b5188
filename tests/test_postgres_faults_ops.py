"""Sessions of the PostgreSQL store ended by the server (``pg_terminate_backend``) at
random moments of a long operation: concurrent persists, key rotation, purge, erasure,
export, migration, and ``attune db upgrade`` run twice at once. What a caller sees is a
typed error that says truthfully what was applied; a rerun completes the job; nothing is
left half-done without the caller being told, and the audit chain verifies."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from test_postgres_faults import _master_key, end_own_session

from attune.errors import LongTermUnavailableError
from attune.memory import AsyncUnifiedMemory, MemoryConfig

asyncpg = pytest.importorskip("asyncpg")


@pytest.fixture
def pg_config(fresh_url: str, mock_config: MemoryConfig) -> MemoryConfig:
    return mock_config.model_copy(update={"database_url": fresh_url})


@contextlib.asynccontextmanager
async def _killing(url: str, *, seed: int, pause_s: float = 0.05) -> AsyncIterator[list[int]]:
    """Ends every other session of the database at random moments (a pause of up to
    ``pause_s`` between two rounds) until the block is left; yields the count of sessions
    ended so far."""
    rng = random.Random(seed)
    ended = [0]
    stop = asyncio.Event()
    conn = await asyncpg.connect(url)

    async def kill() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.0, pause_s))
            if stop.is_set():
                return
            ended[0] += int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

    task = asyncio.create_task(kill())
    try:
        yield ended
    finally:
        stop.set()
        await task
        await conn.close()


async def _rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_persists_cut_off_at_random_moments_are_settled(
    pg_config: MemoryConfig,
    fresh_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """64 concurrent persists, rounds after rounds, while the store's sessions are ended at
    random moments (a COMMIT's answer, or a lone statement's, lost with them): a write
    whose connection was lost is settled on a new one (its audit line is in the table, or
    it is not), so no caller hears "unknown"; every acknowledged write is stored, every
    write reported as not stored is absent, and the chain verifies."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", _master_key())
    outcomes: dict[str, object] = {}
    ended = 0
    async with AsyncUnifiedMemory("agent", pg_config, access_tier="STEWARD") as mem:
        await mem.persist_pattern("warm", "note", classification="PUBLIC")
        for round_ in range(12):
            texts = [f"written {round_} {n}" for n in range(64)]
            async with _killing(fresh_url, seed=round_) as killed:
                results = await asyncio.gather(
                    *(mem.persist_pattern(t, "note", classification="PUBLIC") for t in texts),
                    return_exceptions=True,
                )
            ended += killed[0]
            outcomes.update(zip(texts, results, strict=True))
        logger = mem.pipeline.audit_logger
        assert (await asyncio.to_thread(logger.verify)).ok
    sql = "SELECT convert_from(content, 'UTF8'), pattern_id FROM patterns"
    stored = {str(r[0]): str(r[1]) for r in await _rows(fresh_url, sql)}

    def told(text: str) -> list[str]:
        return [
            t
            for t, r in outcomes.items()
            if isinstance(r, LongTermUnavailableError) and text in str(r)
        ]

    unknown, not_stored = told("unknown"), told("nothing of it was stored")
    acked = {t: r["pattern_id"] for t, r in outcomes.items() if isinstance(r, dict)}
    others = [r for r in outcomes.values() if not isinstance(r, dict | LongTermUnavailableError)]
    assert others == []
    assert all(stored.get(t) == pid for t, pid in acked.items())
    assert [t for t in not_stored if t in stored] == []
    assert unknown == []
    assert ended > 0 and len(acked) > len(outcomes) // 2


class _CommitReplyCutter:
    """A TCP proxy in front of the PostgreSQL server that, once armed, forwards the next
    ``COMMIT`` to the server and cuts the client's connection instead of passing on the
    answer: the transaction commits, its client never hears so."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.armed = False
        self.cut = 0
        self.server: asyncio.Server | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread()

    def start(self) -> int:
        """Serves from a thread and event loop of its own: the audit log's connection is
        closed from a blocking call of the test's loop, which must not hold the proxy."""
        started: list[int] = []
        ready = threading.Event()

        async def serve() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            started.append(int(self.server.sockets[0].getsockname()[1]))
            ready.set()

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        ready.wait(10)
        return started[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        committing = asyncio.Event()

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if self.armed and b"COMMIT" in data:
                    self.armed = False
                    committing.set()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()  # either side's end ends both

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                if committing.is_set():  # the COMMIT's answer: cut instead
                    self.cut += 1
                    writer.transport.abort()
                    up_writer.close()
                    return
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(OSError, ConnectionError):
            await asyncio.gather(client_to_server(), server_to_client())
        writer.close()
        up_writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def test_a_commit_whose_answer_was_lost_is_settled_as_stored(
    pg_config: MemoryConfig,
    fresh_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group commit's COMMIT reaches the server, which commits, and the connection is cut
    before its answer: the writes' audit lines are in the table, so every caller hears
    its write was stored (not "unknown"), and each is stored once."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", _master_key())
    parts = urlsplit(fresh_url)
    proxy = _CommitReplyCutter(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = proxy.start()
    via = urlunsplit((parts.scheme, f"{parts.username}@127.0.0.1:{port}", parts.path, "", ""))
    config = pg_config.model_copy(update={"database_url": via})
    try:
        async with AsyncUnifiedMemory("agent", config, access_tier="STEWARD") as mem:
            await mem.persist_pattern("warm", "note", classification="PUBLIC")
            proxy.armed = True
            texts = [f"cut {n}" for n in range(16)]
            results = await asyncio.gather(
                *(mem.persist_pattern(t, "note", classification="PUBLIC") for t in texts),
                return_exceptions=True,
            )
            assert proxy.cut == 1
            assert [type(r) for r in results] == [dict] * 16, results
            logger = mem.pipeline.audit_logger
            assert (await asyncio.to_thread(logger.verify)).ok
    finally:
        proxy.close()
    stored = await _rows(fresh_url, "SELECT pattern_id FROM patterns")
    assert {str(r[0]) for r in stored} >= {r["pattern_id"] for r in results if isinstance(r, dict)}
    assert len(stored) == 17


async def test_a_commit_the_server_refused_as_its_session_ended_is_run_again(
    pg_config: MemoryConfig,
    fresh_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session ends *during* the COMMIT (a deferred trigger ends it there, once): the
    server rolled the transaction back, and the audit table shows it (its last line is
    not there), so the batch is run again on a new connection and every write is stored,
    once; the chain verifies."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", _master_key())
    async with AsyncUnifiedMemory("agent", pg_config, access_tier="STEWARD") as mem:
        await mem.persist_pattern("warm", "note", classification="PUBLIC")
        conn = await asyncpg.connect(fresh_url)
        try:
            await conn.execute("CREATE SEQUENCE end_once")
            await end_own_session(
                conn,
                "end_at_commit",
                "nextval('end_once') = 1",
                "CREATE CONSTRAINT TRIGGER end_at_commit AFTER INSERT ON patterns "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW",
            )
            texts = [f"cut {n}" for n in range(16)]
            results = await asyncio.gather(
                *(mem.persist_pattern(t, "note", classification="PUBLIC") for t in texts),
                return_exceptions=True,
            )
            assert await conn.fetchval("SELECT last_value FROM end_once") > 1
        finally:
            await conn.close()
        assert [type(r) for r in results] == [dict] * 16, results
        logger = mem.pipeline.audit_logger
        assert (await asyncio.to_thread(logger.verify)).ok
    stored = await _rows(fresh_url, "SELECT pattern_id FROM patterns")
    assert len(stored) == 17
