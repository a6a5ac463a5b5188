"""Timing machinery and raw baselines for the sections of ``run.py`` (``short_term.py``,
``long_term.py``, ``long_term_scaling.py``).

A comparison runs two sides -- attune and a raw-client baseline doing the same work --
alternately, round after round, after a warm-up of each; it keeps every round's
throughput and reports the median of each side. Noise on a shared machine then hits
both sides instead of one. A side is an operation ``op(i)`` run ``ops`` times, either
in order or by ``tasks`` asyncio tasks that each run their share in order.

Latency comparisons alternate call by call and keep every sample (milliseconds).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from attune.memory.security.randomness import uuid7_hex

AsyncOp = Callable[[int], Awaitable[Any]]
SyncOp = Callable[[int], Any]

#: The raw aiosqlite baseline table: the shape of attune's ``patterns`` table, minus keys.
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS bench (
    id            TEXT PRIMARY KEY,
    pattern_type  TEXT NOT NULL,
    classification TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    metadata      TEXT NOT NULL,
    content       BLOB NOT NULL
) WITHOUT ROWID
"""
RAW_INSERT = "INSERT INTO bench VALUES (?, ?, ?, ?, ?, ?, ?)"
RAW_SELECT = "SELECT * FROM bench WHERE id = ?"


def encode(value: Any) -> bytes:
    """Compact JSON, as attune encodes a stashed value."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(raw: object) -> Any:
    """Decode what a raw client read; a missing key means the benchmark itself is broken."""
    if not isinstance(raw, bytes | str):
        raise RuntimeError("a benchmark key was missing: something deleted it or it expired")
    return json.loads(raw)


def json_value(size: int = 200) -> dict[str, Any]:
    """A working-data value whose compact JSON is exactly ``size`` bytes."""
    value: dict[str, Any] = {
        "task": "review",
        "files": ["api.py", "models.py"],
        "status": "analyzing",
        "step": 3,
        "note": "",
    }
    value["note"] = "n" * (size - len(encode(value)))
    return value


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[round(pct / 100 * (len(ordered) - 1))]


@dataclass(frozen=True)
class Side:
    """One side of a comparison: ``op(i)`` for i in range(ops), by ``tasks`` tasks."""

    op: AsyncOp
    ops: int
    tasks: int = 1

    def warm_up(self) -> Side:
        return Side(self.op, max(min(self.ops, 20), self.ops // 5), self.tasks)


@dataclass
class Comparison:
    """Per-round throughput (ops/s) of both sides."""

    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)


async def _share(op: AsyncOp, first: int, ops: int, step: int) -> None:
    for i in range(first, ops, step):
        await op(i)


async def run_side(side: Side) -> float:
    """Run one side once; its throughput in operations per second."""
    start = time.perf_counter()
    if side.tasks == 1:
        for i in range(side.ops):
            await side.op(i)
    else:
        await asyncio.gather(*(_share(side.op, t, side.ops, side.tasks) for t in range(side.tasks)))
    return side.ops / (time.perf_counter() - start)


async def compare(ours: Side, baseline: Side, rounds: int) -> Comparison:
    """Warm both sides up, then alternate them for ``rounds`` rounds (order flips each round)."""
    await run_side(ours.warm_up())
    await run_side(baseline.warm_up())
    result = Comparison()
    for r in range(rounds):
        order = [(ours, result.ours), (baseline, result.baseline)]
        for side, out in order if r % 2 == 0 else reversed(order):
            out.append(await run_side(side))
    return result


def _run_sync(op: SyncOp, ops: int) -> float:
    start = time.perf_counter()
    for i in range(ops):
        op(i)
    return ops / (time.perf_counter() - start)


def compare_sync(ours: SyncOp, baseline: SyncOp, ops: int, rounds: int) -> Comparison:
    """:func:`compare` for blocking operations, run sequentially."""
    warm = max(min(ops, 20), ops // 5)
    _run_sync(ours, warm)
    _run_sync(baseline, warm)
    result = Comparison()
    for r in range(rounds):
        order = [(ours, result.ours), (baseline, result.baseline)]
        for op, out in order if r % 2 == 0 else reversed(order):
            out.append(_run_sync(op, ops))
    return result


async def paired_latencies(
    ours: AsyncOp, baseline: AsyncOp, samples: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Per-call latency (ms) of both, alternating call by call (order flips each call)."""
    for i in range(warmup):
        await ours(i)
        await baseline(i)
    ours_ms: list[float] = []
    base_ms: list[float] = []
    for i in range(samples):
        pair = [(ours, ours_ms), (baseline, base_ms)]
        for op, out in pair if i % 2 == 0 else reversed(pair):
            start = time.perf_counter()
            await op(i)
            out.append((time.perf_counter() - start) * 1000)
    return ours_ms, base_ms


