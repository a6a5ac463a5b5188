"""``REDIS_URL`` with an ACL user (``redis://user:password@host``) and over TLS
(``rediss://``), each against a ``redis-server`` of the test's own (never the shared one),
stopped by pid: the whole workflow runs, and refusals are typed errors that never echo the
password."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from certificates import make_certificates
from conftest import CI
from faults import RedisProcess, answers, free_port

from attune import get_redis_memory
from attune.errors import (
    AttuneError,
    ConfigurationError,
    ShortTermCommandError,
    ShortTermUnavailableError,
)
from attune.memory import AsyncUnifiedMemory, MemoryConfig

PASSWORD = "s3cret-Acl-pass"
PREFIX = "acl"


async def _workflow(config: MemoryConfig) -> None:
    """Working data, staging and promotion through ``config``'s Redis."""
    async with (
        AsyncUnifiedMemory("writer", config) as writer,
        AsyncUnifiedMemory("reviewer", config, access_tier="VALIDATOR") as reviewer,
    ):
        assert await writer.stash("task", {"step": 1}) is True
        assert await writer.retrieve("task") == {"step": 1}
        staged = await writer.stage_pattern({"content": "Retry with backoff"}, "practice")
        assert [p["pattern_id"] for p in await reviewer.get_staged_patterns()] == [staged]
        promoted = await reviewer.promote_pattern(staged)
        assert await reviewer.recall_pattern(promoted["pattern_id"]) is not None
        assert (await writer.health_check())["short_term"]["available"] is True


def _config(url: str, storage: Path) -> MemoryConfig:
    return MemoryConfig(redis_url=url, storage_dir=storage, key_prefix=PREFIX)


