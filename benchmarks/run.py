"""Every attune benchmark in one run, each figure measured side by side with its baseline.

    .venv/bin/python benchmarks/run.py [--quick]
    nox -s benchmarks [-- --quick]

Prints a table (figure, ours, baseline, ratio, target, PASS/MISS) and writes JSON with
the machine, the settings and every round of every figure to
``benchmarks/results/latest.json`` (``--output`` to change). ``--quick`` runs tiny sizes
in well under a minute: it checks that the harness works (CI), its ratios mean nothing.

Method. A ratio is throughput(attune) / throughput(baseline), or a latency / memory
ratio where the figure says so. Baseline and attune run alternately, round after round,
after a warm-up of each, and the median of each side is reported: these machines are
shared and noisy, and interleaving makes noise hit both sides. Baselines use the same
Redis and the same disk: raw ``redis.asyncio`` and raw sync ``redis`` (compact JSON
encode + ``SET PX`` / ``GET`` + decode) and raw ``aiosqlite`` (WAL, ``synchronous=FULL``,
``BEGIN``/``INSERT``/``COMMIT`` per row; select by primary key, from a table grown to as
many rows as attune's before the recall comparisons). "64 concurrent" is 64
asyncio tasks each running its share in order. The persist / recall comparisons run in
five independent passes (own event loop, files and connections) and report the median of
the passes' ratios: one hand-off to an aiosqlite connection's thread costs about 60 or about
95 µs on these VMs, a draw kept for the connection's life (``profile_ops.py --hops``).

Isolation. Redis is ``--redis-url`` (default ``$ATTUNE_BENCH_REDIS_URL``, else
``redis://127.0.0.1:6379/13``); every key goes under a fresh prefix
``attune-bench-<random>`` and is deleted at the end with SCAN + UNLINK (never a flush).
Files go to a fresh temporary directory (under ``--tmp-dir``), removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import bench_pipeline
import short_term
from harness import (
    FULL,
    PUBLIC_TEXT,
    QUICK,
    SENSITIVE_TEXT,
    TASKS,
    Bench,
    Sizes,
    bench_environment,
)
from report import Figure, Target, machine_info, print_report, throughput, write_json
from workloads import (
    AsyncOp,
    Side,
    compare,
    open_persist_floor,
    open_raw_sqlite,
    paired_latencies,
    percentile,
    persist_floor,
    raw_sqlite_insert,
    raw_sqlite_select,
    top_up_raw,
)

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.security.pipeline import close_shared

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "latest.json"
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


# -- long-term: persist / recall ---------------------------------------------------------------


def long_term_passes(b: Bench) -> list[Figure]:
    """The persist / recall comparisons, run ``passes`` times, each pass on its own event
    loop, files and connections, combined by :func:`combine_passes`.

    On these VMs a point select through an aiosqlite connection takes about 45 µs when the
    connection's thread shares a CPU with the event loop and about 95 µs when it does not, a
    draw made when the connection opens and kept for its life (``benchmarks/profile_ops.py
    --hops``). A single pass lets the two draws (ours, the baseline's) move a sequential
    ratio by up to a third; the median of independent passes does not.
    """
    passes = []
    for number in range(b.sizes.passes):
        passes.append(asyncio.run(long_term_figures(b, f"pass{number + 1}")))
        close_shared()  # this pass's audit loggers: the next pass logs to files of its own
    return combine_passes(passes)


def combine_passes(passes: list[list[Figure]]) -> list[Figure]:
    """One figure per id: ours and baseline are the medians of the passes' medians, the
    ratio is the median of the passes' ratios; every round of every pass is kept."""
    combined = []
    for same in zip(*passes, strict=True):
        first = same[0]
        if any(f.id != first.id for f in same):
            raise RuntimeError("benchmark passes produced different figures")
        ratios = [f.ratio for f in same]
        combined.append(
            replace(
                first,
                ours=statistics.median(f.ours for f in same),
                baseline=statistics.median(f.baseline for f in same),
                ratio=statistics.median(ratios),
                samples={k: [x for f in same for x in f.samples[k]] for k in first.samples},
                extra={**first.extra, "pass_ratios": ratios},
                notes="; ".join(filter(None, [first.notes, _per_pass(ratios)])),
            )
        )
    return combined


def _per_pass(ratios: list[float]) -> str:
    return "ratio per pass " + ", ".join(f"{r:.2f}x" for r in ratios) + " (median shown)"


async def long_term_figures(b: Bench, name: str) -> list[Figure]:
    s = b.sizes
    raw_dir = b.tmp / f"raw-aiosqlite-{name}"
    raw_dir.mkdir()
    db = await open_raw_sqlite(raw_dir / "raw.db")
    floor_db, floor_fd = await open_persist_floor(raw_dir)
    memory = AsyncUnifiedMemory("bench-persist", b.config(f"long-term-{name}"))
    ids: dict[str, list[str]] = {"PUBLIC": [], "SENSITIVE": [], "raw": []}
    try:

        def persist(classification: str, text: str) -> AsyncOp:
            async def op(_i: int) -> None:
                result = await memory.persist_pattern(
                    text, "best_practice", classification=classification
                )
                ids[classification].append(result["pattern_id"])

            return op

        public, sensitive = persist("PUBLIC", PUBLIC_TEXT), persist("SENSITIVE", SENSITIVE_TEXT)
        await _check_persist(memory)
        raw_insert = raw_sqlite_insert(db, PUBLIC_TEXT.encode(), ids["raw"])
        raw_name = "raw aiosqlite, WAL + synchronous=FULL, BEGIN/INSERT/COMMIT per row"
        figures = []
        for label, op in (("PUBLIC", public), ("SENSITIVE", sensitive)):
            comp = await compare(Side(op, s.persist_ops), Side(raw_insert, s.persist_ops), s.rounds)
            figures.append(
                throughput(
                    f"persist_{label.lower()}_sequential",
                    f"persist_pattern {label}, sequential, vs raw aiosqlite insert",
                    comp,
                    raw_name,
                    Target(">=", 0.5),
                )
            )
        floor = persist_floor(floor_db, floor_fd, PUBLIC_TEXT.encode())
        comp = await compare(Side(floor, s.persist_ops), Side(raw_insert, s.persist_ops), s.rounds)
        figures.append(
            throughput(
                "persist_floor_sequential",
                "persist floor (record + outbox row, one commit, line appended) vs raw insert",
                comp,
                raw_name,
                None,
            )
        )
        figures[-1].notes = (
            "no security step: the least a durable, audited persist must do; "
            "its ratio caps persist_pattern's sequential ratio"
        )
        for label, op, target in (
            ("PUBLIC", public, None),
            ("SENSITIVE", sensitive, Target(">=", 4.0)),
        ):
            comp = await compare(
                Side(op, s.persist_ops_concurrent, TASKS), Side(op, s.persist_ops), s.rounds
            )
            figures.append(
                throughput(
                    f"persist_{label.lower()}_concurrent",
                    f"persist_pattern {label}, {TASKS} callers, vs same sequential",
                    comp,
                    f"attune persist_pattern {label}, sequential",
                    target,
                )
            )
        stored = _pattern_rows(memory)
        await top_up_raw(db, PUBLIC_TEXT.encode(), ids["raw"], stored)
        shuffled = {k: random.Random(7).sample(v, len(v)) for k, v in ids.items()}
        raw_select = raw_sqlite_select(db, shuffled["raw"])
        for label, target in (("PUBLIC", Target(">=", 0.8)), ("SENSITIVE", None)):
            chosen = shuffled[label]

            async def recall(i: int, chosen: list[str] = chosen) -> None:
                if await memory.recall_pattern(chosen[i % len(chosen)]) is None:
                    raise RuntimeError("recall_pattern lost a persisted pattern: check the core")

            comp = await compare(
                Side(recall, s.recall_ops), Side(raw_select, s.recall_ops), s.rounds
            )
            figure = throughput(
                f"recall_{label.lower()}_sequential",
                f"recall_pattern {label}, sequential, vs raw aiosqlite select",
                comp,
                "raw aiosqlite SELECT by primary key + decode content and metadata",
                target,
            )
            figure.extra["table_rows"] = {"ours": stored, "baseline": len(ids["raw"])}
            figure.extra["ids_chosen_from"] = {"ours": len(chosen), "baseline": len(ids["raw"])}
            figures.append(figure)
        figures.append(await _recall_floor(memory, shuffled["PUBLIC"], raw_select, s))
        figures += await _without_audit_fsync(b, name, raw_insert, raw_name)  # own store
        for figure in figures:
            figure.extra.setdefault("audit_sync", memory.config.audit_sync)
        return figures
    finally:
        await memory.aclose()
        await db.close()
        await floor_db.close()
        os.close(floor_fd)


def _pattern_rows(memory: AsyncUnifiedMemory) -> int:
    """How many records attune's patterns table holds (read on a connection of its own)."""
    path = memory.config.storage_dir / DB_FILENAME
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM patterns").fetchone()[0])


async def _recall_floor(
    memory: AsyncUnifiedMemory, chosen: list[str], raw_select: AsyncOp, s: Sizes
) -> Figure:
    """Info: the store's own read on attune's connection (``store.get`` plus the same decode
    as the baseline), without access check, unsealing, result or audit event: the most a
    recall through that connection could reach against the baseline's."""
    store = memory.long_term

    async def get(i: int) -> None:
        record = await store.get(chosen[i % len(chosen)], 0)
        if record is None:
            raise RuntimeError("the store lost a persisted pattern: check the core")
        record.content.decode("utf-8")
        json.loads(record.metadata_json)

    comp = await compare(Side(get, s.recall_ops), Side(raw_select, s.recall_ops), s.rounds)
    figure = throughput(
        "recall_floor_sequential",
        "recall floor (store.get + decode on attune's connection) vs raw select",
        comp,
        "raw aiosqlite SELECT by primary key + decode content and metadata",
        None,
    )
    figure.notes = (
        "no access check, unsealing, result dict or audit event: what attune's connection "
        "and store give before any of attune's recall work"
    )
    return figure


async def _without_audit_fsync(
    b: Bench, name: str, raw_insert: AsyncOp, raw_name: str
) -> list[Figure]:
    """Info: persist with ``audit_sync=False`` (the final audit event only queued, not made
    durable before returning), to show what durable audit events cost (since the outbox:
    their row, the log's lock across the commit, the lines chained before it), and how much
    the 64-caller ratio depends on the sequential persist's speed."""
    config = b.config(f"no-audit-fsync-{name}", audit_sync=False)
    memory = AsyncUnifiedMemory("bench-persist", config)
    s = b.sizes

    async def op(_i: int) -> None:
        await memory.persist_pattern(SENSITIVE_TEXT, "best_practice", classification="SENSITIVE")

    try:
        seq = await compare(Side(op, s.persist_ops), Side(raw_insert, s.persist_ops), s.rounds)
        par = await compare(
            Side(op, s.persist_ops_concurrent, TASKS), Side(op, s.persist_ops), s.rounds
        )
    finally:
        await memory.aclose()
    figures = [
        throughput(
            "persist_sensitive_sequential_no_audit_fsync",
            "persist_pattern SENSITIVE, sequential, audit_sync=False, vs raw insert",
            seq,
            raw_name,
            None,
        ),
        throughput(
            "persist_sensitive_concurrent_no_audit_fsync",
            f"persist_pattern SENSITIVE, {TASKS} callers, audit_sync=False, vs same sequential",
            par,
            "attune persist_pattern SENSITIVE, sequential, audit_sync=False",
            None,
        ),
    ]
    for figure in figures:
        figure.notes = "not the default: audit events are only queued (see README, Performance)"
        figure.extra["audit_sync"] = False
    return figures


async def _check_persist(memory: AsyncUnifiedMemory) -> None:
    """The workloads really are PUBLIC-plain and SENSITIVE-encrypted."""
    for text, label, encrypted in (
        (PUBLIC_TEXT, "PUBLIC", False),
        (SENSITIVE_TEXT, "SENSITIVE", True),
    ):
        result = await memory.persist_pattern(text, "best_practice", classification=label)
        if result.get("classification") != label or result.get("encrypted") is not encrypted:
            raise RuntimeError(f"persist_pattern did not store a {label} pattern as expected")


# -- recall latency at 10k and at 1M stored patterns -------------------------------------------


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


def recall_scaling_figure(b: Bench) -> Figure:
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
    return Figure(
        id="recall_latency_scaling",
        title=f"recall_pattern p50 at {s.patterns_large:,} vs {s.patterns_small:,} patterns",
        unit="ms",
        ours=percentile(large_ms, 50),
        baseline=percentile(small_ms, 50),
        baseline_name=f"the same recall_pattern with {s.patterns_small:,} stored patterns",
        ratio=percentile(large_ms, 50) / percentile(small_ms, 50),
        ratio_kind="latency p50 large / small (lower is better)",
        target=Target("<=", 1.5),
        samples={"large_ms": large_ms, "small_ms": small_ms},
        notes=f"{s.recall_samples} random ids each, calls alternating; {FILL_HOW}",
        extra={
            "large_p95_ms": percentile(large_ms, 95),
            "small_p95_ms": percentile(small_ms, 95),
            "fill_s": fill_s,
            "large_db_mib": size_mb,
        },
    )


# -- the security pipeline's cost per write (benchmarks/bench_pipeline.py) ----------------------


def pipeline_figures(b: Bench) -> list[Figure]:
    s = b.sizes
    rtt, rows = bench_pipeline.measure(
        b.url, s.pipeline_number, s.pipeline_repeat, rtt_key=f"{b.prefix}:rtt"
    )
    return [
        Figure(
            id=f"pipeline_{row['size']}_{re.sub(r'[^a-z]+', '_', row['step'].lower()).strip('_')}",
            title=f"pipeline step {row['step']}, {row['size']:,} B text",
            unit="us",
            ours=row["us"],
            baseline=rtt,
            baseline_name="one Redis GET round trip (redis.asyncio)",
            ratio=row["us"] / rtt,
            ratio_kind="cost per write / one Redis round trip",
            notes="from benchmarks/bench_pipeline.py (median of timed batches)",
        )
        for row in rows
    ]


def run_all(bench: Bench) -> list[Figure]:
    sections: list[tuple[str, Callable[[], list[Figure]]]] = [
        ("stash / retrieve (async)", lambda: short_term.stash_retrieve_async(bench)),
        ("stash / retrieve (sync facade)", lambda: short_term.stash_retrieve_sync(bench)),
        ("persist / recall", lambda: long_term_passes(bench)),
        ("get_staged_patterns", lambda: short_term.staged_listing(bench)),
        ("recall latency scaling", lambda: [recall_scaling_figure(bench)]),
        ("RSS", lambda: short_term.rss(bench)),
        ("security pipeline steps", lambda: pipeline_figures(bench)),
    ]
    figures: list[Figure] = []
    for name, section in sections:
        start = time.perf_counter()
        figures += section()
        print(f"  {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ATTUNE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tmp-dir", type=Path, default=None, help="parent of the scratch dir")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still clean up when killed
    sizes = QUICK if args.quick else FULL
    machine = machine_info(args.redis_url)
    started = time.time()
    with bench_environment(args.redis_url, args.tmp_dir, sizes) as bench:
        audit_sync = bench.config("probe").audit_sync
        print(
            f"attune benchmarks{' (QUICK: ratios not meaningful)' if args.quick else ''}\n"
            f"{machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}, "
            f"Redis {machine['redis_server']} at {machine['redis_url']}\n"
            f"MemoryConfig defaults (audit_sync={audit_sync}); scratch dir {bench.tmp}\n",
            flush=True,
        )
        figures = run_all(bench)
    elapsed = time.time() - started
    print_report(figures, args.quick)
    write_json(
        args.output,
        started=started,
        quick=args.quick,
        elapsed=elapsed,
        machine=machine,
        settings={
            "audit_sync": audit_sync,
            "tasks": TASKS,
            "key_prefix": bench.prefix,
            "scratch_dir": str(bench.tmp),
            **asdict(sizes),
        },
        figures=figures,
    )
    print(f"\nJSON: {args.output} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
