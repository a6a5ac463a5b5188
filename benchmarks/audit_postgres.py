"""The PostgreSQL store's audit log: the database's ``audit_events`` table (events in the
write's own transaction, one chain for every host) against the local file (events
appended and fsynced right after the COMMIT, one chain per host), side by side in one run.

    .venv/bin/python benchmarks/audit_postgres.py [--ops 300]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a database of its own (``attune_bench_<hex>``, dropped at the end) and runs the
same operations through the real core twice on it: with ``database_url`` set (the table)
and with the store alone (the file). Figures: sequential persist p50 (ms), 64 concurrent
persists (per second), an audited event alone (``pipeline.audit``, durable) p50 (ms), and
verify of the whole log (ms). Timing only, nothing is asserted; the ratio column is
table / file (a time: below 1 is faster; a rate: above 1 is faster).
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


async def _p50(op: Callable[[int], Awaitable[Any]], ops: int) -> float:
    times = []
    for i in range(ops):
        start = time.perf_counter()
        await op(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def measure(url: str, config: MemoryConfig, ops: int) -> dict[str, float]:
    out: dict[str, float] = {}
    store = PostgresLongTermStore(url)
    try:
        async with AsyncUnifiedMemory("bench", config, long_term=store) as mem:
            out["persist seq p50 (ms)"] = await _p50(
                lambda i: mem.persist_pattern(f"note number {i}", "note"), ops
            )
            rounds = max(1, ops // 64)
            start = time.perf_counter()
            for r in range(rounds):
                await asyncio.gather(
                    *(mem.persist_pattern(f"burst {r} {n}", "note") for n in range(64))
                )
            out["persist x64 (/s)"] = 64 * rounds / (time.perf_counter() - start)
            event = AuditEvent("access.denied", "bench", "OBSERVER", outcome="denied")
            out["audit event p50 (ms)"] = await _p50(lambda i: mem.pipeline.audit(event), ops)
            log = mem.pipeline.audit_logger
            start = time.perf_counter()
            result = await asyncio.to_thread(log.verify)
            out["verify whole log (ms)"] = (time.perf_counter() - start) * 1000
            assert result.ok, str(result)
    finally:
        await store.aclose()
        close_shared()
    return out


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main(ops: int, admin_url: str) -> None:
    results: dict[str, dict[str, float]] = {}
    parts = urlsplit(admin_url)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("file", "table"):
            name = f"attune_bench_{uuid.uuid4().hex[:12]}"
            url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
            await _admin(admin_url, f'CREATE DATABASE "{name}"')
            try:
                config = MemoryConfig(
                    redis_mock=True,
                    storage_dir=Path(tmp) / mode,
                    database_url=url if mode == "table" else None,
                )
                results[mode] = await measure(url, config, ops)
            finally:
                await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{ops} operations each")
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
