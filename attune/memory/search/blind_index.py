"""Keyed blind-index tokens: how encrypted records are searched without decrypting them.

An encrypted record's terms (:mod:`.terms`) are indexed as *tokens*: HMAC-SHA256 of the
term under a search key, cut to :data:`TOKEN_BYTES` bytes and written in hex. A query's
terms are turned into tokens the same way, so the store finds matching records by token
equality alone; without the key a token says nothing about its word. What tokens do
reveal to whoever reads the database is stated in docs/security.md: which records share
a word, and how often a word occurs (as deterministic encryption does).

The search key is derived by HKDF-SHA256 from master key material; metadata filters on
encrypted records use *facet* tokens of ``key=value`` pairs under the same key (a
plaintext record's facets are unkeyed hashes of the same text: :func:`plain_facet`). That
text is canonical (:func:`facet_text`), so values a user takes as equal (1 and 1.0, a
string in NFC and in NFD) share a facet; a filter also asks for the texts earlier versions
indexed such values by (:func:`facet_texts`), so its records need no reindex.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import unicodedata
import weakref
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attune.memory.validation import json_key

#: Bytes of HMAC output kept per token: 64 bits, so two different words share a token
#: with probability about 2**-64 per pair (a vocabulary of a million words: about one
#: chance in 10**7 that any two do, and then a search for one also finds the other).
TOKEN_BYTES = 8
_INFO = b"attune search index v1"
_TERM = b"term\x00"
_FACET = b"facet\x00"
_BLOCK = 64  # SHA-256's block size: HMAC pads its key to it
#: Most remembered tokens per search key (then the memory starts afresh): about 2.2 MB.
CACHE_TOKENS = 16_384


def _hash_seed_is_secret() -> bool:
    """Whether Python's str hash is keyed by a secret of this process (the default): with
    ``PYTHONHASHSEED`` set to a number, anyone who knows it can make two words of one hash
    (a 64-bit birthday search), and a remembered token could then answer for the other."""
    return os.environ.get("PYTHONHASHSEED", "random") in ("", "random")


def derive_search_key(master_key: bytes) -> bytes:
    """The 32-byte search key of a master key (HKDF-SHA256, fixed info, no salt)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master_key)


class BlindIndex:
    """Tokens for terms and metadata facets under one search key."""

    __slots__ = ("__weakref__", "_cache", "_inner", "_key", "_outer", "_remember")

    def __init__(self, search_key: bytes) -> None:
        if len(search_key) != 32:
            raise ValueError("a search key is 32 bytes")
        self._key = search_key
        # HMAC-SHA256 (RFC 2104) of b"term\0" + term, from its two keyed SHA-256 states
        # computed once: a copy of each per term is 2.2x faster than copying an hmac
        # object (13 vs 29 us for a 200-character record's 25 terms; a persist tokenises
        # every word). Same tokens as hmac.new(key, b"term\0" + term, sha256).
        block = search_key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + _TERM)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        # Tokens already made, by the term's str hash, never by the term: a SENSITIVE
        # record's words are not kept past the call. Natural text repeats its words, so
        # most tokens of a persist are one lookup (21 terms: 17 -> 2.5 us; 64 concurrent
        # SENSITIVE persists are bound by the loop's CPU). Two terms share a hash with
        # probability about 2**-64 per pair, as two tokens do (TOKEN_BYTES), as long as
        # nobody knows the hash's key: with a known PYTHONHASHSEED nothing is remembered.
        self._cache: dict[int, str] = {}
        self._remember = _hash_seed_is_secret()

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return "BlindIndex(<key>)"

    def token(self, term: str) -> str:
        """The token of one term (already folded by :func:`.terms.fold`)."""
        inner = self._inner.copy()
        inner.update(term.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TOKEN_BYTES].hex()

    def tokens(self, terms: list[str]) -> list[str]:
        """The tokens of ``terms`` (already folded), remembered for the next record."""
        if not self._remember:
            return [self.token(term) for term in terms]
        cache = self._cache
        if len(cache) > CACHE_TOKENS:
            cache.clear()
        out = []
        for term in terms:
            key = hash(term)
            token = cache.get(key)
            if token is None:
                token = cache[key] = self.token(term)
            out.append(token)
        return out

    def facet(self, key: str, value: Any) -> str:
        """The token of one top-level metadata pair, for equality filters."""
        return self.facet_of(facet_text(key, value))

    def facet_of(self, text: str) -> str:
        """The token of a pair's text (:func:`facet_text`, or one of :func:`facet_texts`)."""
        return self._mac(_FACET + text.encode("utf-8"))

    def _mac(self, message: bytes) -> str:
        return hmac.new(self._key, message, hashlib.sha256).digest()[:TOKEN_BYTES].hex()


#: The blind index of each search key in use in this process (see :func:`shared`).
_SHARED: weakref.WeakValueDictionary[bytes, BlindIndex] = weakref.WeakValueDictionary()


