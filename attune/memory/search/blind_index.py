"""Keyed blind-index tokens: how encrypted records are searched without decrypting them.

An encrypted record's terms (:mod:`.terms`) are indexed as *tokens*: HMAC-SHA256 of the
term under a search key, cut to :data:`TOKEN_BYTES` bytes and written in hex. A query's
terms are turned into tokens the same way, so the store finds matching records by token
equality alone; without the key a token says nothing about its word. What tokens do
reveal to whoever reads the database is stated in docs/security.md: which records share
a word, and how often a word occurs (as deterministic encryption does).

The search key is derived by HKDF-SHA256 from master key material; metadata filters on
encrypted records use *facet* tokens of ``key=value`` pairs under the same key (a
plaintext record's facets are unkeyed hashes of the same text: :func:`plain_facet`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import weakref
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
        return self._mac(_FACET + facet_text(key, value).encode("utf-8"))

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
    message = _FACET + facet_text(key, value).encode("utf-8")
    return hashlib.sha256(message).digest()[:TOKEN_BYTES].hex()


def facet_text(key: str, value: Any) -> str:
    """A metadata pair as one canonical text (JSON of the value, keys sorted), so equal
    values give equal facets whatever their key order or spacing. A mapping whose keys mix
    types (``None`` beside strings) cannot be sorted as given: it is taken as JSON stores
    it, every key a string."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except TypeError:
        stored = json.loads(json.dumps(value))
        text = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    return key + "\x00" + text
