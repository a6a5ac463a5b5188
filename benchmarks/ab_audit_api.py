"""A/B: the audit API of two source trees (say, before and after a change to the audit
log), measured by ``recall_pattern`` and sequential ``persist_pattern`` on the embedded
default, each against raw aiosqlite in the same process.

Why it exists: the audit log's speed tricks (line templates cached per event shape on the
recall path, a second queueing function beside the first for events nobody waits for)
are kept only if reverting them costs more than 3% on recall or persist. A tree is any
directory holding the ``attune`` package (e.g. ``git archive <commit> | tar -x -C DIR``).
Each pass is a child process on one tree: it measures recall / raw select and persist /
raw insert, alternating within the pass (the ratio cancels the aiosqlite thread's CPU
draw, kept for a connection's life); the trees alternate pass by pass (order flips each
round), and the figure is the median of each tree's ratios, and their quotient. Each
pass also times one audited read's event alone (``read_audit_us``: the caller's call
until the writer has written it), the part of a recall these tricks are about.

    python benchmarks/ab_audit_api.py --tree old=/tmp/old --tree new=. [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import tree_medians

_HERE = Path(__file__).resolve().parent
_TEXT = "Retry the deployment after the health check passes; page the on-call if not. " * 2


def _pass(persists: int, recalls: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "raw").mkdir()
        result = asyncio.run(_compare(Path(tmp), persists, recalls, rounds))
        result["read_audit_us"] = asyncio.run(_read_audit_us(Path(tmp, "micro")))
    return result


async def _read_audit_us(storage: Path, reads: int = 20000) -> float:
    """Microseconds per audited read's event, from the caller's call until the writer has
    written it (median of 5), through whichever API the tree has."""
    from attune.memory import MemoryConfig
    from attune.memory.security.pipeline import SecurityPipeline, close_shared

    pipeline: Any = SecurityPipeline(MemoryConfig(redis_mock=True, storage_dir=storage))
    logger = pipeline.audit_logger
    targets = [f"pat_{i:08x}" for i in range(reads)]
    if hasattr(pipeline, "audit_read"):  # before issue 14's audit API

        async def one(target: str) -> None:
            pipeline.audit_read("pattern.retrieve", "agent", "CONTRIBUTOR", target, "PUBLIC")
    else:
        from attune.memory.security.audit import AuditEvent, Durability

        async def one(target: str) -> None:
            event = AuditEvent("pattern.retrieve", "agent", "CONTRIBUTOR", target, "PUBLIC")
            await pipeline.audit(event, Durability.QUEUED)

    times = []
    for _ in range(6):
        start = time.perf_counter()
        for target in targets:
            await one(target)
        logger.flush()
        times.append((time.perf_counter() - start) / reads * 1e6)
    close_shared()
    return statistics.median(times[1:])


async def _compare(tmp: Path, persists: int, recalls: int, rounds: int) -> dict[str, float]:
    from workloads import (
        Side,
        compare,
        open_raw_sqlite,
        raw_sqlite_insert,
        raw_sqlite_select,
        top_up_raw,
    )

    from attune.memory import AsyncUnifiedMemory, MemoryConfig
    from attune.memory.security.pipeline import close_shared

    db = await open_raw_sqlite(tmp / "raw" / "raw.db")
    config = MemoryConfig(redis_mock=True, storage_dir=tmp / "attune")
    memory = AsyncUnifiedMemory("ab-audit", config)
    ids: list[str] = []
    raw_ids: list[str] = []
    try:

        async def persist(_i: int) -> None:
            result = await memory.persist_pattern(_TEXT, "best_practice", classification="PUBLIC")
            ids.append(result["pattern_id"])

        raw_insert = raw_sqlite_insert(db, _TEXT.encode(), raw_ids)
        persisted = await compare(Side(persist, persists), Side(raw_insert, persists), rounds)
        await top_up_raw(db, _TEXT.encode(), raw_ids, len(ids))
        chosen = random.Random(7).sample(ids, len(ids))
        raw_select = raw_sqlite_select(db, random.Random(7).sample(raw_ids, len(raw_ids)))

        async def recall(i: int) -> None:
            if await memory.recall_pattern(chosen[i % len(chosen)]) is None:
                raise RuntimeError("recall_pattern lost a persisted pattern")

        recalled = await compare(Side(recall, recalls), Side(raw_select, recalls), rounds)
    finally:
        await memory.aclose()
        await db.close()
        close_shared()
    return {
        "persist": persisted.ours_median / persisted.baseline_median,
        "recall": recalled.ours_median / recalled.baseline_median,
    }


def _child(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{_HERE}")
    command = [sys.executable, __file__, "--child", "--persists", str(args.persists)]
    command += ["--recalls", str(args.recalls), "--inner-rounds", str(args.inner_rounds)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=6, help="passes per tree")
    parser.add_argument("--persists", type=int, default=150)
    parser.add_argument("--recalls", type=int, default=3000)
    parser.add_argument("--inner-rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_pass(args.persists, args.recalls, args.inner_rounds)))
        return
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(_HERE.parent)}
    figures = ("recall", "persist", "read_audit_us")
    ratios: dict[str, dict[str, list[float]]] = {n: {f: [] for f in figures} for n in trees}
    names = list(trees)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            result = _child(Path(trees[name]).resolve(), args)
            for figure, value in result.items():
                ratios[name][figure].append(value)
            shown = "  ".join(f"{k} {v:.3f}" for k, v in result.items())
            print(f"pass {r + 1} {name:9s} {shown}", flush=True)
    print()
    for figure in figures:
        unit = " us" if figure == "read_audit_us" else "x raw"
        print(tree_medians(figure, {n: ratios[n][figure] for n in names}, unit, 8))


if __name__ == "__main__":
    main()
