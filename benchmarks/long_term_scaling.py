"""The long-term tier at scale: recall_pattern's latency at 1M vs at 10k stored patterns.

Figure ``recall_latency_scaling``: p50 of ``recall_pattern`` on a store of
``patterns_large`` records (1M in a full run) against the same call on a store of
``patterns_small`` (10k), calls alternating between the two, ``recall_samples`` random ids
each (target: at most 1.5x). The baseline is attune itself on the smaller store; how the
stores are filled is :data:`FILL_HOW`, printed with the figure.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from contextlib import closing
from typing import Any

from harness import PUBLIC_TEXT, Bench
from report import Figure, Target, latency
from workloads import paired_latencies

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.sqlite_store import DB_FILENAME

FILL_BATCH = 50_000
FILL_INSERT = (
    "INSERT INTO patterns (pattern_id, pattern_type, classification, created_by, created_at_ms, "
    "expires_at_ms, metadata, content, encrypted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)"
)
FILL_HOW = (
    "the first record went through persist_pattern (PUBLIC, 200-character content); "
    "the rest were bulk-inserted into the same patterns table with sqlite3 executemany "
    f"in {FILL_BATCH:,}-row transactions, as copies of that record's stored columns under "
    "fresh ids spread uniformly over the uuid4-hex space (inserted in id order)"
)


async def _seed_record(config: MemoryConfig) -> tuple[Any, ...]:
    """Persist one PUBLIC pattern through the real API (creates the schema); its stored row."""
    async with AsyncUnifiedMemory("bench-recall", config) as memory:
        result = await memory.persist_pattern(PUBLIC_TEXT, "best_practice", classification="PUBLIC")
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME)) as db:
        row: tuple[Any, ...] = db.execute(
            "SELECT pattern_type, classification, created_by, created_at_ms, expires_at_ms, "
            "metadata, content FROM patterns WHERE pattern_id = ?",
            (result["pattern_id"],),
        ).fetchone()
    return row


def fill_patterns(config: MemoryConfig, count: int, samples: int) -> list[str]:
    """Store ``count`` patterns (see :data:`FILL_HOW`); returns ``samples`` of their ids."""
    seed = asyncio.run(_seed_record(config))
    rng = random.Random(count)
    wanted = set(rng.sample(range(1, count), min(samples, count - 1)))
    picked: list[str] = []
    step = 2**128 // count
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME, isolation_level=None)) as db:
        for low in range(1, count, FILL_BATCH):
            rows = []
            for i in range(low, min(count, low + FILL_BATCH)):
                pattern_id = f"pat_{i * step + rng.randrange(step):032x}"
                if i in wanted:
                    picked.append(pattern_id)
                rows.append((pattern_id, *seed))
            db.execute("BEGIN")
            db.executemany(FILL_INSERT, rows)
            db.execute("COMMIT")
        stored = db.execute("SELECT count(*) FROM patterns").fetchone()[0]
    if stored != count:
        raise RuntimeError(f"filled {stored} patterns instead of {count}")
    rng.shuffle(picked)
    return picked


async def recall_scaling_latencies(
    small: MemoryConfig, small_ids: list[str], large: MemoryConfig, large_ids: list[str], n: int
) -> tuple[list[float], list[float]]:
    async with (
        AsyncUnifiedMemory("bench-recall", small) as at_small,
        AsyncUnifiedMemory("bench-recall", large) as at_large,
    ):

        async def recall_large(i: int) -> None:
            if await at_large.recall_pattern(large_ids[i % len(large_ids)]) is None:
                raise RuntimeError("a bulk-filled pattern was not found")

        async def recall_small(i: int) -> None:
            if await at_small.recall_pattern(small_ids[i % len(small_ids)]) is None:
                raise RuntimeError("a bulk-filled pattern was not found")

        return await paired_latencies(recall_large, recall_small, n, warmup=100)


def recall_scaling(b: Bench) -> list[Figure]:
    """Fill both stores (set-up, not timed), then time recall on both, alternating."""
    s = b.sizes
    small, large = b.config("recall-small"), b.config("recall-large")
    start = time.perf_counter()
    small_ids = fill_patterns(small, s.patterns_small, s.recall_samples)
    large_ids = fill_patterns(large, s.patterns_large, s.recall_samples)
    fill_s = time.perf_counter() - start
    large_ms, small_ms = asyncio.run(
        recall_scaling_latencies(small, small_ids, large, large_ids, s.recall_samples)
    )
    size_mb = (large.storage_dir / DB_FILENAME).stat().st_size / 2**20
    figure = latency(
        "recall_latency_scaling",
        f"recall_pattern p50 at {s.patterns_large:,} vs {s.patterns_small:,} patterns",
        large_ms,
        small_ms,
        f"the same recall_pattern with {s.patterns_small:,} stored patterns",
        Target("<=", 1.5),
        notes=f"{s.recall_samples} random ids each, calls alternating; {FILL_HOW}",
        extra={"fill_s": fill_s, "large_db_mib": size_mb},
        sides=("large", "small"),
    )
    return [figure]
