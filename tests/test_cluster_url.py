"""``redis+cluster://`` URLs: accepted forms, typed refusals, no password in any message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attune import get_redis_memory
from attune.errors import ConfigurationError
from attune.memory import MemoryConfig, backends
from attune.memory.short_term.cluster import ClusterShortTermMemory
from attune.memory.short_term.cluster_url import is_cluster_url, parse_cluster_url
from attune.memory.short_term.redis_store import RedisShortTermMemory

SECRET = "pw-Qx7-secret"


def test_seeds_credentials_and_tls_are_read() -> None:
    url = parse_cluster_url(f"rediss+cluster://app:{SECRET}@h1:7000,10.0.0.2:7001/0")
    assert url.seeds == (("h1", 7000), ("10.0.0.2", 7001))
    assert (url.username, url.password, url.tls) == ("app", SECRET, True)
    assert url.safe == "rediss+cluster://app:***@h1:7000,10.0.0.2:7001"
    assert SECRET not in repr(url)
    plain = parse_cluster_url("redis+cluster://127.0.0.1:7000")
    assert (plain.seeds, plain.password, plain.tls) == ((("127.0.0.1", 7000),), None, False)
    assert parse_cluster_url("REDIS+CLUSTER://[::1]:7000?db=0").seeds == (("::1", 7000),)
    named = parse_cluster_url("redis+cluster://redis-0.redis_svc.ns.svc:7000,[fe80::1]:7001")
    assert named.seeds == (("redis-0.redis_svc.ns.svc", 7000), ("fe80::1", 7001))


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://h1:7000?db=2", "only database 0"),
        ("redis+cluster://h1", "host:port"),
        ("redis+cluster://h1:7000,h2", "host:port"),
        ("redis+cluster://h1:0", "valid port"),
        ("redis+cluster://h1:99999", "valid port"),
        ("redis+cluster://:7000", "host:port"),
        ("redis+cluster://h1:7000?frobnicate=1", "frobnicate"),
        ("redis+cluster://h1:7000?ssl_ca_certs=/ca.pem", "rediss+cluster"),
        ("rediss+cluster://h1:7000?ssl_check_hostname=maybe", "true or false"),
        ("redis+cluster://h1:7000#frag", "fragment"),
        # redis-py would refuse these only at the first connection, as "unreachable".
        ("rediss+cluster://h1:7000?ssl_cert_reqs=bogus", "ssl_cert_reqs"),
        ("redis+cluster://h1:7000?client_name=a&client_name=b", "client_name twice"),
        # Hosts: a typo'd separator, a stray character, an IPv6 address not in brackets
        # or not an address were taken as host names, failing at connect as "unreachable".
        ("redis+cluster://h1:7000;h2:7001", "not separated by commas"),
        ("redis+cluster://h1 h2:7000", "not a name or an IP address"),
        ("redis+cluster://h%31:7000", "not a name or an IP address"),
        ("redis+cluster://::1:7000", "in brackets"),
        ("redis+cluster://[::g]:7000", "malformed IPv6"),
        ("redis+cluster://[h1]:7000", "malformed IPv6"),
    ],
)
def test_bad_cluster_urls_are_configuration_errors(url: str, fragment: str) -> None:
    with_secret = url.replace("://", f"://u:{SECRET}@", 1)
    for candidate in (url, with_secret):
        with pytest.raises(ConfigurationError, match=r"REDIS_URL|redis_url") as err:
            MemoryConfig(redis_url=candidate)
        assert fragment in str(err.value)
        assert SECRET not in str(err.value)


def test_a_multi_seed_url_is_shown_redacted_not_as_unparseable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"rediss+cluster://app:{SECRET}@10.0.0.11:6379,10.0.0.12:6379,[::1]:7000?client_name=a"
    config = MemoryConfig(redis_url=url, storage_dir=tmp_path)
    shown = "rediss+cluster://app:***@10.0.0.11:6379,10.0.0.12:6379,[::1]:7000"
    assert config.redacted_redis_url == shown + "?client_name=a"
    assert f"redis_url='{shown}?client_name=a'" in repr(config)
    assert SECRET not in repr(config)
    # The store's own form keeps IPv6 seeds in brackets too.
    assert ClusterShortTermMemory(config).safe_url == shown


def test_an_unknown_option_that_is_not_option_like_is_not_repeated() -> None:
    # A password pasted after '?' by mistake is an "option": never echo it.
    with pytest.raises(ConfigurationError, match="option attune does not pass on;") as err:
        MemoryConfig(redis_url=f"redis+cluster://h1:7000?{SECRET}")
    assert SECRET not in str(err.value)


def test_the_backend_is_chosen_by_the_url_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = MemoryConfig(
        redis_url=f"redis+cluster://u:{SECRET}@127.0.0.1:7000", storage_dir=tmp_path
    )
    assert is_cluster_url(config.redis_url)
    assert backends.short_term_backend_name(config) == "redis-cluster"
    store = backends.open_short_term(config)  # nothing connects yet
    assert isinstance(store, ClusterShortTermMemory)
    assert SECRET not in store.safe_url and SECRET not in repr(config)
    single = MemoryConfig(redis_url="redis://127.0.0.1:6379/0", storage_dir=tmp_path)
    assert backends.short_term_backend_name(single) == "redis"


def test_the_single_node_store_points_a_cluster_url_to_the_cluster_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"redis+cluster://u:{SECRET}@127.0.0.1:7000"
    with pytest.raises(ConfigurationError, match="get_redis_memory") as err:
        RedisShortTermMemory(MemoryConfig(storage_dir=tmp_path), url=url)
    assert SECRET not in str(err.value)
    assert isinstance(get_redis_memory(url), ClusterShortTermMemory)


def test_the_cluster_store_refuses_a_single_node_configuration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match="redis\\+cluster://"):
        ClusterShortTermMemory(MemoryConfig(redis_mock=True, storage_dir=tmp_path))


@settings(max_examples=300, deadline=None)
@given(
    rest=st.one_of(
        st.text(max_size=60),
        st.builds(
            "{}:{}{}".format,
            st.text(min_size=1, max_size=12),
            st.integers(-5, 70_000),
            st.text(max_size=20),
        ),
    ),
    secure=st.booleans(),
)
def test_any_cluster_url_is_accepted_or_a_configuration_error(rest: str, secure: bool) -> None:
    """Whatever follows the scheme: a config and a store, or a ConfigurationError that does
    not repeat the password; never another exception (nothing connects here)."""
    scheme = "rediss+cluster" if secure else "redis+cluster"
    url = f"{scheme}://u:{SECRET}@{rest}"
    try:
        config = MemoryConfig(redis_url=url, storage_dir="/nonexistent-attune-test")
        store = ClusterShortTermMemory(config)
    except ConfigurationError as exc:
        assert SECRET not in str(exc)
        return
    assert SECRET not in store.safe_url
    assert store.target.seeds


def test_an_old_redis_py_is_refused_rather_than_left_to_repeat_claims(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import redis

    monkeypatch.setattr(redis, "__version__", "5.0.1")
    config = MemoryConfig(redis_url="redis+cluster://127.0.0.1:7000", storage_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"redis-py 6\.0 or later"):
        ClusterShortTermMemory(config)
