"""What a credential value looks like: the value tests of the secrets detector.

Shared by the rule table (:mod:`.secrets_rules`) and the prose scan (:mod:`.secrets_context`):
placeholders (``YOUR_API_KEY_HERE``, ``xxxxxxxx``), references to a secret kept elsewhere
(``${VAR}``, ``$DB_PASS``, ``%(name)s``, ``@Microsoft.KeyVault(...)``, ``os.environ[...]``,
``settings.API_KEY``; a value that only *starts* with ``$``, ``@`` or ``%`` is no reference),
well-known default passwords, entropy and character classes, and the names of things that are
no credential (``NextToken``, ``password_reset_url``). See :mod:`.secrets` for the design.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from urllib.parse import unquote

from attune.memory.security.keyfile import KEY_ID_PATTERN

_KEY_QUALIFIERS = ("api", "access", "secret", "private", "signing", "encryption", "master")

_MIN_CREDENTIAL_LEN = 8
_MIN_DISTINCT = 5
_MIN_ENTROPY = 2.5  # bits per character

_PLACEHOLDER = re.compile(
    r"(?i:(?:^|[-_.\s])(?:your|example|sample|placeholder|redacted|dummy|insert|replace"
    r"|changeme|here|x{3,})(?:[-_.\s]|$))"
    r"|EXAMPLE|(.)\1{5}|\.\.\.|\u2026|\*\*\*"
)
# an identifier: snake_case, UPPER_CASE, camelCase or PascalCase (not random mixed case)
_IDENT = (
    r"(?:[a-z_][a-z0-9_]*|[A-Z_][A-Z0-9_]*"
    r"|[a-z]{2,}(?:[A-Z][a-z]{2,}[0-9]*)+|(?:[A-Z][a-z]{2,}[0-9]*)+)"
)
_IDENT_RE = re.compile(_IDENT)
_MIN_RANDOM_LETTERS = 16
_MIN_RANDOM_ENTROPY = 3.5
# A variable's name after a sigil: snake_case, UPPER_CASE, camelCase, or PascalCase words
# without digits ("DB_PASS", "prodDbPass", "KeyVault"; not "ecr3tP", "xY9", "Summer2024").
_SIGIL_NAME = (
    r"(?:[a-z_][a-z0-9_]*|[A-Z_][A-Z0-9_]*"
    r"|[a-z]{2,}(?:[A-Z][a-z]+[0-9]*)+|(?:[A-Z][a-z]+)+)"
)
# What a value starting with "$", "@" or "%" must be to be a reference or an expansion:
# a value that merely starts with the character ("$ecr3tP@ss!", "@xY9#kLm2Qp") is not one.
_SIGIL_REFERENCE = (
    r"\$+[{(]"  # ${VAR}, $(command), $${VAR} (docker compose)
    # $VAR, $env:VAR, $config.db.password, $HOME/.pgpass: the whole value
    rf"|\$+{_SIGIL_NAME}(?:(?:\.|->|::?){_SIGIL_NAME})*(?:/\S*+)?$"
    # a crypt(3) hash ($2b$12$..., $argon2id$...): a password's hash, not the password
    r"|\$(?:[0-9][a-z]?|apr1|argon2(?:id|i|d)|scrypt|pbkdf2(?:-sha[0-9]+)?|sha1|g?y|md5)\$"
    # @Microsoft.KeyVault(...), @variables('x'), @{expr}, @/path, @./file, @param
    rf"|@(?:[{{(/~.@]|{_SIGIL_NAME}(?:\.{_SIGIL_NAME})*(?:\(|$))"
    rf"|%(?:{_SIGIL_NAME}%|env\(|\{{)"  # %NAME% (Windows), %env(NAME)% (Symfony), %{name}
)
# (what must start the value is one "^(?:...)" group: tried once, not at every position)
_TEMPLATE_REFERENCE = (
    r"^(?:[<{\[*&:]"
    r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$"  # environment variable name: OPENAI_API_KEY
    rf"|{_SIGIL_REFERENCE})"
    r"|\$\{|\{\{|%\(|(?i:os\.environ|process\.env|getenv|env\[)"
)
_REFERENCE = re.compile(
    _TEMPLATE_REFERENCE
    + rf"|^(?:{_IDENT}(?:\.{_IDENT})+$"  # attribute access: settings.API_KEY, self.dbPassword
    + r"|[A-Za-z][A-Za-z0-9+.-]*:"  # scheme-prefixed reference: vault:..., arn:..., op://
    + rf"|{KEY_ID_PATTERN}$)"  # an attune master key's id (keyfile.key_id), not the key
)
# an absolute path (PWD=/home/ci/work, OLDPWD=...): a place, not key material
_ABSOLUTE_PATH = re.compile(r"(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)+/?")
# in a URL's password only a template is a reference: "pIyqM8Dm.jX6" is no attribute access
_URL_REFERENCE = re.compile(_TEMPLATE_REFERENCE)
_DEFAULT_PASSWORD = re.compile(  # with up to 6 digits and a little punctuation around
    r"(?i)(?:pass(?:word|wd)?|pwd|changeme|change_me|secret|admin|root|test|guest|default"
    r"|letmein|welcome|qwerty|postgres|mysql|redis|user|foo|bar|baz|foobar)"
    r"[\W_]{0,3}\d{0,6}[\W_]{0,3}"
)
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_.-")
_MAX_NAME_SCAN = 64
_NOT_SECRET_TOKENS = tuple(
    f"{kind}token"
    for kind in (
        "next",
        "page",
        "continuation",
        "pagination",
        "sync",
        "resume",
        "client",
        "request",
        "idempotency",
        "lock",
        "creation",
        "change",
        "update",
        "cancellation",
        "publickey",
    )
)
_WORDY = re.compile(
    r"(?i)example|sample|dummy|placeholder|passw(?:or)?d|secret|token|changeme|your"
)


def _is_reference(value: str, pattern: re.Pattern[str] = _REFERENCE) -> bool:
    """A reference to a secret kept elsewhere (``$DB_PASS``, ``settings.API_KEY``), also
    when URL-encoded (``%24%7BDB_PASS%7D``: an escaped value is scanned as written too).
    ``pattern``: what a reference is (:data:`_URL_REFERENCE` in a URL's password)."""
    if pattern.search(value):
        return True
    return "%" in value and pattern.search(unquote(value)) is not None


def _is_placeholder(value: str) -> bool:
    """Example values, masks and low-variety filler rather than real key material."""
    return len(set(value)) < _MIN_DISTINCT or _PLACEHOLDER.search(value) is not None


def _char_classes(value: str) -> int:
    """How many of lower, upper, digit, symbol occur (``_ - .`` are separators, not symbols)."""
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() and c not in "_-." for c in value)
    )


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _looks_like_credential(value: str) -> bool:
    """Whether an assigned value is plausibly a real credential (see the module docstring)."""
    if len(value) < _MIN_CREDENTIAL_LEN or any(c.isspace() for c in value):
        return False
    if _is_reference(value) or _is_placeholder(value) or _DEFAULT_PASSWORD.fullmatch(value):
        return False
    if _WORDY.search(value):  # random key material has no such words: "idpexamplesecret456"
        return False
    if _ABSOLUTE_PATH.fullmatch(value):
        return False
    if not any(c.isdigit() or (not c.isalnum() and c not in "_-.") for c in value):
        # letters only: a word or an identifier (NextToken, accessToken), unless random
        return _random_letters(value)
    return _char_classes(value) >= 2 and _entropy(value) >= _MIN_ENTROPY


