"""A/B: the block-buffered CSPRNG (``security/randomness.py``) against one ``os.urandom``
call per record's data key, for 64 concurrent SENSITIVE persists on the embedded default.

Why it exists: the buffer is a speed trick that keeps a few KiB of future random bytes in
memory; this measures whether it earns its place. Variants alternate in one run (the
machine is shared and noisy); the figure is the ratio of medians, direct / buffered.

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

_KEY_BYTES = 32
_ENCRYPTION_DRAW = _KEY_BYTES + 2 * 12  # crypto.encrypt: data key, content and wrap nonces
_buffered: Callable[[int], bytes] = randomness.token_bytes


def _draw_direct(count: int) -> bytes:
    """An encryption's draw (data key + two nonces): the key from its own os.urandom
    call, the nonces from the buffer. Ids are drawn from the buffer as before."""
    if count != _ENCRYPTION_DRAW:
        return _buffered(count)
    return crypto.os.urandom(_KEY_BYTES) + _buffered(count - _KEY_BYTES)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records", type=int, default=1280)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"buffered": [], "direct": []}
    for _ in range(args.rounds):
        for name, draw in (("buffered", _buffered), ("direct", _draw_direct)):
            randomness.token_bytes = draw  # crypto draws through the module attribute
            try:
                rates[name].append(asyncio.run(_persist_rate(args.records)))
            finally:
                randomness.token_bytes = _buffered
    for name, values in rates.items():
        passes = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:9s} median {statistics.median(values):8.0f} persists/s ({passes})")
    ratio = statistics.median(rates["direct"]) / statistics.median(rates["buffered"])
    print(f"direct / buffered: {ratio:.2f}x")


if __name__ == "__main__":
    main()
