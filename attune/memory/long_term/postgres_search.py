"""The PostgreSQL store's search: ``tsvector`` columns, ranked with ``ts_rank``.

A record's search columns (see :mod:`.postgres_schema`) are built here from the terms
the core computed (already folded: case, accents), as ``tsvector`` *literals*: each term
quoted, with its positions, so PostgreSQL's text parser never splits or alters a term
(no dictionary, no stemming: the ``simple`` configuration's behaviour, without its
parser). A query's ``tsquery`` is built the same way: every lexeme quoted, a phrase's
terms joined by ``<->`` (followed by), phrases by ``|``. Nothing of a user's text reaches
PostgreSQL as ``tsquery`` syntax: it is always a bound parameter, each term a quoted
lexeme, so it cannot raise a syntax error or change what is matched.

Ranking is PostgreSQL's ``ts_rank`` (the sum over the plaintext and token columns), not
SQLite's BM25: the order follows the same idea (more of the query's phrases, more often,
rank higher) but scores differ between backends and are comparable only within one. As
on SQLite, a record has :data:`~.queries.PARTIAL` taken from its score for each of a
multi-word query's phrases it lacks (past :data:`~.queries.COUNTED_PHRASES` phrases, once
if it lacks any), so records holding more of them come first.
Ties are ordered by pattern id, and a page's cursor is its last (score, id).

Limits of ``tsvector`` that the literal respects: a lexeme is at most 2,047 bytes (longer
terms are left out: they are never found), positions run to 16,383 (later terms share
that position, so a phrase past the 16,383rd term of one record may not be found), and a
value is at most 1 MiB (terms past that are left out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from attune.memory.long_term.postgres_schema import RECORD
from attune.memory.long_term.queries import (
    PARTIAL,
    Match,
    PatternQuery,
    SearchEntry,
    missing_groups,
)

#: Longest lexeme ``tsvector`` takes, in UTF-8 bytes.
MAX_LEXEME_BYTES = 2047
#: Highest position ``tsvector`` keeps.
MAX_POSITION = 16383
#: Positions kept per lexeme.
MAX_POSITIONS = 256
#: Budget for one literal's lexemes and positions (``tsvector`` holds at most 1 MiB).
MAX_VECTOR_BYTES = 900_000


def quote(term: str) -> str:
    """One lexeme in ``tsvector`` / ``tsquery`` input syntax: single-quoted, quotes
    doubled and backslashes escaped, so nothing in it is read as syntax."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _fits(term: str) -> bool:
    return 0 < len(term.encode("utf-8", "surrogatepass")) <= MAX_LEXEME_BYTES


def vector(terms: Sequence[str]) -> str:
    """Terms in order as a ``tsvector`` literal with their positions."""
    positions: dict[str, list[int]] = {}
    size = 0
    for n, term in enumerate(terms, start=1):
        if not _fits(term):
            continue
        held = positions.get(term)
        if held is None:
            size += len(term.encode("utf-8", "surrogatepass")) + 8
            if size > MAX_VECTOR_BYTES:
                break
            positions[term] = held = []
        if len(held) < MAX_POSITIONS:
            held.append(min(n, MAX_POSITION))
    return " ".join(
        f"{quote(term)}:{','.join(str(p) for p in sorted(set(held)))}"
        for term, held in positions.items()
    )


def row(entry: SearchEntry | None) -> tuple[bool, str | None, str | None, str | None, str | None]:
    """A record's search columns as bound values: (indexed, words, tokens,
    sensitive_tokens, facets as a JSON list); all None when it is not indexed."""
    if entry is None:
        return False, None, None, None, None
    tokens = vector(entry.tokens)
    return (
        True,
        vector(entry.words),
        "" if entry.sensitive else tokens,
        tokens if entry.sensitive else "",
        json.dumps(list(entry.facets)),
    )


def query_text(phrases: Sequence[Sequence[str]], *, every: bool = False) -> str | None:
    """Phrases as a ``tsquery`` literal (any of them, or with ``every`` all of them; a
    phrase's terms in order), or None when no phrase (``every``: not every phrase) has
    only terms that can be indexed."""
    parts = []
    for phrase in phrases:
        terms = [quote(term) for term in phrase if _fits(term)]
        if len(terms) == len(phrase) and terms:
            parts.append("(" + " <-> ".join(terms) + ")")
    if every and len(parts) < len(phrases):
        return None
    return (" & " if every else " | ").join(parts) if parts else None


#: The token columns a query's tokens are looked for in, by its classification filter
#: (a SENSITIVE-only search reads SENSITIVE records' tokens only).
_TOKEN_COLUMNS = {
    "SENSITIVE": ("sensitive_tokens",),
    "INTERNAL": ("tokens",),
    None: ("tokens", "sensitive_tokens"),
}


class _Sql:
    """A statement's conditions and parameters, numbered as they are added."""

    def __init__(self) -> None:
        self.where: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any, cast: str = "") -> str:
        self.args.append(value)
        return f"${len(self.args)}{cast}"


def _filters(sql: _Sql, query: PatternQuery) -> None:
    now = sql.arg(query.now_ms, "::int8")
    sql.where.append(f"(p.expires_at_ms IS NULL OR p.expires_at_ms > {now})")
    for column, value in (
        ("namespace", query.namespace),
        ("pattern_type", query.pattern_type),
        ("classification", query.classification),
        ("created_by", query.created_by),
    ):
        if value is not None:
            sql.where.append(f"p.{column} = {sql.arg(value, '::text')}")
    if query.since_ms is not None:
        sql.where.append(f"p.created_at_ms >= {sql.arg(query.since_ms, '::int8')}")
    if query.until_ms is not None:
        sql.where.append(f"p.created_at_ms < {sql.arg(query.until_ms, '::int8')}")
    for choices in query.facets:
        sql.where.append(f"p.facets && {sql.arg(list(choices), '::text[]')}")


