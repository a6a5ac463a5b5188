"""The blocking facade works from scripts, threads, and inside running event loops."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attune import AsyncEmpathyOS, EmpathyOS, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory


def test_plain_calls(config: MemoryConfig) -> None:
    with UnifiedMemory("agent_a", config) as mem:
        assert mem.stash("k", {"a": 1}) is True
        assert mem.retrieve("k") == {"a": 1}
        assert mem.ttl("k") is not None
        assert mem.forget("k") is True


def test_runs_on_the_calling_thread_without_a_hop(mock_config: MemoryConfig) -> None:
    seen: list[str] = []
    mem = UnifiedMemory("agent_a", mock_config)
    original = mem.async_memory.short_term.retrieve

    async def spy(agent_id: str, key: str) -> bytes | None:
        seen.append(threading.current_thread().name)
        return await original(agent_id, key)

    mem.async_memory.short_term.retrieve = spy  # type: ignore[method-assign]
    mem.retrieve("k")
    assert seen == [threading.current_thread().name]
    mem.close()


def test_many_threads(config: MemoryConfig) -> None:
    mem = UnifiedMemory("agent_a", config)

    def work(i: int) -> object:
        mem.stash(f"k{i}", i)
        return mem.retrieve(f"k{i}")

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(64))) == list(range(64))
    mem.close()


def test_inside_a_running_event_loop(config: MemoryConfig) -> None:
    """The documentation calls the blocking API inside ``async def`` under ``asyncio.run``."""

    async def main() -> object:
        agent = EmpathyOS(user_id="inside_loop", config=config)
        agent.stash("k", [1, 2, 3])
        value = agent.retrieve("k")
        result = agent.persist_pattern("Prefer explicit timeouts", "reliability")
        recalled = agent.recall_pattern(result["pattern_id"])
        agent.close()
        return value, recalled["content"] if recalled else None

    assert asyncio.run(main()) == ([1, 2, 3], "Prefer explicit timeouts")


def test_same_object_used_from_script_loop_and_async_code(config: MemoryConfig) -> None:
    """One async core shared by the sync facade and by code on two different loops."""
    core = AsyncUnifiedMemory("shared", config)
    facade = UnifiedMemory.wrap(core)
    facade.stash("a", 1)

    async def on_loop(n: int) -> object:
        await core.stash(f"from_loop_{n}", n)
        facade.stash(f"facade_in_loop_{n}", n)  # blocking call inside this loop
        return await core.retrieve("a")

    assert asyncio.run(on_loop(1)) == 1
    assert asyncio.run(on_loop(2)) == 1  # a new loop: no "attached to a different loop"
    assert facade.retrieve("from_loop_2") == 2
    assert facade.retrieve("facade_in_loop_1") == 1
    facade.close()


def test_an_agent_facade_wraps_an_async_agent(config: MemoryConfig) -> None:
    """EmpathyOS.wrap is UnifiedMemory.wrap's counterpart: one agent, two faces."""
    core = AsyncEmpathyOS("wrapped", config=config)
    agent = EmpathyOS.wrap(core)
    assert agent.async_os is core and agent.memory.async_memory is core.memory
    assert repr(agent) == repr(core).replace("AsyncEmpathyOS", "EmpathyOS", 1)
    agent.stash("k", 1)
    assert agent.memory.retrieve("k") == 1
    with pytest.raises(ValidationError, match=r"EmpathyOS\.wrap needs an AsyncEmpathyOS"):
        EmpathyOS.wrap(core.memory)  # type: ignore[arg-type]
    with pytest.raises(AttributeError, match="read-only"):
        agent.user_id = "other"  # type: ignore[misc]
    agent.close()


async def test_async_empathy_os(config: MemoryConfig) -> None:
    async with AsyncEmpathyOS(user_id="async_agent", config=config) as agent:
        await agent.stash("current_task", {"status": "analyzing"})
        assert await agent.retrieve("current_task") == {"status": "analyzing"}
        result = await agent.persist_pattern("Validate at boundaries", "security")
        pattern = await agent.recall_pattern(result["pattern_id"])
        assert pattern is not None and pattern["content"] == "Validate at boundaries"


def test_plain_script_process(tmp_path: Path) -> None:
    """A real script: import, use, exit cleanly (no hang from threads or loops left behind)."""
    script = textwrap.dedent(
        f"""
        from attune import EmpathyOS
        from attune.memory import MemoryConfig
        config = MemoryConfig(redis_mock=True, storage_dir={str(tmp_path)!r})
        agent = EmpathyOS(user_id="script", config=config)
        agent.stash("k", "v")
        assert agent.retrieve("k") == "v"
        print(agent.persist_pattern("Scripts work", "misc")["classification"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "PUBLIC"
    assert "Traceback" not in out.stderr


def test_an_error_from_a_blocking_call_chains_nothing_of_the_runner(
    mock_config: MemoryConfig,
) -> None:
    """The facade runs the call outside any ``except`` block of its own: an error raised by
    the call carries no ``__context__`` from the runner, whose traceback would hold the
    thread's event loop in a reference cycle (freed then by the garbage collector, in
    whatever thread it runs: once a store's thread inside a transaction, which deadlocked
    until the busy timeout)."""
    memory = UnifiedMemory("agent", mock_config)
    try:
        with pytest.raises(ValidationError) as caught:
            memory.recall_pattern("")
        assert caught.value.__context__ is None
    finally:
        memory.close()


def test_a_thread_that_ends_releases_its_loop_without_the_garbage_collector(
    mock_config: MemoryConfig,
) -> None:
    import gc

    from attune import _runner

    memory = UnifiedMemory("agent", mock_config)
    memory.persist_pattern("Warm up this thread's connections", "note")

    def use() -> None:
        memory.persist_pattern("Written from a thread of its own", "note")
        with pytest.raises(ValidationError):
            memory.recall_pattern("")  # an error on the way: no cycle either

    loops = {id(o) for o in gc.get_objects() if isinstance(o, _runner._ThreadLoop)}
    gc.disable()
    try:
        worker = threading.Thread(target=use)
        worker.start()
        worker.join()
        left = [
            o for o in gc.get_objects() if isinstance(o, _runner._ThreadLoop) and id(o) not in loops
        ]
        assert left == []  # freed by reference counting, in the thread, as it ended
    finally:
        gc.enable()
        memory.close()
