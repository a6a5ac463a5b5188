"""The secrets detector's rule table (see :mod:`.secrets` for the design).

Each rule is a compiled regex plus a *locator* that validates a match and returns the span of
the secret, or ``None`` to reject it. What the locators ask of a value (placeholders,
references, entropy, default passwords, names that are not credentials) is
:mod:`.secrets_values`, shared with the prose scan in :mod:`.secrets_context`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from attune.errors import ConfigurationError
from attune.memory.security.secrets_values import (
    _DEFAULT_PASSWORD,
    _KEY_QUALIFIERS,
    _NOT_SECRET_QUALIFIERS,
    _PLACEHOLDER,
    _URL_REFERENCE,
    _char_classes,
    _is_placeholder,
    _is_reference,
    _looks_like_credential,
    _names_a_secret,
    _random_letters,
    _words,
)

Span = tuple[int, int]
Locator = Callable[[re.Match[str]], Span | None]

_TOKEN_CHARS = string.ascii_letters + string.digits + "_-"


@dataclass(frozen=True, slots=True)
class _Rule:
    """One detection rule: a pattern rule or a keyword rule (see the module docstring)."""

    kind: str
    pattern: re.Pattern[str]
    locate: Locator
    rank: int  # specificity: the higher rank wins an overlap
    #: pattern rule: ``pattern`` runs only if one of these occurs in the text (none: always).
    needles: tuple[str, ...] = ()
    #: keyword rule: ``pattern`` is matched at each occurrence of these, in any case.
    keywords: tuple[str, ...] = ()
    #: keyword rule: a cheap check of what follows the keyword, before the full match is
    #: tried ("the token expired" and ``token_id = 1`` fail it).
    tail: re.Pattern[str] | None = None
    #: a pattern match preceded by one of these characters is inside a longer word.
    boundary: str = _TOKEN_CHARS


# -- locators ------------------------------------------------------------------------------------


def _token(m: re.Match[str]) -> Span | None:
    """A provider token: the whole match, unless its random part is a placeholder."""
    return None if _is_placeholder(m["body"]) else m.span()


def _mixed_token(m: re.Match[str]) -> Span | None:
    """A token without a distinctive prefix body: must also mix letters and digits."""
    body = m["body"]
    if _is_placeholder(body) or not (
        any(c.isdigit() for c in body) and any(c.isalpha() for c in body)
    ):
        return None
    return m.span()


def _stripe(m: re.Match[str]) -> Span | None:
    """A Stripe key: a mixed body, or random letters (one in a few hundred real keys)."""
    return _mixed_token(m) or (m.span() if _random_letters(m["body"]) else None)


def _aws_secret(m: re.Match[str]) -> Span | None:
    body = m["body"]
    if _is_placeholder(body) or _char_classes(body) < 2:
        return None
    return m.span("body")


def _jwt(m: re.Match[str]) -> Span | None:
    header = m["header"]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # bad base64/UTF-8/JSON, deep nesting
        return None
    if not isinstance(decoded, dict) or "alg" not in decoded or _is_placeholder(m["sig"]):
        return None
    return m.span()


def _private_key(m: re.Match[str]) -> Span | None:
    """A PEM block with real key material (64+ base64 characters) after its header."""
    material = "".join(m["body"].split())
    if len(material) < 64 or _is_placeholder(material):
        return None
    end = m.end("footer") if m["footer"] else m.start("body") + len(m["body"].rstrip())
    return m.start(), end


def _url_password(m: re.Match[str]) -> Span | None:
    """The password of ``scheme://user:password@host``, unless a placeholder or reference."""
    value = m["body"]
    # a leading "*", "&" or ":" is a character of the password here, not a dereference
    if _is_reference(value.lstrip("*&:"), _URL_REFERENCE) or _DEFAULT_PASSWORD.fullmatch(value):
        return None
    return None if _PLACEHOLDER.search(value) else m.span("body")


def _assignment(m: re.Match[str]) -> Span | None:
    """The value of ``password = "..."`` and friends (``DB_PASSWORD_PROD = ...`` too, but
    not ``password_reset_url``, ``token_type``, ``secret_name``); in a delimited row
    (``name,value``) only a whole field that is no ``name=value`` of its own."""
    if not _names_a_secret(m.string, m.start(), m.end("name")):
        return None
    if not _NOT_SECRET_QUALIFIERS.isdisjoint(_words(m["suffix"] or "")):
        return None
    separator = m.string[m.end("suffix") : m.start(m.lastgroup or 0)]
    if not any(c in separator for c in ":=") and any(c in separator for c in ",|\t"):
        value = m[m.lastgroup or 0]
        after = m.string[m.end() : m.end() + 1]
        if "=" in value or (after and after not in ",|\t\r\n \"'"):
            return None
    return _assigned_value(m)