def _match(sql: _Sql, match: Match, classification: str | None) -> str | None:
    """Adds the match condition; returns the score expression (None: nothing can match)."""
    conditions: list[str] = []
    ranks: list[str] = []
    words = query_text(match.words)
    if words is not None:
        q = sql.arg(words, "::tsquery")
        conditions.append(f"p.words @@ {q}")
        ranks.append(f"ts_rank(coalesce(p.words, ''::tsvector), {q})")
    tokens = query_text(match.tokens)
    if tokens is not None:
        q = sql.arg(tokens, "::tsquery")
        for column in _TOKEN_COLUMNS.get(classification, _TOKEN_COLUMNS[None]):
            conditions.append(f"p.{column} @@ {q}")
            ranks.append(f"ts_rank(coalesce(p.{column}, ''::tsvector), {q})")
    if not conditions:
        return None
    sql.where.append("(" + " OR ".join(conditions) + ")")
    score = "(" + " + ".join(ranks) + ")::float8"
    groups = missing_groups(match.phrases)
    if groups == 1:
        return score
    # A record ranks below every record holding more of the phrases (up to
    # COUNTED_PHRASES; past it, below every record holding them all).
    columns = _TOKEN_COLUMNS.get(classification, _TOKEN_COLUMNS[None])
    if groups == match.phrases:
        lacked = [  # phrase i in either form (one of the lists may be empty)
            f"(CASE WHEN {_holds(sql, match.words[i : i + 1], match.tokens[i : i + 1], columns)}"
            " THEN 0 ELSE 1 END)"
            for i in range(match.phrases)
        ]
        return f"({score} - {PARTIAL!r}::float8 * ({' + '.join(lacked)}))"
    every = _holds(sql, match.words, match.tokens, columns)
    return f"(CASE WHEN {every} THEN {score} ELSE {score} - {PARTIAL!r}::float8 END)"


def _holds(
    sql: _Sql,
    words: Sequence[Sequence[str]],
    tokens: Sequence[Sequence[str]],
    columns: Sequence[str],
) -> str:
    """Whether a record holds every one of the phrases, as terms or as tokens (``false``
    when a phrase has terms no ``tsvector`` can hold)."""
    held = []
    if (text := query_text(words, every=True)) is not None:
        held.append(f"p.words @@ {sql.arg(text, '::tsquery')}")
    if (text := query_text(tokens, every=True)) is not None:
        q = sql.arg(text, "::tsquery")
        held += [f"p.{column} @@ {q}" for column in columns]
    return "(" + " OR ".join(held) + ")" if held else "false"


def _whole(value: float) -> tuple[int, bool]:
    """A cursor's creation time as an integer and whether it was one (a fraction sorts
    between two milliseconds: nothing equals it)."""
    whole = int(value // 1)
    return (whole, True) if whole == value else (whole + 1, False)


def find_sql(query: PatternQuery) -> tuple[str, list[Any]] | None:
    """One page of ``query`` as a statement and its parameters (None: it matches nothing).
    Rows are the record's columns, then the score (NULL without a match)."""
    sql = _Sql()
    _filters(sql, query)
    if query.match is not None:
        score = _match(sql, query.match, query.classification)
        if score is None:
            return None
        inner = (
            f"SELECT {RECORD}, {score} AS score FROM patterns p "  # noqa: S608
            f"WHERE {' AND '.join(sql.where)}"
        )
        outer = ""
        if query.after is not None:
            s = sql.arg(float(query.after[0]), "::float8")
            i = sql.arg(query.after[1], "::text")
            outer = f'WHERE s.score < {s} OR (s.score = {s} AND s.pattern_id > {i} COLLATE "C")'
        limit = sql.arg(query.limit, "::int8")
        text = (
            f"SELECT * FROM ({inner}) AS s {outer} "  # noqa: S608
            f"ORDER BY s.score DESC, s.pattern_id LIMIT {limit}"
        )
        return text, sql.args
    if query.after is not None:
        at, whole = _whole(query.after[0])
        a = sql.arg(at, "::int8")
        if whole:
            i = sql.arg(query.after[1], "::text")
            sql.where.append(
                f"(p.created_at_ms < {a} OR (p.created_at_ms = {a} AND p.pattern_id < {i}))"
            )
        else:
            sql.where.append(f"p.created_at_ms < {a}")
    limit = sql.arg(query.limit, "::int8")
    text = (
        f"SELECT {RECORD}, NULL::float8 AS score FROM patterns p "  # noqa: S608
        f"WHERE {' AND '.join(sql.where)} "
        f"ORDER BY p.created_at_ms DESC, p.pattern_id DESC LIMIT {limit}"
    )
    return text, sql.args


def count_sql(query: PatternQuery) -> tuple[str, list[Any]] | None:
    """How many live records ``query`` matches, as a statement (None: none can)."""
    sql = _Sql()
    _filters(sql, query)
    if query.match is not None and _match(sql, query.match, query.classification) is None:
        return None
    text = f"SELECT count(*) FROM patterns p WHERE {' AND '.join(sql.where)}"  # noqa: S608
    return text, sql.args