async def test_an_acl_user_runs_the_workflow_and_a_wrong_password_is_refused(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    admin = redis.Redis(port=own_redis.port)
    try:
        # Only attune's own keys: a user confined to its prefix is enough.
        admin.execute_command(
            "ACL", "SETUSER", "agent", "on", f">{PASSWORD}", f"~{PREFIX}:*", "+@all"
        )
        admin.execute_command("ACL", "SETUSER", "default", "off")  # no anonymous access
    finally:
        admin.close()
    url = f"redis://agent:{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    await _workflow(_config(url, tmp_path / "ok"))
    bad = f"redis://agent:wrong-{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    async with AsyncUnifiedMemory("writer", _config(bad, tmp_path / "bad")) as writer:
        with pytest.raises(AttuneError) as refused:
            await writer.stash("task", 1)
    message = str(refused.value)
    assert "credentials" in message and PASSWORD not in message and "wrong-" not in message
    shown = _config(bad, tmp_path / "bad")  # a config lands in tracebacks and logs
    assert PASSWORD not in repr(shown) and PASSWORD not in str(shown)
    assert shown.redis_url == bad  # kept as given, shown redacted


async def test_a_password_written_without_its_colon_is_never_shown(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    """``redis://PASSWORD@host`` (the ':' forgotten) is read as a user name, refused by the
    server: the error showed the URL, password and all. It hides that part and says why
    the server refused."""
    admin = redis.Redis(port=own_redis.port)
    try:
        admin.execute_command("CONFIG", "SET", "requirepass", PASSWORD)
    finally:
        admin.close()
    url = f"redis://{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    config = _config(url, tmp_path)
    async with AsyncUnifiedMemory("writer", config) as writer:
        with pytest.raises(ShortTermUnavailableError) as refused:
            await writer.stash("task", 1)
        health = (await writer.health_check())["short_term"]
    message = str(refused.value)
    assert "after a ':'" in message and f"redis://***@127.0.0.1:{own_redis.port}/0" in message
    for shown in (message, health["url"], health["error"], repr(config), str(config)):
        assert PASSWORD not in shown, shown
    async with AsyncUnifiedMemory(
        "writer", _config(f"redis://:{PASSWORD}@127.0.0.1:{own_redis.port}/0", tmp_path)
    ) as writer:
        assert await writer.stash("task", 1) is True


async def test_an_acl_user_without_permission_is_told_about_its_acl_rules(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    """NOPERM is the ACL user's rules, not another client's key of another type."""
    admin = redis.Redis(port=own_redis.port)
    try:  # its keys are another application's: none of attune's
        admin.execute_command("ACL", "SETUSER", "agent", "on", f">{PASSWORD}", "~other:*", "+@all")
    finally:
        admin.close()
    url = f"redis://agent:{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    async with AsyncUnifiedMemory("writer", _config(url, tmp_path)) as writer:
        for refused in (
            writer.stash("task", 1),
            writer.stage_pattern({"content": "Retry with backoff"}, "practice"),
        ):
            with pytest.raises(ShortTermCommandError) as err:
                await refused
            message = str(err.value)
            assert "ACL user" in message and f"~{PREFIX}:*" in message, message
            assert "different type" not in message and PASSWORD not in message
        # health_check sent only PING, which the user may run: it said "available".
        health = (await writer.health_check())["short_term"]
        assert health["available"] is False, health
        assert "ACL user" in health["error"] and PASSWORD not in health["error"], health


def test_a_tls_option_redis_py_refuses_is_a_configuration_error(tmp_path: Path) -> None:
    # redis-py raises its own RedisError / ConnectionError for these, not a ValueError.
    for query in ("ssl_cert_reqs=bogus", "protocol=9"):
        url = f"rediss://agent:{PASSWORD}@127.0.0.1:6380/0?{query}"
        with pytest.raises(ConfigurationError, match="REDIS_URL") as err:
            get_redis_memory(url)
        assert PASSWORD not in str(err.value)
    # An unknown option that does not look like one (a pasted password) is not repeated.
    with pytest.raises(ConfigurationError, match="does not accept;") as err:
        get_redis_memory(f"redis://127.0.0.1:6380/0?{PASSWORD}=1")
    assert PASSWORD not in str(err.value)


class TLSRedis:
    """A ``redis-server`` that speaks TLS only, with a CA and a server certificate for
    127.0.0.1 made for it by ``openssl``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TLSRedis:
        make_certificates(self.dir)
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(self.dir / "server.crt"),
                "--tls-key-file", str(self.dir / "server.key"),
                "--tls-ca-cert-file", str(self.dir / "ca.crt"),
                "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if answers(redis.Redis.from_url(self.url(), socket_connect_timeout=0.2)):
            return self
        self.stop()
        raise RuntimeError("the TLS redis-server did not start")

    def url(self, ca: Path | None = None) -> str:
        ca_file = ca if ca is not None else self.dir / "ca.crt"
        return f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca_file}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        self.proc = None


def _other_authority(tmp_path: Path) -> Path:
    """The certificate of a CA the server's certificate was not signed by."""
    other = tmp_path / "other-ca"
    other.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "o.key",
            "-out", "o.crt", "-days", "2", "-subj", "/CN=someone-else",
        ],
        cwd=other, check=True, capture_output=True,
    )  # fmt: skip
    return other / "o.crt"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TLSRedis]:
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        if CI:
            pytest.fail("redis-server and openssl are needed (CI=true makes this a failure)")
        pytest.skip("redis-server or openssl is not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    server = TLSRedis(certs).start()
    try:
        yield server
    finally:
        server.stop()


async def test_tls_runs_the_workflow_and_an_unknown_authority_is_refused(
    tls_redis: TLSRedis, tmp_path: Path
) -> None:
    await _workflow(_config(tls_redis.url(), tmp_path / "ok"))
    # A client that trusts another authority refuses the server's certificate.
    untrusted = _config(tls_redis.url(ca=_other_authority(tmp_path)), tmp_path / "bad")
    async with AsyncUnifiedMemory("writer", untrusted) as writer:
        with pytest.raises(ShortTermUnavailableError):
            await writer.stash("task", 1)
