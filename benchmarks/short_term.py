"""The short-term tier (Redis): stash / retrieve, the staging area, resident memory.

Figures, each against its baseline on the same Redis:

- ``async_{stash,retrieve}_sequential``: :class:`AsyncUnifiedMemory` stash / retrieve of a
  200-byte JSON value, one at a time, vs raw ``redis.asyncio`` on one connection (compact
  JSON encode + ``SET PX`` / ``GET`` + decode, on keys of the same shape and length);
- ``async_{stash,retrieve}_concurrent``: the same by 64 asyncio tasks, vs the raw client's
  64 tasks on a pool of 64 connections;
- ``sync_{stash,retrieve}_sequential``: the blocking :class:`UnifiedMemory` facade vs raw
  sync ``redis``;
- ``staged_list_among_unrelated``: ``get_staged_patterns`` p50 with 100 staged patterns
  among ``unrelated_keys`` other keys (1M in a full run) vs a raw ``MGET`` of the same 100
  keys + JSON decode (target: our p50 under 5 ms);
- ``rss_stash_scaling``: resident memory of a fresh interpreter (``rss_probe.py``) after
  ``rss_total`` stash operations vs after its first ``rss_first``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis
from harness import PUBLIC_TEXT, TASKS, TTL_S, Bench, delete_matching
from report import Figure, Target, latency, throughput
from workloads import (
    Side,
    compare,
    compare_sync,
    decode,
    encode,
    json_value,
    paired_latencies,
    percentile,
)

from attune.memory import AsyncUnifiedMemory, UnifiedMemory
from attune.memory.keys import KeySpace

HERE = Path(__file__).resolve().parent
STAGED = 100


# -- stash / retrieve, async and through the sync facade ---------------------------------------


def stash_retrieve_async(b: Bench) -> list[Figure]:
    """Async stash / retrieve, sequential and by 64 tasks, vs raw ``redis.asyncio``."""
    return asyncio.run(_stash_retrieve_async(b))


async def _stash_retrieve_async(b: Bench) -> list[Figure]:
    s, value = b.sizes, json_value(200)
    names = [f"k{i}" for i in range(1_000)]
    # The raw client writes keys of the same shape and length as attune's.
    raw_names = [KeySpace(b.prefix).stash("bench-rawcli", k) for k in names]
    raw = aioredis.Redis.from_url(b.url, max_connections=TASKS)
    memory = AsyncUnifiedMemory("bench-async", b.config("short-term"))
    try:

        async def ours_stash(i: int) -> None:
            await memory.stash(names[i % len(names)], value, ttl_seconds=TTL_S)

        async def ours_retrieve(i: int) -> None:
            await memory.retrieve(names[i % len(names)])

        async def raw_stash(i: int) -> None:
            await raw.set(raw_names[i % len(raw_names)], encode(value), px=TTL_S * 1000)

        async def raw_retrieve(i: int) -> None:
            decode(await raw.get(raw_names[i % len(raw_names)]))

        for i in range(len(names)):
            await ours_stash(i)
            await raw_stash(i)
        if await memory.retrieve(names[0]) != value:
            raise RuntimeError("retrieve did not return the stashed value: check the core")
        figures = []
        verbs = (
            ("stash", ours_stash, raw_stash, "encode + SET PX"),
            ("retrieve", ours_retrieve, raw_retrieve, "GET + decode"),
        )
        for verb, ours, base, raw_work in verbs:
            comp = await compare(Side(ours, s.kv_ops), Side(base, s.kv_ops), s.rounds)
            figures.append(
                throughput(
                    f"async_{verb}_sequential",
                    f"async {verb}, sequential, vs raw redis.asyncio",
                    comp,
                    f"raw redis.asyncio, one connection, compact JSON {raw_work}",
                    Target(">=", 0.85),
                )
            )
        for verb, ours, base, _ in verbs:
            n = s.kv_ops_concurrent
            comp = await compare(Side(ours, n, TASKS), Side(base, n, TASKS), s.rounds)
            figures.append(
                throughput(
                    f"async_{verb}_concurrent",
                    f"async {verb}, {TASKS} tasks, vs raw redis.asyncio {TASKS} tasks",
                    comp,
                    f"raw redis.asyncio, {TASKS} tasks on a pool of {TASKS} connections",
                    Target(">=", 2.5),
                )
            )
        return figures
    finally:
        await memory.aclose()
        await raw.aclose()


def stash_retrieve_sync(b: Bench) -> list[Figure]:
    """The blocking facade's stash / retrieve, sequential, vs raw sync ``redis``."""
    s, value = b.sizes, json_value(200)
    names = [f"s{i}" for i in range(1_000)]
    raw_names = [KeySpace(b.prefix).stash("bench-rawsync", k) for k in names]
    raw = redis.Redis.from_url(b.url)
    memory = UnifiedMemory("bench-sync", b.config("sync"))
    try:

        def ours_stash(i: int) -> None:
            memory.stash(names[i % len(names)], value, ttl_seconds=TTL_S)

        def ours_retrieve(i: int) -> None:
            memory.retrieve(names[i % len(names)])

        def raw_stash(i: int) -> None:
            raw.set(raw_names[i % len(raw_names)], encode(value), px=TTL_S * 1000)

        def raw_retrieve(i: int) -> None:
            decode(raw.get(raw_names[i % len(raw_names)]))

        for i in range(len(names)):
            ours_stash(i)
            raw_stash(i)
        stash = compare_sync(ours_stash, raw_stash, s.sync_ops, s.rounds)
        retrieve = compare_sync(ours_retrieve, raw_retrieve, s.sync_ops, s.rounds)
        return [
            throughput(
                "sync_stash_sequential",
                "sync facade stash, sequential, vs raw sync redis",
                stash,
                "raw sync redis-py, compact JSON encode + SET PX",
                None,
            ),
            throughput(
                "sync_retrieve_sequential",
                "sync facade retrieve, sequential, vs raw sync redis",
                retrieve,
                "raw sync redis-py, GET + JSON decode",
                Target(">=", 0.6),
            ),
        ]
    finally:
        memory.close()
        raw.close()


