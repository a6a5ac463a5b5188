"""The SQLite store's search index and its queries: FTS5, ranked with BM25.

Each indexed record has one row in the FTS5 table ``pattern_search`` (schema version 4;
6 split the tokens), whose rowid is the record's ``search_rowid``: its plaintext terms
(``words``), its blind-index tokens (``tokens`` for an INTERNAL record,
``sensitive_tokens`` for a SENSITIVE one) and its metadata facet tokens (``facets``), each
column a space-separated list. A trigger deletes the row with its record, whatever deletes it.

A query's MATCH expression is built here from terms and tokens the core computed, each
quoted as an FTS5 string: nothing of a user's text reaches FTS5 as syntax, so it cannot
raise an FTS5 syntax error or change what is matched. Filters (namespace, type,
classification, creator, time range, retention) are SQL conditions on ``patterns``.
Pages of a query with a match are ranked in :mod:`.sqlite_ranked`.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from attune.memory.long_term import sqlite_ranked
from attune.memory.long_term.protocol import IndexOp, PatternRecord
from attune.memory.long_term.queries import (
    PARTIAL,
    Found,
    Match,
    PatternQuery,
    SearchEntry,
    missing_groups,
)
from attune.memory.long_term.sqlite_schema import COLUMNS, in_own_transaction, to_record

#: The FTS5 table's columns, in order (``bm25`` weights follow it).
FTS_COLUMNS = ("words", "tokens", "sensitive_tokens", "facets")


#: New records' search rows wait at most this long, or for this many records, before they
#: are written in one of the store's transactions: a transaction that writes FTS5 rows
#: pays several more pages to fsync (+50-65 µs on a 150 µs commit in
#: benchmarks/search_index_cost.py), so one such transaction per many records. A
#: sequential SENSITIVE persist with its row written per commit ran at 0.35-0.37x of the
#: raw insert; deferred, 0.40-0.42x (0.45-0.46x without search rows), same run.
FLUSH_S = 0.05
FLUSH_RECORDS = 64


@dataclass
class PendingIndex:
    """A connection's new records whose search rows are not written yet.

    Their ``search_rowid`` stays NULL until then, so a record whose rows were lost (the
    process died first) is indexed again by the core's backfill, like a record stored
    before the index existed. A search through the store writes them first (it asks for
    :meth:`take` with ``force``), so a writer always finds its own records.
    """

    entries: list[tuple[str, SearchEntry]] = field(default_factory=list)
    since: float = 0.0

    def add(self, pattern_id: str, entry: SearchEntry) -> None:
        if not self.entries:
            self.since = time.monotonic()
        self.entries.append((pattern_id, entry))

    def take(self, *, force: bool = False) -> IndexOp | None:
        """The rows to write in the coming transaction, if they are due (or ``force``)."""
        if not self.entries:
            return None
        due = len(self.entries) >= FLUSH_RECORDS or time.monotonic() >= self.since + FLUSH_S
        if not (due or force):
            return None
        op = IndexOp(tuple(self.entries))
        self.entries = []
        return op

    def restore(self, op: IndexOp) -> None:
        """Rows whose transaction failed: pending again, first."""
        self.entries[:0] = op.entries
        self.since = time.monotonic()


def write_rows(db: sqlite3.Connection, op: IndexOp) -> None:
    """Pending search rows as a transaction of their own (a connection closing from
    another loop). Only records still stored and still without a row get one."""
    from attune.memory.long_term.sqlite_batch import execute  # (it imports this module)

    in_own_transaction(db, lambda db: execute(db, op))


def compact(db: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Leave nothing of deleted records in the file (after an erasure, on the connection's
    thread). Their rows are overwritten as they are deleted (``secure_delete``), but the
    search index keeps a deleted record's terms in its segments until they are merged:
    ``optimize`` merges them all (the pages it frees are overwritten too). Then the WAL,
    which still holds the old pages, is checkpointed and truncated; readers of other
    connections can hold it back, so it is retried until ``busy_timeout_s``."""
    db.execute("INSERT INTO pattern_search (pattern_search) VALUES ('optimize')")
    deadline = time.monotonic() + busy_timeout_s
    while db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError("the WAL is held by other connections' readers")
        time.sleep(0.01)


def next_rowid(db: sqlite3.Connection) -> int:
    """The next free ``search_rowid`` (inside the batch's IMMEDIATE transaction, where
    nobody else writes)."""
    top = db.execute(
        "SELECT max(search_rowid) FROM patterns WHERE search_rowid IS NOT NULL"
    ).fetchone()[0]
    return int(top or 0) + 1


