"""One transaction hand-off: aiosqlite's ``Connection._execute`` against a minimal own executor.

    .venv/bin/python benchmarks/sqlite_executor.py            # full run, prints a table
    .venv/bin/python benchmarks/sqlite_executor.py --quick    # a few iterations (smoke)

The SQLite store hands each transaction to its connection's thread in one hop
(:mod:`attune.memory.long_term.aiosqlite_compat`). This measures that hop, and what
the store would gain by replacing aiosqlite with its own single-thread executor: a
thread taking ``(future, fn, args)`` from a ``queue.SimpleQueue`` and answering with
``loop.call_soon_threadsafe``. Both run the same function on their own sqlite3
connection (a point ``SELECT`` on an in-memory table: the hop, not the disk, is timed).

Two shapes: sequential (one caller awaiting each hand-off) and 64 concurrent callers
(64 tasks, each awaiting its own hand-offs). The two executors alternate round by round
in the same run; each figure is the median over rounds of the per-hand-off time, and
the ratio is own / aiosqlite (below 1: the own executor is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from typing import Any

import aiosqlite

from attune.memory.long_term.aiosqlite_compat import in_thread

Runner = Callable[[Callable[..., Any]], Awaitable[Any]]


def _connect() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    _fill(db)
    return db


def _fill(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 40) for i in range(1000)])


def _work(db: sqlite3.Connection) -> Any:
    return db.execute("SELECT v FROM t WHERE k = 500").fetchone()


def _set_result(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class OwnExecutor:
    """The alternative: one daemon thread, one sqlite3 connection, one queue."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any]] | None] = (
            SimpleQueue()
        )
        self._db = _connect()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        db = self._db
        while (item := self._queue.get()) is not None:
            fut, fn = item
            try:
                result = fn(db)
            except BaseException as exc:
                fut.get_loop().call_soon_threadsafe(_set_exception, fut, exc)
            else:
                fut.get_loop().call_soon_threadsafe(_set_result, fut, result)
        db.close()

    async def run(self, fn: Callable[..., Any]) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._queue.put((fut, fn))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


async def _sequential(run: Runner, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await run(_work)
    return (time.perf_counter() - start) / n * 1e6


async def _concurrent(run: Runner, n: int, callers: int = 64) -> float:
    per = max(1, n // callers)

    async def caller() -> None:
        for _ in range(per):
            await run(_work)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return (time.perf_counter() - start) / (per * callers) * 1e6


async def measure(n: int, rounds: int) -> dict[str, Any]:
    db = await aiosqlite.connect(":memory:", isolation_level=None)
    await in_thread(db, _fill)  # the same table as the own executor's connection
    own = OwnExecutor()

    async def via_aiosqlite(fn: Callable[..., Any]) -> Any:
        return await in_thread(db, fn)

    async def via_own(fn: Callable[..., Any]) -> Any:
        return await own.run(fn)

    results: dict[str, Any] = {}
    try:
        for shape, bench in (("sequential", _sequential), ("64 concurrent", _concurrent)):
            await bench(via_aiosqlite, n // 10)  # warm up both
            await bench(via_own, n // 10)
            a: list[float] = []
            b: list[float] = []
            for _ in range(rounds):  # interleaved: drift hits both alike
                a.append(await bench(via_aiosqlite, n))
                b.append(await bench(via_own, n))
            ratios = [own_us / aio_us for aio_us, own_us in zip(a, b, strict=True)]
            results[shape] = {
                "aiosqlite_us": statistics.median(a),
                "own_us": statistics.median(b),
                "ratio_own_over_aiosqlite": statistics.median(ratios),
            }
    finally:
        own.close()
        await db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations (smoke)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    n, rounds = (256, 2) if args.quick else (5000, 9)
    results = asyncio.run(measure(n, rounds))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"aiosqlite {aiosqlite.__version__}, Python {platform.python_version()}, "
        f"{sys.platform}; {rounds} interleaved rounds of {n} hand-offs (median)"
    )
    print(f"{'shape':<15} {'aiosqlite µs':>13} {'own µs':>9} {'own/aiosqlite':>14}")
    for shape, row in results.items():
        print(
            f"{shape:<15} {row['aiosqlite_us']:>13.1f} {row['own_us']:>9.1f} "
            f"{row['ratio_own_over_aiosqlite']:>14.2f}"
        )


if __name__ == "__main__":
    main()
