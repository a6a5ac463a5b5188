"""Child process of ``run.py``: resident memory of a fresh interpreter under the stash load.

    .venv/bin/python benchmarks/rss_probe.py --redis-url URL --key-prefix P \\
        --storage-dir DIR --first 10000 --total 1000000

64 asyncio tasks share one ``AsyncUnifiedMemory`` and stash 200-byte JSON values,
each task running its share in order. Keys rotate over ``--keys`` names (60 s TTL),
so Redis holds at most that many while the client sees ``--total`` operations.
Prints JSON: VmRSS (from ``/proc/self/status``) after ``--first`` and after ``--total``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from workloads import json_value

from attune.memory import AsyncUnifiedMemory, MemoryConfig

TASKS = 64


def rss_kib() -> int:
    """This process's resident set size in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line in /proc/self/status: this probe needs Linux")


async def stash_range(
    memory: AsyncUnifiedMemory, keys: list[str], value: Any, start: int, stop: int
) -> None:
    async def share(first: int) -> None:
        for i in range(first, stop, TASKS):
            await memory.stash(keys[i % len(keys)], value, ttl_seconds=60)

    await asyncio.gather(*(share(start + t) for t in range(TASKS)))


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    config = MemoryConfig(
        redis_url=args.redis_url, storage_dir=args.storage_dir, key_prefix=args.key_prefix
    )
    keys = [f"rss{i}" for i in range(args.keys)]
    value = json_value(200)
    async with AsyncUnifiedMemory("bench-rss", config) as memory:
        start = time.perf_counter()
        await stash_range(memory, keys, value, 0, args.first)
        rss_first = rss_kib()
        await stash_range(memory, keys, value, args.first, args.total)
        rss_total = rss_kib()
        seconds = time.perf_counter() - start
    return {
        "ops_first": args.first,
        "ops_total": args.total,
        "rss_first_kib": rss_first,
        "rss_total_kib": rss_total,
        "seconds": round(seconds, 2),
        "ops_per_s": round(args.total / seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--storage-dir", type=Path, required=True)
    parser.add_argument("--first", type=int, default=10_000)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(probe(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
