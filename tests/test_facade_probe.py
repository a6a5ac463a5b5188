"""The blocking facade as scripts, notebooks and web handlers hit it: a blocking call
interrupted in its calling thread (Ctrl-C, an exception raised by a signal handler) ends
settled -- carried out or not at all, never left pending to run on later -- and the
object stays usable.

Each case runs in a process of its own: it sends a signal to itself."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import aiosqlite
import pytest
from waiting import wait_until

from attune._loop_local import LoopLocal
from attune._runner import run_sync
from attune.memory import MemoryConfig, UnifiedMemory

#: A blocking ``stash("k", 1)`` whose short-term write waits 0.3 s before it is sent; the
#: signal named by argv[2] reaches the calling thread meanwhile. Prints what followed.
_INTERRUPTED = """
import asyncio, json, os, signal, sys, threading, time
from attune._loop_local import LoopLocal
from attune._runner import run_sync
from attune.memory import MemoryConfig, UnifiedMemory

storage, how = sys.argv[1], sys.argv[2]
mem = UnifiedMemory("agent", MemoryConfig(redis_mock=True, storage_dir=storage))
mem.stash("k", 0)
real_stash = mem.async_memory.short_term.stash
sent = threading.Event()
applied = []

async def slow_stash(*args, **kwargs):
    sent.set()
    await asyncio.sleep(0.3)
    result = await real_stash(*args, **kwargs)
    applied.append(args[1])
    return result

mem.async_memory.short_term.stash = slow_stash

class Alarm(Exception):
    pass

def on_alarm(signum, frame):
    raise Alarm

signal.signal(signal.SIGALRM, on_alarm)
number = signal.SIGALRM if how == "alarm" else signal.SIGINT
threading.Thread(target=lambda: (sent.wait(), os.kill(os.getpid(), number))).start()

def call():
    try:
        mem.stash("k", 1)
        return "returned"
    except (KeyboardInterrupt, Alarm) as exc:
        return type(exc).__name__

if how == "inside_a_loop":  # a loop that leaves SIGINT to Python's default handler
    async def main():
        return call()
    loop = asyncio.new_event_loop()
    raised = loop.run_until_complete(main())
    loop.close()
else:
    raised = call()
