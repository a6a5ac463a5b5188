"""The blocking facade's resources (per-thread loops and their connections) and the
sharing idiom of the seed (``EmpathyOS(short_term_memory=other.short_term_memory)``)."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from waiting import await_until

from attune import AsyncEmpathyOS, EmpathyOS, ValidationError
from attune._runner import run_sync
from attune.memory import AsyncUnifiedMemory, MemoryConfig, RedisShortTermMemory, UnifiedMemory
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
from attune.memory.security.pipeline import SecurityPipeline

# -- item 12: the sharing idiom ------------------------------------------------------------------


def _deprecated_short_term(agent: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return agent.short_term_memory


def test_sharing_idiom_of_the_seed(config: MemoryConfig) -> None:
    with EmpathyOS("a", config=config) as a:
        with EmpathyOS("b", config=config, short_term_memory=_deprecated_short_term(a)) as b:
            assert b.memory.async_memory.short_term is a.memory.async_memory.short_term
            a.stash("k", {"from": "a"})
            assert b.retrieve("k") is None  # b's own namespace
            assert b.memory.retrieve("k", agent_id="a") == {"from": "a"}
            staged = b.memory.stage_pattern({"content": "Shared staging works"}, "misc")
            assert staged in [p["pattern_id"] for p in a.memory.get_staged_patterns()]
        # b borrowed the store: closing b leaves a working
        assert a.retrieve("k") == {"from": "a"}


@pytest.mark.parametrize("kind", ["EmpathyOS", "UnifiedMemory", "AsyncEmpathyOS", "AsyncUnified"])
def test_every_wrapper_shares_its_store(mock_config: MemoryConfig, kind: str) -> None:
    a = EmpathyOS("a", config=mock_config)
    store = a.memory.async_memory.short_term
    source: Any = {
        "EmpathyOS": a,
        "UnifiedMemory": a.memory,
        "AsyncEmpathyOS": a.async_os,
        "AsyncUnified": a.memory.async_memory,
    }[kind]
    b = EmpathyOS("b", config=mock_config, short_term_memory=source)
    c = AsyncEmpathyOS("c", config=mock_config, short_term_memory=source)
    d = UnifiedMemory("d", mock_config, short_term=source)
    e = AsyncUnifiedMemory("e", mock_config, short_term=source)
    for agent in (b.memory.async_memory, c.memory, d.async_memory, e):
        assert agent.short_term is store
    b.close()
    d.close()
    a.close()


def test_long_term_can_be_shared_too(mock_config: MemoryConfig) -> None:
    a = UnifiedMemory("a", mock_config)
    b = AsyncUnifiedMemory("b", mock_config, long_term=a, short_term=a.async_memory)
    assert b.long_term is a.async_memory.long_term
    assert b.short_term is a.async_memory.short_term
    a.close()


@pytest.mark.parametrize("bad", [object(), "redis://localhost", {"stash": 1}, 42])
def test_a_non_store_is_refused_at_construction(mock_config: MemoryConfig, bad: Any) -> None:
    for make in (
        lambda: EmpathyOS("b", config=mock_config, short_term_memory=bad),
        lambda: AsyncEmpathyOS("b", config=mock_config, short_term_memory=bad),
        lambda: UnifiedMemory("b", mock_config, short_term=bad),
        lambda: AsyncUnifiedMemory("b", mock_config, short_term=bad),
    ):
        with pytest.raises(ValidationError, match="ShortTermStore") as info:
            make()
        assert "UnifiedMemory" in str(info.value) and "EmpathyOS" in str(info.value)
    with pytest.raises(ValidationError, match="LongTermStore"):
        AsyncUnifiedMemory("b", mock_config, long_term=bad)
    with pytest.raises(ValidationError, match="LongTermStore"):
        UnifiedMemory("b", mock_config, long_term=bad)


def test_a_store_of_the_other_tier_is_refused(mock_config: MemoryConfig) -> None:
    sqlite = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    with pytest.raises(ValidationError, match="ShortTermStore"):
        AsyncUnifiedMemory("b", mock_config, short_term=sqlite)  # type: ignore[arg-type]
    redis_store = RedisShortTermMemory(mock_config)
    with pytest.raises(ValidationError, match="LongTermStore"):
        AsyncUnifiedMemory("b", mock_config, long_term=redis_store)  # type: ignore[arg-type]


def test_facade_takes_long_term_and_pipeline_like_the_core(mock_config: MemoryConfig) -> None:
    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())
    pipeline = SecurityPipeline(mock_config)
    with UnifiedMemory("a", mock_config, long_term=store, pipeline=pipeline) as mem:
        assert mem.async_memory.long_term is store
        assert mem.async_memory.pipeline is pipeline
        stored = mem.persist_pattern("Facade mirrors the core", "misc")
        assert mem.recall_pattern(stored["pattern_id"]) is not None
    # a store passed in is the caller's: the facade does not close it
    with UnifiedMemory("b", mock_config, long_term=store) as other:
        assert other.recall_pattern(stored["pattern_id"]) is not None
    run_sync(store.aclose())


# -- item 11: resources of the blocking facade ---------------------------------------------------


def _sqlite_threads() -> list[threading.Thread]:
    """aiosqlite's connection threads (0.20: the connection is the thread; later: a worker)."""
    return [
        t
        for t in threading.enumerate()
        if isinstance(t, aiosqlite.Connection) or "_connection_worker_thread" in t.name
    ]


