"""The URLs of the services attune connects to: a Redis or PostgreSQL URL checked, with a
message that says what is wrong, and any URL's password redacted for messages.

:class:`~attune.memory.config.MemoryConfig` validates ``REDIS_URL`` and
``ATTUNE_DATABASE_URL`` with :func:`check_redis_url` and :func:`check_database_url`; the
Cluster and Sentinel forms are parsed by :mod:`attune.memory.short_term.cluster_url` and
:mod:`attune.memory.sentinel_url`.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from attune.memory.sentinel_url import (
    is_sentinel_url,
    parse_sentinel_url,
    redact_sentinel_url,
)
from attune.memory.validation import has_surrogate

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_DATABASE_SCHEMES = ("postgresql", "postgres")


def _split_url(value: str, what: str, schemes: tuple[str, ...], scheme_hint: str) -> SplitResult:
    """``value`` split, or ``ValueError`` for what every service URL must get right: no lone
    surrogate, a parseable port, one of ``schemes`` (``scheme_hint`` says which)."""
    if has_surrogate(value):
        raise ValueError(f"the {what} URL contains a lone surrogate; it cannot be encoded")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        # (urllib's message quotes what it read as the port: with a '/', '?' or '#' in a
        # password, that is part of the password.)
        raise ValueError(
            f"malformed {what} URL: its host or port cannot be read (a port is a number; "
            "a '/', '?', '#' or '@' in a user name or password must be percent-encoded, "
            "e.g. %2F for '/')"
        ) from None
    if parts.scheme not in schemes:
        raise ValueError(scheme_hint)
    return parts


def check_database_url(value: str) -> str:
    """``value`` stripped, if it is a PostgreSQL URL; else ``ValueError`` saying why."""
    value = value.strip()
    _split_url(
        value,
        "database",
        _DATABASE_SCHEMES,
        "a database URL starts with postgresql:// or postgres:// "
        "(for example postgresql://attune@localhost:5432/attune); leave it unset "
        "for the SQLite file under the storage directory",
    )
    return value


def check_redis_url(value: str) -> str:
    """``value`` stripped, if it is a Redis URL (one node, a Cluster's seeds or a Sentinel
    group); else ``ValueError`` saying what is wrong."""
    value = value.strip()
    if has_surrogate(value):
        raise ValueError("the Redis URL contains a lone surrogate; it cannot be encoded")
    from attune.memory.short_term import cluster_url  # no cycle: it imports no config

    if cluster_url.is_cluster_url(value):
        cluster_url.parse_cluster_url(value)  # ValueError says what is wrong
        return value
    if is_sentinel_url(value):  # redis+sentinel://host:26379,host:26380/service/db
        parse_sentinel_url(value)  # ValueError says what is wrong
        return value
    parts = _split_url(
        value,
        "Redis",
        _REDIS_SCHEMES,
        "a Redis URL starts with redis://, rediss:// or unix:// (for example "
        "redis://localhost:6379/0), redis+cluster:// for a Redis Cluster or "
        "redis+sentinel:// for Sentinel",
    )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the Redis URL has no host (for example redis://localhost:6379/0)")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// Redis URL needs a socket path")
    if parts.scheme != "unix" and not _REDIS_DB_PATH.fullmatch(parts.path):
        # redis-py ignores a path it cannot read as a number: /abc or /14/extra would
        # quietly be database 0, another application's, perhaps.
        raise ValueError(
            "the Redis URL's path is the database number, e.g. redis://localhost:6379/0 "
            "(or no path for database 0)"
        )
    in_query = [v.strip() for name, v in parse_qsl(parts.query) if name == "db"]
    in_path = parts.path.strip("/") if parts.scheme != "unix" else ""  # (unix: the socket)
    if len(in_query) > 1 or (in_path and in_query and in_query != [in_path]):
        # redis-py would take the last ?db= silently, over the path's number.
        raise ValueError(
            "the Redis URL names its database more than once (in its path and as ?db=); "
            "give the number once, e.g. redis://localhost:6379/2"
        )
    return value


#: The path of a redis:// or rediss:// URL: none, "/", or "/" and a database number.
_REDIS_DB_PATH = re.compile(r"(?:/[0-9]{0,9})?")


#: Query parameters of a URL that carry a password (libpq / asyncpg, redis-py).
_SECRET_PARAMS = ("password", "sslpassword")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, in its user part or as a query
    parameter (``?password=``) (safe for messages and health reports).

    In a Redis URL, a user part without ``:`` is hidden too: it is read as a user name,
    but is most often a password written without the ``:`` before it
    (``redis://PASSWORD@host``), which the server then refuses as a user."""
    from attune.memory.short_term.cluster_url import is_cluster_url  # see check_redis_url

    if is_sentinel_url(url) or is_cluster_url(url):  # several hosts: not a netloc urlsplit reads
        return redact_sentinel_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    query = "&".join(
        f"{piece.split('=', 1)[0]}=***"
        if piece.split("=", 1)[0].lower() in _SECRET_PARAMS
        else piece
        for piece in parts.query.split("&")
    )
    lone_user = parts.password is None and user_without_password(url)
    if parts.password is None and not lone_user:
        if query == parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    netloc = f"***@{host}" if lone_user else f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def user_without_password(url: str) -> bool:
    """Whether ``url`` is a Redis URL (any form) whose user part has no ``:``: a user name
    alone, or, as often, a password missing the ``:`` before it."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme.lower().startswith(("redis", "rediss", "unix")):
        return False
    userinfo = rest.rpartition("@")[0]
    return bool(userinfo) and ":" not in userinfo
