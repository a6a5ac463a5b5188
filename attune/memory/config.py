"""Configuration of the memory system: :class:`MemoryConfig` and :class:`Environment`.

Precedence: explicit arguments beat environment variables, which beat defaults.

| field                | environment variable   | default                          |
|----------------------|------------------------|----------------------------------|
| environment          | ``ATTUNE_ENV``         | development                      |
| redis_url            | ``REDIS_URL``          | none (in-process stand-in in dev)|
| redis_mock           | ``ATTUNE_REDIS_MOCK``  | auto                             |
| storage_dir          | ``ATTUNE_STORAGE_DIR`` | per-user data directory          |
| encryption_enabled   | ``ATTUNE_ENCRYPTION``  | true                             |
| load_claude_memory   | ``ATTUNE_CLAUDE_MEMORY`` | false                          |
| claude_policy_file   | ``ATTUNE_CLAUDE_POLICY_FILE`` | the platform's enterprise policy |
| claude_import_roots  | ``ATTUNE_CLAUDE_IMPORT_ROOTS`` | none (``os.pathsep``-separated) |
| namespace            | ``ATTUNE_NAMESPACE``   | default                          |
| search_index_sensitive | ``ATTUNE_SEARCH_INDEX_SENSITIVE`` | true                |
| database_url         | ``ATTUNE_DATABASE_URL`` | none (SQLite under storage_dir) |
| audit_mirror         | ``ATTUNE_AUDIT_MIRROR`` | false (with PostgreSQL only)    |

Invalid values raise :class:`~attune.errors.ConfigurationError` naming the variable.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from attune.errors import ConfigurationError
from attune.memory import service_urls
from attune.memory.service_urls import redact_url as redact_url
from attune.memory.store_marker import AUDIT_NAME


class Environment(enum.StrEnum):
    """The deployment tier; decides which backends are allowed."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


#: Field name -> the environment variable that sets it (for error messages).
ENV_VARS: dict[str, str] = {
    "environment": "ATTUNE_ENV",
    "redis_url": "REDIS_URL",
    "redis_mock": "ATTUNE_REDIS_MOCK",
    "storage_dir": "ATTUNE_STORAGE_DIR",
    "encryption_enabled": "ATTUNE_ENCRYPTION",
    "load_claude_memory": "ATTUNE_CLAUDE_MEMORY",
    "claude_policy_file": "ATTUNE_CLAUDE_POLICY_FILE",
    "claude_import_roots": "ATTUNE_CLAUDE_IMPORT_ROOTS",
    "audit_log_file": "ATTUNE_AUDIT_LOG",
    "master_key_file": "ATTUNE_KEY_FILE",
    "key_prefix": "ATTUNE_KEY_PREFIX",
    "namespace": "ATTUNE_NAMESPACE",
    "search_index_sensitive": "ATTUNE_SEARCH_INDEX_SENSITIVE",
    "database_url": "ATTUNE_DATABASE_URL",
    "audit_mirror": "ATTUNE_AUDIT_MIRROR",
}

_CENTURY_DAYS = 36_500
_CENTURY_S = _CENTURY_DAYS * 24 * 3600


def default_storage_dir() -> Path:
    """A per-user data directory (never the current working directory)."""
    return Path(platformdirs.user_data_dir("attune", appauthor=False))