def shared(search_key: bytes) -> BlindIndex:
    """This process's blind index for ``search_key``: memory objects of one store (agents
    of one process) share one, so the tokens it remembers are kept once, not per agent."""
    index = _SHARED.get(search_key)
    if index is None:
        index = _SHARED.setdefault(search_key, BlindIndex(search_key))
    return index


def plain_facet(key: str, value: Any) -> str:
    """The facet of a plaintext record's metadata pair: unkeyed (its metadata is readable
    in the database anyway), so it needs no master key; same shape as a keyed one."""
    return plain_facet_of(facet_text(key, value))


def plain_facet_of(text: str) -> str:
    """The unkeyed facet of a pair's text (:func:`facet_text`, or one of :func:`facet_texts`)."""
    return hashlib.sha256(_FACET + text.encode("utf-8")).digest()[:TOKEN_BYTES].hex()


# -- the text of a pair ---------------------------------------------------------------------
#
# Metadata values are compared as a user expects: numbers by value, as Python compares them
# (an integral float is the int of its exact value: 1.0 == 1, -0.0 == 0, but 1e30 is not
# 10**30), strings and keys after Unicode NFC normalisation, booleans apart from numbers
# (True is not 1), None only itself, lists and dicts with the same rules inside. A pair is
# hashed as one canonical text: the compact JSON (keys sorted, non-ASCII escaped) of the value
# with those rules applied. A value already canonical (an ASCII string, an int, a non-integral
# float) keeps the text earlier versions gave it: the JSON of the value as given (legacy_text).
# The text feeds hashes stored on disk, so it depends on the value alone: the shortest repr of
# a float, exact int arithmetic, and NFC, stable across Unicode versions for every character
# assigned when the value was indexed.


def facet_text(key: str, value: Any) -> str:
    """A metadata pair as its canonical text (the rules above), what a record is indexed by:
    equal values give equal texts whatever their key order, spacing, number type (1 or 1.0)
    or Unicode normalisation form. NaN and infinity have none (ValueError), nor does a value
    JSON cannot hold (TypeError)."""
    return _nfc(key) + "\x00" + canonical_json(value)


def facet_texts(key: str, value: Any) -> tuple[str, ...]:
    """The texts that satisfy the filter ``key == value``: its canonical text first, then the
    legacy texts (:func:`legacy_text`) a record could have been indexed under with a value
    equal to it by the rules above: the key as given, in NFC and in NFD; a number as an int
    and as a float (zero also as -0.0); a string as given, in NFC and in NFD; anything else
    as given. At most 9 (a key and a string that each mix both forms), mostly 1 or 2."""
    texts = [facet_text(key, value)]
    values = _legacy_values(value)
    texts.extend(k + "\x00" + v for k in _forms(key) for v in values)
    return tuple(dict.fromkeys(texts))


def legacy_text(key: str, value: Any) -> str:
    """A pair's text as earlier versions indexed records by: the JSON of the value
    as given, keys sorted. A mapping whose keys mix types (``None`` beside strings) cannot
    be sorted as given: it is taken as JSON stores it, every key a string."""
    return key + "\x00" + _legacy_json(value)


def canonical_json(value: Any) -> str:
    """The canonical text of a metadata value (the rules above), as compact JSON."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))


def _canonical(value: Any) -> Any:
    """``value`` with the rules above applied: every number that equals an int that int,
    every string and key in NFC (keys as JSON spells them: ``None`` -> ``"null"``). A dict
    two of whose keys are one in NFC keeps its keys as given (both values stay)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _nfc(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinity have no facet (JSON cannot hold them)")
        return int(value) if value.is_integer() else float(value)  # exact: 1e300 has 301 digits
    if isinstance(value, Mapping):
        given = [k if isinstance(k, str) else json_key(k) for k in value]
        keys = [_nfc(k) for k in given]
        if len(set(keys)) < len(keys):
            keys = given
        return {k: _canonical(v) for k, v in zip(keys, value.values(), strict=True)}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    raise TypeError(f"a metadata value of type {type(value).__name__} has no facet")


def _legacy_values(value: Any) -> list[str]:
    """The JSON texts, as given, of the values equal to ``value`` that a record indexed
    by an earlier version may hold (see :func:`facet_texts`)."""
    if isinstance(value, str):
        return [json.dumps(form) for form in _forms(value)]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [_legacy_json(value)]
    if isinstance(value, float) and not value.is_integer():
        return [_legacy_json(value)]  # only itself (NaN and infinity have no canonical text)
    whole = int(value)
    texts = [int.__repr__(whole)]
    try:
        same = float(whole)
    except OverflowError:  # an int past the largest float: no float equals it
        same = math.inf
    if same == whole:  # exact: 10**30 is not 1e30 (1000000000000000019884624838656)
        texts.append(float.__repr__(same))
    if whole == 0:
        texts.append("-0.0")
    return texts


def _legacy_json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except TypeError:
        stored = json.loads(json.dumps(value))
        return json.dumps(stored, sort_keys=True, separators=(",", ":"))


def _forms(text: str) -> list[str]:
    """``text`` as given, in NFC and in NFD, each once."""
    return list(dict.fromkeys((text, _nfc(text), unicodedata.normalize("NFD", text))))


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
