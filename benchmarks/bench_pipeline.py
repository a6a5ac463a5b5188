"""Cost of the security pipeline per write, next to a Redis round trip measured in the same run.

    .venv/bin/python benchmarks/bench_pipeline.py            # full run, prints a table
    .venv/bin/python benchmarks/bench_pipeline.py --quick    # a few iterations (CI smoke)

Each figure is the median of several timed batches. The steps are timed one by
one (secrets, PII, classify, encrypt) and together as the pipeline runs them for
a persist, for a 200-byte and a 10 KB text with a little PII in it. The baseline
is one ``GET`` round trip to Redis (``REDIS_URL``, default ``redis://127.0.0.1:6379/15``)
through ``redis.asyncio``, as the short-term tier does it. Results also go to
``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from attune.memory import Classification, MemoryConfig
from attune.memory.security.classifier import classify
from attune.memory.security.pipeline import SecurityPipeline

SENTENCES = (
    "When a request fails, log the request_id and the upstream status before retrying. ",
    "Batch writes to the database in groups of a few hundred rows to keep commits cheap. ",
    "Contact jane.roe@example.org if the nightly export is late by more than an hour. ",
    "Cache the rendered template for 300 seconds and invalidate it on deploy. ",
    "Version 2.4 of the client added exponential backoff with jitter. ",
)


def text_of(size: int) -> str:
    out = ""
    i = 0
    while len(out) < size:
        out += SENTENCES[i % len(SENTENCES)]
        i += 1
    return out[:size]


def per_call_us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


async def redis_round_trip_us(
    url: str, number: int, repeat: int, key: str = "attune-bench:rtt"
) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        await client.set(key, b"x" * 200, px=60_000)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                await client.get(key)
            samples.append((time.perf_counter() - start) / number * 1e6)
        await client.delete(key)
        return statistics.median(samples)
    finally:
        await client.aclose()


def measure(
    url: str, number: int, repeat: int, rtt_key: str = "attune-bench:rtt"
) -> tuple[float, list[dict[str, Any]]]:
    """The Redis round trip (us) and one row per text size and step (us, x round trip)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = MemoryConfig(redis_mock=True, storage_dir=Path(tmp), audit_sync=False)
        pipe = SecurityPipeline(config)
        pipe.cipher.ring.active_key_id  # noqa: B018 - load the key before timing
        rtt = asyncio.run(redis_round_trip_us(url, number, repeat, rtt_key))
        rows = []
        for size in (200, 10_240):
            text = text_of(size)
            meta = {"source": "bench", "tags": ["a", "b"]}
            steps: dict[str, Callable[[], Any]] = {
                "secrets": partial(pipe.secrets.kinds, text),
                "pii": partial(pipe.scrubber.scrub_value, {"content": text, "metadata": meta}),
                "classify": partial(classify, text, "best_practice", meta),
                "encrypt": partial(pipe.seal, "pat_bench", Classification.SENSITIVE, text, meta),
                "pipeline (PUBLIC)": partial(_full, pipe, Classification.PUBLIC, text, meta),
                "pipeline (SENSITIVE)": partial(_full, pipe, Classification.SENSITIVE, text, meta),
            }
            for name, fn in steps.items():
                us = per_call_us(fn, number, repeat)
                rows.append(
                    {
                        "size": size,
                        "step": name,
                        "us": round(us, 1),
                        "x_redis_rtt": round(us / rtt, 2),
                    }
                )
    return rtt, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: check it runs")
    args = parser.parse_args(argv)
    number, repeat = (20, 3) if args.quick else (300, 7)
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")

    rtt, rows = measure(url, number, repeat)
    print(f"Redis GET round trip (redis.asyncio, {url.rsplit('@', 1)[-1]}): {rtt:.1f} us\n")
    print(f"{'text':>8}  {'step':<22}{'us/write':>10}{'x Redis RTT':>13}")
    for row in rows:
        print(f"{row['size']:>7}B  {row['step']:<22}{row['us']:>10.1f}{row['x_redis_rtt']:>13.2f}")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "quick": args.quick,
        "redis_rtt_us": round(rtt, 1),
        "rows": rows,
    }
    out = Path(__file__).resolve().parent / "results" / "pipeline.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0


def _full(
    pipe: SecurityPipeline, classification: Classification, text: str, meta: dict[str, Any]
) -> Any:
    """The whole pipeline of a persist: secrets, PII, classify, then seal."""
    return pipe.seal("pat_bench", classification, *_prepared(pipe, text, meta))


def _prepared(
    pipe: SecurityPipeline, text: str, meta: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Steps 1-3 as the pipeline runs them for a persist (secrets, PII, classify)."""
    clean, _counts = pipe._sanitize({"content": text, "metadata": meta}, "the pattern")
    pipe._classify(None, clean["content"], "best_practice", clean["metadata"], True)
    return clean["content"], clean["metadata"]


if __name__ == "__main__":
    raise SystemExit(main())