class MemoryConfig(BaseSettings):
    """Settings for :class:`~attune.memory.UnifiedMemory`.

    Construct it with keyword arguments; anything not given is read from the
    environment, then from the defaults.
    """

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then exactly the variables of ENV_VARS -- never a generic name such as
        # ENVIRONMENT that pydantic-settings would otherwise match to a field.
        return (init_settings, _AttuneEnvironment(settings_cls))

    #: The deployment tier: development, staging or production. Staging and production
    #: require a real Redis (``redis_url``) and never invent a master key.
    environment: Environment = Environment.DEVELOPMENT
    #: The short-term tier's Redis: ``redis://[user:password@]host:6379/0``, TLS
    #: ``rediss://``, ``unix://``, a Redis Cluster ``redis+cluster://h1:6379,h2:6379`` or
    #: Sentinel ``redis+sentinel://h1:26379,h2:26379/service/0``. None: the in-process
    #: stand-in (development only). Shown redacted by the repr: it may hold a password.
    redis_url: str | None = None
    #: True forces the in-process stand-in, False requires a real Redis, None decides
    #: from the environment (development without ``REDIS_URL`` uses the stand-in).
    redis_mock: bool | None = None
    #: Where the SQLite store, the audit log and the key file live (created ``0700``).
    storage_dir: Path = Field(default_factory=default_storage_dir)
    #: Encrypt INTERNAL patterns at rest too (SENSITIVE ones always are).
    encryption_enabled: bool = True
    #: Load the CLAUDE.md hierarchy into ``memory.claude_memory`` (enterprise policy, user,
    #: project), with its ``@imports`` resolved.
    load_claude_memory: bool = False
    #: The enterprise policy CLAUDE.md; None: the platform's (``/etc/claude-code/CLAUDE.md``
    #: on Linux), read only if it exists (a configured file must exist).
    claude_policy_file: Path | None = None
    #: Directories an ``@import`` of Claude memory may reach besides the project root and
    #: ``~/.claude`` (see :mod:`attune.memory.claude_memory`).
    claude_import_roots: tuple[Path, ...] = ()
    #: Largest Claude memory file, and all of them together, in bytes.
    claude_max_file_bytes: int = Field(256 * 1024, gt=0)
    claude_max_total_bytes: int = Field(1024 * 1024, gt=0)

    # Upper bounds (about a century) keep expiry times within what Redis, SQLite and
    # datetime can hold; a larger value used to fail on first use, as a builtin error.
    #: Lifetime of a ``stash`` that gives no ``ttl_seconds``, in seconds.
    default_ttl_seconds: int = Field(3600, gt=0, le=_CENTURY_S)
    #: Lifetime of a staged pattern that gives no ``ttl_hours``, in hours.
    staging_ttl_hours: float = Field(24, gt=0, le=_CENTURY_S // 3600)
    #: The first part of every Redis key attune writes (several stores can share a Redis).
    key_prefix: str = Field(
        "attune",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
    )

    #: Largest JSON-encoded value ``stash`` accepts, in bytes; at most 512 MiB, the largest
    #: value a Redis server takes by default (``proto-max-bulk-len``).
    max_value_bytes: int = Field(1024 * 1024, gt=0, le=512 * 1024 * 1024)
    #: Longest key ``stash`` accepts, in characters.
    max_key_length: int = Field(256, gt=0, le=4096)
    #: Longest TTL ``stash`` accepts: short-term memory is for minutes to days.
    max_ttl_seconds: int = Field(30 * 24 * 3600, gt=0, le=_CENTURY_S)
    #: Seconds to wait for Redis to accept a connection / answer a command.
    redis_connect_timeout: float = Field(2.0, gt=0)
    redis_socket_timeout: float = Field(5.0, gt=0)

    # -- security pipeline ---------------------------------------------------------------
    #: Retention of long-term patterns by classification, in days.
    retention_days_public: int = Field(365, gt=0, le=_CENTURY_DAYS)
    retention_days_internal: int = Field(180, gt=0, le=_CENTURY_DAYS)
    retention_days_sensitive: int = Field(90, gt=0, le=_CENTURY_DAYS)
    #: Audit log file; default ``<storage_dir>/audit.jsonl`` (see :attr:`audit_log_path`).
    audit_log_file: Path | None = None
    #: True: a write returns only once its audit event is fsynced (safe default; costs
    #: one batched fsync). False: events are buffered and a crash may lose the last ones.
    audit_sync: bool = True
    #: Master key file; default ``<storage_dir>/master.key`` (see docs/security.md).
    master_key_file: Path | None = None
    #: PII kinds not to scrub (e.g. ``("ip",)``) and extra patterns (name -> regex).
    pii_disabled_kinds: tuple[str, ...] = ()
    pii_custom_patterns: dict[str, str] = Field(default_factory=dict)
    #: Extra secret patterns (kind -> regex) that block a write.
    secret_patterns: dict[str, str] = Field(default_factory=dict)

    # -- namespaces and search ------------------------------------------------------------
    #: The namespace an agent reads and writes long-term and staged patterns in.
    namespace: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    #: Index SENSITIVE records' words as blind-index tokens, so search finds them (what the
    #: tokens reveal: docs/security.md). False: found by filters and listing only.
    search_index_sensitive: bool = True

    # -- long-term backend -----------------------------------------------------------------
    #: A PostgreSQL URL (``postgresql://user:password@host:5432/db``) keeps long-term
    #: memory there (needs ``pip install 'attune[postgres]'``); None: the SQLite file under
    #: ``storage_dir``. Shown redacted by the repr: it may hold a password.
    database_url: str | None = None
    #: With ``database_url``: the audit log is the database's ``audit_events`` table (one
    #: chain for every host); True also copies this process's events to the local file
    #: :attr:`audit_log_path` (a chain of its own, a convenience, never the record).
    #: Without ``database_url`` the file is the log and this is ignored.
    audit_mirror: bool = False

    @field_validator(
        "claude_max_file_bytes",
        "claude_max_total_bytes",
        "default_ttl_seconds",
        "staging_ttl_hours",
        "max_value_bytes",
        "max_key_length",
        "max_ttl_seconds",
        "redis_connect_timeout",
        "redis_socket_timeout",
        "retention_days_public",
        "retention_days_internal",
        "retention_days_sensitive",
        mode="before",
    )
    @classmethod
    def _a_number(cls, value: object) -> object:
        # pydantic's lax mode reads True as 1 and b"5" as 5: a retention of one day.
        if isinstance(value, bool | bytes | bytearray):
            raise ValueError(f"must be a number, not {type(value).__name__}")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return None if value is None else service_urls.check_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return None if value is None else service_urls.check_redis_url(value)

    @field_validator("storage_dir", "audit_log_file", "master_key_file", "claude_policy_file")
    @classmethod
    def _check_path(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:  # undecodable bytes from the environment (surrogateescape) round-trip
            os.fsencode(value)
        except UnicodeEncodeError:
            raise ValueError(
                "the path contains a lone surrogate, which the file system cannot encode"
            ) from None
        return value

    @field_validator("claude_import_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """``ATTUNE_CLAUDE_IMPORT_ROOTS`` lists directories separated by ``os.pathsep``."""
        if isinstance(value, str):
            return tuple(part for part in value.split(os.pathsep) if part)
        return value

    @field_validator("claude_import_roots")
    @classmethod
    def _check_roots(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        for root in value:
            try:
                os.fsencode(root)
            except UnicodeEncodeError:
                raise ValueError(
                    "a path contains a lone surrogate, which the file system cannot encode"
                ) from None
        return value

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc, explicit=set(values))) from None
        except RecursionError:  # pydantic describing a value nested thousands deep
            raise ConfigurationError(
                "a configuration value is nested too deeply to be read; pass plain "
                "strings, numbers, booleans or paths"
            ) from None
        _check_lifetimes(self, set(values))

    # -- derived decisions -------------------------------------------------------------

    @property
    def short_term_backend(self) -> Literal["redis", "mock"]:
        """Which short-term backend this configuration selects (raises if the choice is invalid)."""
        if self.redis_mock is True:
            if self.environment is not Environment.DEVELOPMENT:
                env = self.environment.value
                raise ConfigurationError(
                    f"the in-process Redis stand-in is refused in {env} "
                    f"(ATTUNE_REDIS_MOCK=true with ATTUNE_ENV={env}): it is only for "
                    "development; set REDIS_URL to a real Redis and unset ATTUNE_REDIS_MOCK"
                )
            return "mock"
        if self.redis_url is None:
            if self.redis_mock is False:
                raise ConfigurationError(
                    "ATTUNE_REDIS_MOCK=false requires a real Redis: set REDIS_URL "
                    "(for example redis://localhost:6379/0)"
                )
            if self.environment is Environment.DEVELOPMENT:
                return "mock"
            raise ConfigurationError(
                f"REDIS_URL is required when ATTUNE_ENV={self.environment.value}; "
                "the in-process stand-in is only for development"
            )
        return "redis"

    @property
    def audit_log_path(self) -> Path:
        """The audit log this configuration selects: ``audit_log_file`` (``ATTUNE_AUDIT_LOG``),
        else ``<storage_dir>/audit.jsonl``; user-expanded and absolute (a relative path is
        taken from the current directory, now). The one place that decides it; nothing is
        created here."""
        path = self.audit_log_file
        if path is None:
            path = self.storage_dir.expanduser() / AUDIT_NAME
        return path.expanduser().resolve()

    def __repr_args__(self) -> Any:
        """The fields as the repr shows them: the URLs without their passwords (a config
        lands in tracebacks, logs and debuggers)."""
        for name, value in super().__repr_args__():
            if name in ("redis_url", "database_url") and isinstance(value, str):
                value = redact_url(value)
            yield name, value

    @property
    def redacted_redis_url(self) -> str | None:
        return None if self.redis_url is None else redact_url(self.redis_url)

    @property
    def long_term_backend(self) -> Literal["sqlite", "postgres"]:
        """Which long-term backend this configuration selects: PostgreSQL when
        ``database_url`` is set, else SQLite (the embedded default)."""
        return "sqlite" if self.database_url is None else "postgres"

    @property
    def redacted_database_url(self) -> str | None:
        return None if self.database_url is None else redact_url(self.database_url)

    def ensure_audit_log_path(self) -> Path:
        """:attr:`audit_log_path`, creating the storage directory first when the log lives
        there (a clear ConfigurationError if it cannot be used)."""
        if self.audit_log_file is None:
            self.ensure_storage_dir()
        return self.audit_log_path

    def ensure_storage_dir(self) -> Path:
        """Create the storage directory (owner-only) if needed and return it."""
        path = self.storage_dir.expanduser()
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the storage directory {path} ({exc.strerror}); "
                "set ATTUNE_STORAGE_DIR to a writable directory"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"the storage directory {path} is not writable; "
                "set ATTUNE_STORAGE_DIR to a writable directory"
            )
        return path


class _AttuneEnvironment(PydanticBaseSettingsSource):
    """Reads the variables named in :data:`ENV_VARS` (an empty value counts as unset)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        var = ENV_VARS.get(field_name)
        value = os.environ.get(var) if var else None
        return (value or None), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {name: value for name, var in ENV_VARS.items() if (value := os.environ.get(var))}


def _source(loc: str, explicit: set[str]) -> str:
    """Where a setting came from, as an error names it (the argument or the variable)."""
    field = next((f for f, var in ENV_VARS.items() if var == loc), loc)
    if field in explicit or loc in explicit or field not in ENV_VARS:
        return f"argument {field!r}"
    return f"environment variable {ENV_VARS[field]}"


def _check_lifetimes(config: MemoryConfig, explicit: set[str]) -> None:
    """The default lifetimes within ``max_ttl_seconds``: else every stash or stage_pattern
    that gives none would be refused, long after the configuration was accepted."""
    limit = config.max_ttl_seconds
    for field, seconds, calls in (
        ("default_ttl_seconds", config.default_ttl_seconds, "stash without ttl_seconds"),
        ("staging_ttl_hours", config.staging_ttl_hours * 3600, "stage_pattern without ttl_hours"),
    ):
        if seconds > limit:
            raise ConfigurationError(
                f"invalid memory configuration: {_source(field, explicit)} is longer than "
                f"max_ttl_seconds ({limit} seconds), so every {calls} would be refused; "
                "lower it or raise max_ttl_seconds"
            )


def _describe(exc: ValidationError, explicit: set[str]) -> str:
    problems = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else "?"
        name = _source(loc, explicit)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "enum":
            msg = "expected one of " + ", ".join(e.value for e in Environment)
        problems.append(f"{name}: {msg}")
    return "invalid memory configuration: " + "; ".join(problems)
