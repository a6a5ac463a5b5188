"""The SQLite store's ranked search pages: best BM25 matches first, ties by pattern id.

A page is read off FTS5's matches in rank order, a batch at a time: only those batches
are joined to ``patterns`` and filtered, until the page is full or the matches run out.
The plain query (:func:`full_page`) joined every match to its whole row and sorted them
all: at 1,000,000 records a 2-word query's p50 was 23-24 ms (42 ms on another run);
batched, 6 ms (benchmarks/search_scaling.py). What is left grows with the number of
matches: FTS5 computes bm25 for every match before it hands out the best (4 ms of the 6
at 1M, 0.47 ms at 100,000 records).

A multi-word query runs in stages (:func:`.sqlite_search.ranked_stages`): the records
holding every phrase, then those lacking one, and so on, each stage's ranks raised by one
more :data:`~.queries.PARTIAL`; a page takes from the first stage, then the next. A
cursor's score says which stage it is in (full matches score above 0, a record lacking
``m`` phrases between ``-m * PARTIAL`` and ``-(m - 1) * PARTIAL``).

A stage's page is exactly its plain query's: the same records, order and scores. The stream is
ordered by the same ``bm25()`` the plain query scores with, so a score is bit for bit
the same; a batch is settled only below the last rank it read (records tied with that
one may still come), so ties are ordered by pattern id across batches too; and the
plain query itself runs where the filters keep few matches (:data:`PROBE`) or the
batches have read :data:`MAX_CANDIDATES` matches.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from typing import Any, NamedTuple

from attune.memory.long_term.queries import Found, PatternQuery
from attune.memory.long_term.sqlite_schema import to_record

#: Matches read in the first batch; each later batch is twice the one before (the
#: stream is sorted once, so a later batch costs no second ranking).
FIRST_BATCH = 64
#: Matches read before the plain query takes over.
MAX_CANDIDATES = 4096
#: Before the batches, this many matches (the first by rowid, unranked) are checked
#: against the filters; if fewer than :data:`PROBE_KEEP` pass, the plain query runs
#: instead: it reads matches' rows in rowid order, which is table order, and ranks only
#: those that pass, where batches would read rows scattered in rank order (1M records, a
#: filter no record passes: 24-30 ms p50 batched, 12 ms plain; the probe costs 0.2 ms).
PROBE = 64
PROBE_KEEP = 2


#: When the matches of a multi-word query's earlier stages (before filters) are at most
#: this many, the last of them is ranked on its own and the next stage is the matches
#: of "at least this many phrases" minus those rowids, rather than FTS5 evaluating
#: ``at least k NOT at least k + 1``, which reads every phrase's postings twice
#: (100,000 records, 2-word queries: p50 +0.3 ms without this).
FEW_FULL = 64


class Stage(NamedTuple):
    """One run of a ranked query: its MATCH text and what its ranks are raised by (a
    result's score is ``-(bm25() + offset)``; later stages rank below earlier ones).
    For a stage after the first, ``above`` matches the earlier stages' records, and
    ``wider`` those and this stage's (``expression`` is ``wider NOT above``): when
    ``above`` matches few, the stage reads ``wider``'s matches and skips those by rowid;
    bm25() of a record is the same under both texts (a phrase under NOT adds nothing)."""

    expression: str
    offset: float
    wider: str | None = None
    above: str | None = None


#: Matches best first: the rank is bm25() (lower for better matches) plus the stage's
#: offset; the score is its negation. ``bm25()`` rather than FTS5's ``ORDER BY rank``
#: path, which sorts in a statement of its own: 1M records, first 64 matches 4.0 ms p50
#: against 4.6; all of them, 5.0 / 9.1.
_STREAM = (
    "SELECT rowid, bm25(pattern_search) + ? AS r FROM pattern_search "
    "WHERE pattern_search MATCH ?{bound} ORDER BY r"
)


def find_ranked(
    db: sqlite3.Connection,
    query: PatternQuery,
    stages: list[Stage],
    where: list[str],
    args: list[Any],
    record: str,
) -> list[Found]:
    """One page of a query with a match (on the connection's thread): its stages' pages
    in turn, until the page is full.

    ``where``/``args`` are the filters as SQL conditions on ``p`` (the patterns table),
    ``record`` the record's columns on ``p``."""
    page: list[Found] = []
    after = query.after
    known: dict[str, frozenset[int] | None] = {}

    def few(expression: str | None) -> frozenset[int] | None:
        """The rowids matching ``expression`` if few (None: many, or no expression)."""
        if expression is None:
            return None
        if expression not in known:
            known[expression] = _few(db, expression)
        return known[expression]

    for n, stage in enumerate(stages):
        if after is not None and after[0] <= -stage.offset:
            continue  # the cursor is past this stage: its scores are all above it
        part = replace(query, limit=query.limit - len(page), after=after)
        after = None  # a later stage's records all rank below this one's
        run, skip = stage, frozenset[int]()
        if stage.wider is not None and (earlier := few(stage.above)) is not None:
            run, skip = Stage(stage.wider, stage.offset), earlier
        later = stages[n + 1] if n + 1 < len(stages) else None
        if later is not None and later.wider is not None and few(later.above) is not None:
            # this stage's matches (with the earlier ones') are few: rank them at once
            page += full_page(db, part, run, where, args, record, skip)
        else:
            page += _stage_page(db, part, run, where, args, record, skip)
        if len(page) >= query.limit:
            break
    return page


def _few(db: sqlite3.Connection, expression: str) -> frozenset[int] | None:
    """The rowids matching ``expression`` if there are at most :data:`FEW_FULL`."""
    rows = db.execute(
        "SELECT rowid FROM pattern_search WHERE pattern_search MATCH ? LIMIT ?",
        (expression, FEW_FULL + 1),
    ).fetchall()
    return frozenset(row[0] for row in rows) if len(rows) <= FEW_FULL else None


def _stage_page(
    db: sqlite3.Connection,
    query: PatternQuery,
    stage: Stage,
    where: list[str],
    args: list[Any],
    record: str,
    skip: frozenset[int] = frozenset(),
) -> list[Found]:
    """One page of one stage, without the matches of rowids in ``skip``."""
    expression = stage.expression
    stream_args: list[Any] = [stage.offset, expression]
    bound = ""
    if query.after is not None:  # nothing better than the previous page's last score
        bound = " AND bm25(pattern_search) + ? >= ?"
        stream_args += [stage.offset, -query.after[0]]
    if _thin(db, expression, where, args):
        return full_page(db, query, stage, where, args, record, skip)
    page: list[Found] = []
    stream = db.execute(_STREAM.format(bound=bound), stream_args)
    try:
        held: list[tuple[int, float]] = []  # read, tied with the last rank seen
        size, read = FIRST_BATCH, 0
        while len(page) < query.limit:
            if read >= MAX_CANDIDATES:
                stream.close()  # its sorted matches are let go before the plain query
                return full_page(db, query, stage, where, args, record, skip)
            batch = stream.fetchmany(size)
            read += len(batch)
            pool = held + ([m for m in batch if m[0] not in skip] if skip else batch)
            if len(batch) < size:  # the matches ran out: every record is settled
                settled, held = pool, []
            else:
                cut = len(pool)
                while cut and pool[cut - 1][1] == batch[-1][1]:
                    cut -= 1
                settled, held = pool[:cut], pool[cut:]
            page += _records(db, query, settled, query.limit - len(page), where, args, record)
            if not held and len(batch) < size:
                break
            size *= 2
    finally:
        stream.close()
    return page[: query.limit]


def _thin(db: sqlite3.Connection, expression: str, where: list[str], args: list[Any]) -> bool:
    """Whether few of a sample of the matches pass the filters."""
    count = db.execute(probe_sql(where), [expression, PROBE, *args]).fetchone()[0]
    return int(count) < PROBE_KEEP


def probe_sql(where: list[str]) -> str:
    """How many of the first matches by rowid (a MATCH text, a count) pass the filters."""
    return (
        "SELECT count(*) FROM (SELECT rowid AS r FROM pattern_search "  # noqa: S608
        "WHERE pattern_search MATCH ? LIMIT ?) AS m "
        f"CROSS JOIN patterns p ON p.search_rowid = m.r WHERE {' AND '.join(where)}"
    )


def _records(
    db: sqlite3.Connection,
    query: PatternQuery,
    settled: list[tuple[int, float]],
    need: int,
    where: list[str],
    args: list[Any],
    record: str,
) -> list[Found]:
    """Up to ``need`` records of settled matches that sort after the cursor and pass the
    filters, in page order.

    Matches are ordered by rank and id first, from the search_rowid index alone (it holds
    the id); whole rows are then read in that order, a few more than still needed at a
    time, until ``need`` pass the filters: a tie group is often hundreds of records, of
    which a page takes ten (1M records: joining a query's batches took 2.7 ms p50 with
    whole rows for every settled match, 0.84 ms so)."""
    rank = dict(settled)
    ranked = sorted(
        (rank[rowid], pattern_id) for rowid, pattern_id in db.execute(IDS, [json.dumps(list(rank))])
    )
    if query.after is not None:  # the cursor: scores are -rank, so sort keys go upwards
        after = (-query.after[0], query.after[1])
        ranked = [key for key in ranked if key > after]
    found: list[Found] = []
    sql = join_sql(where, record)
    start, chunk = 0, 2 * need
    while start < len(ranked) and len(found) < need:
        keys = ranked[start : start + chunk]
        rows = {row[0]: row for row in db.execute(sql, [json.dumps([k[1] for k in keys]), *args])}
        found += [Found(to_record(rows[k[1]]), -k[0]) for k in keys if k[1] in rows]
        start, chunk = start + chunk, chunk * 2
    return found[:need]


#: Search rowids to pattern ids, from the search_rowid index alone.
IDS = (
    "SELECT p.search_rowid, p.pattern_id FROM json_each(?) AS m "
    "CROSS JOIN patterns p ON p.search_rowid = m.value"
)


def join_sql(where: list[str], record: str) -> str:
    """The records of a JSON list of pattern ids that pass the filters. CROSS JOIN: from
    each id to its record by the primary key, never by a filter's index (a namespace can
    be most of the table)."""
    return (
        f"SELECT {record} FROM json_each(?) AS m "  # noqa: S608
        "CROSS JOIN patterns p ON p.pattern_id = m.value "
        f"WHERE {' AND '.join(where)}"
    )


def full_page(
    db: sqlite3.Connection,
    query: PatternQuery,
    stage: Stage,
    where: list[str],
    args: list[Any],
    record: str,
    skip: frozenset[int] = frozenset(),
) -> list[Found]:
    """The plain query of one stage: every match (but those of rowids in ``skip``)
    ranked, joined and filtered, then sorted."""
    sql = (
        f"SELECT {record}, -(bm25(pattern_search) + ?) AS score "  # noqa: S608
        "FROM pattern_search JOIN patterns p ON p.search_rowid = pattern_search.rowid "
        f"WHERE pattern_search MATCH ? AND {' AND '.join(where)}"
    )
    args = [stage.offset, stage.expression, *args]
    if skip:
        sql += " AND pattern_search.rowid NOT IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(sorted(skip)))
    if query.after is not None:
        sql = f"SELECT * FROM ({sql}) WHERE score < ? OR (score = ? AND pattern_id > ?)"  # noqa: S608
        args += [query.after[0], query.after[0], query.after[1]]
        order = "score DESC, pattern_id"
    else:
        order = "score DESC, p.pattern_id"
    sql += f" ORDER BY {order} LIMIT ?"
    args.append(query.limit)
    rows = db.execute(sql, args).fetchall()
    return [Found(to_record(row[:-1]), float(row[-1])) for row in rows]
