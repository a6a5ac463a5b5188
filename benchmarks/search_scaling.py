"""Search and list latency on a filled store, against a linear scan in the same run (issue 15).

    .venv/bin/python benchmarks/search_scaling.py [--records 100000] [--queries 200]
        [--store DIR] [--scans 3] [--database-url postgresql://...]

Fills a fresh store through ``persist_pattern`` (64 callers at a time, a third of the
records each PUBLIC, INTERNAL and SENSITIVE, 16-word texts drawn from an 8,000-word
vocabulary by a Zipf law), or with ``--store DIR`` fills DIR once and reuses it on later
runs with the same ``--records`` (filling 1,000,000 records takes about ten minutes); then
measures, alternating where two things are compared:

- ``search_patterns`` with a 2-word query (limit 10): p50 / p95;
- the baseline: a linear scan that reads every record through the store, decrypts it and
  keeps those holding a query word (what search costs without an index), on a few queries;
- SENSITIVE-only vs PUBLIC-only searches (``classification=``), p50 each;
- ``list_patterns`` page of 50 with a ``pattern_type`` filter: p50.

With ``--database-url`` the long-term store is that PostgreSQL database instead of SQLite
under the store directory (which still keeps the master key and the "filled" marker: give
the same ``--store`` and database to reuse a fill). Prints a table and writes
``benchmarks/results/search.json``. Timing only: nothing here is a unit test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.queries import PatternQuery
from attune.memory.search.terms import terms

_SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "nu",
    "pe",
    "ra",
    "si",
    "to",
    "vu",
    "we",
    "xa",
    "yo",
    "ze",
    "bi",
    "do",
    "fu",
    "gi",
    "ha",
    "je",
    "ku",
]
#: 8,000 made-up words; texts draw them by a Zipf law (rank r with weight 1/r), as prose
#: does, so a few words are in most records and most words in few.
WORDS = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES][:8000]
_WEIGHTS = [1 / rank for rank in range(1, len(WORDS) + 1)]
TYPES = ("practice", "incident", "design", "runbook")
LABELS = ("PUBLIC", "INTERNAL", "SENSITIVE")
#: Written into a ``--store`` directory once it is filled: how many records, how long.
FILLED = "search-bench-filled.json"


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, weights=_WEIGHTS, k=16))


async def fill(mem: AsyncUnifiedMemory, records: int, rng: random.Random) -> None:
    done = 0
    while done < records:
        batch = min(64, records - done)
        await asyncio.gather(
            *(
                mem.persist_pattern(
                    _text(rng),
                    TYPES[(done + i) % len(TYPES)],
                    classification=LABELS[(done + i) % 3],
                    metadata={"team": f"t{(done + i) % 10}"},
                )
                for i in range(batch)
            )
        )
        done += batch


async def timed(call: Any) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def linear_scan(mem: AsyncUnifiedMemory, words: set[str]) -> int:
    """Every live record of the namespace, read through the store and decrypted."""
    found, after = 0, None
    while True:
        query = PatternQuery(now_ms=time.time_ns() // 1_000_000, limit=1000, after=after)
        page = await mem.long_term.find(query)
        if not page:
            return found
        for item in page:
            content, _metadata = mem.pipeline.unseal(item.record)
            if words & set(terms(content)):
                found += 1
        last = page[-1].record
        after = (float(last.created_at_ms), last.pattern_id)


async def _analyze(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE patterns")
    finally:
        await conn.close()


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    records: int, queries: int, scans: int, store: Path | None, database_url: str | None = None
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if store is None:
            store = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        return await _measure(store, records, queries, scans, database_url)


async def _measure(
    store: Path, records: int, queries: int, scans: int, database_url: str | None
) -> dict[str, Any]:
    filled = store / FILLED
    if filled.exists() and json.loads(filled.read_text())["records"] != records:
        raise SystemExit(f"{store} holds {filled.read_text().strip()}, not {records} records")
    config = MemoryConfig(storage_dir=store, environment="development", database_url=database_url)
    async with AsyncUnifiedMemory("bench-search", config, access_tier="STEWARD") as mem:
        if filled.exists():
            fill_s = float(json.loads(filled.read_text())["fill_seconds"])
        else:
            started = time.perf_counter()
            await fill(mem, records, random.Random(15))
            fill_s = time.perf_counter() - started
            await mem.search_patterns("kakaka")  # pending search rows written
            if database_url is not None:  # what autovacuum does within a minute or so
                await _analyze(database_url)
            filled.write_text(json.dumps({"records": records, "fill_seconds": fill_s}) + "\n")
        # Query words of middling frequency (ranks 50-2,000), as a user's would be; drawn
        # apart from the fill, so a reused store is asked the same queries.
        rng = random.Random(16)
        pairs = [" ".join(rng.sample(WORDS[50:2000], 2)) for _ in range(queries)]
        await mem.search_patterns(pairs[0])  # pending search rows written, warm
        search = [await timed(lambda q=q: mem.search_patterns(q)) for q in pairs]
        sensitive, public = [], []
        for q in pairs[: queries // 2]:  # alternating
            sensitive.append(
                await timed(lambda q=q: mem.search_patterns(q, classification="SENSITIVE"))
            )
            public.append(await timed(lambda q=q: mem.search_patterns(q, classification="PUBLIC")))
        listed = [
            await timed(lambda t=t: mem.list_patterns(t, limit=50))
            for t in (TYPES * (queries // len(TYPES) + 1))[:queries]
        ]
        scan = [await timed(lambda q=q: linear_scan(mem, set(q.split()))) for q in pairs[:scans]]
    search_p50 = statistics.median(search)
    scan_p50 = statistics.median(scan) if scan else None
    figures = {
        "backend": config.long_term_backend,
        "records": records,
        "fill_seconds": round(fill_s, 1),
        "search_p50_ms": search_p50,
        "search_p95_ms": _p(search, 0.95),
        "linear_scan_p50_ms": scan_p50,
        "search_vs_scan": None if scan_p50 is None else scan_p50 / search_p50,
        "sensitive_p50_ms": statistics.median(sensitive),
        "public_p50_ms": statistics.median(public),
        "sensitive_vs_public": statistics.median(sensitive) / statistics.median(public),
        "list_page_50_p50_ms": statistics.median(listed),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scans", type=int, default=3, help="linear scans (0: none)")
    parser.add_argument(
        "--store", type=Path, help="a store directory: filled if empty, reused otherwise"
    )
    parser.add_argument("--database-url", help="PostgreSQL instead of SQLite (long-term)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    figures = asyncio.run(
        run(args.records, args.queries, args.scans, args.store, args.database_url)
    )
    for name, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value}"
        print(f"{name:<22} {shown}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "search.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
