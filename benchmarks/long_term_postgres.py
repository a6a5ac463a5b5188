"""The PostgreSQL long-term store against the SQLite one, through the real core.

    .venv/bin/python benchmarks/long_term_postgres.py [--records 2000] [--ops 300]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a database of its own on the server of ``--admin-url`` (``attune_bench_<hex>``,
dropped at the end) and a fresh SQLite directory; each store gets ``--records`` records
(PUBLIC and SENSITIVE, persisted 64 at a time), then the same operations are timed on
both: sequential persists (PUBLIC, SENSITIVE), 64 concurrent SENSITIVE persists (per
second), recall, a two-word search, a listing page, a count. Figures are p50 in
milliseconds (or persists per second); timing only, nothing is asserted.
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
from attune.memory.long_term import LongTermStore, SQLiteLongTermStore
from attune.memory.long_term.postgres_store import PostgresLongTermStore
from attune.memory.security.pipeline import close_shared

WORDS = [
    "harbour",
    "lighthouse",
    "database",
    "injection",
    "retry",
    "backoff",
    "schema",
    "commit",
    "cache",
    "index",
]


def _text(n: int) -> str:
    return " ".join(WORDS[(n * 7 + k) % len(WORDS)] for k in range(12)) + f" note {n}"


async def _p50(op: Callable[[int], Awaitable[Any]], ops: int) -> float:
    times = []
    for i in range(ops):
        start = time.perf_counter()
        await op(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def measure(
    store: LongTermStore, config: MemoryConfig, records: int, ops: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    async with AsyncUnifiedMemory("bench", config, long_term=store) as mem:
        for start in range(0, records, 64):
            labels = ("PUBLIC", "SENSITIVE")
            await asyncio.gather(
                *(
                    mem.persist_pattern(_text(n), "note", classification=labels[n % 2])
                    for n in range(start, min(records, start + 64))
                )
            )
        ids = [f["pattern_id"] for f in await mem.list_patterns(limit=200)]
        out["persist PUBLIC seq (ms)"] = await _p50(
            lambda i: mem.persist_pattern(_text(i), "note", classification="PUBLIC"), ops
        )
        out["persist SENSITIVE seq (ms)"] = await _p50(
            lambda i: mem.persist_pattern(_text(i), "note", classification="SENSITIVE"), ops
        )
        start = time.perf_counter()
        for _round in range(max(1, ops // 64)):
            await asyncio.gather(
                *(
                    mem.persist_pattern(_text(n), "note", classification="SENSITIVE")
                    for n in range(64)
                )
            )
        done = 64 * max(1, ops // 64)
        out["persist SENSITIVE x64 (/s)"] = done / (time.perf_counter() - start)
        out["recall (ms)"] = await _p50(lambda i: mem.recall_pattern(ids[i % len(ids)]), ops)
        out["search 2 words (ms)"] = await _p50(
            lambda i: mem.search_patterns(f"{WORDS[i % 10]} {WORDS[(i + 3) % 10]}"), ops
        )
        out["list page (ms)"] = await _p50(lambda i: mem.list_patterns(limit=20), ops)
        out["count (ms)"] = await _p50(lambda i: mem.count_patterns(pattern_type="note"), ops)
    return out


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main(records: int, ops: int, admin_url: str) -> None:
    name = f"attune_bench_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    results: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in ("sqlite", "postgres"):
                config = MemoryConfig(redis_mock=True, storage_dir=Path(tmp) / backend)
                store: LongTermStore = (
                    SQLiteLongTermStore(config.ensure_storage_dir())
                    if backend == "sqlite"
                    else PostgresLongTermStore(url)
                )
                try:
                    results[backend] = await measure(store, config, records, ops)
                finally:
                    await store.aclose()
                    close_shared()
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{records} records, {ops} operations each")
    print(f"{'figure':<30} {'sqlite':>10} {'postgres':>10}")
    for figure in results["sqlite"]:
        print(
            f"{figure:<30} {results['sqlite'][figure]:>10.2f} {results['postgres'][figure]:>10.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(main(args.records, args.ops, args.admin_url))
