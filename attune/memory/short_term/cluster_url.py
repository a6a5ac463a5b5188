"""``redis+cluster://`` URLs: what they may say, and what they mean to the cluster client.

    redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value...]
    rediss+cluster://...   the same over TLS

Every ``host:port`` is a *seed*: any one reachable node is enough for the client to
discover the whole cluster (``CLUSTER SLOTS``). A cluster has only database 0, so the
path is empty or ``/0``. Options: the TLS ones (``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``) and ``client_name``;
timeouts come from the configuration (``redis_connect_timeout``, ``redis_socket_timeout``).

Nothing here connects, imports the configuration, or repeats a password in an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from attune.memory.url_parts import boolean_option, is_ipv6

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

_FORM = "redis+cluster://[user:password@]host:port[,host:port...]"
#: Query options passed to the cluster client, and how each is read.
_OPTIONS: dict[str, Any] = {
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": lambda v: _cert_reqs(v),
    "ssl_check_hostname": lambda v: boolean_option("ssl_check_hostname", v, "Redis Cluster URL"),
    "client_name": str,
}
_CERT_REQS = ("required", "optional", "none")
#: A host name or IPv4 address (an IPv6 address is bracketed, and checked as one).
_HOST = re.compile(r"[A-Za-z0-9_.\-]{1,253}")
_TLS_ONLY = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


@dataclass(frozen=True)
class ClusterURL:
    """A parsed cluster URL: the seed nodes and the client options (with the password)."""

    seeds: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def safe(self) -> str:
        """The URL without its password (for messages and health reports)."""
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        user = ""
        if self.password is not None:
            user = (self.username or "") + ":***@"
        elif self.username is not None:  # often a password missing its ':': hidden too
            user = "***@"
        nodes = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.seeds
        )
        return f"{scheme}://{user}{nodes}"


def is_cluster_url(url: str | None) -> bool:
    """Whether ``url`` asks for Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url is not None and url.split("://", 1)[0].strip().lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterURL:
    """``url`` parsed, or ``ValueError`` saying what is wrong (never echoing a password)."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"a Redis Cluster URL starts with redis+cluster:// ({_FORM})")
    rest, _, query = rest.partition("?")
    rest, _, fragment = rest.partition("#")
    if fragment:
        raise ValueError(f"a Redis Cluster URL has no #fragment ({_FORM})")
    netloc, slash, path = rest.partition("/")
    if slash and path not in ("", "0"):
        raise ValueError(
            f"Redis Cluster has only database 0: end the cluster URL with /0 or nothing ({_FORM})"
        )
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    seeds = tuple(_seed(part) for part in hosts.split(","))
    tls = scheme == "rediss+cluster"
    options = _options(query, tls)
    return ClusterURL(seeds, tls, username, password, options)


def _seed(text: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host:
        raise ValueError(f"every node of a Redis Cluster URL is host:port ({_FORM})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not is_ipv6(host):
            raise ValueError(
                f"a node of the Redis Cluster URL has a malformed IPv6 address ({_FORM})"
            )
    elif is_ipv6(host):
        raise ValueError(
            f"an IPv6 node of a Redis Cluster URL goes in brackets, as [::1]:7000 ({_FORM})"
        )
    elif not _HOST.fullmatch(host):
        raise ValueError(
            "a node of the Redis Cluster URL has a host that is not a name or an IP address "
            f"(letters, digits, '.', '-', '_'), or the nodes are not separated by commas ({_FORM})"
        )
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a node of the Redis Cluster URL has no valid port (1-65535) ({_FORM})")
    return host, int(port)


def _options(query: str, tls: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "db":
            if value.strip() not in ("", "0"):
                raise ValueError("Redis Cluster has only database 0 (db=0 or no db option)")
            continue
        reader = _OPTIONS.get(name)
        if reader is None:
            # Named only if it looks like an option: a password pasted after '?' is not.
            shown = f" ({name!r})" if re.fullmatch(r"[a-z_]{1,40}", name) else ""
            raise ValueError(
                f"the Redis Cluster URL has an option attune does not pass on{shown}; "
                f"known: {', '.join(_OPTIONS)}"
            )
        if name in options:
            raise ValueError(f"the Redis Cluster URL gives the option {name} twice")
        if name in _TLS_ONLY and not tls:
            raise ValueError(f"the option {name} needs TLS: use rediss+cluster://")
        options[name] = reader(value)
    return options


def _cert_reqs(value: str) -> str:
    """``ssl_cert_reqs``, checked now: redis-py would refuse it only when it connects."""
    if value not in _CERT_REQS:
        raise ValueError(
            f"the option ssl_cert_reqs of the Redis Cluster URL is one of {', '.join(_CERT_REQS)}"
        )
    return value
