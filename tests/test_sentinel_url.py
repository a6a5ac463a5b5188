"""``REDIS_URL=redis+sentinel://...``: what it may say, what a bad one is told, and that
neither password (the data nodes' nor the sentinels') is ever shown. No Sentinel runs
here (tests/test_redis_sentinel.py drives a real group)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from faults import free_port

from attune.errors import ConfigurationError, ShortTermUnavailableError
from attune.memory import MemoryConfig
from attune.memory.config import redact_url
from attune.memory.sentinel_url import SentinelURL, parse_sentinel_url
from attune.memory.short_term import connect
from attune.memory.short_term.redis_store import RedisShortTermMemory

DATA_PW = "Data-pw-7781"
SENTINEL_PW = "Sentinel-pw-4410"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    parsed = parse_sentinel_url(
        f"redis+sentinel://agent:{DATA_PW}@10.0.0.1:26380,sentinel-b,[::1]:26381/cache.main/3"
        f"?sentinel_password={SENTINEL_PW}&sentinel_username=watcher"
    )
    assert parsed.sentinels == (("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381))
    assert (parsed.service, parsed.db, parsed.tls) == ("cache.main", 3, False)
    assert (parsed.username, parsed.password) == ("agent", DATA_PW)
    assert (parsed.sentinel_username, parsed.sentinel_password) == ("watcher", SENTINEL_PW)
    assert parsed.addresses == "10.0.0.1:26380,sentinel-b:26379,[::1]:26381"
    assert DATA_PW not in repr(parsed) and SENTINEL_PW not in repr(parsed)


def test_the_db_defaults_to_0_and_tls_takes_its_files() -> None:
    assert parse_sentinel_url("redis+sentinel://h/mymaster") == SentinelURL(
        (("h", 26379),), "mymaster", 0, tls=False
    )
    tls = parse_sentinel_url("rediss+sentinel://h:1/m/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none")
    assert tls.tls and tls.tls_options == (("ssl_ca_certs", "/ca.pem"), ("ssl_cert_reqs", "none"))
    # A certificate for a name the sentinel announces differently (an IP): checked unless
    # turned off, as in a rediss+cluster:// URL (it was refused as an unknown option).
    unchecked = parse_sentinel_url("rediss+sentinel://h:1/m?ssl_check_hostname=false")
    assert unchecked.tls_options == (("ssl_check_hostname", False),)
    # %-escapes in the user part, as in any URL.
    assert parse_sentinel_url("redis+sentinel://:p%40ss%2Fw@h/m").password == "p@ss/w"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379,h2:26380", "names no service"),
        ("redis+sentinel://h1:26379/", "names no service"),
        ("redis+sentinel://h1:99999/mymaster", "bad port"),
        ("redis+sentinel://h1:0/mymaster", "bad port"),
        ("redis+sentinel://h1:0655350/mymaster", "bad port"),
        ("redis+sentinel://h1:\uff12\uff16\uff13\uff17\uff19/mymaster", "bad port"),  # fullwidth
        ("redis+sentinel://h1:port/mymaster", "bad port"),
        ("redis+sentinel://h1/mymaster/zero", "database must be a number"),
        ("redis+sentinel://h1/mymaster/-1", "database must be a number"),
        ("redis+sentinel://h1/mymaster/0/extra", "/service or /service/db"),
        ("redis+sentinel:///mymaster/0", "names no sentinel host"),
        ("redis+sentinel://@/mymaster/0", "names no sentinel host"),
        ("redis+sentinel://h1,,h2/mymaster", "empty host"),
        ("redis+sentinel://h 1/mymaster", "not a name or an IP address"),
        ("redis+sentinel://[::1/mymaster", "malformed IPv6"),
        ("redis+sentinel://h1/my master", "service name must be"),
        ("redis+sentinel://h1/mymaster?timeout=3", "does not accept ('timeout')"),
        ("redis+sentinel://h1/mymaster?ssl_ca_certs=/ca.pem", "needs TLS"),
        ("rediss+sentinel://h1/m?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
        ("rediss+sentinel://h1/m?ssl_check_hostname=maybe", "true or false"),
        ("redis+sentinel://h1/m?ssl_check_hostname=false", "needs TLS"),
        ("redis+sentinel://[::g]/mymaster", "malformed IPv6"),
        ("redis+sentinel://[:::]:26379/mymaster", "malformed IPv6"),
        (
            "redis+sentinel://h1/m?sentinel_password=a&sentinel_password=b",
            "gives the option sentinel_password twice",
        ),
        ("redis+sentinel://h1/m#top", "no #fragment"),
        ("redis+sentinel://h1/\udcff", "lone surrogate"),
    ],
)
def test_a_bad_sentinel_url_is_a_configuration_error_without_its_passwords(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every case carries both passwords: no message may show either.
    scheme, _, rest = url.partition("://")
    rest = rest.removeprefix("@")
    secret = f"{scheme}://agent:{DATA_PW}@{rest}"
    secret += ("&" if "?" in secret else "?") + f"sentinel_password={SENTINEL_PW}"
    if "#" in url or "twice" in says:
        secret = url
    for candidate in (url, secret):
        with pytest.raises(ConfigurationError) as refused:
            MemoryConfig(redis_url=candidate)
        message = str(refused.value)
        assert says in message, message
        assert "argument 'redis_url'" in message
        assert DATA_PW not in message and SENTINEL_PW not in message
    monkeypatch.setenv("REDIS_URL", secret)
    with pytest.raises(ConfigurationError, match="environment variable REDIS_URL") as refused:
        MemoryConfig()
    assert DATA_PW not in str(refused.value) and SENTINEL_PW not in str(refused.value)
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ConfigurationError):
        RedisShortTermMemory(url=secret)


@pytest.mark.parametrize(
    "url",
    [
        f"redis+sentinel://agent:{DATA_PW}@h1:26379,h2:26380/mymaster/0"
        f"?sentinel_password={SENTINEL_PW}",
        f"rediss+sentinel://:{DATA_PW}@[::1]:26379,h2/mymaster?sentinel_password={SENTINEL_PW}"
        "&ssl_cert_reqs=none",
        f"redis+sentinel://h1/mymaster?sentinel_username=w&sentinel_password={SENTINEL_PW}",
        f"redis+sentinel://agent:{DATA_PW}@h1/mymaster",
    ],
)
def test_a_sentinel_url_is_shown_without_either_password(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = MemoryConfig(redis_url=url, storage_dir=tmp_path)
    assert config.redis_url == url  # kept as given, shown redacted
    monkeypatch.setattr(connect, "_told_private", False)
    with caplog.at_level(logging.INFO, logger="attune.short_term"):
        store = RedisShortTermMemory(config)
    assert "stand-in" not in caplog.text  # a real, shared Redis
    assert store.backend == "redis"
    for shown in (repr(config), str(config), config.redacted_redis_url, store.safe_url):
        assert shown is not None
        assert DATA_PW not in shown and SENTINEL_PW not in shown, shown
        assert "mymaster" in shown and "h" in shown
    assert "***" in (config.redacted_redis_url or "")


def test_redaction_hides_a_password_even_when_it_was_not_escaped() -> None:
    # An unescaped / or ? ends the host part early; the redacted form still hides it.
    for url in (
        "redis+sentinel://agent:pa/ss@h1/mymaster",
        "redis+sentinel://agent:pa?ss@h1/mymaster",
        "redis+sentinel://agent:p@ss@h1/mymaster",
    ):
        shown = redact_url(url)
        assert "pa/ss" not in shown and "pa?ss" not in shown and "p@ss" not in shown, shown
        assert shown.startswith("redis+sentinel://agent:***@h1")


async def test_no_sentinel_answering_is_short_term_unavailable_and_health_says_so(
    tmp_path: Path,
) -> None:
    url = (
        f"redis+sentinel://agent:{DATA_PW}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        f"/mymaster/0?sentinel_password={SENTINEL_PW}"
    )
    store = RedisShortTermMemory(
        MemoryConfig(redis_url=url, storage_dir=tmp_path, redis_connect_timeout=0.5)
    )
    try:
        with pytest.raises(ShortTermUnavailableError) as failed:
            await store.stash("agent", "k", b"v", 60_000)
        message = str(failed.value)
        assert "name no reachable master for service 'mymaster'" in message
        assert DATA_PW not in message and SENTINEL_PW not in message
        with pytest.raises(ShortTermUnavailableError):
            await store.claim_staged("stg_x", "promote:x", 1000)  # not retried, still typed
        health = await store.health()
        assert health["available"] is False
        assert (health["mode"], health["service"], health["master"]) == (
            "sentinel",
            "mymaster",
            None,
        )
        assert DATA_PW not in str(health) and SENTINEL_PW not in str(health)
    finally:
        await store.aclose()
