"""Where one benchmark run writes and how big it is; shared by every tier's module.

:class:`Sizes` (:data:`FULL`, :data:`QUICK`) sets how much each figure measures;
:class:`Bench` is one run's Redis URL, fresh key prefix and scratch directory, made by
:func:`bench_environment`, which afterwards deletes the prefix's keys (SCAN + UNLINK, never a
flush) and the directory. Also the workload constants every tier shares: the 64 tasks, the
TTL of every benchmark key, the 200-character texts persisted as PUBLIC and SENSITIVE.
Nothing here is measured.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from bench_pipeline import text_of

from attune.memory import MemoryConfig
from attune.memory.security.pipeline import close_shared

TASKS = 64
TTL_S = 600  # every benchmark key expires on its own even if the cleanup never runs
PUBLIC_TEXT = text_of(200)  # 200 characters of prose with one e-mail address (scrubbed)
SENSITIVE_TEXT = ("Patient follow-up: " + text_of(200))[:200]


@dataclass(frozen=True)
class Sizes:
    rounds: int
    kv_ops: int
    kv_ops_concurrent: int
    sync_ops: int
    persist_ops: int
    persist_ops_concurrent: int
    recall_ops: int
    unrelated_keys: int
    staged_calls: int
    patterns_small: int
    patterns_large: int
    recall_samples: int
    rss_first: int
    rss_total: int
    pipeline_number: int
    pipeline_repeat: int
    #: Independent passes of the persist / recall comparisons (see
    #: :func:`long_term.combine_passes`).
    passes: int


FULL = Sizes(
    rounds=5,
    kv_ops=4_000,
    kv_ops_concurrent=16_000,
    sync_ops=4_000,
    persist_ops=300,
    persist_ops_concurrent=1_280,
    recall_ops=3_000,
    unrelated_keys=1_000_000,
    staged_calls=50,
    patterns_small=10_000,
    patterns_large=1_000_000,
    recall_samples=2_000,
    rss_first=10_000,
    rss_total=1_000_000,
    pipeline_number=300,
    pipeline_repeat=7,
    passes=5,
)
QUICK = Sizes(
    rounds=2,
    kv_ops=200,
    kv_ops_concurrent=640,
    sync_ops=200,
    persist_ops=30,
    persist_ops_concurrent=128,
    recall_ops=200,
    unrelated_keys=1_000,
    staged_calls=20,
    patterns_small=100,
    patterns_large=1_000,
    recall_samples=200,
    rss_first=1_000,
    rss_total=10_000,
    pipeline_number=20,
    pipeline_repeat=3,
    passes=2,
)


@dataclass(frozen=True)
class Bench:
    """Where one run writes: its Redis URL and key prefix, its temporary directory."""

    url: str
    prefix: str
    tmp: Path
    sizes: Sizes

    def config(self, name: str, **overrides: Any) -> MemoryConfig:
        """A fresh storage directory; everything else at the product's defaults."""
        return MemoryConfig(
            redis_url=self.url, storage_dir=self.tmp / name, key_prefix=self.prefix, **overrides
        )


async def delete_matching(url: str, pattern: str) -> int:
    """SCAN + UNLINK every key matching ``pattern``, in batches of 1,000."""
    client = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) == 1_000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


@contextmanager
def bench_environment(url: str, tmp_parent: Path | None, sizes: Sizes) -> Iterator[Bench]:
    """A fresh prefix and directory; afterwards, their keys and files are gone."""
    bench = Bench(
        url=url,
        prefix=f"attune-bench-{uuid.uuid4().hex[:12]}",
        tmp=Path(tempfile.mkdtemp(prefix="attune-bench-", dir=tmp_parent)),
        sizes=sizes,
    )
    try:
        yield bench
    finally:
        close_shared()
        deleted = asyncio.run(delete_matching(url, f"{bench.prefix}:*"))
        shutil.rmtree(bench.tmp, ignore_errors=True)
        print(f"cleanup: deleted {deleted:,} keys under {bench.prefix}:*, removed {bench.tmp}")
