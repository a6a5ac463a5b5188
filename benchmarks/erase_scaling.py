"""How long ``erase_user`` takes for one user's records among many (issue 15).

    .venv/bin/python benchmarks/erase_scaling.py [--records 1000000] [--user-records 10000]

Fills a fresh store through ``persist_pattern`` (64 callers at a time; a third of the
records each PUBLIC, INTERNAL and SENSITIVE, 16-word texts drawn from an 8,000-word
vocabulary by a Zipf law, as ``search_scaling.py`` does). One user in every
``records / user_records`` writes; everyone else is one bulk author. The user also has a
few staged patterns and working-data keys. Then times ``erase_user`` of that user, end
to end: staged entries, working data, the long-term delete with its search rows, the
search index merge and the WAL truncation (target: under 10 s for 10,000 records among
1,000,000). Prints the figures and writes ``erase.json`` to ``--output`` (default
``benchmarks/results/``). Timing only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from search_scaling import LABELS, TYPES, _text

from attune.memory import AsyncUnifiedMemory, MemoryConfig

USER = "erase-me"
RESULTS = Path(__file__).resolve().parent / "results"


async def fill(bulk: AsyncUnifiedMemory, user: AsyncUnifiedMemory, records: int, every: int) -> int:
    """``records`` patterns, one in ``every`` by ``user``; returns how many are the user's."""
    rng = random.Random(15)
    done = theirs = 0
    while done < records:
        batch = min(64, records - done)
        calls = []
        for i in range(batch):
            n = done + i
            writer = user if n % every == 0 else bulk
            theirs += writer is user
            calls.append(
                writer.persist_pattern(
                    _text(rng),
                    TYPES[n % len(TYPES)],
                    classification=LABELS[n % 3],
                    metadata={"team": f"t{n % 10}"},
                )
            )
        await asyncio.gather(*calls)
        done += batch
    return theirs


async def run(records: int, user_records: int) -> dict[str, Any]:
    every = max(1, records // user_records)
    with tempfile.TemporaryDirectory() as tmp:
        config = MemoryConfig(storage_dir=Path(tmp), environment="development")
        async with (
            AsyncUnifiedMemory("bench-bulk", config) as bulk,
            AsyncUnifiedMemory(USER, config) as user,
            AsyncUnifiedMemory("bench-dpo", config, access_tier="STEWARD") as steward,
        ):
            started = time.perf_counter()
            theirs = await fill(bulk, user, records, every)
            fill_s = time.perf_counter() - started
            for n in range(20):
                await user.stage_pattern({"content": _text(random.Random(n))}, "practice")
                await user.stash(f"k{n}", {"n": n})
            await steward.search_patterns("kakaka")  # pending search rows written
            started = time.perf_counter()
            erased = await steward.erase_user(USER)
            erase_s = time.perf_counter() - started
            left = await steward.count_patterns(created_by=USER, namespace="*")
    if erased["patterns"] != theirs or left:
        raise RuntimeError(f"erase_user left records: {erased}, {left} still listed")
    return {
        "records": records,
        "user_records": theirs,
        "fill_s": round(fill_s, 1),
        "erase_s": round(erase_s, 3),
        "erased": erased,
        "target": "erase_s < 10 for 10,000 records among 1,000,000",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--user-records", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=RESULTS, help="where erase.json goes")
    args = parser.parse_args()
    result = asyncio.run(run(args.records, args.user_records))
    print(json.dumps(result, indent=2))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "erase.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
