"""How soon another host uses a key rotated in the PostgreSQL key ring.

    .venv/bin/python benchmarks/key_ring_propagation.py [--rounds 20]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a database of its own (``attune_bench_<hex>``, dropped at the end) and two
"hosts" in this process (their own storage directories, so their own key rings and
stores, one root key). Each round, host A adds a key to the ring
(:func:`attune.memory.security.ring_store.rotate`) and the time until host B's ring has
it active (what B's next write does first: ``keys_ready``) is taken. Baseline, in the
same run: a raw asyncpg NOTIFY to a LISTENing session's callback. Figures are p50 in
milliseconds and the ratio to the baseline; timing only, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid

import asyncpg

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security import ring_store
from attune.memory.security.crypto import generate_master_key


def _p50(times: list[float]) -> float:
    return statistics.median(times) * 1000


async def _raw_notify(url: str, rounds: int) -> list[float]:
    listener, sender = await asyncpg.connect(url), await asyncpg.connect(url)
    heard = asyncio.Event()
    await listener.add_listener("bench", lambda *_: heard.set())
    times = []
    for _ in range(rounds):
        heard.clear()
        start = time.perf_counter()
        await sender.execute("NOTIFY bench, 'x'")
        await heard.wait()
        times.append(time.perf_counter() - start)
    await listener.close()
    await sender.close()
    return times


async def _ring(url: str, rounds: int) -> tuple[list[float], list[float]]:
    added, seen = [], []
    with tempfile.TemporaryDirectory() as scratch:

        def config(name: str) -> MemoryConfig:
            return MemoryConfig(redis_mock=True, storage_dir=f"{scratch}/{name}", database_url=url)

        a = AsyncUnifiedMemory("a", config("a"), access_tier="STEWARD")
        b = AsyncUnifiedMemory("b", config("b"))
        async with a, b:
            await a.persist_pattern("first words", "note", classification="SENSITIVE")
            await b.persist_pattern("other words", "note", classification="SENSITIVE")
            ring_a, ring_b = a.pipeline.cipher.ring, b.pipeline.cipher.ring
            for _ in range(rounds):
                start = time.perf_counter()
                kid = await ring_store.rotate(ring_a, a.long_term)
                done = time.perf_counter()
                while True:
                    await b.pipeline.keys_ready(b.long_term)
                    if ring_b.active_key_id == kid:
                        break
                    await asyncio.sleep(0)
                seen.append(time.perf_counter() - done)
                added.append(done - start)
    return added, seen


async def main(rounds: int, admin_url: str) -> None:
    name = f"attune_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    os.environ["ATTUNE_MASTER_KEY"] = generate_master_key()
    try:
        raw = await _raw_notify(url, rounds)
        added, seen = await _ring(url, rounds)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    print(f"{rounds} rounds, p50 ms")
    print(f"raw NOTIFY to callback (baseline)     {_p50(raw):8.2f}")
    print(f"add a key to the ring (host A)        {_p50(added):8.2f}")
    print(f"host B has it active, after A's add   {_p50(seen):8.2f}")
    print(f"ratio to the baseline                 {_p50(seen) / _p50(raw):8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.admin_url))
