"""Where a sequential persist / recall spends its wall-clock time, thread by thread.

    .venv/bin/pip install py-spy          # or: pip install -e '.[profile]'
    .venv/bin/python benchmarks/profile_ops.py [--ops N] [--rate HZ] [workload ...]
    nox -s profile

Each workload runs in a child process. Once its setup is done (a store filled for a
recall, connections warm), ``py-spy record --idle --threads`` attaches to it and samples
every thread, idle or not, while it runs ``--ops`` operations. The summary gives, per
thread, the share of samples at each leaf line, with its source: the event loop's time
waiting in ``epoll`` is the time spent awaiting the store's thread; the store thread's
``COMMIT`` and the audit log's ``fsync`` are the two disk flushes of a persist.

Workloads: ``persist-public``, ``persist-sensitive``, ``recall``, the raw baselines of
``benchmarks/run.py`` (``raw-insert``, ``raw-select``) and ``persist-sensitive-64``
(64 concurrent callers). py-spy's speedscope files (open them at speedscope.app) and the
summaries go to ``benchmarks/results/profiles/`` (``--output``). Profiles are for reading, not for
judging: ratios come from ``benchmarks/run.py``. Needs ptrace rights (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import linecache
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import PUBLIC_TEXT, SENSITIVE_TEXT, TASKS
from workloads import open_raw_sqlite, raw_sqlite_insert, raw_sqlite_select

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
from attune.memory.security.pipeline import close_shared

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "profiles"
WORKLOADS = (
    "persist-public",
    "persist-sensitive",
    "raw-insert",
    "recall",
    "raw-select",
    "persist-sensitive-64",
)


# -- the child: one workload, started when the parent says so --------------------------------


async def _prepare(name: str, scratch: Path, ops: int) -> tuple[Callable[[], Awaitable[None]], int]:
    """Set up ``name``; return the coroutine function that runs its operations, and how
    many it runs (``ops``, rounded down to a multiple of the callers)."""
    if name.startswith("raw-"):
        db = await open_raw_sqlite(scratch / "raw.db")
        ids: list[str] = []
        insert = raw_sqlite_insert(db, PUBLIC_TEXT.encode(), ids)
        for i in range(ops if name == "raw-select" else 50):
            await insert(i)
        op = insert if name == "raw-insert" else raw_sqlite_select(db, ids)

        async def run_raw() -> None:
            for i in range(ops):
                await op(i)
            await db.close()

        return run_raw, ops

    memory = AsyncUnifiedMemory("profiler", MemoryConfig(storage_dir=scratch / "attune"))
    label = "PUBLIC" if name in ("persist-public", "recall") else "SENSITIVE"
    text = PUBLIC_TEXT if label == "PUBLIC" else SENSITIVE_TEXT

    async def persist(count: int) -> list[str]:
        made = []
        for _ in range(count):
            result = await memory.persist_pattern(text, "best_practice", classification=label)
            made.append(result["pattern_id"])
        return made

    if name == "recall":
        stored = await persist(min(ops, 2_000))

        async def run_recall() -> None:
            for i in range(ops):
                if await memory.recall_pattern(stored[i % len(stored)]) is None:
                    raise RuntimeError("a persisted pattern was not recalled")
            await memory.aclose()

        return run_recall, ops
    await persist(50)  # warm: connections, key ring, audit writer
    tasks = TASKS if name.endswith("-64") else 1

    async def run_persist() -> None:
        await asyncio.gather(*(persist(ops // tasks) for _ in range(tasks)))
        await memory.aclose()

    return run_persist, ops // tasks * tasks


async def _measured_run(run: Callable[[], Awaitable[None]], ops: int) -> float:
    """The operations (the summary counts only ticks inside this frame); returns ops/s."""
    start = time.perf_counter()
    await run()
    return ops / (time.perf_counter() - start)


async def _child(name: str, ops: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="attune-profile-"))
    try:
        run, count = await _prepare(name, scratch, ops)
        print("READY", flush=True)
        sys.stdin.readline()  # the profiler is attached
        print(f"{await _measured_run(run, count):.0f}", flush=True)
    finally:
        close_shared()
        shutil.rmtree(scratch, ignore_errors=True)


# -- the parent: attach py-spy, summarise --------------------------------------------------------


def _py_spy() -> str | None:
    """py-spy next to this interpreter (an unactivated venv), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def _profile(spy_path: str, name: str, ops: int, rate: int, output: Path) -> str:
    raw = output / f"{name}.speedscope.json"
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", name, "--ops", str(ops)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    spy: subprocess.Popen[str] | None = None
    try:
        if child.stdout.readline().strip() != "READY":
            raise RuntimeError(f"the {name} workload failed during its setup")
        command = [spy_path, "record", "--idle", "--threads", "--rate", str(rate)]
        command += ["--format", "speedscope", "--output", str(raw), "--pid", str(child.pid)]
        spy = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # py-spy attaches
        child.stdin.write("\n")
        child.stdin.flush()
        throughput = child.stdout.readline().strip()
        if child.wait() != 0:
            raise RuntimeError(f"the {name} workload failed")
        _out, err = spy.communicate(timeout=60)
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed on {name}: {err.strip()[-300:]}")
    finally:
        for process in (child, spy):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    summary = f"## {name}: {throughput} ops/s while sampled at {rate} Hz\n{summarise(raw)}"
    (output / f"{name}.summary.txt").write_text(summary)
    return summary


