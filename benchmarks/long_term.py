"""The long-term tier (SQLite): persist_pattern and recall_pattern against raw aiosqlite.

Figures (``audit_sync=True``, the default, unless the id says otherwise):

- ``persist_{public,sensitive}_sequential``: ``persist_pattern`` of a 200-character text
  vs a raw aiosqlite insert with attune's durability (WAL, ``synchronous=FULL``,
  ``BEGIN``/``INSERT``/``COMMIT`` per row; target >= 0.5x);
- ``persist_floor_sequential`` (info): the least a durable, audited persist must do (record
  and outbox row in one commit, the audit lines appended) vs the same raw insert;
- ``persist_{public,sensitive}_concurrent``: 64 callers vs the same persist sequential
  (SENSITIVE: target >= 4x; PUBLIC: info);
- ``recall_{public,sensitive}_sequential``: ``recall_pattern`` vs a raw select by primary
  key + decode, from a raw table grown to as many rows as attune's (PUBLIC: target
  >= 0.8x; SENSITIVE: info);
- ``recall_floor_sequential`` (info): ``store.get`` + decode on attune's own connection vs
  the same raw select;
- ``persist_sensitive_{sequential,concurrent}_no_audit_fsync`` (info): the SENSITIVE
  persist with ``audit_sync=False``.

Every comparison runs in ``passes`` independent passes (own event loop, files and
connections); a figure reports the median of the passes' ratios (:func:`combine_passes`).
Recall latency at 1M vs 10k stored patterns is in ``long_term_scaling.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import statistics
from contextlib import closing
from dataclasses import replace

from harness import PUBLIC_TEXT, SENSITIVE_TEXT, TASKS, Bench, Sizes
from report import Figure, Target, throughput
from workloads import (
    AsyncOp,
    Side,
    compare,
    open_persist_floor,
    open_raw_sqlite,
    persist_floor,
    raw_sqlite_insert,
    raw_sqlite_select,
    top_up_raw,
)

from attune.memory import AsyncUnifiedMemory
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.security.pipeline import close_shared


def persist_recall(b: Bench) -> list[Figure]:
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
        passes.append(asyncio.run(one_pass(b, f"pass{number + 1}")))
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


async def one_pass(b: Bench, name: str) -> list[Figure]:
    """Every persist / recall figure once, on files and connections named after ``name``."""
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
        figure.notes = "not the default: audit events are only queued (see docs/performance.md)"
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
