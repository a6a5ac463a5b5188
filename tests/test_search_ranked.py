"""Ranked search pages taken from FTS5's best matches in batches are exactly the plain
query's: the same records, order and scores, ties by id, page after page.

A seeded corpus of a few thousand records, written straight into a store's tables, with
few distinct words (so matches tie in large groups) and filters that keep few matches (a
rare namespace, type, classification or creator, time windows, expired records)."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from attune.memory.long_term import PatternRecord, sqlite_ranked, sqlite_search
from attune.memory.long_term.queries import (
    COUNTED_PHRASES,
    PARTIAL,
    Found,
    Match,
    PatternQuery,
    SearchEntry,
)
from attune.memory.long_term.sqlite_schema import INSERT, MIGRATIONS, params

NOW = 1_000_000
WORDS = [f"w{n}" for n in range(30)]
RECORDS = 3000
#: The words each record of the corpus holds, by pattern id.
HELD: dict[str, set[str]] = {}


def _token(word: str) -> str:
    """A stand-in blind-index token: 16 hex characters, one per word."""
    return hashlib.sha256(word.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """The corpus: a third plaintext, the rest tokens; words by a Zipf law."""
    rng = random.Random(7)
    path: Path = tmp_path_factory.mktemp("ranked") / "ranked.db"
    with closing(sqlite3.connect(path)) as conn:
        for version in sorted(MIGRATIONS):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        weights = [1 / rank for rank in range(1, len(WORDS) + 1)]
        rows = []
        for n in range(RECORDS):
            words = rng.choices(WORDS, weights=weights, k=rng.choice((6, 6, 6, 8)))
            encrypted = n % 3 != 0
            record = PatternRecord(
                pattern_id=f"pat_{rng.getrandbits(40):010x}",
                pattern_type="rare" if n % 50 == 0 else ("a", "b")[n % 2],
                classification=("PUBLIC", "INTERNAL", "SENSITIVE")[n % 3],
                created_by="solo" if n % 97 == 0 else "agent",
                created_at_ms=rng.randrange(0, 1000),
                expires_at_ms=rng.choice((None, None, None, NOW - 1, NOW + 1)),
                metadata_json="{}",
                content=b"x",
                encrypted=encrypted,
                namespace="small" if n % 40 == 0 else "default",
            )
            HELD[record.pattern_id] = set(words)
            conn.execute(INSERT, params(record))
            conn.execute(
                "UPDATE patterns SET search_rowid = ? WHERE pattern_id = ?", (n + 1, record[0])
            )
            entry = (
                SearchEntry(
                    tokens=tuple(_token(w) for w in words),
                    facets=(f"f{n % 4}",),
                    sensitive=record.classification == "SENSITIVE",
                )
                if encrypted
                else SearchEntry(words=tuple(words), facets=(f"f{n % 4}",))
            )
            rows.append((n + 1, entry))
        sqlite_search.add_rows(conn, rows)
        conn.commit()
        yield conn


def _match(*phrases: tuple[str, ...]) -> Match:
    return Match(words=phrases, tokens=tuple(tuple(_token(w) for w in p) for p in phrases))


#: Filters that keep most, some or very few of the matches.
FILTERS: list[dict[str, object]] = [
    {},
    {"namespace": None},
    {"namespace": "small"},
    {"pattern_type": "rare"},
    {"classification": "SENSITIVE"},
    {"classification": "PUBLIC", "namespace": "small"},
    {"created_by": "solo"},
    {"since_ms": 990},
    {"since_ms": 300, "until_ms": 310},
    {"facets": (("f1", "f2"),)},
    {"namespace": "nowhere"},
]
MATCHES = [
    _match(("w0",)),
    _match(("w0",), ("w1",)),
    _match(("w3",), ("w17",)),
    _match(("w29",)),
    _match(("w2", "w5")),
    _match(("nothing",)),
    _match(("w0",), ("w4",), ("w9",)),  # three groups: all, two, one
    _match(("w1",), ("w2", "w5"), ("nothing",)),  # no record holds them all
    _match(("w0",), ("w2",), ("w5",), ("w11",)),
    _match(("w0",), ("w1",), ("w3",), ("w6",), ("w20",)),  # past COUNTED_PHRASES
]


def _plain(db: sqlite3.Connection, query: PatternQuery) -> list[Found]:
    """The plain query of each stage (every match ranked and sorted), one after the other."""
    assert query.match is not None
    where, args = sqlite_search._filters(query)
    found: list[Found] = []
    for stage in sqlite_search.ranked_stages(query.match, query.facets, query.classification):
        found += sqlite_ranked.full_page(db, query, stage, where, args, sqlite_search._RECORD)
    return found[: query.limit]


def _queries() -> Iterator[PatternQuery]:
    for match in MATCHES:
        for filters in FILTERS:
            for limit in (1, 7, 11, 50):
                yield PatternQuery(now_ms=NOW, match=match, limit=limit, **filters)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first", "most", "keep", "few"),
    [
        (
            sqlite_ranked.FIRST_BATCH,
            sqlite_ranked.MAX_CANDIDATES,
            sqlite_ranked.PROBE_KEEP,
            sqlite_ranked.FEW_FULL,
        ),
        (1, 10**9, 0, 0),
        (1, 10**9, 0, 10**9),
        (2, 40, 0, 0),
        (2, 10**9, 10**9, 10**9),
        (2, 10**9, 10**9, 0),
    ],
    ids=[
        "defaults",
        "batches-to-the-end",
        "batches-skipping-full-matches",
        "plain-query-past-max",
        "plain-query-when-thin-skipping",
        "plain-query-when-thin",
    ],
)
def test_a_ranked_page_is_the_plain_querys_page(
    db: sqlite3.Connection,
    monkeypatch: pytest.MonkeyPatch,
    first: int,
    most: int,
    keep: int,
    few: int,
) -> None:
    """Records, order and scores equal the plain query's, for every match, filter and
    limit; with tiny batches (ties cross batch edges), with the plain query taking
    over past the most matches read or after the probe, and with the partial matches
    read as any phrase's matches skipping the full ones (``few``: always or never)."""
    monkeypatch.setattr(sqlite_ranked, "FIRST_BATCH", first)
    monkeypatch.setattr(sqlite_ranked, "MAX_CANDIDATES", most)
    monkeypatch.setattr(sqlite_ranked, "PROBE_KEEP", keep)
    monkeypatch.setattr(sqlite_ranked, "FEW_FULL", few)
    nonempty = 0
    for query in _queries():
        page = sqlite_search.find(db, query)
        assert page == _plain(db, query), query
        nonempty += bool(page)
    assert nonempty > len(MATCHES) * len(FILTERS) * 2  # the corpus does match


