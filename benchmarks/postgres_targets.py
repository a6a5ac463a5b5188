"""Issue 16's PostgreSQL figures: attune's long-term tier against raw asyncpg, in one run.

    .venv/bin/python benchmarks/postgres_targets.py [--ops 400] [--rounds 5] [--passes 3]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Creates a database of its own on the server of ``--admin-url`` (``attune_bench_<hex>``,
dropped at the end) and, per pass, alternates (round by round, order flipping) attune and
its baseline doing the same work:

- ``persist_pattern`` PUBLIC and SENSITIVE, sequential, vs a raw asyncpg ``INSERT`` of the
  same row (a copy of a row attune stored, new id, autocommit, prepared) into a table
  created ``LIKE patterns INCLUDING ALL`` (same columns and indexes) -- target >= 0.5x;
- ``persist_pattern`` SENSITIVE by 64 callers vs the same sequential -- target >= 4x;
- ``recall_pattern`` PUBLIC vs a raw prepared ``SELECT * ... WHERE pattern_id = $1`` on
  attune's own table plus decoding the content and metadata -- target >= 0.8x.

Each pass opens its own store and connections; a figure is the median of the passes'
ratios. Search at 100k records on PostgreSQL is ``benchmarks/search_scaling.py
--database-url``. Prints the table; timing only, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from long_term import combine_passes
from report import Figure, Target, print_report, throughput
from workloads import AsyncOp, Side, compare

from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security.pipeline import close_shared

TASKS = 64
TEXT = (
    "Retry with exponential backoff and jitter when the upstream answers 503; "
    "cap the delay at thirty seconds and log each attempt with its correlation id."
)


async def one_pass(url: str, storage: Path, ops: int, rounds: int) -> list[Figure]:
    config = MemoryConfig(storage_dir=storage, environment="development", database_url=url)
    raw = await asyncpg.connect(url)
    memory = AsyncUnifiedMemory("bench-pg", config)
    ids: dict[str, list[str]] = {"PUBLIC": [], "SENSITIVE": []}
    try:

        def persist(label: str) -> AsyncOp:
            async def op(_i: int) -> None:
                result = await memory.persist_pattern(TEXT, "practice", classification=label)
                ids[label].append(result["pattern_id"])

            return op

        public, sensitive = persist("PUBLIC"), persist("SENSITIVE")
        await public(0)
        await raw.execute("CREATE TABLE IF NOT EXISTS raw_patterns (LIKE patterns INCLUDING ALL)")
        row = await raw.fetchrow("SELECT * FROM patterns WHERE pattern_id = $1", ids["PUBLIC"][0])
        assert row is not None, "the persisted pattern is not in the table: check the store"
        columns = list(row.keys())
        insert = await raw.prepare(
            f"INSERT INTO raw_patterns ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${n + 1}' for n in range(len(columns)))})"
        )
        values = list(row.values())
        at = columns.index("pattern_id")

        async def raw_insert(_i: int) -> None:
            values[at] = uuid.uuid4().hex
            await insert.fetch(*values)  # no transaction block: autocommit

        raw_name = "raw asyncpg INSERT of the same row, autocommit, prepared"
        figures = []
        for label, op in (("PUBLIC", public), ("SENSITIVE", sensitive)):
            comp = await compare(Side(op, ops), Side(raw_insert, ops), rounds)
            figures.append(
                throughput(
                    f"pg_persist_{label.lower()}_sequential",
                    f"PostgreSQL persist_pattern {label}, sequential, vs raw INSERT",
                    comp,
                    raw_name,
                    Target(">=", 0.5),
                )
            )
        comp = await compare(Side(sensitive, ops * 2, TASKS), Side(sensitive, ops), rounds)
        figures.append(
            throughput(
                "pg_persist_sensitive_concurrent",
                f"PostgreSQL persist_pattern SENSITIVE, {TASKS} callers, vs sequential",
                comp,
                "attune persist_pattern SENSITIVE, sequential",
                Target(">=", 4.0),
            )
        )
        chosen = ids["PUBLIC"]
        select = await raw.prepare("SELECT * FROM patterns WHERE pattern_id = $1")

        async def recall(i: int) -> None:
            if await memory.recall_pattern(chosen[(i * 7919) % len(chosen)]) is None:
                raise RuntimeError("recall_pattern lost a persisted pattern: check the store")

        async def raw_select(i: int) -> None:
            found = await select.fetchrow(chosen[(i * 7919) % len(chosen)])
            assert found is not None
            found["content"].decode("utf-8")
            json.loads(found["metadata"])

        comp = await compare(Side(recall, ops * 2), Side(raw_select, ops * 2), rounds)
        figures.append(
            throughput(
                "pg_recall_public_sequential",
                "PostgreSQL recall_pattern PUBLIC, sequential, vs raw SELECT",
                comp,
                "raw asyncpg SELECT by key (prepared) + decode content and metadata",
                Target(">=", 0.8),
            )
        )
        return figures
    finally:
        await memory.aclose()
        await raw.close()
        close_shared()


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def main(ops: int, rounds: int, passes: int, admin_url: str) -> list[Figure]:
    results = []
    for number in range(passes):
        name = f"attune_bench_{uuid.uuid4().hex[:12]}"
        parts = urlsplit(admin_url)
        url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
        await _admin(admin_url, f'CREATE DATABASE "{name}"')
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(await one_pass(url, Path(tmp) / f"pass{number}", ops, rounds))
        finally:
            await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return combine_passes(results)


def _args() -> Any:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    print_report(asyncio.run(main(args.ops, args.rounds, args.passes, args.admin_url)), False)
