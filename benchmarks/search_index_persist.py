"""What search indexing costs a persist: ``persist_pattern`` with search entries against the
same core with them switched off, sequential and 64 callers (issue 15: target >= 0.8x).

    .venv/bin/python benchmarks/search_index_persist.py [--passes 5] [--ops 600] [--rounds 5]

Each pass opens two stores in fresh directories on its own event loop: one through the
real core, one through a subclass whose records carry no search entry (``InsertOp``'s
``index`` is None: nothing tokenised on the loop, no FTS5 row written later). Both persist
the same SENSITIVE 200-character text (every word a keyed token) and PUBLIC text, rounds
alternating (``workloads.compare``); a figure is the median of the passes' ratios, since
one pass's connection threads can land on a shared CPU or not. Timing only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from harness import PUBLIC_TEXT, SENSITIVE_TEXT, TASKS
from workloads import AsyncOp, Side, compare

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security.pipeline import close_shared


class WithoutSearch(AsyncUnifiedMemory):
    """The core with search entries switched off: the baseline."""

    def _entry(self, *_args: Any, **_kwargs: Any) -> Any:
        return None


def _persist(mem: AsyncUnifiedMemory, text: str, label: str) -> AsyncOp:
    async def op(_i: int) -> None:
        result = await mem.persist_pattern(text, "best_practice", classification=label)
        if "pattern_id" not in result:
            raise RuntimeError(f"persist failed: {result}")

    return op


async def one_pass(ops: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ratios: dict[str, float] = {}

        def config(name: str) -> MemoryConfig:
            return MemoryConfig(storage_dir=Path(tmp) / name, environment="development")

        async with (
            AsyncUnifiedMemory("bench-indexed", config("indexed")) as indexed,
            WithoutSearch("bench-plain", config("plain")) as plain,
        ):
            for label, text in (("SENSITIVE", SENSITIVE_TEXT), ("PUBLIC", PUBLIC_TEXT)):
                ours, base = _persist(indexed, text, label), _persist(plain, text, label)
                for name, tasks in (("sequential", 1), (f"{TASKS} callers", TASKS)):
                    n = ops if tasks == 1 else ops * 4
                    comp = await compare(Side(ours, n, tasks), Side(base, n, tasks), rounds)
                    ratios[f"{label} {name}"] = comp.ours_median / comp.baseline_median
    close_shared()
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--ops", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, help="a JSON file for the figures")
    args = parser.parse_args()
    passes = [asyncio.run(one_pass(args.ops, args.rounds)) for _ in range(args.passes)]
    figures = {
        name: {
            "ratio": statistics.median(p[name] for p in passes),
            "passes": [round(p[name], 3) for p in passes],
            "target": ">= 0.8",
        }
        for name in passes[0]
    }
    for name, figure in figures.items():
        shown = ", ".join(f"{r:.2f}" for r in figure["passes"])
        print(f"persist with search indexing vs without, {name}: {figure['ratio']:.2f}x ({shown})")
    if args.output is not None:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
