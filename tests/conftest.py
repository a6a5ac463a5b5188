"""Shared fixtures.

Redis-tier tests run against a real Redis: ``REDIS_URL`` if set, otherwise a
throwaway ``redis-server`` started here on a free port. With neither, those
tests skip -- except under ``CI=true``, where they fail.

Every test runs in a clean environment (no ``ATTUNE_*`` or ``REDIS_URL`` from
the caller), on its own storage directory and its own key prefix in a
dedicated Redis database (15 unless ``ATTUNE_TEST_REDIS_DB`` says otherwise);
its keys are deleted afterwards. Nothing here ever flushes a database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from faults import RedisProcess, ReplyDroppingProxy, redis_process, reply_dropping_proxy
from topology_cluster import LocalCluster, cluster_tools, local_cluster
from topology_sentinel import SentinelGroup, sentinel_group

from attune.memory import MemoryConfig
from attune.memory.security import pipeline as security_pipeline

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: The PostgreSQL server tests create their database on (a user that may CREATE DATABASE).
POSTGRES_ADMIN_URL = os.environ.get(
    "ATTUNE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_CALLER_REDIS_URL = os.environ.get("REDIS_URL")
TEST_DB = int(os.environ.get("ATTUNE_TEST_REDIS_DB", "15"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return url
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis (dedicated test database), or skip / fail as described above."""
    if _CALLER_REDIS_URL:
        url = with_db(_CALLER_REDIS_URL, TEST_DB)
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            pytest.fail(f"REDIS_URL is set but Redis does not answer: {exc}")
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "no Redis: set REDIS_URL or install redis-server"
        if CI:
            pytest.fail(f"{reason} (CI=true makes this a failure)")
        pytest.skip(reason)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/{TEST_DB}"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the throwaway redis-server did not start")
    client.close()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ATTUNE_") or name == "REDIS_URL":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _close_shared_security_resources() -> Iterator[None]:
    yield
    security_pipeline.close_shared()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    # Delete what the test wrote on a real Redis, if it used one.
    if "redis_url" in request.fixturenames:
        url = request.getfixturevalue("redis_url")
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def redis_config(redis_url: str, key_prefix: str, storage_dir: Path) -> MemoryConfig:
    """Development config on the real test Redis."""
    return MemoryConfig(redis_url=redis_url, storage_dir=storage_dir, key_prefix=key_prefix)


@pytest.fixture
def mock_config(key_prefix: str, storage_dir: Path) -> MemoryConfig:
    """Development config on the in-process stand-in (the embedded default)."""
    return MemoryConfig(redis_mock=True, storage_dir=storage_dir, key_prefix=key_prefix)


@pytest.fixture(params=["redis", "mock"])
def config(request: pytest.FixtureRequest) -> MemoryConfig:
    """Both backends: the real Redis and the development stand-in."""
    name = "redis_config" if request.param == "redis" else "mock_config"
    cfg: MemoryConfig = request.getfixturevalue(name)
    return cfg


#: The session cluster's password: every cluster test also checks it is never shown.
CLUSTER_PASSWORD = "cluster-pw-Zk93"


def need_cluster_tools() -> None:
    """Skip the test without redis-server / redis-cli; with CI=true, fail it."""
    if cluster_tools() is None:
        reason = "redis-server / redis-cli are not installed: no Redis Cluster to test on"
        if CI:
            pytest.fail(f"{reason} (CI=true makes this a failure)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A 3-master Redis Cluster on loopback for the session (password CLUSTER_PASSWORD),
    stopped by pid at the end; skipped without redis-server unless CI=true."""
    need_cluster_tools()
    with local_cluster(password=CLUSTER_PASSWORD) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A Sentinel group (1 master, 1 replica, 3 sentinels) on loopback for the session, for
    tests that never fail it over (tests/test_redis_sentinel.py starts one per test)."""
    if shutil.which("redis-server") is None:
        if CI:
            pytest.fail("redis-server is not installed (CI=true makes this a failure)")
        pytest.skip("redis-server is not installed: no Sentinel group to test on")
    with sentinel_group(tmp_path_factory.mktemp("sentinel")) as group:
        yield group


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A 3-master cluster of this test's own (to kill a node of)."""
    need_cluster_tools()
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_config(redis_cluster: LocalCluster, key_prefix: str, storage_dir: Path) -> MemoryConfig:
    """Development config on the session's Redis Cluster (one seed node named)."""
    return MemoryConfig(
        redis_url=redis_cluster.seed_url(1), storage_dir=storage_dir, key_prefix=key_prefix
    )


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own (to kill, freeze or restart), stopped by pid."""
    if shutil.which("redis-server") is None:
        if CI:
            pytest.fail("redis-server is not installed (CI=true makes this a failure)")
        pytest.skip("redis-server is not installed")
    with redis_process() as server:
        yield server


@pytest.fixture
def reply_proxy(own_redis: RedisProcess) -> Iterator[ReplyDroppingProxy]:
    """A proxy in front of ``own_redis`` that can swallow the server's replies."""
    with reply_dropping_proxy(own_redis.port) as proxy:
        yield proxy


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A database of this test session's own (``attune_test_<hex>``) on the PostgreSQL at
    ``ATTUNE_TEST_POSTGRES_URL`` (default: user postgres on 127.0.0.1:5432), dropped at
    the end; skip when there is none -- fail under ``CI=true``."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        if CI:
            pytest.fail("asyncpg is not installed (CI=true makes this a failure)")
        pytest.skip("asyncpg is not installed: pip install 'attune[postgres]'")
    name = f"attune_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        reason = f"no PostgreSQL at {POSTGRES_ADMIN_URL} ({type(exc).__name__}: {exc})"
        if CI:
            pytest.fail(f"{reason} (CI=true makes this a failure)")
        pytest.skip(reason)
    parts = urlsplit(POSTGRES_ADMIN_URL)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def fresh_url(postgres_session_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, with no schema yet; dropped afterwards."""
    name = f"attune_test_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    parts = urlsplit(POSTGRES_ADMIN_URL)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def postgres_url(postgres_session_url: str) -> AsyncIterator[str]:
    """The session's PostgreSQL database, emptied for this test (its tables truncated)."""
    import asyncpg

    conn = await asyncpg.connect(postgres_session_url, timeout=5)
    try:
        await conn.execute(
            "DO $$ BEGIN IF to_regclass('patterns') IS NOT NULL THEN "
            "TRUNCATE patterns, store_meta, audit_subjects; END IF; "
            "IF to_regclass('key_ring') IS NOT NULL THEN TRUNCATE key_ring, key_ring_keys; "
            "END IF; END $$"
        )
        if await conn.fetchval("SELECT to_regclass('audit_events') IS NOT NULL"):
            # The audit table refuses TRUNCATE (a trigger), but not to a superuser that
            # turns triggers off for its session.
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute("TRUNCATE audit_events")
                await conn.execute(
                    f"INSERT INTO audit_head VALUES (1, 0, '{'0' * 64}') "
                    "ON CONFLICT (id) DO UPDATE SET seq = 0, hash = excluded.hash"
                )
    finally:
        await conn.close()
    yield postgres_session_url