# -- get_staged_patterns among 1M unrelated keys -----------------------------------------------


async def load_unrelated(client: aioredis.Redis, prefix: str, count: int) -> float:
    """``count`` small keys (1 h TTL) in pipelined batches; returns the seconds it took."""
    start = time.perf_counter()
    for low in range(0, count, 10_000):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(low, min(count, low + 10_000)):
                pipe.set(f"{prefix}:unrelated:{i}", b"0123456789abcdef", ex=3600)
            await pipe.execute()
    return time.perf_counter() - start


def staged_listing(b: Bench) -> list[Figure]:
    """``get_staged_patterns`` among ``unrelated_keys`` other keys vs a raw ``MGET``."""
    return [asyncio.run(_staged_listing(b))]


async def _staged_listing(b: Bench) -> Figure:
    s = b.sizes
    client = aioredis.Redis.from_url(b.url)
    try:
        async with AsyncUnifiedMemory("bench-staged", b.config("staged")) as memory:
            staged_ids = [
                await memory.stage_pattern(
                    {"content": PUBLIC_TEXT, "source": "bench"}, "best_practice"
                )
                for _ in range(STAGED)
            ]
            names = [KeySpace(b.prefix).staged_pattern(i) for i in staged_ids]

            async def ours(_i: int) -> None:
                if len(await memory.get_staged_patterns()) != STAGED:
                    raise RuntimeError("get_staged_patterns did not list every staged pattern")

            async def raw(_i: int) -> None:
                for value in await client.mget(names):
                    decode(value)

            before, _ = await paired_latencies(ours, raw, s.staged_calls, warmup=5)
            load_s = await load_unrelated(client, b.prefix, s.unrelated_keys)
            ours_ms, raw_ms = await paired_latencies(ours, raw, s.staged_calls, warmup=5)
    finally:
        await client.aclose()
        await delete_matching(b.url, f"{b.prefix}:unrelated:*")
    return latency(
        "staged_list_among_unrelated",
        f"get_staged_patterns, {STAGED} staged among {s.unrelated_keys:,} keys",
        ours_ms,
        raw_ms,
        f"raw redis.asyncio MGET of the same {STAGED} keys + JSON decode",
        Target("<", 5.0, on="ours", unit="ms"),
        notes=(
            f"{s.staged_calls} calls, alternating with the baseline; the {s.unrelated_keys:,} "
            f"unrelated keys took {load_s:.1f} s to load (pipelined SET EX)"
        ),
        extra={
            "ours_p50_ms_before_unrelated_keys": percentile(before, 50),
            "unrelated_keys": s.unrelated_keys,
            "unrelated_load_s": load_s,
        },
    )


# -- resident memory ---------------------------------------------------------------------------


def rss(b: Bench) -> list[Figure]:
    """Resident memory of a fresh interpreter (``rss_probe.py``) under the stash load."""
    s = b.sizes
    command = [
        sys.executable,
        str(HERE / "rss_probe.py"),
        "--redis-url",
        b.url,
        "--key-prefix",
        b.prefix,
        "--storage-dir",
        str(b.tmp / "rss"),
        "--first",
        str(s.rss_first),
        "--total",
        str(s.rss_total),
        "--keys",
        "10000",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"rss_probe.py failed:\n{done.stderr}")
    probe = json.loads(done.stdout)
    first, total = probe["rss_first_kib"] / 1024, probe["rss_total_kib"] / 1024
    figure = Figure(
        id="rss_stash_scaling",
        title=f"RSS after {s.rss_total:,} vs {s.rss_first:,} stash ops",
        unit="MiB",
        ours=total,
        baseline=first,
        baseline_name=f"the same process after its first {s.rss_first:,} stash operations",
        ratio=total / first,
        ratio_kind="memory ours / baseline (lower is better)",
        target=Target("<=", 1.5),
        notes=(
            f"fresh interpreter, {TASKS} tasks, 200-byte JSON values on 10,000 rotating keys "
            f"(60 s TTL, so Redis holds at most 10,000); VmRSS from /proc/self/status; "
            f"{probe['ops_per_s']:,} ops/s"
        ),
        extra={"probe": probe},
    )
    return [figure]