@pytest.mark.parametrize(("first", "few"), [(sqlite_ranked.FIRST_BATCH, 10**9), (1, 0)])
def test_pages_joined_by_cursors_are_the_whole_ordered_result(
    db: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, first: int, few: int
) -> None:
    """Following ``after`` page by page gives every live match once, best first, ties by
    id: the plain query's full result (a tie group much larger than a page included)."""
    monkeypatch.setattr(sqlite_ranked, "FIRST_BATCH", first)
    monkeypatch.setattr(sqlite_ranked, "FEW_FULL", few)
    monkeypatch.setattr(sqlite_ranked, "PROBE_KEEP", 0)  # batches all the way
    tied = 0
    for match in MATCHES[:3]:
        for filters in FILTERS[:8]:
            whole = _plain(db, PatternQuery(now_ms=NOW, match=match, limit=10**6, **filters))  # type: ignore[arg-type]
            paged: list[Found] = []
            query = PatternQuery(now_ms=NOW, match=match, limit=41, **filters)  # type: ignore[arg-type]
            while True:
                page = sqlite_search.find(db, query)
                assert page == _plain(db, query)
                paged += page
                if len(page) < query.limit:
                    break
                last = page[-1]
                assert last.score is not None
                query = replace(query, after=(last.score, last.record.pattern_id))
            assert paged == whole, (match, filters)
            tied += len(whole) - len({found.score for found in whole})
    assert tied > 1000  # ties are common


