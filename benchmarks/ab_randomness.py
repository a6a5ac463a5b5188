"""A/B: each record's data key from its own ``os.urandom`` call (what attune does) against
the same bytes from the block-buffered CSPRNG (``security/randomness.py``, which serves ids
and nonces), for 64 concurrent SENSITIVE persists on the embedded default.

Why it exists: drawing keys from the buffer would keep future key material in memory; this
measures whether the buffer would pay for that. Variants alternate in one run (the machine
is shared and noisy); the figure is the ratio of medians, direct / buffered. Measured on
2026-12-02 on a quiet machine: 1.08x (the direct draw no slower), so keys are drawn directly.

    python benchmarks/ab_randomness.py [--rounds 4] [--records 1280]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security import crypto, randomness

_direct: Callable[[], bytes] = crypto._new_data_key


def _buffered() -> bytes:
    return randomness.token_bytes(32)


async def _persist_rate(records: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        memory = AsyncUnifiedMemory("bench", MemoryConfig(redis_mock=True, storage_dir=tmp))
        await memory.persist_pattern("warm up", "note", classification="SENSITIVE")
        gate = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with gate:
                await memory.persist_pattern(
                    f"Incident runbook step {i}", "note", classification="SENSITIVE"
                )

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(records)))
        elapsed = time.perf_counter() - start
        await memory.aclose()
    return records / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records", type=int, default=1280)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"buffered": [], "direct": []}
    for _ in range(args.rounds):
        for name, draw in (("buffered", _buffered), ("direct", _direct)):
            crypto._new_data_key = draw
            try:
                rates[name].append(asyncio.run(_persist_rate(args.records)))
            finally:
                crypto._new_data_key = _direct
    for name, values in rates.items():
        passes = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:9s} median {statistics.median(values):8.0f} persists/s ({passes})")
    ratio = statistics.median(rates["direct"]) / statistics.median(rates["buffered"])
    print(f"direct / buffered: {ratio:.2f}x")


if __name__ == "__main__":
    main()