def _thread_of(name: str) -> str | None:
    """Which thread a py-spy profile is, from its name (``Thread 123 "MainThread"``)."""
    if "_connection_worker_thread" in name:
        return "SQLite thread (aiosqlite)"
    if "attune-audit-writer" in name:
        return "audit writer thread"
    if '"MainThread"' in name:
        return "event loop"
    return None


def summarise(speedscope: Path, top: int = 8) -> str:
    """Per thread, the share of samples at each leaf line (with its source), counting only
    the ticks while the event loop ran the measured operations."""
    data = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]
    threads: dict[str, list[list[int]]] = {}
    for profile in data["profiles"]:
        thread = _thread_of(profile["name"])
        if thread is not None:
            threads[thread] = profile["samples"]
    loop = threads.get("event loop", [])
    measured = [i for i, stack in enumerate(loop) if _measured(frames, stack)]
    if not measured:
        return "no sample fell inside the measured run: raise --ops or --rate\n"
    first, last = measured[0], measured[-1]  # py-spy samples every thread on each tick
    lines = []
    for thread, samples in sorted(threads.items()):
        counter: collections.Counter[str] = collections.Counter()
        for stack in samples[first : last + 1]:
            leaf = frames[stack[-1]] if stack else {"name": "?", "file": "", "line": 0}
            where = f"{leaf['name']} ({Path(leaf['file']).name}:{leaf['line']})"
            source = linecache.getline(leaf["file"], leaf["line"] or 0).strip()
            counter[f"{where:<56} {source}"] += 1
        total = sum(counter.values())
        lines.append(f"{thread}: {total} samples")
        for leaf_text, count in counter.most_common(top):
            lines.append(f"  {100 * count / total:5.1f}%  {leaf_text}")
    return "\n".join(lines) + "\n"


def _measured(frames: list[dict[str, Any]], stack: list[int]) -> bool:
    """A tick of the run: the event loop inside a workload's operations (their closures
    are defined in ``_prepare``; concurrent callers run as tasks of their own)."""
    return any(frames[i]["name"].startswith(("_measured_run", "_prepare.<locals>")) for i in stack)


# -- hand-off latency per connection ------------------------------------------------------------


async def hop_latencies(
    connections: int = 4, ops: int = 10_000, tmp_dir: Path | None = None, *, one_cpu: bool = False
) -> list[float]:
    """Median µs of a point select through each of several identical stores on one file,
    used in turn operation by operation (so machine noise hits them alike).

    On the 2-core VMs here the medians come out bimodal, about 45-60 or about 90-110 µs, and
    each store keeps its draw for its life: the thread hand-off, not SQL, decides a
    sequential figure's baseline-relative speed by up to a third. ``one_cpu=True`` runs the
    event loop and every store's thread on one CPU (threads inherit the affinity of the
    thread that starts them): then every store is fast, which shows the draw is a wake-up
    across CPUs.
    """
    scratch = Path(tempfile.mkdtemp(prefix="attune-hops-", dir=tmp_dir))
    affinity = os.sched_getaffinity(0) if one_cpu else None
    try:
        if affinity is not None:
            os.sched_setaffinity(0, {min(affinity)})
        memory = AsyncUnifiedMemory("profiler", MemoryConfig(storage_dir=scratch))
        ids = []
        for _ in range(500):
            result = await memory.persist_pattern(PUBLIC_TEXT, "best_practice")
            ids.append(result["pattern_id"])
        await memory.aclose()
        stores = [SQLiteLongTermStore(scratch) for _ in range(connections)]
        samples: list[list[float]] = [[] for _ in stores]
        order = list(range(connections))
        for i in range(ops):
            random.shuffle(order)
            for j in order:
                start = time.perf_counter()
                if await stores[j].get(ids[i % len(ids)], 0) is None:
                    raise RuntimeError("a persisted pattern was not found")
                samples[j].append(time.perf_counter() - start)
        for store in stores:
            await store.aclose()
        warm = ops // 10
        return [statistics.median(s[warm:]) * 1e6 for s in samples]
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
        close_shared()
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help=f"any of {', '.join(WORKLOADS)} (all)")
    parser.add_argument("--ops", type=int, default=3_000)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--hops",
        action="store_true",
        help="instead: median select latency through 4 identical connections, free and on "
        "one CPU (no py-spy)",
    )
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hops:
        for label, one_cpu in (("free to move", False), ("all on one CPU", True)):
            medians = asyncio.run(hop_latencies(one_cpu=one_cpu))
            shown = " ".join(f"{m:.1f}" for m in medians)
            print(f"median µs per point select, one store each, threads {label}: {shown}")
        return 0
    if args.child:
        asyncio.run(_child(args.child, args.ops))
        return 0
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    spy = _py_spy()
    if spy is None:
        print("py-spy is not installed: pip install -e '.[profile]'", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    for name in args.workloads or WORKLOADS:
        print(_profile(spy, name, args.ops, args.rate, args.output), flush=True)
    print(f"py-spy speedscope files and summaries: {args.output}")
    return 0


if __name__ == "__main__":
    os.environ.pop("REDIS_URL", None)  # long-term workloads only: the embedded default
    raise SystemExit(main())