def _assigned_value(m: re.Match[str]) -> Span | None:
    """The value group (dq, sq, bq or bare) of ``m``, if it looks like a credential."""
    group = m.lastgroup  # dq, sq, bq or bare: the value's only capturing groups
    if group is None or not _looks_like_credential(m[group]):
        return None
    return m.span(group)


def _whole(m: re.Match[str]) -> Span | None:
    return m.span() if m.end() > m.start() else None


# -- the rule table ------------------------------------------------------------------------------

_RANK_PROVIDER = 4
_RANK_CONNECTION = 3
_RANK_EXTRA = 2
_RANK_GENERIC = 1

_E = r"(?![A-Za-z0-9_-])"  # token end boundary
# = := => anywhere; a colon only as in JSON ("key": v) or YAML (key: v), not in a::b or arn:x
# a closing quote or bracket may come first (os.environ["APIKEY"] = ...); in delimited data
# (CSV, TSV, Markdown and SQL rows of name/value pairs) a comma, pipe or tab separates them.
_SEP = (
    r"""(?:["']?\]?[ \t]{0,4}+(?::=|=>|=)|["']\]?[ \t]{0,4}+:|[ \t]{0,4}+:(?=[ \t])"""
    r"""|["']?(?:[ ]{0,4}+[,|]|\t))[ \t]{0,4}+"""
)

# an unquoted value: it ends at a space, a quote, a bracket or a delimiter; an "&" inside
# it belongs to it (API_SECRET=ab&Xk92...), unless a query string's next parameter
# ("?token=...&limit=5"), an HTML entity ("&amp;") or a shell's "&&" starts there
_BARE = r"""[^\s"'`,;&()\[\]{}<>]"""
_INNER_AMPERSAND = r"&(?!&|[\w.%\[\]-]{0,64}+=|#?\w{1,8};)"


def _pattern(
    kind: str,
    regex: str,
    locate: Locator,
    *needles: str,
    rank: int = _RANK_PROVIDER,
    boundary: str = _TOKEN_CHARS,
) -> _Rule:
    return _Rule(kind, re.compile(regex), locate, rank, needles=needles, boundary=boundary)


def _keyword(
    kind: str, regex: str, locate: Locator, *keywords: str, rank: int, tail: str | None = None
) -> _Rule:
    return _Rule(
        kind,
        re.compile(regex),
        locate,
        rank,
        keywords=keywords,
        tail=None if tail is None else re.compile(tail),
        boundary="",
    )


