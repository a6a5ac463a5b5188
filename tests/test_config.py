"""MemoryConfig: precedence, environment variables, validation, backend choice."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from attune.errors import ConfigurationError
from attune.memory import Environment, MemoryConfig
from attune.memory.config import default_storage_dir, redact_url


def test_defaults() -> None:
    cfg = MemoryConfig()
    assert cfg.environment is Environment.DEVELOPMENT
    assert cfg.redis_url is None
    assert cfg.redis_mock is None
    assert cfg.default_ttl_seconds == 3600
    assert cfg.staging_ttl_hours == 24
    assert cfg.key_prefix == "attune"
    assert cfg.load_claude_memory is False
    assert cfg.short_term_backend == "mock"
    assert cfg.storage_dir == default_storage_dir()
    assert cfg.storage_dir != Path.cwd()


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTUNE_ENV", "staging")
    monkeypatch.setenv("REDIS_URL", "redis://localhost:6379/3")
    monkeypatch.setenv("ATTUNE_REDIS_MOCK", "false")
    monkeypatch.setenv("ATTUNE_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("ATTUNE_ENCRYPTION", "false")
    monkeypatch.setenv("ATTUNE_CLAUDE_MEMORY", "true")
    cfg = MemoryConfig()
    assert cfg.environment is Environment.STAGING
    assert cfg.redis_url == "redis://localhost:6379/3"
    assert cfg.redis_mock is False
    assert cfg.storage_dir == tmp_path
    assert cfg.encryption_enabled is False
    assert cfg.load_claude_memory is True
    assert cfg.short_term_backend == "redis"


def test_explicit_arguments_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_ENV", "production")
    monkeypatch.setenv("ATTUNE_ENCRYPTION", "false")
    cfg = MemoryConfig(environment=Environment.DEVELOPMENT, encryption_enabled=True)
    assert cfg.environment is Environment.DEVELOPMENT
    assert cfg.encryption_enabled is True


def test_generic_environment_variable_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    assert MemoryConfig().environment is Environment.DEVELOPMENT


def test_invalid_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_ENV", "prod-ish")
    with pytest.raises(ConfigurationError, match="ATTUNE_ENV") as info:
        MemoryConfig()
    assert "development, staging, production" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "http://localhost:6379",
        "redis://",
        "redis://host:notaport/0",
        "redis://:6379",
    ],
)
def test_malformed_redis_url_names_the_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        MemoryConfig()


def test_malformed_redis_url_argument_names_the_argument() -> None:
    with pytest.raises(ConfigurationError, match="argument 'redis_url'"):
        MemoryConfig(redis_url="localhost")


def test_error_does_not_echo_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://user:hunter2secret@host:6379")
    with pytest.raises(ConfigurationError) as info:
        MemoryConfig()
    assert "hunter2secret" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REDIS_URL", "redis://:hunter2hunter2#x@host/0"),
        ("REDIS_URL", "redis://user:hunter2/etPW@host:6379/0"),
        ("REDIS_URL", "rediss://user:hunter2?etPW@host:6379/0"),
        ("ATTUNE_DATABASE_URL", "postgresql://u:hunter2?etPW@host:5432/db"),
        ("ATTUNE_DATABASE_URL", "postgresql://u:hunter2/etPW@host:5432/db"),
    ],
)
def test_a_password_with_a_url_delimiter_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    """A '/', '?' or '#' in a password ends the URL's authority early, so the rest of the
    password is read as the port: the error says so without quoting what it read."""
    monkeypatch.setenv(variable, url)
    with pytest.raises(ConfigurationError, match=variable) as info:
        MemoryConfig()
    assert "hunter2" not in str(info.value)
    assert "percent-encoded" in str(info.value)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/abc", "redis://127.0.0.1:6379/14/extra", "redis://h/-1"]
)
def test_a_redis_url_whose_database_is_not_a_number_is_refused(url: str) -> None:
    """redis-py ignores a path it cannot read as a number: the client would quietly use
    database 0 (another application's, perhaps)."""
    with pytest.raises(ConfigurationError, match="database number"):
        MemoryConfig(redis_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379",
        "redis://h:6379/",
        "redis://h:6379/15",
        "rediss://u:p@h/2?db=2",
        "redis://h?db=3",
        "unix:///run/redis.sock?db=3",
    ],
)
def test_a_redis_url_with_a_database_number_or_none_is_accepted(url: str) -> None:
    assert MemoryConfig(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url", ["rediss://u:secret@h/2?db=3", "redis://h?db=1&db=2", "unix:///s.sock?db=1&db=2"]
)
def test_a_redis_url_naming_two_databases_is_refused(url: str) -> None:
    """redis-py takes the last ``?db=`` over the path's number, silently: ``/2?db=3`` was
    database 3, another application's perhaps. The password is not repeated."""
    with pytest.raises(ConfigurationError, match="database more than once") as info:
        MemoryConfig(redis_url=url)
    assert "secret" not in str(info.value)