def _fds(path: Path | None = None) -> int:
    """Open file descriptors of this process (those open on ``path`` only, if given)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        count += path is None or target == str(path)
    return count


def _entries(mem: UnifiedMemory) -> int:
    """Per-loop resources held (private on purpose: leaks of internals are the subject)."""
    core = mem.async_memory
    return len(core.long_term._conns) + len(core.short_term._clients)  # type: ignore[attr-defined]


def _use(mem: UnifiedMemory, i: int) -> str:
    mem.stash(f"k{i}", i)
    stored = mem.persist_pattern(f"Pattern number {i}", "misc")
    recalled = mem.recall_pattern(stored["pattern_id"])
    assert recalled is not None and recalled["content"] == f"Pattern number {i}"
    return str(stored["pattern_id"])


@pytest.mark.parametrize("concurrent", [False, True], ids=["one_after_another", "together"])
def test_threads_that_ended_release_their_resources(config: MemoryConfig, concurrent: bool) -> None:
    before = len(_sqlite_threads())
    mem = UnifiedMemory("agent", config)
    db_file = mem.async_memory.long_term.path  # type: ignore[attr-defined]
    ids = [_use(mem, 0)]  # the baseline: one thread (this one) has used the facade
    gc.collect()
    threads0, fds0, entries0 = len(_sqlite_threads()), _fds(), _entries(mem)
    db_fds0 = _fds(db_file)
    active0 = threading.active_count()
    assert threads0 == before + 1 and entries0 == 2

    workers = [threading.Thread(target=lambda i=i: ids.append(_use(mem, i))) for i in range(1, 21)]
    for t in workers:
        t.start()
        if not concurrent:
            t.join()
    for t in workers:
        t.join()
    gc.collect()

    assert len(ids) == 21
    assert len(_sqlite_threads()) == threads0
    assert _entries(mem) == entries0
    assert threading.active_count() == active0
    # SQLite keeps the descriptor of a closed connection open while another connection of
    # the process holds a lock on the file (closing it would drop that lock), and hands it
    # to the next connection it opens: a few, at most one per connection open at once, all
    # closed with the last connection (below). Everything else is back to the baseline.
    assert _fds() - _fds(db_file) <= fds0 - db_fds0 + 2
    assert _fds(db_file) <= db_fds0 + (20 if concurrent else 5)
    # Nothing written by the threads was lost when their connections closed, and their
    # connections settled their audit outbox as close() does: the log has the events.
    logged = mem.async_memory.pipeline.audit_logger.query(event_type="pattern.store")
    assert sorted(e["target_id"] for e in logged) == sorted(ids)
    assert all(mem.recall_pattern(pattern_id) is not None for pattern_id in ids)
    assert all(mem.retrieve(f"k{i}") == i for i in range(21))
    mem.close()
    assert len(_sqlite_threads()) == before
    assert _fds(db_file) == 0


def _connected(pool: Any) -> int:
    """Connected connections of a redis-py pool (its private lists: no public count)."""
    conns = [*pool._available_connections, *pool._in_use_connections]
    return sum(1 for c in conns if c.is_connected)


def test_close_inside_async_def_after_awaiting_the_core(config: MemoryConfig) -> None:
    mem = UnifiedMemory("agent", config)
    core = mem.async_memory
    threads0 = len(_sqlite_threads())

    async def main() -> tuple[float, str, Any]:
        await core.stash("k", 1)
        stored = await core.persist_pattern("Closing never stalls", "misc")
        # Private on purpose: whether the stores' own connections closed is the subject.
        db = core.long_term._conns.peek().db  # type: ignore[attr-defined]
        pool = core.short_term._clients.peek().redis.connection_pool  # type: ignore[attr-defined]
        real = core.short_term.backend == "redis"  # the stand-in never disconnects
        assert not real or _connected(pool) > 0
        started = time.monotonic()
        mem.close()
        elapsed = time.monotonic() - started
        assert db._connection is None  # closed by the time close() returned
        assert len(_sqlite_threads()) == threads0
        # This loop's Redis client closes once the loop runs again.
        await await_until(lambda: not real or _connected(pool) == 0, "the Redis client closing")
        return elapsed, str(stored["pattern_id"]), db

    elapsed, pattern_id, _db = asyncio.run(main())
    assert elapsed < 1.0
    assert _entries(mem) == 0
    with UnifiedMemory("agent", config) as again:
        assert again.recall_pattern(pattern_id) is not None
        assert again.retrieve("k") == 1


def test_close_inside_async_def_after_blocking_calls(config: MemoryConfig) -> None:
    """The blocking calls ran on the portal; close() from the same loop closes them there."""
    mem = UnifiedMemory("agent", config)

    async def main() -> float:
        _use(mem, 1)
        core = mem.async_memory
        await core.stash("own_loop", 1)
        # Private on purpose: whether this loop's own client closed is what is waited for.
        pool = core.short_term._clients.peek().redis.connection_pool  # type: ignore[attr-defined]
        real = core.short_term.backend == "redis"  # the stand-in never disconnects
        started = time.monotonic()
        mem.close()
        elapsed = time.monotonic() - started
        # This loop's Redis client closes once the loop runs again.
        await await_until(lambda: not real or _connected(pool) == 0, "the Redis client closing")
        return elapsed

    assert asyncio.run(main()) < 1.0
    assert _entries(mem) == 0


def test_close_from_a_plain_thread_with_other_threads_idle(config: MemoryConfig) -> None:
    """Threads that used the facade and still live (a pool): close() does not wait on them."""
    before = len(_sqlite_threads())
    mem = UnifiedMemory("agent", config)
    # Private on purpose: every thread's client pool, to see each one closed.
    clients = mem.async_memory.short_term._clients  # type: ignore[attr-defined]
    real = mem.async_memory.short_term.backend == "redis"  # the stand-in never disconnects
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: _use(mem, i), range(8)))
        pools = [fut.result().redis.connection_pool for fut in clients._items.values()]
        assert not real or all(_connected(p) > 0 for p in pools)
        started = time.monotonic()
        mem.close()
        assert time.monotonic() - started < 1.0
        assert _entries(mem) == 0
        assert len(_sqlite_threads()) == before
        # The pool's threads live on, idle: their loops were run to close their clients.
        assert not real or all(_connected(p) == 0 for p in pools)
        assert list(pool.map(lambda _: threading.current_thread().name, range(8)))  # usable


_FORGETFUL_SCRIPT = """
import sys, threading
from attune import EmpathyOS
from attune.memory import MemoryConfig, UnifiedMemory
config = MemoryConfig(redis_mock=True, storage_dir=sys.argv[1])
agent = EmpathyOS(user_id="script", config=config)
mem = UnifiedMemory("script", config)
ids = [agent.persist_pattern("Written by the main thread", "misc")["pattern_id"]]
assert agent.recall_pattern(ids[0]) is not None
worker = threading.Thread(
    target=lambda: ids.append(mem.persist_pattern("Written by a worker", "misc")["pattern_id"])
)
worker.start()
worker.join()
def also():
    ids.append(agent.persist_pattern("Also", "misc")["pattern_id"])