def _random_letters(value: str) -> bool:
    """Letters (and ``_-``) that are no identifier: 16+ of them, mixed case but neither
    camelCase nor PascalCase nor snake_case, and high entropy (``BNdigyyKctfhgstBOUpkEEsD``)."""
    return (
        len(value) >= _MIN_RANDOM_LETTERS
        and all(c.isalpha() or c in "_-" for c in value)
        and _char_classes(value) >= 2
        and _IDENT_RE.fullmatch(value) is None
        and _entropy(value) >= _MIN_RANDOM_ENTROPY
    )


def _names_a_secret(text: str, start: int, end: int) -> bool:
    """Whether the key name ending with the keyword at ``start:end`` names a credential.

    Not when it is a segment of ``A::B`` or ``arn:...:secret:...``, nor a token that is
    an identifier rather than a credential (``NextToken``, ``idempotency_token``,
    ``nextForwardToken`` ...; but ``NEXTAUTH_SECRET``, ``PREVIOUS_SECRET_KEY`` are secrets).
    """
    i = start
    while i > 0 and start - i < _MAX_NAME_SCAN and text[i - 1] in _NAME_CHARS:
        i -= 1
    # (``//registry.npmjs.org/:_authToken`` is an .npmrc name scoped to a registry)
    if i >= 2 and text[i - 1] == ":" and not (text[i - 2].isspace() or text[i - 2] in "{(,[/"):
        return False
    name = "".join(c for c in text[i:end].lower() if c.isalnum())
    # (next/previous page tokens: "nextForwardToken"; "NEXTAUTH_SECRET" is a secret)
    return not (
        name.endswith(_NOT_SECRET_TOKENS)
        or (name.startswith(("next", "prev")) and name.endswith("token"))
    )


#: Words after a keyword that make the name one of a credential's attributes, not the
#: credential: password_reset_url, token_type, secret_name, key_id, password_min_length.
_NOT_SECRET_QUALIFIERS = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "name names id ids arn type types url uri urls path paths file filename dir len "
        "length count hash hashed digest expiry expires expiration exp ttl timeout lifetime "
        "duration version policy header field param prefix suffix format label hint reset "
        "min max size strength rotation enabled required env var ref location store manager "
        "provider source endpoint kind mode scope algorithm alg encoding updated created "
        "changed age pattern regex column description help text title error message prompt "
        "input service vault limit validity issuer audience host port login user username email"
    ).split()
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _words(name: str) -> set[str]:
    """The lower-case words of a name part (``_PROD``, ``ResetUrl`` -> prod; reset, url)."""
    return {w.lower() for w in _WORD.findall(name)}
