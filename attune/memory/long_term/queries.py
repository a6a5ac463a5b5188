"""What a long-term store is asked to find, and what it indexes records by.

The core computes everything that needs a key or a policy (terms, blind-index tokens,
metadata facets, the namespace scope, the retention cut-off); a store only matches and
ranks what it is given, with its own engine (SQLite FTS5, PostgreSQL ``tsvector``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from attune.memory.long_term.protocol import PatternRecord

#: Namespace of records written before namespaces existed, and of agents given none.
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class SearchEntry:
    """What one record is found by, as the store indexes it.

    ``words``: the folded terms of a plaintext record's content and metadata, in order;
    ``tokens``: the same for an encrypted record, as blind-index tokens (its words are
    never stored); ``facets``: tokens of its top-level metadata pairs (equality filters).
    ``sensitive``: the record is SENSITIVE, so a store may keep its tokens apart from
    INTERNAL records' and a SENSITIVE-only search reads only those.
    """

    words: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    facets: tuple[str, ...] = ()
    sensitive: bool = False


#: What a record has taken from its score for each of a multi-word query's phrases it
#: lacks, on every backend, so that records holding more of the phrases rank above those
#: holding fewer (relevance alone does not ensure it: SQLite's BM25 weighs a word that
#: more than half the records hold next to nothing). Scores of full matches are above 0
#: and below this (BM25: under 32 phrases x idf < 22 x 2.2; ts_rank: a few units); a
#: record lacking ``m`` phrases scores between ``-m * PARTIAL`` and ``-(m - 1) * PARTIAL``.
PARTIAL = 10_000.0
#: Up to this many phrases, records are grouped by how many of them they hold, most
#: first; a query with more phrases has two groups: every phrase held, and the rest
#: (each further group is one more FTS5 query, and the "at least k of n" expression grows
#: as n choose k).
COUNTED_PHRASES = 4


def missing_groups(phrases: int) -> int:
    """How many groups a query of ``phrases`` phrases ranks its matches in, by phrases
    lacked: ``0`` (all held) up to the number returned minus one."""
    if phrases < 2:
        return 1
    return phrases if phrases <= COUNTED_PHRASES else 2


@dataclass(frozen=True, slots=True)
class Match:
    """A search's phrases (a lone word is a phrase of one), as plaintext terms and as the
    tokens encrypted records are indexed by (the same phrases, in the same order; empty
    when token search is off, or when the records asked for are all plaintext). A record
    matches if it holds any phrase, in either form; one holding every phrase ranks above
    all those holding only some (:data:`PARTIAL`); within each group the engine's relevance
    decides (BM25 on SQLite weighs a word most records hold next to nothing). With no phrase
    in either form it matches nothing."""

    words: tuple[tuple[str, ...], ...]
    tokens: tuple[tuple[str, ...], ...] = ()

    @property
    def phrases(self) -> int:
        """How many phrases the query has (in either form)."""
        return max(len(self.words), len(self.tokens))

    @property
    def is_empty(self) -> bool:
        return not (self.words or self.tokens)


@dataclass(frozen=True, slots=True)
class PatternQuery:
    """Which live records to return, in which order, one page at a time.

    Records expired at ``now_ms`` are never returned. ``namespace`` None means every
    namespace. With ``match``, results are ranked best first (ties by id); without it,
    newest first (ties by id, descending). ``after`` is the last result's sort key from
    the previous page: ``(score, pattern_id)`` when ranked, ``(created_at_ms, pattern_id)``
    when not; the page holds what sorts after it.
    """

    now_ms: int
    namespace: str | None = DEFAULT_NAMESPACE
    match: Match | None = None
    pattern_type: str | None = None
    classification: str | None = None
    created_by: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    #: Metadata equality filters: each is the facets that satisfy it (any of them); a
    #: record must satisfy every filter.
    facets: tuple[tuple[str, ...], ...] = ()
    limit: int = 10
    after: tuple[float, str] | None = None


class Found(NamedTuple):
    """One result: the record as stored, and its relevance (higher is better; None when
    the query had no ``match``)."""

    record: PatternRecord
    score: float | None