def test_scores_tie_in_groups_larger_than_a_batch(db: sqlite3.Connection) -> None:
    """The corpus really exercises ties across batch edges."""
    query = PatternQuery(now_ms=NOW, match=MATCHES[0], limit=10**6, namespace=None)
    scores = [found.score for found in _plain(db, query)]
    assert max(scores.count(score) for score in set(scores)) > 2 * sqlite_ranked.FIRST_BATCH


def test_matches_reach_their_records_by_index_never_by_a_filters_index(
    db: sqlite3.Connection,
) -> None:
    """Batches and the probe go from each match to its record (by the search_rowid index,
    then the primary key), never walk a filter's index instead (a namespace index would
    read most of the table)."""
    query = PatternQuery(now_ms=NOW, match=MATCHES[0], pattern_type="a", created_by="agent")
    where, args = sqlite_search._filters(query)

    def plan(sql: str, *params: object) -> str:
        return " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    assert "COVERING INDEX patterns_search_rowid" in plan(sqlite_ranked.IDS, "[1]")
    joined = plan(sqlite_ranked.join_sql(where, sqlite_search._RECORD), '["x"]', *args)
    assert "PRIMARY KEY (pattern_id=?)" in joined, joined
    probed = plan(sqlite_ranked.probe_sql(where), '"w0"', 10, *args)
    assert "patterns_search_rowid" in probed, probed


@pytest.mark.parametrize(
    "words",
    [
        ("w0", "w1"),
        ("w0", "w7", "w21"),
        ("w1", "w3"),
        ("w0", "w29"),
        ("w0", "w1", "w3", "w6"),
        ("w0", "w1", "w2", "w4", "w8"),
    ],
)
def test_records_holding_more_words_rank_first(
    db: sqlite3.Connection, words: tuple[str, ...]
) -> None:
    """Records holding more of a query's words come before any holding fewer (up to
    COUNTED_PHRASES words; past it, those holding every word before the rest), page after
    page, though ``w0`` (most records hold it) weighs next to nothing in BM25; the scores
    still go down, a full match's is above 0 and a record lacking ``m`` words scores
    between ``-m * PARTIAL`` and ``-(m - 1) * PARTIAL``."""
    match = _match(*((w,) for w in words))
    query = PatternQuery(now_ms=NOW, match=match, limit=23, namespace=None)
    results: list[Found] = []
    while True:
        page = sqlite_search.find(db, query)
        results += page
        if len(page) < query.limit:
            break
        query = replace(query, after=(page[-1].score, page[-1].record.pattern_id))  # type: ignore[arg-type]
    lacked = [len(set(words) - HELD[f.record.pattern_id]) for f in results]
    if len(words) > COUNTED_PHRASES:
        lacked = [min(m, 1) for m in lacked]
    assert 0 in lacked and 1 in lacked  # full and partial matches are in the result
    if len(words) > 2:
        assert len(set(lacked)) > 2 or len(words) > COUNTED_PHRASES
    assert lacked == sorted(lacked)  # more words held first
    scores = [f.score for f in results]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    for found, m in zip(results, lacked, strict=True):
        assert found.score is not None
        assert -m * PARTIAL < found.score < -(m - 1) * PARTIAL
    # Nothing lost or repeated: the records holding any of the words, once each.
    expected = {pid for pid, held in HELD.items() if held & set(words)}
    live = {f.record.pattern_id for f in results}
    assert len(live) == len(results) and live <= expected
    assert len(live) == sqlite_search.count(db, replace(query, after=None))


def test_bm25_alone_would_rank_a_partial_match_first(db: sqlite3.Connection) -> None:
    """Why the stages exist: on this corpus, FTS5's own ranking of ``w0 OR w1`` puts a
    record without ``w1`` above one with both (``w0`` is in most records)."""
    query = PatternQuery(now_ms=NOW, match=_match(("w0",), ("w1",)), limit=10**6, namespace=None)
    where, args = sqlite_search._filters(query)
    expression = sqlite_search.match_expression(query.match, ())
    assert expression is not None
    single = sqlite_ranked.Stage(expression, 0.0)
    ranked = sqlite_ranked.full_page(db, query, single, where, args, sqlite_search._RECORD)
    full = [{"w0", "w1"} <= HELD[f.record.pattern_id] for f in ranked]
    assert full != sorted(full, reverse=True)
