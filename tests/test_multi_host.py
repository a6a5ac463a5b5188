"""Two hosts, one memory (issue 16, item 8): two OS processes that share no directory, each
running 8 agents against the same PostgreSQL database and Redis (one server, a 3-master
Redis Cluster, or a Sentinel group), see each other's work.

The scenario is ``benchmarks/multi_host.py`` (also a benchmark); here it runs small and
its outcome is checked: every pattern one host wrote is recalled, with its content, and
found by search on the other, including SENSITIVE ones written after a key rotation on
that host; every staged pattern is promoted once, by the other host.
"""

from __future__ import annotations

import json
import subprocess
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


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def two_hosts(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str, key_prefix: str
) -> dict:
    """The scenario's outcome, on one Redis, on the session's 3-master Redis Cluster or
    on its Sentinel group."""
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").seed_url(2)
    elif request.param == "sentinel":
        url = request.getfixturevalue("redis_sentinel").url(0)
    else:
        url = request.getfixturevalue("redis_url")
    return multi_host.scenario(postgres_url, url, PATTERNS, STAGED, tmp_path, key_prefix)


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


def _attune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("attune")
    return subprocess.run(
        [str(exe), *args, "--json"], env=env, capture_output=True, text=True, timeout=120
    )


def test_both_hosts_write_one_audit_chain_that_verifies(two_hosts: dict) -> None:
    """Each host verifies the one chain in the database, which holds every write of both."""
    for env in two_hosts["hosts"].values():
        verified = _attune(env, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["ok"] is True
    env = two_hosts["hosts"]["b"]
    stored = json.loads(_attune(env, "audit", "query", "--event", "pattern.store").stdout)
    promoted = json.loads(_attune(env, "audit", "query", "--event", "pattern.promote").stdout)
    written = two_hosts["written"]
    assert len(stored) == len(written["a"]["patterns"]) + len(written["b"]["patterns"])
    assert len(promoted) == 2 * multi_host.AGENTS * STAGED


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_the_demo_runs_on_postgresql_and_a_redis_fleet(
    topology: str,
    request: pytest.FixtureRequest,
    postgres_url: str,
    tmp_path: Path,
    key_prefix: str,
) -> None:
    """``attune demo`` on a fleet's services, with only the two URLs set (and the root key
    a fleet's hosts share)."""
    from attune.memory.security.crypto import generate_master_key

    if topology == "cluster":
        url = request.getfixturevalue("redis_cluster").seed_url(1)
    else:
        url = request.getfixturevalue("redis_sentinel").url(0)
    env = multi_host.host_env(tmp_path, postgres_url, url, generate_master_key(), key_prefix)
    env["ATTUNE_ENV"] = "development"
    exe = Path(sys.executable).with_name("attune")
    done = subprocess.run([str(exe), "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("PROMOTED -> Long-term ID: pat_") == 2
    assert "Long-term: True (postgres: postgresql://" in done.stdout
    assert "Audit log: audit log intact" in done.stdout
