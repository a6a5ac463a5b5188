"""Secrets introduced in prose and log lines: "the database password for staging: <value>".

No ``key = value`` here, so the value is found from the words around it:

* a *context word* (``password``, ``passwd``, ``passphrase``, ``pwd``, ``secret``, ``token``,
  ``credential``, ``key`` and ``apikey``) starts a look-ahead, unless it is inside a longer
  lower-case word (``monkey``, ``secretary``, ``keyserver``; ``ClientSecret``,
  ``aws_secret`` and ``DB_PASSWORD_PROD`` count), in a dotted name (``keys.openpgp.org``),
  or it is a ``public key`` or another key that is no credential (``cache key``,
  ``idempotency key``, ``gpg key`` ...: :data:`_NOT_SECRET_KEYS`);
* the look-ahead reads at most :data:`_MAX_WORDS` whitespace-separated words on the same
  line and sentence; it stops at a *blocker* word that says the next value is something
  else (``commit``, ``sha256``, ``checksum``, ``id``, ``version``, ``file`` ...) and at a
  command-line option (``--recv-keys``: what follows is that option's);
* the first word (stripped of surrounding punctuation) that looks like key material is the
  secret: 10+ characters, a digit and a letter, no placeholder, reference, URL, e-mail,
  UUID or path, and Shannon entropy >= :data:`_MIN_ENTROPY` bits per character. An SSH
  public key (``ssh-ed25519 AAAA...``) or another ``name=value`` stops the look-ahead.

A 40-character base64 value after "secret access key" is an ``aws_secret_access_key``,
anything else a ``generic_secret``. A context word that ends a YAML key with a block list
under it (``api_keys:`` then ``- <value>`` lines) introduces each item, judged as a word
of prose is (as :func:`~.steps._as_lines` reads such a list in structured data). Findings
rank below every rule of the table.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Final

from attune.memory.security.secrets_values import (
    _DEFAULT_PASSWORD,
    _KEY_QUALIFIERS,
    _REFERENCE,
    _WORDY,
    _char_classes,
    _entropy,
    _is_placeholder,
    _names_a_secret,
    _random_letters,
)

_MAX_WORDS: Final = 6
_MAX_REACH: Final = 120  # characters after the context word
_MIN_LEN: Final = 10
_MIN_ENTROPY: Final = 3.0

_CONTEXT = re.compile(r"passw(?:or)?d|passphrase|pwd|secret|token|credential|api[ _-]?key|key")
_WORD = re.compile(r"[^\s&]+")
_STRIP = "\"'`()[]{}<>,;:.!?*=\\"
_BLOCKERS: Final = frozenset(
    {
        "commit",
        "sha",
        "sha1",
        "sha256",
        "sha512",
        "md5",
        "hash",
        "checksum",
        "digest",
        "fingerprint",
        "id",
        "uuid",
        "request",
        "trace",
        "version",
        "release",
        "build",
        "file",
        "path",
        "name",
        "type",
        "length",
        "size",
        "count",
        "expires",
        "expired",
        "at",
        "on",
        "in",
    }
)
#: an SSH public key: its algorithm, then a base64 blob that starts with "AAAA"
_PUBLIC_KEY_PREFIXES: Final = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-", "AAAA")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# a path: absolute, or relative with lower-case segments or a file extension
_PATH = re.compile(
    r"(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)+/?"
    r"|[a-z0-9_.:-]+(?:/[a-z0-9_.:-]+)+/?"
    r"|[\w.:-]+(?:/[\w.:-]+)+\.[a-z][a-z0-9]{0,3}"
)
# a slug or an identifier: segments of lower-case letters, digits or short hex
# (``kms-key-74-primary``, ``build-51737-4919e11``, ``report_2026.csv``)
_SLUG_PART = re.compile(r"[a-z]+|[0-9]+|[0-9a-f]{1,12}")
_SLUG_SEP = re.compile(r"[-_.:]")
_BLOB_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_-+/=")
_MAX_NAME: Final = 40
#: Words before "key" that make it no credential: "cache key <sha256>", "gpg key <id>"
#: (not "primary", "group" or "cluster": an Azure primary key, a group key are secrets)
_NOT_SECRET_KEYS: Final = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "cache caching foreign composite unique candidate natural surrogate partition sort "
        "range hash row index lookup join grouping shard sharding routing clustering dedup "
        "dedupe deduplication idempotency correlation object blob bucket map dict dictionary "
        "config setting settings registry translation i18n gpg pgp host"
    ).split()
)
#: Words of a name part after a context word that still name the credential, a variant of
#: it (DB_PASSWORD_PROD, token_v2), where other words make an attribute (token_type) or
#: something else (PRIVATE_KEY_USAGE_PERIOD).
_VARIANTS: Final = frozenset(
    (  # noqa: SIM905 (a word list reads best as words)
        "prod production live stage staging stg dev development test testing qa uat sandbox "
        "local ci preprod demo primary secondary main backup old new current previous prev "
        "alt default root admin master readonly ro rw"
    ).split()
)
_VARIANT_SUFFIX = re.compile(
    rf"(?:[_-](?:{'|'.join(sorted(_VARIANTS, key=len, reverse=True))}|v?[0-9]{{1,4}}))++"
    r"(?![a-z0-9])"
)
# a command-line option: its value follows it, not the context word's
_OPTION = re.compile(r"--?[a-z][a-z-]*+")
_LONG_WORD = re.compile(rf"[^\s]{{{_MIN_LEN},}}")
_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# an e-mail address, user@host:path, @mention, @scope/package, image@sha256:...
_AT_NAME = re.compile(r"[\w.+-]*+@[A-Za-z0-9][\w.-]*+(?:[:/].*+)?")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_AWS_CONTEXT = re.compile(r"secret[ _.-]?access[ _.-]?key")


def _key_material(word: str, aws: bool) -> bool:
    """Whether a word read after a context word is plausibly the secret itself (``aws``:
    after "secret access key", where 40 base64 characters are one even if they hold "/")."""
    if len(word) < _MIN_LEN or "://" in word or _AT_NAME.fullmatch(word):
        return False  # an address, a handle, a scoped name; not "$ecr3tP@ss!"
    if _URL_ESCAPE.search(word):
        return False  # an escaped word is read in the decoded layer
    if _REFERENCE.search(word) or _is_placeholder(word) or _DEFAULT_PASSWORD.fullmatch(word):
        return False
    if _WORDY.search(word):
        return False
    if aws and _AWS_SECRET.fullmatch(word):
        return _char_classes(word) >= 3
    if not any(c.isdigit() for c in word):
        return _random_letters(word)
    if not any(c.isalpha() for c in word) or _UUID.fullmatch(word) or _PATH.fullmatch(word):
        return False
    if all(_SLUG_PART.fullmatch(part) for part in _SLUG_SEP.split(word) if part):
        return False
    return _char_classes(word) >= 2 and _entropy(word) >= _MIN_ENTROPY


def _starts_a_context(text: str, folded: str, start: int, end: int) -> bool:
    """The context word at ``start:end`` stands on its own (or is a part of a name)."""
    if start > 0 and text[start - 1].islower() and text[start].islower():
        return False  # inside a lower-case word: monkey, turnkey
    after = end + 1 if folded.startswith("s", end) else end  # passwords, tokens and keys
    if after < len(text) and folded[after].isalpha():
        return False  # secretary, keyboard, keyserver
    if folded.startswith(".", after) and folded[after + 1 : after + 2].isalnum():
        return False  # a dotted name: keys.openpgp.org, token.actions.githubusercontent.com
    if _inside_a_blob(text, start, end):
        return False  # "...AAAAIfgPwd2YX7..." in a base64 blob is no context word
    if folded[max(0, start - 7) : start].rstrip(" _-").endswith("public"):
        return False
    if folded[start:end] == "key" and start > 0 and (text[start - 1] in "_-" or text[start] == "K"):
        # the end of a longer name (s3_key, cacheKey): only a credential's name counts
        name = folded[max(0, start - 16) : start].rstrip("_-")
        if not name.endswith(_KEY_QUALIFIERS):
            return False
    elif folded[start:end] == "key" and _word_before(folded, start) in _NOT_SECRET_KEYS:
        return False  # cache key, idempotency key, gpg key: an id or a digest follows
    if (
        after < len(text)
        and text[after] in "_-"
        and not _continues_to_a_secret(folded, after)
        and not _VARIANT_SUFFIX.match(folded, after)
    ):
        return False  # token_type, key_policy, password_reset_url, tokens_used
    return _names_a_secret(text, start, end)


def _word_before(folded: str, start: int) -> str:
    """The word before ``start``, across spaces ("the cache key": "cache")."""
    at = start
    while at > 0 and start - at < _MAX_NAME and folded[at - 1] in " \t":
        at -= 1
    lo = at
    while lo > 0 and at - lo < _MAX_NAME and folded[lo - 1].isalnum():
        lo -= 1
    return folded[lo:at]


def _inside_a_blob(text: str, start: int, end: int) -> bool:
    """Whether the word holding ``text[start:end]`` is base64 or longer than a name."""
    lo, hi = start, end  # bounded: a long run of name characters is a blob anyway
    while lo > 0 and start - lo <= _MAX_NAME and text[lo - 1] in _BLOB_CHARS:
        lo -= 1
    while hi < len(text) and hi - end <= _MAX_NAME and text[hi] in _BLOB_CHARS:
        hi += 1
    word = text[lo:hi].rstrip("=")
    return len(word) > _MAX_NAME or "+" in word or "/" in word


def _continues_to_a_secret(folded: str, end: int) -> bool:
    """Whether the name that goes on after a context word ends with one (secret_access_key)."""
    at, limit = end, min(len(folded), end + _MAX_NAME)
    while at < limit and (folded[at].isalnum() or folded[at] in "_-"):
        at += 1
    tail = folded[end:at].rstrip("s")
    return tail.endswith(("key", "secret", "token", "password", "passwd", "passphrase"))


def context_secrets(text: str, folded: str) -> Iterator[tuple[str, int, int]]:
    """``(kind, start, end)`` of each value a context word introduces (``folded``: ``text``
    lower-cased, of the same length)."""
    after = 0
    lists = _ANY_LIST.search(text) is not None  # one search, not a match per context word
    for m in _CONTEXT.finditer(folded):
        if m.start() < after:
            continue
        listed = _LIST_KEY.match(folded, m.end()) if lists else None
        if listed is None and not _LONG_WORD.search(text, m.end(), m.end() + _MAX_REACH):
            continue  # cheap first: no word long enough to be key material follows
        if not _starts_a_context(text, folded, m.start(), m.end()):
            continue
        if listed is not None:  # api_keys: then "- <value>" lines
            for start, end in _list_items(text, listed.end()):
                yield "generic_secret", start, end
                after = end
            continue
        aws = _AWS_CONTEXT.match(folded, m.start()) is not None
        found = _value_after(text, folded, m.end(), aws)
        if found is None:
            continue
        start, end = found
        aws = aws and _AWS_SECRET.fullmatch(text, start, end) is not None
        yield ("aws_secret_access_key" if aws else "generic_secret"), start, end
        after = end


def _value_after(text: str, folded: str, at: int, aws: bool) -> tuple[int, int] | None:
    limit = min(len(text), at + _MAX_REACH)
    line_end = text.find("\n", at, limit)
    if line_end >= 0:
        limit = line_end
    if at < len(text) and (text[at].isalnum() or text[at] == "_"):
        # the rest of a name (``_access_key``, ``s``): skip it
        while at < limit and (text[at].isalnum() or text[at] in "_-"):
            at += 1
    for count, w in enumerate(_WORD.finditer(text, at, limit)):
        if count >= _MAX_WORDS:
            return None
        raw = w.group()
        core = raw.strip(_STRIP)
        if "=" in core:
            return None  # another name=value: the context word's value is not here
        if core.lower() in _BLOCKERS or core.startswith(_PUBLIC_KEY_PREFIXES):
            return None
        if _OPTION.fullmatch(core):
            return None  # gpg --keyserver ... --recv-keys <key id>
        if core and _key_material(core, aws):
            offset = raw.find(core)
            return w.start() + offset, w.start() + offset + len(core)
        if raw.endswith((".", "!", "?")) and core.lower() not in ("e.g", "i.e"):
            return None  # the sentence ended
    return None


# a YAML key ending with the context word, then a block list: "api_keys:", "tokens:"
_LIST_KEY = re.compile(r"""[a-z0-9_-]{0,40}+["']?[ \t]*+:[ \t]*+(?:#[^\r\n]*+)?\r?\n""")
_ANY_LIST = re.compile(r":[ \t]*+(?:#[^\r\n]*+)?\r?\n[ \t]*+- ")
# one item of it: "  - value", "- 'value'  # comment"
_LIST_ITEM = re.compile(r"[ \t]*+-[ \t]++([^\r\n]*+)(?:\r?\n)?")
# (a "#" is a comment's only after a space: "- xY9#kLm2Qp" is one value)
_ITEM_VALUE = re.compile(r"""(["'`]?)([^\s"'`]{1,256}+)\1(?:[ \t]++#.*+|[ \t]*+)""")
# a lower-case name: a list of them names secrets kept elsewhere (a compose service's
# "secrets:\n  - stripe_live_v2"), as "imagePullSecrets:" lists their names
_ITEM_NAME = re.compile(r"[a-z][a-z0-9]*+(?:[_-][a-z0-9]++)++")
_MAX_ITEMS: Final = 64


def _list_items(text: str, at: int) -> Iterator[tuple[int, int]]:
    """The spans of the items of a YAML block list starting at ``at`` that are key material
    (an item of several words, a mapping, or a lower-case name is none)."""
    for _ in range(_MAX_ITEMS):
        item = _LIST_ITEM.match(text, at)
        if item is None:
            return
        at = item.end()
        value = _ITEM_VALUE.fullmatch(text, item.start(1), item.end(1))
        if value is None or _ITEM_NAME.fullmatch(value[2]):
            continue  # several words, a mapping, or a name
        if _key_material(value[2], aws=False):
            yield value.span(2)
