"""``REDIS_URL`` for a Redis Sentinel deployment: what it may say, parsed and checked.

::

    redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?options]
    rediss+sentinel://...   (TLS to the sentinels and to the data nodes)

* The hosts are the **sentinels** (port 26379 unless given; an IPv6 address in brackets);
  the client asks them which node is the master of ``service`` and connects there.
* ``user:password`` authenticate to the **data nodes** (master and replicas), as in a
  ``redis://`` URL. Sentinels usually need no password; when they do (``requirepass`` /
  ``sentinel sentinel-pass``) give it separately, as ``?sentinel_password=...`` (and
  ``sentinel_username=...`` for an ACL user): the two secrets are often different.
* ``db`` is a database number (default 0).
* Options: ``sentinel_username``, ``sentinel_password``, and with ``rediss+sentinel`` the
  TLS files and checks ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
  ``ssl_cert_reqs`` (``required``/``optional``/``none``) and ``ssl_check_hostname``
  (``true``/``false``; true unless given), each used for sentinels and data nodes alike.

Passwords never appear in a message of this module; ``service_urls.redact_url`` hides both.
This module only reads text: nothing connects (the client:
:mod:`attune.memory.short_term.sentinel`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from attune.memory.url_parts import boolean_option, is_ipv6
from attune.memory.validation import has_surrogate

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
#: Options a sentinel URL accepts (its query string), and which need TLS.
_TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
_OPTIONS = ("sentinel_username", "sentinel_password", *_TLS_OPTIONS)
_CERT_REQS = ("required", "optional", "none")
#: A service name as Sentinel's ``sentinel monitor`` takes it: one word, no spaces.
_SERVICE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_HOST = re.compile(r"[A-Za-z0-9_.\-]{1,253}")
_EXAMPLE = "for example redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0"


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """A parsed sentinel URL. ``repr`` shows no password."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    tls: bool
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    #: TLS options (``ssl_*``), as redis-py's connection keywords.
    tls_options: tuple[tuple[str, str | bool], ...] = ()

    @property
    def addresses(self) -> str:
        """The sentinels as ``host:port,...`` (for messages and health reports)."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Sentinel deployment (by its scheme)."""
    return url.split("://", 1)[0].strip().lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """``url`` parsed, or ``ValueError`` saying what is wrong and what to write instead
    (the message never holds the URL's passwords)."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SENTINEL_SCHEMES:
        raise ValueError(
            f"a Sentinel URL starts with redis+sentinel:// or rediss+sentinel:// ({_EXAMPLE})"
        )
    if "#" in rest:
        raise ValueError(f"a Sentinel URL has no #fragment ({_EXAMPLE})")
    if has_surrogate(rest):
        raise ValueError("the Sentinel URL contains a lone surrogate; it cannot be encoded")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hosts.strip():
        raise ValueError(f"the Sentinel URL names no sentinel host ({_EXAMPLE})")
    sentinels = tuple(_address(part) for part in hosts.split(","))
    segments = path.split("/") if slash else []
    if not segments or not segments[0]:
        raise ValueError(
            "the Sentinel URL names no service: put the master's name as Sentinel monitors "
            f"it after the hosts ({_EXAMPLE})"
        )
    service = unquote(segments[0])
    if not _SERVICE.fullmatch(service):
        raise ValueError(
            f"the Sentinel URL's service name must be 1-128 letters, digits or _ . : - ({_EXAMPLE})"
        )
    db = 0
    if len(segments) > 2 or (len(segments) == 2 and not segments[1]):
        raise ValueError(f"the Sentinel URL's path is /service or /service/db ({_EXAMPLE})")
    if len(segments) == 2:
        if not segments[1].isascii() or not segments[1].isdigit() or len(segments[1]) > 9:
            raise ValueError(f"the Sentinel URL's database must be a number such as 0 ({_EXAMPLE})")
        db = int(segments[1])
    options = _options(query, tls=scheme == "rediss+sentinel")
    return SentinelURL(
        sentinels=sentinels,
        service=service,
        db=db,
        tls=scheme == "rediss+sentinel",
        username=username,
        password=password,
        sentinel_username=_text(options.pop("sentinel_username", None)),
        sentinel_password=_text(options.pop("sentinel_password", None)),
        tls_options=tuple(sorted(options.items())),
    )


def _address(part: str) -> tuple[str, int]:
    """One ``host[:port]`` of the host list."""
    part = part.strip()
    if not part:
        raise ValueError(
            "the Sentinel URL lists an empty host: give each sentinel as host:port, "
            f"separated by commas ({_EXAMPLE})"
        )
    if part.startswith("["):  # [IPv6]:port
        host, close, tail = part[1:].partition("]")
        if not close or not is_ipv6(host):
            raise ValueError(f"the Sentinel URL has a malformed IPv6 address ({_EXAMPLE})")
        if tail and not tail.startswith(":"):
            raise ValueError(f"the Sentinel URL has a malformed host ({_EXAMPLE})")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_or_empty = part.partition(":")
        port_text = port_text_or_empty if colon else None
        if not _HOST.fullmatch(host):
            raise ValueError(
                f"the Sentinel URL has a host that is not a name or an IP address ({_EXAMPLE})"
            )
    if port_text is None:
        return host, DEFAULT_SENTINEL_PORT
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"the Sentinel URL has a bad port for host {host!r}: a port is a number "
            f"from 1 to 65535 ({_EXAMPLE})"
        )
    return host, int(port_text)


def _options(query: str, *, tls: bool) -> dict[str, str | bool]:
    """The query string's options, checked (each at most once, known, well-formed)."""
    options: dict[str, str | bool] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in _OPTIONS:
            shown = f" ({name!r})" if re.fullmatch(r"[a-z_]{1,40}", name) else ""
            raise ValueError(
                f"the Sentinel URL has an option it does not accept{shown}; "
                f"accepted: {', '.join(_OPTIONS)}"
            )
        if name in options:
            raise ValueError(f"the Sentinel URL gives the option {name} twice")
        if name in _TLS_OPTIONS and not tls:
            raise ValueError(f"the option {name} needs TLS: use rediss+sentinel://")
        if name == "ssl_cert_reqs" and value not in _CERT_REQS:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
        options[name] = (
            boolean_option(name, value, "Sentinel URL") if name == "ssl_check_hostname" else value
        )
    return options


def _text(value: str | bool | None) -> str | None:
    """A text option's value (only ``ssl_check_hostname`` is read as a boolean)."""
    assert not isinstance(value, bool)
    return value


def redact_sentinel_url(url: str) -> str:
    """``url`` with its passwords (the data nodes' in the user part, ``sentinel_password``
    and any ``password`` option) replaced by ``***``; the hosts, service and db kept.

    Errs on the side of hiding: the user part ends at the *last* ``@``, so a password
    with an unescaped ``/`` or ``?`` is hidden too (and whatever followed it up to there).
    """
    scheme, _, rest = url.partition("://")
    rest = rest.partition("#")[0]
    userinfo, at, rest = rest.rpartition("@")
    rest, question, query = rest.partition("?")
    netloc = rest
    if at:
        user, colon, _secret = userinfo.partition(":")
        # A user part without ':' is hidden too: often a password missing its ':'.
        netloc = f"{user}:***@{rest}" if colon else f"***@{rest}"
    pieces = []
    for piece in query.split("&") if question else []:
        name = unquote(piece.partition("=")[0]).lower()
        pieces.append(f"{piece.partition('=')[0]}=***" if "password" in name else piece)
    return f"{scheme}://{netloc}" + ("?" + "&".join(pieces) if question else "")
