"""What a record is indexed by, and what a search asks for: built from terms and tokens.

:func:`entry` turns a record's scrubbed content and metadata into a
:class:`~attune.memory.long_term.queries.SearchEntry`: plaintext terms for a plaintext
record; keyed tokens for an encrypted one (or nothing, where token indexing is turned
off for its classification); facets of its top-level metadata pairs either way.
:func:`match` and :func:`facets` build the query side the same way, so one query finds a
record whichever form it is indexed in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from attune.memory.long_term.queries import Match, SearchEntry
from attune.memory.search.blind_index import BlindIndex, facet_texts, plain_facet, plain_facet_of
from attune.memory.search.terms import Query, terms
from attune.memory.validation import json_key

#: Most terms indexed per record: a huge record is found by its first ones.
MAX_ENTRY_TERMS = 20_000


def entry(
    content: str,
    metadata: Mapping[str, Any],
    *,
    encrypted: bool,
    index: BlindIndex | None,
    tokens: bool = True,
    sensitive: bool = False,
) -> SearchEntry:
    """The index entry of one record. ``index`` is required for an encrypted record
    (its terms and facets are keyed); ``tokens=False`` leaves its words out entirely.
    Metadata keys are facets as JSON stores them (:func:`json_key`)."""
    words = terms(content)
    for text in _strings(metadata):
        if len(words) >= MAX_ENTRY_TERMS:
            break
        words.extend(terms(text))
    words = words[:MAX_ENTRY_TERMS]
    if not encrypted:
        return SearchEntry(
            words=tuple(words),
            facets=tuple(plain_facet(json_key(k), v) for k, v in metadata.items()),
        )
    if index is None:
        raise ValueError("an encrypted record's entry needs the search key")
    return SearchEntry(
        tokens=tuple(index.tokens(words)) if tokens else (),
        facets=tuple(index.facet(json_key(k), v) for k, v in metadata.items()),
        sensitive=sensitive,
    )


def match(query: Query, index: BlindIndex | None) -> Match:
    """A parsed query as the store matches it: plaintext phrases, and (with a key) the
    same phrases as tokens."""
    return Match(
        words=query.phrases,
        tokens=()
        if index is None
        else tuple(tuple(index.token(term) for term in phrase) for phrase in query.phrases),
    )


def narrowed(match: Match, classification: str | None) -> Match:
    """``match`` for records of one classification: PUBLIC records are never encrypted and
    SENSITIVE ones always (the pipeline's rule), so the other form's phrases cannot match
    them and are left out. Exact: a phrase a record does not hold adds nothing to its BM25
    score. It spares FTS5 the other form's posting lists and the rows behind them (a
    SENSITIVE-only search at 1M records: 10.5 -> 4.5 ms p50)."""
    if classification == "PUBLIC":
        return Match(words=match.words)
    if classification == "SENSITIVE":
        return Match(words=(), tokens=match.tokens)
    return match


def facets(metadata: Mapping[str, Any], index: BlindIndex | None) -> tuple[tuple[str, ...], ...]:
    """Each metadata filter pair as the facets that satisfy it: a record must hold one of
    each pair's facets. They are the facets of each of the pair's texts
    (:func:`~.blind_index.facet_texts`: the canonical text new records are indexed by, and
    the texts a record indexed by an earlier version could hold an equal value under), in their
    plain form and, with a key, their keyed form."""
    out = []
    for key, value in metadata.items():
        texts = facet_texts(key, value)
        plain = tuple(plain_facet_of(text) for text in texts)
        keyed = () if index is None else tuple(index.facet_of(text) for text in texts)
        out.append(plain + keyed)
    return tuple(out)


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included, depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
