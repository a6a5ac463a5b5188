"""Two hosts, one memory (issue 16, item 8): two OS processes that share no directory, each
running 8 agents against the same PostgreSQL database and Redis, see each other's work.

The scenario is ``benchmarks/multi_host.py`` (also a benchmark); here it runs small and
its outcome is checked: every pattern one host wrote is recalled, with its content, and
found by search on the other, including SENSITIVE ones written after a key rotation on
that host; every staged pattern is promoted once, by the other host.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
sys.path.insert(0, _BENCHMARKS)
try:
    import multi_host
finally:  # benchmarks/ holds modules named like ours (report, long_term): not for others
    sys.path.remove(_BENCHMARKS)

asyncpg = pytest.importorskip("asyncpg")

PATTERNS, STAGED = 6, 2


@pytest.fixture
def two_hosts(tmp_path: Path, postgres_url: str, redis_url: str, key_prefix: str) -> dict:
    return multi_host.scenario(postgres_url, redis_url, PATTERNS, STAGED, tmp_path, key_prefix)


def test_each_host_recalls_finds_and_promotes_what_the_other_wrote(
    two_hosts: dict, postgres_url: str
) -> None:
    written, read = two_hosts["written"], two_hosts["read"]
    per_host = {"a": multi_host.AGENTS * (PATTERNS + 1), "b": multi_host.AGENTS * PATTERNS}
    assert written["a"]["rotated_to"] and written["b"]["rotated_to"] is None
    other = {"a": "b", "b": "a"}
    for host in ("a", "b"):
        assert len(written[host]["patterns"]) == per_host[host]
        assert len(written[host]["staged"]) == multi_host.AGENTS * STAGED
        # b reads a's patterns written after a's rotation too: the ring is in the database.
        wanted = per_host[other[host]]
        assert read[host]["recalled"] == wanted, "a pattern of the other host was not recalled"
        assert read[host]["found"] == wanted, "search on one host missed the other's pattern"
        assert read[host]["promoted"] == multi_host.AGENTS * STAGED
    storages = {env["ATTUNE_STORAGE_DIR"] for env in two_hosts["hosts"].values()}
    assert len(storages) == 2 and not any(
        Path(a) in Path(b).parents for a in storages for b in storages
    ), "the hosts must share no directory"

    async def rows() -> int:
        conn = await asyncpg.connect(postgres_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM patterns"))
        finally:
            await conn.close()

    import asyncio

    # Every write once: 2 hosts x 8 agents x (patterns + staged patterns promoted once),
    # and a's writes after its rotation.
    assert asyncio.run(rows()) == multi_host.AGENTS * (2 * (PATTERNS + STAGED) + 1)