def add_rows(db: sqlite3.Connection, rows: Sequence[tuple[int, SearchEntry]]) -> None:
    """The search rows of records just inserted with these ``search_rowid`` values."""
    values = [
        (
            rowid,
            " ".join(e.words),
            "" if e.sensitive else " ".join(e.tokens),
            " ".join(e.tokens) if e.sensitive else "",
            " ".join(e.facets),
        )
        for rowid, e in rows
    ]
    if len(values) == 1:
        db.execute(_ADD, values[0])
    elif values:
        db.executemany(_ADD, values)


_ADD = (
    "INSERT INTO pattern_search (rowid, words, tokens, sensitive_tokens, facets) "
    "VALUES (?, ?, ?, ?, ?)"
)


def index_records(db: sqlite3.Connection, entries: Sequence[tuple[str, SearchEntry]]) -> None:
    """Index records stored before the index existed: each gets the next free
    ``search_rowid`` and its row in ``pattern_search``."""
    if not entries:
        return
    first = next_rowid(db)
    rows = [(first + n, entry) for n, (_pid, entry) in enumerate(entries)]
    add_rows(db, rows)
    db.executemany(
        "UPDATE patterns SET search_rowid = ? WHERE pattern_id = ?",
        [(rowid, pid) for (rowid, _e), (pid, _e2) in zip(rows, entries, strict=True)],
    )


#: The token columns a query's tokens are looked for in, by its classification filter: a
#: SENSITIVE-only search reads SENSITIVE records' tokens only, not INTERNAL records' too
#: (1M records: SENSITIVE-only p50 5.3-5.8 -> 3.4-3.6 ms, 1.78x -> 1.08x PUBLIC-only),
#: an INTERNAL-only one INTERNAL records'; otherwise both, as one column set, so a
#: phrase's BM25 weight is the same as over a single column.
_TOKEN_COLUMNS = {
    "SENSITIVE": "sensitive_tokens",
    "INTERNAL": "tokens",
    None: "{tokens sensitive_tokens}",
}


def match_expression(
    match: Match | None,
    facets: Sequence[Sequence[str]],
    classification: str | None = None,
    *,
    held: tuple[int, int | None] = (1, None),
) -> str | None:
    """The FTS5 MATCH text for a query's phrases (in any of its columns) and its metadata
    filters (each satisfied by any of its facets; all of them), or None when neither is
    given. ``classification`` (a filter) picks the token columns. ``held``: how many of
    the phrases a record holds, at least and (None: any number) at most: the groups of
    :func:`ranked_stages`."""
    parts = []
    if match is not None:
        columns = _TOKEN_COLUMNS.get(classification, _TOKEN_COLUMNS[None])
        words = [f"words : {_phrase(p)}" for p in match.words]
        tokens = [f"{columns} : {_phrase(p)}" for p in match.tokens]
        # A phrase is held in either form (a record is plaintext or encrypted, never both).
        each = ["(" + " OR ".join(forms) + ")" for forms in _forms(words, tokens)]
        least, most = held
        phrases = _at_least(each, least)
        if most is not None and most < len(each):
            phrases = f"({phrases} NOT {_at_least(each, most + 1)})"
        parts.append(phrases)
    for choices in facets:
        parts.append("(" + " OR ".join(f"facets : {_phrase((f,))}" for f in choices) + ")")
    return " AND ".join(parts) if parts else None


def _at_least(each: list[str], k: int) -> str:
    """Records holding at least ``k`` of the phrases ``each``: any, every one, or any
    ``k`` of them (one conjunction per choice of ``k``: a phrase is in as many of them
    as any other, so BM25 weighs the phrases alike)."""
    if k <= 1:
        return "(" + " OR ".join(each) + ")"
    if k >= len(each):
        return "(" + " AND ".join(each) + ")"
    choices = itertools.combinations(each, k)
    return "(" + " OR ".join("(" + " AND ".join(c) + ")" for c in choices) + ")"


def _forms(words: list[str], tokens: list[str]) -> list[list[str]]:
    """Each phrase's forms: its words and/or its tokens (the two lists are parallel, or
    one of them is empty)."""
    if not words or not tokens:
        return [[form] for form in words or tokens]
    return [[w, t] for w, t in zip(words, tokens, strict=True)]