# -- the raw aiosqlite baseline ---------------------------------------------------------------


async def open_raw_sqlite(path: Path) -> aiosqlite.Connection:
    """A connection with attune's durability: WAL, ``synchronous=FULL``, autocommit off."""
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute(RAW_TABLE)
    return db


def _raw_row(content: bytes, now_ms: int) -> tuple[Any, ...]:
    """A row of the raw table (``RAW_INSERT``'s parameters) under a fresh id in attune's own
    scheme, so the two tables grow alike."""
    metadata = '{"source":"bench"}'
    return (uuid7_hex(), "best_practice", "PUBLIC", "bench-raw", now_ms, metadata, content)


def raw_sqlite_insert(db: aiosqlite.Connection, content: bytes, ids: list[str]) -> AsyncOp:
    """One row per call, in its own explicit transaction (BEGIN / INSERT / COMMIT)."""

    async def op(_i: int) -> None:
        row = _raw_row(content, time.time_ns() // 1_000_000)
        await db.execute("BEGIN")
        await db.execute(RAW_INSERT, row)
        await db.execute("COMMIT")
        ids.append(row[0])

    return op


async def top_up_raw(db: aiosqlite.Connection, content: bytes, ids: list[str], rows: int) -> None:
    """Grow the raw table to ``rows`` rows in one transaction (set-up, not timed), so the
    raw select searches a table as large as attune's."""
    now_ms = time.time_ns() // 1_000_000
    extra = [_raw_row(content, now_ms) for _ in range(rows - len(ids))]
    await db.execute("BEGIN")
    await db.executemany(RAW_INSERT, extra)
    await db.execute("COMMIT")
    ids.extend(row[0] for row in extra)


def raw_sqlite_select(db: aiosqlite.Connection, ids: list[str]) -> AsyncOp:
    """Select one row by primary key and decode its content and metadata."""

    async def op(i: int) -> None:
        rows = list(await db.execute_fetchall(RAW_SELECT, (ids[i % len(ids)],)))
        row = rows[0]
        bytes(row[6]).decode("utf-8")
        json.loads(row[5])

    return op


# -- the floor of a persist ------------------------------------------------------------------


async def open_persist_floor(directory: Path) -> tuple[aiosqlite.Connection, int]:
    """attune's own schema (same pragmas) and an append-only log file."""
    from attune.memory.long_term.sqlite_store import MIGRATIONS

    db = await open_raw_sqlite(directory / "floor.db")
    await db.execute("PRAGMA secure_delete=ON")
    for version in sorted(MIGRATIONS):
        for statement in MIGRATIONS[version]:
            await db.execute(statement)
    fd = os.open(directory / "floor.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return db, fd


def persist_floor(db: aiosqlite.Connection, fd: int, content: bytes) -> AsyncOp:
    """The least a persist must do before it returns, with no security step around it: in
    one hand-off to the connection's thread, insert the record and the outbox row holding
    its three audit lines, lock the log, commit (the one fsync), append the lines, unlock.
    attune's persist does this plus the pipeline (and, once per linger, an fsync of the log
    and a DELETE of delivered rows); the ratio of this to the raw insert caps that figure."""
    from attune.memory.long_term.aiosqlite_compat import in_thread
    from attune.memory.long_term.sqlite_schema import INSERT
    from attune.memory.types import RECORD_FORMAT

    line = b'{"event":"pattern.store",' + b"x" * 220 + b"}\n"
    lines = line * 3
    payload = lines.decode()

    def work(conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        row_id = "pat_" + uuid7_hex()
        meta = '{"source":"bench"}'
        row = (row_id, "best_practice", "PUBLIC", "bench-floor", 1, None, meta, content)
        conn.execute(INSERT, (*row, 0, None, None, None, RECORD_FORMAT, "default"))
        outbox_id = int.from_bytes(os.urandom(8)) >> 1
        conn.execute("INSERT INTO audit_outbox (id, payload) VALUES (?, ?)", (outbox_id, payload))
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            conn.execute("COMMIT")
            os.write(fd, lines)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    async def op(_i: int) -> None:
        await in_thread(db, work)

    return op