other = threading.Thread(target=also)
other.start()
other.join()
ids.append(mem.persist_pattern("Written last", "misc")["pattern_id"])
print(" ".join(ids))
# no close(): the interpreter must still exit
"""


def test_a_script_that_forgets_close_exits(tmp_path: Path) -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", _FORGETFUL_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert time.monotonic() - started < 15
    assert "Traceback" not in out.stderr, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 4
    # The audit writer was flushed at exit (before anything here reopens the store).
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert sum('"event":"pattern.store"' in line for line in lines) == 4
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path)
    with UnifiedMemory("script", config) as mem:
        assert all(mem.recall_pattern(pattern_id) is not None for pattern_id in ids)


def test_an_aiosqlite_without_the_internals_the_store_drives_is_refused() -> None:
    from attune.errors import LongTermUnavailableError
    from attune.memory.long_term.aiosqlite_compat import check_api

    class Lacking:  # no worker thread: a forgotten close() could not be made to exit
        async def _execute(self, *args: Any) -> None: ...

    with pytest.raises(LongTermUnavailableError, match="pyproject"):
        check_api(Lacking())  # type: ignore[arg-type]


def test_connections_of_closed_loops_are_released_by_the_next_loop(config: MemoryConfig) -> None:
    """``asyncio.run`` per call (or a test framework's loop per test): a loop that was closed
    cannot close its own connections; the next loop that uses the store releases them."""
    before = len(_sqlite_threads())
    core = AsyncUnifiedMemory("agent", config)
    ids = [
        asyncio.run(core.persist_pattern(f"Run number {i}", "misc"))["pattern_id"] for i in range(6)
    ]
    assert len(_sqlite_threads()) == before + 1  # the last loop's
    assert len(core.long_term._conns) == 1  # type: ignore[attr-defined]

    async def last() -> None:
        for pattern_id in ids:
            assert await core.recall_pattern(pattern_id) is not None
        await core.aclose()

    asyncio.run(last())
    assert len(_sqlite_threads()) == before


def test_blocking_calls_and_close_from_the_portal_itself(config: MemoryConfig) -> None:
    """Code running on the portal (say, a callback of attune's own) that calls the blocking
    API: the portal cannot wait on itself, so the call runs on a thread of its own."""
    from attune import _runner  # the portal loop is internal: no public handle, by design

    before = len(_sqlite_threads())
    mem = UnifiedMemory("agent", config)

    async def on_portal() -> object:
        mem.stash("p", 1)
        value = mem.retrieve("p")
        started = time.monotonic()
        mem.close()
        assert time.monotonic() - started < 1.0
        return value

    async def main() -> object:
        _use(mem, 1)  # blocking calls inside a loop: they run on the portal
        portal = asyncio.run_coroutine_threadsafe(on_portal(), _runner._portal())
        return await asyncio.wait_for(asyncio.wrap_future(portal), 10)

    assert asyncio.run(main()) == 1
    assert _entries(mem) == 0
    assert len(_sqlite_threads()) == before


# -- a loop closed while its job was queued never takes the connection's thread with it -----------


def test_a_job_whose_loop_closed_leaves_the_connection_usable(tmp_path: Path) -> None:
    """A thread's loop closed while a job it queued was still running (a facade thread
    that ended, an ``asyncio.run`` that returned): aiosqlite's own hand-back raised in the
    connection's thread, which died, and every later call on the connection (its close
    from another thread's ``close()`` included) waited forever. The job now hands its
    result back itself and drops it: the thread lives, the connection keeps working."""
    from attune.memory.long_term import aiosqlite_compat

    first = asyncio.new_event_loop()
    db = first.run_until_complete(aiosqlite_compat.connect(tmp_path / "x.db", busy_timeout_s=1))
    started = threading.Event()

    def slow(conn: Any) -> int:
        started.set()
        time.sleep(0.2)
        return 1

    async def queue_and_leave() -> None:
        aiosqlite_compat.start(db, slow)

    first.run_until_complete(queue_and_leave())
    assert started.wait(5)
    first.close()  # while the job still runs: its result has nowhere to go
    time.sleep(0.3)
    thread = aiosqlite_compat.worker_thread(db)
    assert thread is not None and thread.is_alive()

    async def use_and_close() -> int:
        def one(conn: Any) -> int:
            return int(conn.execute("SELECT 1").fetchone()[0])

        value = await asyncio.wait_for(aiosqlite_compat.in_thread(db, one), 5)
        await asyncio.wait_for(aiosqlite_compat.close(db), 5)
        return value

    assert asyncio.run(use_and_close()) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_closing_a_connection_whose_thread_died_returns(tmp_path: Path) -> None:
    """Should a connection's thread die all the same (aiosqlite's own hand-back to a closed
    loop), closing it returns instead of waiting forever, and the connection is closed."""
    from attune.errors import LongTermUnavailableError
    from attune.memory.long_term import aiosqlite_compat

    async def open_it() -> aiosqlite.Connection:
        return await aiosqlite_compat.connect(tmp_path / "x.db", busy_timeout_s=1)

    db = asyncio.run(open_it())
    gone = asyncio.new_event_loop()
    orphan = gone.create_future()
    gone.close()
    db._tx.put_nowait((orphan, lambda: None))  # as aiosqlite queues: its hand-back kills it
    thread = aiosqlite_compat.worker_thread(db)
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive()

    async def close_it() -> None:
        await asyncio.wait_for(aiosqlite_compat.close(db), 5)
        with pytest.raises(LongTermUnavailableError, match="closed"):
            await aiosqlite_compat.in_thread(db, lambda conn: None)

    asyncio.run(close_it())


# -- fork ------------------------------------------------------------------------------------------


def _in_forked_child(agent: EmpathyOS, results: Any) -> None:
    try:
        stored = agent.persist_pattern("Written by the forked child", "fork")
        agent.stash("child-key", {"from": "child"})
        results.put(
            (
                stored is not None and agent.recall_pattern(stored["pattern_id"]) is not None,
                agent.retrieve("child-key"),
            )
        )
    except BaseException as exc:  # the parent reports it
        results.put(("failed", repr(exc)))
    finally:
        agent.close()


def test_an_agent_made_before_fork_works_in_the_child_and_the_parent(
    config: MemoryConfig,
) -> None:
    """``multiprocessing``'s default start method on Linux forks: a child that used an
    agent its parent made hung forever on its first long-term call (the connection's
    thread is not in the child) and reused the parent's loop and Redis socket. The child
    now opens connections of its own; the parent's are untouched."""
    import multiprocessing

    with EmpathyOS("parent", config=config) as agent:
        assert agent.persist_pattern("Written by the parent", "fork") is not None
        agent.stash("parent-key", 1)
        with ThreadPoolExecutor(3) as pool:  # other threads' loops, made and kept
            assert all(pool.map(lambda n: agent.retrieve("parent-key") == 1, range(3)))
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_in_forked_child, args=(agent, results))
        child.start()
        child.join(60)
        assert child.exitcode == 0, "the child hung or failed"
        assert results.get(timeout=5) == (True, {"from": "child"})
        # The parent goes on with its own connections.
        assert agent.retrieve("parent-key") == 1
        assert agent.persist_pattern("Written by the parent again", "fork") is not None
        assert agent.count_patterns(pattern_type="fork") >= 2