def test_invalid_boolean_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_REDIS_MOCK", "perhaps")
    with pytest.raises(ConfigurationError, match="ATTUNE_REDIS_MOCK"):
        MemoryConfig()


def test_unknown_argument_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis_urll"):
        MemoryConfig(redis_urll="redis://localhost")  # type: ignore[call-arg]


def test_production_requires_redis_url() -> None:
    cfg = MemoryConfig(environment="production")
    with pytest.raises(ConfigurationError, match="REDIS_URL is required"):
        _ = cfg.short_term_backend


def test_production_refuses_the_stand_in() -> None:
    cfg = MemoryConfig(environment="production", redis_mock=True, redis_url="redis://h:6379")
    with pytest.raises(ConfigurationError, match="refused in production"):
        _ = cfg.short_term_backend


def test_staging_refuses_the_stand_in_too() -> None:
    cfg = MemoryConfig(environment="staging", redis_mock=True)
    with pytest.raises(ConfigurationError, match="refused in staging"):
        _ = cfg.short_term_backend


def test_mock_false_requires_a_real_redis() -> None:
    with pytest.raises(ConfigurationError, match="requires a real Redis"):
        _ = MemoryConfig(redis_mock=False).short_term_backend


def test_mock_true_forces_stand_in_even_with_url() -> None:
    cfg = MemoryConfig(redis_mock=True, redis_url="redis://localhost:6379")
    assert cfg.short_term_backend == "mock"


def test_development_with_url_uses_real_redis() -> None:
    assert MemoryConfig(redis_url="redis://localhost:6379").short_term_backend == "redis"


def test_storage_dir_created_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    cfg = MemoryConfig(storage_dir=target)
    assert cfg.ensure_storage_dir() == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_unwritable_storage_dir_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="ATTUNE_STORAGE_DIR"):
        MemoryConfig(storage_dir=blocker / "sub").ensure_storage_dir()


def test_redact_url() -> None:
    assert redact_url("redis://user:pw@host:6379/1") == "redis://user:***@host:6379/1"
    assert redact_url("redis://host:6379") == "redis://host:6379"


def test_config_is_immutable() -> None:
    cfg = MemoryConfig()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        cfg.key_prefix = "other"  # type: ignore[misc]


def test_backends_are_chosen_from_configuration_in_one_place(tmp_path: Path) -> None:
    """The core asks the registry; it names the backends it knows when asked for another."""
    from attune.errors import ConfigurationError
    from attune.memory import backends
    from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
    from attune.memory.short_term.redis_store import RedisShortTermMemory

    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path)
    short, long = backends.open_short_term(config), backends.open_long_term(config)
    assert isinstance(short, RedisShortTermMemory) and short.backend == "fakeredis"
    assert isinstance(long, SQLiteLongTermStore) and long.path.parent == tmp_path
    with pytest.raises(ConfigurationError, match="known: postgres, sqlite"):
        # Asked directly for a backend no configuration selects.
        backends._pick(backends.LONG_TERM, "oracle", "long-term")
    prod = MemoryConfig(environment="production", redis_mock=True, storage_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="refused in production"):
        backends.open_short_term(prod)


# -- the long-term backend: ATTUNE_DATABASE_URL ---------------------------------------------