_RULES: tuple[_Rule, ...] = (
    _pattern(
        "anthropic_api_key",
        r"sk-ant-(?:[a-z]{3,8}\d{2}-)?(?P<body>[A-Za-z0-9_-]{20,300}+)" + _E,
        _token,
        "sk-",
    ),
    _pattern(
        "openai_api_key",
        r"sk-(?:proj|svcacct|admin)-"
        r"(?P<body>[A-Za-z0-9]{6}[A-Za-z0-9_-]{0,300}+|[A-Za-z0-9_-]{20,300}+)" + _E,
        _token,
        "sk-",
    ),
    _pattern("openai_api_key", r"sk-(?P<body>[A-Za-z0-9]{20,300}+)" + _E, _mixed_token, "sk-"),
    _pattern(
        "aws_access_key_id",
        r"A(?:KIA|SIA)(?P<body>[A-Z2-7]{16})(?![A-Za-z0-9])",
        _token,
        "AKIA",
        "ASIA",
        boundary=string.ascii_letters + string.digits,
    ),
    _pattern(
        "github_token",
        r"gh[pousr]_(?P<body>[A-Za-z0-9]{36,251}+)(?![A-Za-z0-9_])",
        _token,
        "gh",
    ),
    _pattern(
        "github_token",
        r"github_pat_(?P<body>[A-Za-z0-9_]{50,251}+)(?![A-Za-z0-9_])",
        _token,
        "github_pat_",
    ),
    _pattern(
        "gitlab_token",
        r"gl(?:pat|dt|rt|ptt|ft|cbt|soat|oas)-(?P<body>[A-Za-z0-9_-]{20,300}+)" + _E,
        _token,
        "gl",
    ),
    _pattern(
        "slack_token",
        r"xox(?:e\.xox)?[abeoprs]-(?P<body>\d[A-Za-z0-9-]{8,250}+)" + _E,
        _mixed_token,
        "xox",
    ),
    _pattern(
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<body>[A-Za-z0-9_/-]{20,250}+)",
        _token,
        "hooks.slack.com/",
        boundary="",
    ),
    _pattern(
        "stripe_key",
        r"(?:(?:sk|rk)_(?:live|test)|whsec)_(?P<body>[A-Za-z0-9]{16,250}+)(?![A-Za-z0-9])",
        _stripe,
        "_live_",
        "_test_",
        "whsec_",
    ),
    _pattern("google_api_key", r"AIza(?P<body>[A-Za-z0-9_-]{35})" + _E, _token, "AIza"),
    _pattern(
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----\s{0,8}+"
        r"(?:[A-Za-z-]{1,32}:[^\r\n]{0,256}+\s{1,8}+){0,8}+"  # Proc-Type:, DEK-Info:, Version:
        r"(?P<body>[A-Za-z0-9+/=\s]{0,65536}+)"
        r"(?P<footer>-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
        _private_key,
        "PRIVATE KEY",
        boundary="",
    ),
    _pattern(
        "jwt",
        r"(?P<header>eyJ[A-Za-z0-9_-]{8,2048}+)\.[A-Za-z0-9_-]{8,16384}+\."
        r"(?P<sig>[A-Za-z0-9_-]{16,2048}+)" + _E,
        _jwt,
        "eyJ",
    ),
    _pattern(
        "connection_string_password",
        r"://[^\s:/@]{0,128}+:(?P<body>[^\s/@]{1,256}+)@(?=[A-Za-z0-9\[])",
        _url_password,
        "://",
        rank=_RANK_CONNECTION,
        boundary="",
    ),
    _keyword(
        "aws_secret_access_key",
        r"(?i:secret[_.-]?access[_.-]?key|(?:(?<=aws)|(?<=aws[_.-]))secret[_.-]?key)"
        + _SEP
        + r"""["']?(?P<body>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])""",
        _aws_secret,
        "secret",
        rank=_RANK_PROVIDER,
        tail=r"""[a-z_.-]{0,12}+["']?\]?(?:[ \t]{0,4}+[:=,|]|\t)""",  # _access_key = ...
    ),
    _keyword(
        "generic_secret",
        r"(?i:(?P<name>pass(?:word|wd|phrase)|pwd|secret|token|credentials?|"
        + "(?:"
        + "|".join(f"(?<={q})|(?<={q}[ _-])" for q in _KEY_QUALIFIERS)  # api_key, apiKey ...
        + ")key))"
        # a qualifier after the keyword: DB_PASSWORD_PROD, SECRET_KEY_BASE, apiKeyV2
        + r"(?P<suffix>(?:[_.-][A-Za-z0-9]{1,16}|[A-Z][a-z0-9]{1,15}){0,3})"
        + _SEP
        + r"""(?:"(?P<dq>[^"\r\n]{1,256}+)"|'(?P<sq>[^'\r\n]{1,256}+)'|`(?P<bq>[^`\r\n]{1,256}+)`"""
        + rf"|(?P<bare>{_BARE}{{1,256}}+(?:{_INNER_AMPERSAND}{_BARE}{{1,256}}+){{0,16}}+)"
        + r"(?![(\[]))",
        _assignment,
        *("pass", "pwd", "secret", "token", "credential", "key"),
        rank=_RANK_GENERIC,
        # (pass)phrase = ..., (credential)s: ..., ["apikey"] = ..., password,<value>,
        # password_prod = ...
        tail=r"""[a-z0-9_.-]{0,56}+["']?\]?(?:[ \t]{0,4}+[:=,|]|\t)""",
    ),
    _keyword(
        "generic_secret",
        # Authorization: Basic ..., and as a JSON / dict entry: "Authorization": "Basic ..."
        r"""(?i:bearer|authorization["']?[ \t]{0,4}+:[ \t]{0,4}+["']?(?:basic|token))[ \t]{1,4}+"""
        r"(?P<bare>[A-Za-z0-9._~+/-]{8,4096}+=*)",
        _assigned_value,
        "bearer",
        "authorization",
        rank=_RANK_GENERIC,
    ),
)

_KIND_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_MAX_KIND_LEN = 64


def _extra_rule(kind: object, regex: object) -> _Rule:
    """Compile one user pattern; errors name the kind but never echo the regex."""
    if not isinstance(kind, str) or len(kind) > _MAX_KIND_LEN or not _KIND_NAME.fullmatch(kind):
        shown = repr(kind[:_MAX_KIND_LEN]) if isinstance(kind, str) else type(kind).__name__
        raise ConfigurationError(
            f"secret pattern name {shown} is not a snake_case identifier of at most "
            f"{_MAX_KIND_LEN} characters; rename it (for example 'internal_token')"
        )
    if not isinstance(regex, str):
        raise ConfigurationError(f"secret pattern {kind!r} must be a regular expression string")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise ConfigurationError(
            f"secret pattern {kind!r} is not a valid regular expression "
            f"({exc.msg} at position {exc.pos}); fix or remove it"
        ) from None
    return _Rule(kind, pattern, _whole, _RANK_EXTRA, boundary="")