def ranked_stages(
    match: Match, facets: Sequence[Sequence[str]], classification: str | None
) -> list[sqlite_ranked.Stage]:
    """A ranked query's stages, one per group of :func:`~.queries.missing_groups`:
    records holding every phrase first, then (up to
    :data:`~.queries.COUNTED_PHRASES` phrases) those lacking one, two, ..., each group's
    scores lowered by one more :data:`~.queries.PARTIAL`, each by BM25. A query of more
    phrases has two groups: every phrase held, and the rest.

    BM25 alone does not always rank a record holding more of the words higher: FTS5
    weighs a word that more than half the records hold next to nothing (its idf is
    clamped), so a short record with only the other word outranked one with both."""
    n = match.phrases
    groups = missing_groups(n)
    # Phrases held in each group, from most to fewest: [lo, hi].
    bounds = [(n - g, n - g) for g in range(groups)]
    if groups < n:  # more phrases than counted: the second group is all the rest
        bounds[-1] = (1, n - 1)
    stages = []
    for g, (least, most) in enumerate(bounds):
        expression = match_expression(match, facets, classification, held=(least, most))
        assert expression is not None
        wider = above = None
        if g:  # the records holding at least this many, and those of the earlier groups
            wider = match_expression(match, facets, classification, held=(least, None))
            above = match_expression(match, facets, classification, held=(most + 1, None))
        stages.append(sqlite_ranked.Stage(expression, g * PARTIAL, wider, above))
    return stages


def _phrase(terms: Sequence[str]) -> str:
    """Terms as one FTS5 string (a phrase): double quotes inside are doubled, so nothing
    in a term is read as syntax."""
    return '"' + " ".join(term.replace('"', '""') for term in terms) + '"'


def _filters(query: PatternQuery) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``p`` (the patterns table) and their parameters."""
    where = ["(p.expires_at_ms IS NULL OR p.expires_at_ms > ?)"]
    args: list[Any] = [query.now_ms]
    for column, value in (
        ("namespace", query.namespace),
        ("pattern_type", query.pattern_type),
        ("classification", query.classification),
        ("created_by", query.created_by),
    ):
        if value is not None:
            where.append(f"p.{column} = ?")
            args.append(value)
    if query.since_ms is not None:
        where.append("p.created_at_ms >= ?")
        args.append(query.since_ms)
    if query.until_ms is not None:
        where.append("p.created_at_ms < ?")
        args.append(query.until_ms)
    return where, args


_RECORD = ", ".join(f"p.{column.strip()}" for column in COLUMNS.split(","))


def find(db: sqlite3.Connection, query: PatternQuery) -> list[Found]:
    """One page of ``query``'s results (on the connection's thread)."""
    if query.match is not None and query.match.is_empty:
        return []
    where, args = _filters(query)
    if query.match is not None:
        stages = ranked_stages(query.match, query.facets, query.classification)
        return sqlite_ranked.find_ranked(db, query, stages, where, args, _RECORD)
    expression = match_expression(None, query.facets)
    if expression is not None:  # facets only: a filter on the indexed records
        where.append(
            "p.search_rowid IN (SELECT rowid FROM pattern_search WHERE pattern_search MATCH ?)"
        )
        args.append(expression)
    if query.after is not None:
        where.append("(p.created_at_ms < ? OR (p.created_at_ms = ? AND p.pattern_id < ?))")
        args += [query.after[0], query.after[0], query.after[1]]
    sql = (
        f"SELECT {_RECORD} FROM patterns p WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY p.created_at_ms DESC, p.pattern_id DESC LIMIT ?"
    )
    args.append(query.limit)
    return [Found(to_record(row), None) for row in db.execute(sql, args).fetchall()]


def count(db: sqlite3.Connection, query: PatternQuery) -> int:
    """How many live records ``query`` matches (its limit and ``after`` aside)."""
    if query.match is not None and query.match.is_empty:
        return 0
    where, args = _filters(query)
    expression = match_expression(query.match, query.facets, query.classification)
    if expression is not None:
        where.append(
            "p.search_rowid IN (SELECT rowid FROM pattern_search WHERE pattern_search MATCH ?)"
        )
        args.append(expression)
    sql = f"SELECT count(*) FROM patterns p WHERE {' AND '.join(where)}"  # noqa: S608
    return int(db.execute(sql, args).fetchone()[0])


def unindexed(db: sqlite3.Connection, after_id: str, limit: int) -> list[PatternRecord]:
    """Records without a search row (stored before the index existed), by id."""
    rows = db.execute(
        f"SELECT {_RECORD} FROM patterns p WHERE p.search_rowid IS NULL "  # noqa: S608
        "AND p.pattern_id > ? ORDER BY p.pattern_id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [to_record(row) for row in rows]