def test_sqlite_is_the_long_term_default(tmp_path: Path) -> None:
    from attune.memory import backends
    from attune.memory.long_term import SQLiteLongTermStore

    cfg = MemoryConfig(storage_dir=tmp_path)
    assert cfg.database_url is None and cfg.long_term_backend == "sqlite"
    assert backends.long_term_backend_name(cfg) == "sqlite"
    assert isinstance(backends.open_long_term(cfg), SQLiteLongTermStore)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_database_url_selects_postgresql(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    pytest.importorskip("asyncpg")
    from attune.memory import backends
    from attune.memory.long_term.postgres_store import PostgresLongTermStore

    monkeypatch.setenv("ATTUNE_DATABASE_URL", f"{scheme}://attune:pw-hunter2@db.example:5432/mem")
    cfg = MemoryConfig()
    assert cfg.database_url == f"{scheme}://attune:pw-hunter2@db.example:5432/mem"
    assert cfg.long_term_backend == "postgres"
    assert cfg.redacted_database_url == f"{scheme}://attune:***@db.example:5432/mem"
    assert "pw-hunter2" not in repr(cfg)
    store = backends.open_long_term(cfg)  # connects lazily: nothing is reached here
    assert isinstance(store, PostgresLongTermStore)
    assert "pw-hunter2" not in repr(store) and "pw-hunter2" not in store.url


@pytest.mark.parametrize(
    "url",
    [
        "mysql://attune:pw-hunter2@db:3306/mem",
        "sqlite:///tmp/patterns.db",
        "db.example:5432/mem",
        "postgresql://attune:pw-hunter2@db:notaport/mem",
    ],
)
def test_a_bad_database_url_names_the_variable_never_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("ATTUNE_DATABASE_URL", url)
    with pytest.raises(ConfigurationError, match="ATTUNE_DATABASE_URL") as info:
        MemoryConfig()
    assert "pw-hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="argument 'database_url'") as info:
        MemoryConfig(database_url=url)
    assert "pw-hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://u:pw-hunter2@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=pw-hunter2", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&PASSWORD=pw-hunter2&sslpassword=pw-hunter2",
            "postgresql://u@h/db?sslmode=require&PASSWORD=***&sslpassword=***",
        ),
        ("postgresql://u@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        ("redis://h:6379/0?password=pw-hunter2", "redis://h:6379/0?password=***"),
        # A Redis user part without ':' is most often a password missing its ':'.
        ("redis://pw-hunter2@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://pw-hunter2@[::1]:6380", "rediss://***@[::1]:6380"),
        ("redis+sentinel://pw-hunter2@h1,h2/m", "redis+sentinel://***@h1,h2/m"),
        ("redis+cluster://pw-hunter2@h1:7000,h2:7001", "redis+cluster://***@h1:7000,h2:7001"),
        ("postgresql://u:pw-hunter2@h:notaport/db", "<unparseable url>"),
    ],
)
def test_a_redacted_url_holds_no_password_in_its_user_part_or_query(
    url: str, redacted: str
) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"max_ttl_seconds": 3600}, "staging_ttl_hours"),  # the default 24 h is longer
        ({"default_ttl_seconds": 40 * 86400}, "default_ttl_seconds"),
        ({"staging_ttl_hours": 2, "max_ttl_seconds": 3600}, "staging_ttl_hours"),
    ],
)
def test_default_lifetimes_longer_than_the_limit_are_refused_at_once(
    settings: dict[str, Any], named: str
) -> None:
    """Accepted, they made every stash / stage_pattern without a ttl fail later."""
    with pytest.raises(ConfigurationError, match=named):
        MemoryConfig(**settings)


def test_a_shared_stand_in_is_refused_outside_development(tmp_path: Path) -> None:
    """A store passed in brings its own configuration: a development stand-in shared into
    a production or staging agent is refused at construction, by every constructor."""
    from attune import EmpathyOS
    from attune.memory import AsyncUnifiedMemory, UnifiedMemory
    from attune.memory.short_term.redis_store import RedisShortTermMemory

    stand_in = RedisShortTermMemory(MemoryConfig(redis_mock=True, storage_dir=tmp_path))
    for env in ("production", "staging"):
        config = MemoryConfig(
            environment=env, redis_url="redis://127.0.0.1:6379/15", storage_dir=tmp_path
        )
        with pytest.raises(ConfigurationError, match=f"stand-in is refused in {env}"):
            AsyncUnifiedMemory("agent", config, short_term=stand_in)
        with pytest.raises(ConfigurationError, match=f"stand-in is refused in {env}"):
            UnifiedMemory("agent", config, short_term=stand_in)
        with pytest.raises(ConfigurationError, match=f"stand-in is refused in {env}"):
            EmpathyOS("agent", config=config, short_term_memory=stand_in)
    # Development keeps sharing it.
    dev = MemoryConfig(redis_mock=True, storage_dir=tmp_path)
    with EmpathyOS("agent", config=dev, short_term_memory=stand_in) as shared:
        assert shared.async_os.memory.short_term is stand_in


@pytest.mark.parametrize(
    "name",
    [
        "retention_days_public",
        "retention_days_internal",
        "retention_days_sensitive",
        "default_ttl_seconds",
        "staging_ttl_hours",
        "max_value_bytes",
        "max_ttl_seconds",
        "redis_socket_timeout",
    ],
)
@pytest.mark.parametrize("value", [True, False, b"5", bytearray(b"5")])
def test_a_numeric_setting_refuses_bools_and_bytes(name: str, value: object) -> None:
    """pydantic read ``True`` as 1: ``retention_days_public=True`` kept PUBLIC patterns one
    day. A bool or bytes is a typed error naming the setting; text still parses (the
    environment is text)."""
    with pytest.raises(ConfigurationError, match=f"'{name}': must be a number, not") as info:
        MemoryConfig(**{name: value})
    assert str(info.value).endswith(f"not {type(value).__name__}")  # the value is not shown
    text = {"staging_ttl_hours": "2", "max_ttl_seconds": "100000"}.get(name, "4000")
    assert getattr(MemoryConfig(**{name: text}), name) == int(text)


def test_max_value_bytes_stops_at_what_a_redis_server_takes() -> None:
    """A value over Redis's default request limit (512 MiB) is refused by a real server
    and dropped with its connection, while the in-process stand-in takes it: the setting
    cannot go past the limit, so both refuse such a value alike, with attune's error."""
    assert MemoryConfig(max_value_bytes=512 * 1024 * 1024).max_value_bytes == 512 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="max_value_bytes"):
        MemoryConfig(max_value_bytes=512 * 1024 * 1024 + 1)