time.sleep(0.6)  # past the moment the write would have been sent
mem.stash("other", 2)  # the thread's next call: an interrupted one must not run on in it
time.sleep(0.1)
print(json.dumps({
    "raised": raised,
    "value": mem.retrieve("k"),
    "applied": applied,
    "default_handler": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "usable": mem.retrieve("other"),
}))
mem.close()
"""


#: Python's development mode, with every ResourceWarning an error.
_DEV_MODE = ("-X", "dev", "-W", "error::ResourceWarning")


@pytest.mark.parametrize(
    ("how", "raised"),
    [("ctrl_c", "KeyboardInterrupt"), ("inside_a_loop", "KeyboardInterrupt"), ("alarm", "Alarm")],
)
def test_an_interrupted_blocking_call_is_settled_not_left_to_run_on(
    tmp_path: Path, how: str, raised: str
) -> None:
    """Ctrl-C on a script's main thread left the call pending on the thread's loop: it was
    carried out at the thread's next call, after the caller had been told it stopped.
    Inside a loop, the call ran on in the portal. The call is now cancelled as an awaitable
    is (a write not yet sent is dropped) and settled before the interruption is raised."""
    env = {**os.environ, "PYTHONASYNCIODEBUG": "1"}
    out = subprocess.run(
        [sys.executable, *_DEV_MODE, "-c", _INTERRUPTED, str(tmp_path), how],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {
        "raised": raised,
        "value": 0,  # not written: the caller was told the call stopped
        "applied": ["other"],  # the interrupted write was never sent
        "default_handler": True,  # Python's own SIGINT handler is back
        "usable": 2,
    }
    for noise in ("Task was destroyed", "never awaited", "ResourceWarning", "Traceback"):
        assert noise not in out.stderr, out.stderr


# -- objects never closed ------------------------------------------------------------------------


def _sqlite_threads() -> int:
    """aiosqlite's connection threads alive (0.20: the connection is the thread; later: a
    worker named after its function)."""
    return sum(
        isinstance(t, aiosqlite.Connection) or "_connection_worker_thread" in t.name
        for t in threading.enumerate()
    )


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _forget(config: MemoryConfig, n: int) -> None:
    """An object used and dropped without close(), as a notebook cell run again does."""
    memory = UnifiedMemory("agent", config)
    memory.stash("k", n)
    memory.persist_pattern(f"Written by forgotten object {n}", "misc")


class _Resource:
    def __init__(self) -> None:
        self.closed_on: list[str] = []


async def _make() -> _Resource:
    return _Resource()


async def _close_here(resource: _Resource) -> None:
    resource.closed_on.append("its own loop")


async def _close_elsewhere(resource: _Resource) -> None:
    resource.closed_on.append("elsewhere")


@pytest.mark.parametrize("elsewhere", [True, False], ids=["close_elsewhere", "own_loop_only"])
@pytest.mark.parametrize("where", ["this_thread", "inside_a_loop"])
def test_a_loop_local_collected_with_resources_open_closes_them(
    where: str, elsewhere: bool
) -> None:
    """The per-loop resources of a store dropped without close() (its LoopLocal collected)
    were never closed: a SQLite connection kept its thread and file descriptors, a Redis
    client its socket, for as long as the loop that opened them lived (a script's main
    thread, the portal of a notebook). They are closed once it is collected: from anywhere
    if they can be, else on their own loop (run if idle, or when it next runs)."""
    local = LoopLocal(_make, _close_here, close_elsewhere=_close_elsewhere if elsewhere else None)

    async def use(local: LoopLocal[_Resource]) -> _Resource:
        return await local.get()

    if where == "inside_a_loop":

        async def main(local: LoopLocal[_Resource]) -> _Resource:
            return run_sync(use(local))  # a blocking call inside a loop: it runs on the portal

        resource = asyncio.run(main(local))
    else:
        resource = run_sync(use(local))  # this thread's own loop, idle afterwards
    del local
    gc.collect()
    wait_until(lambda: resource.closed_on, "the resource closing")
    assert resource.closed_on == ["elsewhere" if elsewhere else "its own loop"]


@pytest.mark.parametrize("where", ["this_thread", "inside_a_loop"])
def test_objects_collected_without_close_release_their_connections(
    config: MemoryConfig, where: str
) -> None:
    """A memory object collected without close() kept its SQLite connection (its thread and
    descriptors) for as long as the thread's loop (or the portal, for calls inside a
    running loop) lived: one thread and two descriptors more per object, for good, in a
    notebook whose cell makes a new one each run. They are closed now once the object is
    collected; what was written stays."""
    live = UnifiedMemory("agent", config)

    def use_live() -> object:  # the program goes on: its loops run their timers
        if where == "inside_a_loop":

            async def main() -> object:
                return live.retrieve("k")

            return asyncio.run(main())
        return live.retrieve("k")

    def forget(n: int) -> None:
        if where == "inside_a_loop":

            async def main() -> None:
                _forget(config, n)

            asyncio.run(main())
        else:
            _forget(config, n)

    forget(0)  # the baseline: this thread's loop, the portal, the audit writer exist
    use_live()
    gc.collect()
    threads0, fds0 = _sqlite_threads(), _fds()
    for n in range(1, 11):
        forget(n)

    def released() -> bool:
        use_live()
        gc.collect()
        return _sqlite_threads() <= threads0 and _fds() <= fds0 + 2

    wait_until(released, "the forgotten objects' connections closing", timeout=5)
    assert live.count_patterns(pattern_type="misc") == 11
    live.close()
