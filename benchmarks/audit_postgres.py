"""The PostgreSQL store's audit log: the database's ``audit_events`` table (events in the
write's own transaction, one chain for every host) against the local file (events
appended and fsynced right after the COMMIT, one chain per host), side by side in one run.

    .venv/bin/python benchmarks/audit_postgres.py [--ops 300]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates two databases of its own (``attune_bench_<hex>``, dropped at the end) and runs
the same operations through the real core on both, interleaved op by op: one with
``database_url`` set (the table), one with the store alone (the file). Figures:
sequential persist p50 (ms), 64 concurrent persists (per second), an audited event alone
(``pipeline.audit``, durable) p50 (ms), and verify of the whole log (ms). Timing only,
nothing is asserted; the ratio column is table / file (a time: below 1 is faster; a
rate: above 1 is faster).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.postgres_store import PostgresLongTermStore
from attune.memory.security.audit import AuditEvent
from attune.memory.security.pipeline import close_shared


def _p50(times: list[float]) -> float:
    return statistics.median(times) * 1000


async def _timed(op: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await op()
    return time.perf_counter() - start


async def measure(mems: dict[str, AsyncUnifiedMemory], ops: int) -> dict[str, dict[str, float]]:
    """The same operations on every memory, interleaved op by op (ABAB...), so a machine
    whose load drifts during the run weighs on both alike."""
    out: dict[str, dict[str, float]] = {mode: {} for mode in mems}
    seq: dict[str, list[float]] = {mode: [] for mode in mems}
    burst: dict[str, list[float]] = {mode: [] for mode in mems}
    event_times: dict[str, list[float]] = {mode: [] for mode in mems}
    event = AuditEvent("access.denied", "bench", "OBSERVER", outcome="denied")
    for i in range(ops):
        for mode, mem in mems.items():
            text = f"note {i}"
            seq[mode].append(await _timed(lambda m=mem, t=text: m.persist_pattern(t, "note")))
            event_times[mode].append(await _timed(lambda m=mem: m.pipeline.audit(event)))
    for r in range(max(1, ops // 64)):
        for mode, mem in mems.items():
            burst[mode].append(
                await _timed(
                    lambda m=mem, r=r: asyncio.gather(
                        *(m.persist_pattern(f"burst {r} {n}", "note") for n in range(64))
                    )
                )
            )
    for mode, mem in mems.items():
        out[mode]["persist seq p50 (ms)"] = _p50(seq[mode])
        out[mode]["persist x64 (/s)"] = 64 * len(burst[mode]) / sum(burst[mode])
        out[mode]["audit event p50 (ms)"] = _p50(event_times[mode])
        log = mem.pipeline.audit_logger
        start = time.perf_counter()
        result = await asyncio.to_thread(log.verify)
        out[mode]["verify whole log (ms)"] = (time.perf_counter() - start) * 1000
        assert result.ok, str(result)
    return out


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main(ops: int, admin_url: str) -> None:
    parts = urlsplit(admin_url)
    names = {mode: f"attune_bench_{uuid.uuid4().hex[:12]}" for mode in ("file", "table")}
    urls = {
        mode: urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
        for mode, name in names.items()
    }
    for name in names.values():
        await _admin(admin_url, f'CREATE DATABASE "{name}"')
    stores = {mode: PostgresLongTermStore(url) for mode, url in urls.items()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mems = {
                mode: AsyncUnifiedMemory(
                    "bench",
                    MemoryConfig(
                        redis_mock=True,
                        storage_dir=Path(tmp) / mode,
                        database_url=urls[mode] if mode == "table" else None,
                    ),
                    long_term=stores[mode],
                )
                for mode in names
            }
            for mem in mems.values():
                await mem.__aenter__()
            try:
                results = await measure(mems, ops)
            finally:
                for mem in mems.values():
                    await mem.__aexit__(None, None, None)
    finally:
        for store in stores.values():
            await store.aclose()
        close_shared()
        for name in names.values():
            await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{ops} operations each, interleaved")
    print(f"{'figure':<26} {'file':>10} {'table':>10} {'table/file':>11}")
    for figure, file_value in results["file"].items():
        table_value = results["table"][figure]
        ratio = table_value / file_value
        print(f"{figure:<26} {file_value:>10.2f} {table_value:>10.2f} {ratio:>11.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(main(args.ops, args.admin_url))
