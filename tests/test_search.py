"""Search, list and count over long-term memory: ranked, filtered, paged, on encrypted
records too, in one namespace, never past retention."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from attune.errors import AccessDeniedError, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import InsertOp, SQLiteLongTermStore
from attune.memory.long_term.sqlite_store import DB_FILENAME
from attune.memory.reads import PatternPage
from attune.memory.search.terms import parse_query

CORPUS = {
    "sqli": "Use parameterized queries to prevent SQL injection in every database call",
    "xss": "Escape user input in templates to stop cross-site scripting",
    "retry": "Retry idempotent requests with exponential backoff and jitter",
    "cafe": "The Café team reviews schema migrations on Tuesdays",
    "bulk": "Use bulk inserts for large database imports; batch the commits",
}


def _agent(config: MemoryConfig, tier: str = "CONTRIBUTOR", **kw: Any) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("searcher", config, access_tier=tier, **kw)


async def _fill(mem: AsyncUnifiedMemory, classification: str) -> dict[str, str]:
    ids = {}
    for name, text in CORPUS.items():
        stored = await mem.persist_pattern(
            text,
            "security" if name in ("sqli", "xss") else "practice",
            classification=classification,
            metadata={"topic": name, "rank": len(name)},
        )
        ids[name] = stored["pattern_id"]
    return ids


@pytest.mark.parametrize("classification", ["PUBLIC", "INTERNAL", "SENSITIVE"])
async def test_the_same_query_finds_the_same_pattern_whatever_its_classification(
    mock_config: MemoryConfig, classification: str
) -> None:
    """Parity over the corpus: plaintext words and blind-index tokens find alike."""
    async with _agent(mock_config) as mem:
        ids = await _fill(mem, classification)
        for name, text in CORPUS.items():
            word = max((w for w in parse_query(text).phrases), key=lambda p: len(p[0]))[0]
            page = await mem.search_patterns(word)
            assert ids[name] in [r["pattern_id"] for r in page], (name, word)
        page = await mem.search_patterns("SQL injection")
        assert page[0]["pattern_id"] == ids["sqli"]
        assert page[0]["content"] == CORPUS["sqli"]  # decrypted through the governed path
        assert page[0]["classification"] == classification
        assert isinstance(page[0]["score"], float) and page[0]["score"] > 0


async def test_more_of_the_words_rank_higher_and_phrases_match_in_order(
    mock_config: MemoryConfig,
) -> None:
    async with _agent(mock_config) as mem:
        ids = await _fill(mem, "PUBLIC")
        page = await mem.search_patterns("database injection")
        assert [r["pattern_id"] for r in page][:1] == [ids["sqli"]]  # holds both words
        assert {r["pattern_id"] for r in page} == {ids["sqli"], ids["bulk"]}
        assert page[0]["score"] > page[1]["score"]
        assert [r["pattern_id"] for r in await mem.search_patterns('"bulk inserts"')] == [
            ids["bulk"]
        ]
        assert list(await mem.search_patterns('"inserts bulk"')) == []
        # Case and accents do not matter, on either side.
        assert [r["pattern_id"] for r in await mem.search_patterns("CAFE")] == [ids["cafe"]]
        assert [r["pattern_id"] for r in await mem.search_patterns("càfé")] == [ids["cafe"]]


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_filters_narrow_search_list_and_count(
    mock_config: MemoryConfig, classification: str
) -> None:
    async with _agent(mock_config) as mem:
        ids = await _fill(mem, classification)
        security = {ids["sqli"], ids["xss"]}
        assert {r["pattern_id"] for r in await mem.list_patterns("security")} == security
        assert await mem.count_patterns("security") == 2
        assert await mem.count_patterns() == len(CORPUS)
        assert await mem.count_patterns(classification=classification) == len(CORPUS)
        other = "PUBLIC" if classification == "SENSITIVE" else "SENSITIVE"
        assert await mem.count_patterns(classification=other) == 0
        found = await mem.search_patterns("database", metadata={"topic": "bulk"})
        assert [r["pattern_id"] for r in found] == [ids["bulk"]]
        assert await mem.count_patterns(metadata={"topic": "xss", "rank": 3}) == 1
        assert await mem.count_patterns(metadata={"topic": "xss", "rank": 4}) == 0
        assert await mem.count_patterns(created_by="someone-else") == 0
        assert await mem.count_patterns(created_by="searcher") == len(CORPUS)
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await mem.count_patterns(since=later) == 0
        assert await mem.count_patterns(until=later.isoformat()) == len(CORPUS)


async def test_the_original_call_works_verbatim(mock_config: MemoryConfig) -> None:
    async with _agent(mock_config) as mem:
        ids = await _fill(mem, "SENSITIVE")
        results = await mem.search_patterns(query="sql injection", pattern_type="security", limit=5)
        assert [r["pattern_id"] for r in results] == [ids["sqli"]]
        assert isinstance(results, list) and results.next_cursor is None


async def test_pages_follow_cursors_and_list_stays_correct_while_records_arrive(
    mock_config: MemoryConfig,
) -> None:
    async with _agent(mock_config) as mem:
        first_ids = []
        for i in range(7):
            stored = await mem.persist_pattern(f"Paging note number {i}", "note")
            first_ids.append(stored["pattern_id"])
        page = await mem.list_patterns(limit=3)
        rows = list(page)
        while page.next_cursor is not None:
            await mem.persist_pattern("Arrived later", "note")  # newer: not in these pages
            page = await mem.list_patterns(limit=3, cursor=page.next_cursor)
            rows += page
        seen = [r["pattern_id"] for r in rows]
        assert sorted(seen) == sorted(first_ids)  # none twice, none skipped
        # Newest first; records of one millisecond by id, descending.
        keys = [(r["created_at"], r["pattern_id"]) for r in rows]
        assert keys == sorted(keys, reverse=True)
        assert await mem.count_patterns() == 7 + 2  # the two that arrived meanwhile
        ranked: list[str] = []
        page = await mem.search_patterns("paging note", limit=2)
        ranked += [r["pattern_id"] for r in page]
        while page.next_cursor is not None:
            page = await mem.search_patterns("paging note", limit=2, cursor=page.next_cursor)
            ranked += [r["pattern_id"] for r in page]
        assert len(ranked) == len(set(ranked)) == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "no words"),
        ({"query": "the and of"}, "no words"),
        ({"query": "sql\x00"}, "NUL"),
        ({"query": "x" * 5000}, "longer than"),
        ({"query": 42}, "must be a string"),
        ({"limit": -1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 10**9}, "limit"),
        ({"cursor": "nonsense"}, "cursor"),
        ({"cursor": "c1.!!!"}, "cursor"),
        ({"metadata": {"": 1}}, "metadata"),
        ({"metadata": ["topic"]}, "metadata"),
        ({"since": "yesterday"}, "since"),
        ({"until": 12}, "until"),
        ({"classification": "SECRET"}, "classification"),
        ({"pattern_type": "no spaces allowed"}, "pattern_type"),
        ({"namespace": "bad namespace"}, "namespace"),
    ],
)
async def test_bad_input_is_a_validation_error_and_writes_nothing(
    mock_config: MemoryConfig, kwargs: dict[str, Any], message: str
) -> None:
    async with _agent(mock_config, "STEWARD") as mem:
        await mem.persist_pattern("Something to find", "note")
        before = await mem.count_patterns()
        with pytest.raises(ValidationError, match=message):
            await mem.search_patterns(**kwargs)
        assert await mem.count_patterns() == before


@pytest.mark.parametrize(
    "query",
    ['sql" OR "1"="1', "NEAR(a b, 1)", "col:sql", "sql*", "(((", '"', "AND OR NOT", "^sql"],
)
async def test_fts_syntax_in_a_query_never_reaches_sqlite(
    mock_config: MemoryConfig, query: str
) -> None:
    async with _agent(mock_config) as mem:
        await mem.persist_pattern("Use parameterized SQL", "note")
        try:
            page = await mem.search_patterns(query)
        except ValidationError:
            return  # nothing searchable in it: a clear error, not sqlite's
        assert isinstance(page, PatternPage)


async def test_a_cursor_of_another_query_is_refused(mock_config: MemoryConfig) -> None:
    async with _agent(mock_config) as mem:
        for i in range(3):
            await mem.persist_pattern(f"Cursor note {i}", "note")
        page = await mem.search_patterns("cursor note", limit=1)
        assert page.next_cursor is not None
        with pytest.raises(ValidationError, match="cursor"):
            await mem.search_patterns("note", limit=1, cursor=page.next_cursor)
        with pytest.raises(ValidationError, match="cursor"):
            await mem.list_patterns(limit=1, cursor=page.next_cursor)


def _tampered(cursor: str, index: int, value: Any) -> str:
    """``cursor`` with one field of its ``[key, pattern_id, fingerprint]`` replaced."""
    import base64
    import json

    body = cursor[3:]
    fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    fields[index] = value
    raw = json.dumps(fields).encode()  # (inf and nan as JSON's Infinity and NaN)
    return "c1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, float("inf")),
        (0, float("-inf")),
        (0, float("nan")),
        (0, 1e300),
        (0, 2**63),
        (0, 10**30),
        (1, "pat_\x00x"),
        (1, "pat_\ud800"),
        (1, ""),
    ],
)
async def test_a_tampered_cursor_is_a_validation_error(
    mock_config: MemoryConfig, index: int, value: Any
) -> None:
    """A cursor decoded, altered and encoded again is refused before any store sees it (on
    PostgreSQL such values raised a bare ValueError or a "database unavailable" error)."""
    async with _agent(mock_config) as mem:
        for i in range(3):
            await mem.persist_pattern(f"Cursor note {i}", "note")
        for read in (
            lambda c: mem.list_patterns(limit=1, cursor=c),
            lambda c: mem.search_patterns("cursor note", limit=1, cursor=c),
        ):
            page = await read(None)
            assert page.next_cursor is not None
            with pytest.raises(ValidationError, match="cursor"):
                await read(_tampered(page.next_cursor, index, value))


async def test_namespaces_separate_every_read(mock_config: MemoryConfig) -> None:
    async with (
        _agent(mock_config, namespace="team-a") as a,
        _agent(mock_config, "OBSERVER", namespace="team-b") as b_reader,
        _agent(mock_config, "STEWARD", namespace="team-b") as steward,
    ):
        stored = await a.persist_pattern(
            "Rotate credentials quarterly", "security", classification="SENSITIVE"
        )
        pid = stored["pattern_id"]
        assert (await a.recall_pattern(pid))["namespace"] == "team-a"  # type: ignore[index]
        assert await b_reader.recall_pattern(pid) is None
        assert list(await b_reader.search_patterns("credentials")) == []
        assert list(await b_reader.list_patterns()) == []
        assert await b_reader.count_patterns() == 0
        with pytest.raises(AccessDeniedError):
            await b_reader.search_patterns("credentials", namespace="team-a")
        with pytest.raises(AccessDeniedError):
            await b_reader.recall_pattern(pid, namespace="*")
        # A steward may look across, by name or everywhere.
        assert [
            r["pattern_id"]
            for r in await steward.search_patterns("credentials", namespace="team-a")
        ] == [pid]
        assert await steward.count_patterns(namespace="*") == 1
        assert (await steward.recall_pattern(pid, namespace="team-a")) is not None
        assert await steward.recall_pattern(pid) is None  # its own namespace by default


async def test_expired_records_are_never_returned(mock_config: MemoryConfig) -> None:
    async with _agent(mock_config) as mem:
        live = await mem.persist_pattern("Fresh guidance about caching", "note")
        # A record past its retention, indexed like any other (as if its clock ran out).
        expired = await mem.persist_pattern("Stale guidance about caching", "note")
        store = mem.long_term
        assert isinstance(store, SQLiteLongTermStore)
        with closing(sqlite3.connect(store.path)) as db, db:
            db.execute(
                "UPDATE patterns SET expires_at_ms = ? WHERE pattern_id = ?",
                (int(time.time() * 1000) - 1, expired["pattern_id"]),
            )
        assert [r["pattern_id"] for r in await mem.search_patterns("caching")] == [
            live["pattern_id"]
        ]
        assert [r["pattern_id"] for r in await mem.list_patterns()] == [live["pattern_id"]]
        assert await mem.count_patterns() == 1
        assert await mem.recall_pattern(expired["pattern_id"]) is None


async def test_key_rotation_keeps_search_working(mock_config: MemoryConfig) -> None:
    async with _agent(mock_config, "STEWARD") as mem:
        before = await mem.persist_pattern(
            "Encrypted before rotation", "note", classification="SENSITIVE"
        )
        await mem.rotate_keys()
        after = await mem.persist_pattern(
            "Encrypted after rotation", "note", classification="SENSITIVE"
        )
    async with _agent(mock_config) as fresh:  # a new process's view: key id from the store
        found = {r["pattern_id"] for r in await fresh.search_patterns("rotation")}
        assert found == {before["pattern_id"], after["pattern_id"]}


async def test_sensitive_words_are_not_indexed_when_turned_off(
    mock_config: MemoryConfig,
) -> None:
    config = mock_config.model_copy(update={"search_index_sensitive": False})
    async with _agent(config) as mem:
        secret = await mem.persist_pattern(
            "Patient triage order", "note", classification="SENSITIVE", metadata={"ward": "b"}
        )
        internal = await mem.persist_pattern("Triage checklist", "note", classification="INTERNAL")
        assert [r["pattern_id"] for r in await mem.search_patterns("triage")] == [
            internal["pattern_id"]
        ]
        # Still listed and filtered by metadata (facets are not words).
        assert await mem.count_patterns(metadata={"ward": "b"}) == 1
        assert secret["pattern_id"] in [r["pattern_id"] for r in await mem.list_patterns()]


async def test_no_word_of_an_encrypted_record_is_stored_in_clear(
    mock_config: MemoryConfig,
) -> None:
    async with _agent(mock_config) as mem:
        await mem.persist_pattern(
            "Zanzibar quokka protocol",
            "note",
            classification="SENSITIVE",
            metadata={"codename": "marmalade"},
        )
        assert [r["content"] for r in await mem.search_patterns("quokka")] == [
            "Zanzibar quokka protocol"
        ]
    raw = (mock_config.storage_dir / DB_FILENAME).read_bytes()
    wal = mock_config.storage_dir / (DB_FILENAME + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    for word in (b"zanzibar", b"quokka", b"Zanzibar", b"marmalade", b"codename"):
        assert word not in raw


async def test_a_read_audits_ids_and_counts_never_the_query(mock_config: MemoryConfig) -> None:
    async with _agent(mock_config) as mem:
        stored = await mem.persist_pattern("Mention of orchids in the greenhouse", "note")
        await mem.search_patterns("orchids greenhouse")
        await mem.list_patterns()
        await mem.count_patterns()
        logger = mem.pipeline.audit_logger
        events = {e["event"]: e for e in logger.query()}
        assert events["pattern.search"]["details"]["ids"] == [stored["pattern_id"]]
        assert events["pattern.search"]["details"]["query"].startswith("q_")
        assert events["pattern.list"]["details"]["results"] == 1
        assert events["pattern.count"]["details"]["count"] == 1
        text = logger.log_file.read_text()
        assert "orchids" not in text and "greenhouse" not in text


async def test_records_of_an_older_store_are_indexed_on_first_search(
    mock_config: MemoryConfig,
) -> None:
    """Records stored before the index existed (a migrated file) are found: the first
    search indexes them."""
    async with _agent(mock_config) as mem:
        plain = await mem.persist_pattern("Legacy note about tracing", "note")
        hidden = await mem.persist_pattern(
            "Legacy secret about tracing", "note", classification="SENSITIVE"
        )
    with closing(sqlite3.connect(mock_config.storage_dir / DB_FILENAME)) as db, db:
        db.execute("DELETE FROM pattern_search")
        db.execute("UPDATE patterns SET search_rowid = NULL")
    async with _agent(mock_config) as mem:
        found = {r["pattern_id"] for r in await mem.search_patterns("tracing")}
        assert found == {plain["pattern_id"], hidden["pattern_id"]}
        store = mem.long_term
        assert isinstance(store, SQLiteLongTermStore)
        assert await store.unindexed("", 10) == []


async def test_new_records_are_found_at_once_and_their_rows_written_soon(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record's search row follows in a later transaction (shared by many records); a
    search through the store writes pending rows first, and without one they are written
    a flush interval later."""
    from records import pattern_record
    from waiting import await_until

    from attune.memory.long_term import sqlite_search
    from attune.memory.long_term.queries import Match, PatternQuery, SearchEntry

    store = SQLiteLongTermStore(mock_config.ensure_storage_dir())

    def indexed() -> int:
        with closing(sqlite3.connect(store.path)) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM patterns WHERE search_rowid IS NOT NULL"
                ).fetchone()[0]
            )

    entry = SearchEntry(words=("harbour",))
    query = PatternQuery(now_ms=0, match=Match(words=(("harbour",),)))
    try:
        # A long interval: the row waits for a search (the check cannot race a timer).
        monkeypatch.setattr(sqlite_search, "FLUSH_S", 60.0)
        assert await store.write(InsertOp(pattern_record("pat_a"), index=entry))
        assert indexed() == 0  # pending
        assert [f.record.pattern_id for f in await store.find(query)] == ["pat_a"]
        assert indexed() == 1
        # The real interval: written by the timer, with no search asking.
        monkeypatch.setattr(sqlite_search, "FLUSH_S", 0.05)
        assert await store.write(InsertOp(pattern_record("pat_b"), index=entry))
        await await_until(lambda: indexed() == 2, "the pending search row being written")
    finally:
        await store.aclose()


async def test_a_search_sees_what_another_memory_object_wrote_on_the_same_loop(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents' memory objects on one loop each have their own store and connection:
    a search through one writes the other's pending search rows first, so it finds a
    record the other wrote just before it (filters by metadata and counts too)."""
    from attune.memory.long_term import sqlite_search

    monkeypatch.setattr(sqlite_search, "FLUSH_S", 60.0)  # no timer writes the rows meanwhile
    async with (
        AsyncUnifiedMemory("scout", mock_config) as scout,
        AsyncUnifiedMemory("lead", mock_config) as lead,
    ):
        first = await scout.persist_pattern("Return 429 when rate limited", "api_design")
        assert [r["pattern_id"] for r in await scout.search_patterns("rate limited")] == [
            first["pattern_id"]
        ]  # the backfill has run for scout: it is not what finds the next one
        second = await lead.persist_pattern(
            "Rate limited clients must back off", "api_design", metadata={"team": "edge"}
        )
        found = {r["pattern_id"] for r in await scout.search_patterns("rate limited")}
        assert found == {first["pattern_id"], second["pattern_id"]}
        assert await scout.count_patterns(metadata={"team": "edge"}) == 1
        listed = await scout.list_patterns(metadata={"team": "edge"})
        assert [r["pattern_id"] for r in listed] == [second["pattern_id"]]


def test_the_blocking_classes_see_what_another_object_wrote_in_the_same_thread(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune import EmpathyOS
    from attune.memory.long_term import sqlite_search

    monkeypatch.setattr(sqlite_search, "FLUSH_S", 60.0)
    scout = EmpathyOS(user_id="scout", config=mock_config)
    lead = EmpathyOS(user_id="lead", config=mock_config)
    try:
        scout.persist_pattern("Return 429 when rate limited", "api_design")
        assert len(scout.search_patterns("rate limited")) == 1
        lead.persist_pattern("Rate limited clients must back off", "api_design")
        assert len(scout.search_patterns("rate limited")) == 2
    finally:
        scout.close()
        lead.close()


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_a_metadata_filter_matches_keys_as_the_record_spells_them(
    mock_config: MemoryConfig, classification: str
) -> None:
    """Metadata keys that are not strings are stored as JSON spells them ("null",
    "true", "7"); a filter on the key the record shows finds it."""
    async with _agent(mock_config) as mem:
        stored = await mem.persist_pattern(
            "keys test",
            "tip",
            classification=classification,
            metadata={None: "a", True: "b", 7: "c"},
        )
        recalled = await mem.recall_pattern(stored["pattern_id"])
        assert recalled is not None
        assert recalled["metadata"] == {"null": "a", "true": "b", "7": "c"}
        for key, value in recalled["metadata"].items():
            assert await mem.count_patterns(metadata={key: value}) == 1, key
        assert await mem.count_patterns(metadata={"None": "a"}) == 0


async def test_a_damaged_record_is_left_out_of_a_page_and_reported(
    mock_config: MemoryConfig,
) -> None:
    from attune.errors import CorruptRecordError

    async with _agent(mock_config) as mem:
        good = await mem.persist_pattern("Albatross sightings log", "note")
        bad = await mem.persist_pattern(
            "Albatross nesting codes", "note", classification="SENSITIVE"
        )
        await mem.search_patterns("albatross")  # their search rows are written
        with closing(sqlite3.connect(mock_config.storage_dir / DB_FILENAME)) as db, db:
            db.execute(
                "UPDATE patterns SET content = zeroblob(length(content)) WHERE pattern_id = ?",
                (bad["pattern_id"],),
            )
        assert [r["pattern_id"] for r in await mem.search_patterns("albatross")] == [
            good["pattern_id"]
        ]
        assert [r["pattern_id"] for r in await mem.list_patterns()] == [good["pattern_id"]]
        with pytest.raises(CorruptRecordError):
            await mem.recall_pattern(bad["pattern_id"])
        reported = mem.pipeline.audit_logger.query(event_type="pattern.retrieve", outcome="corrupt")
        assert {e["target_id"] for e in reported} == {bad["pattern_id"]}


def test_the_backfill_reads_only_records_without_a_search_row(tmp_path: Any) -> None:
    """Finding records to index uses the partial index, not a scan of every record."""
    from attune.memory.long_term.sqlite_schema import MIGRATIONS

    with closing(sqlite3.connect(tmp_path / "plan.db")) as db:
        for version in sorted(MIGRATIONS):
            for statement in MIGRATIONS[version]:
                db.execute(statement)
        plan = " ".join(
            str(row[-1])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT pattern_id FROM patterns WHERE search_rowid IS NULL "
                "AND pattern_id > ? ORDER BY pattern_id LIMIT 10",
                ("",),
            )
        )
        assert "patterns_unindexed" in plan, plan


def test_a_record_written_on_a_loop_that_ended_is_found_from_the_next(
    mock_config: MemoryConfig,
) -> None:
    """``asyncio.run`` per call: the first loop's pending search rows are written when its
    connection is released, so the next loop's search finds the record."""
    import asyncio

    mem = _agent(mock_config)

    async def first() -> str:
        await mem.search_patterns("anything")  # the backfill has run for this object
        stored = await mem.persist_pattern("Kestrel migration notes", "note")
        return str(stored["pattern_id"])

    async def second() -> list[str]:
        return [r["pattern_id"] for r in await mem.search_patterns("kestrel")]

    pid = asyncio.run(first())
    assert asyncio.run(second()) == [pid]
    asyncio.run(mem.aclose())


@pytest.mark.parametrize("classification", ["PUBLIC", "INTERNAL", "SENSITIVE"])
async def test_a_classification_filter_gives_what_filtering_the_unfiltered_search_gives(
    mock_config: MemoryConfig, classification: str
) -> None:
    """A search for one classification finds exactly the unfiltered search's records of
    that classification, best first. PUBLIC-only: also the same scores (only the plaintext
    phrases are asked, and a phrase a record does not hold adds nothing). INTERNAL- and
    SENSITIVE-only searches read their own token column, so a word's weight is computed
    over that class's records: scores may differ from the unfiltered search's."""
    async with _agent(mock_config) as mem:
        for label in ("PUBLIC", "INTERNAL", "SENSITIVE"):
            await _fill(mem, label)
        for query in ("database", "user input templates", '"bulk inserts"', "retry jitter"):
            everything = await mem.search_patterns(query, limit=100)
            expected = [
                (r["pattern_id"], r["score"])
                for r in everything
                if r["classification"] == classification
            ]
            assert expected  # every label holds the corpus: the comparison is not vacuous
            only = await mem.search_patterns(query, classification=classification, limit=100)
            found = [(r["pattern_id"], r["score"]) for r in only]
            assert {pid for pid, _ in found} == {pid for pid, _ in expected}, query
            assert [score for _, score in found] == sorted(
                (score for _, score in found), reverse=True
            )
            if classification == "PUBLIC":
                assert found == expected, query
            assert await mem.count_patterns(classification=classification) == len(CORPUS)


async def test_a_match_with_no_phrase_matches_nothing(mock_config: MemoryConfig) -> None:
    """A SENSITIVE-only search where no query token exists (no master key: nothing is
    encrypted) narrows to a match of no phrase: the store answers with nothing, never
    with every record and never with an FTS5 syntax error."""
    from attune.memory.long_term.queries import Match, PatternQuery

    async with _agent(mock_config) as mem:
        await _fill(mem, "PUBLIC")
        empty = PatternQuery(now_ms=time.time_ns() // 1_000_000, match=Match(words=()))
        assert await mem.long_term.find(empty) == []
        assert await mem.long_term.count(empty) == 0
        assert await mem.long_term.count(PatternQuery(now_ms=empty.now_ms)) == len(CORPUS)


async def test_a_version_5_store_keeps_its_search_rows_through_the_split_of_token_columns(
    mock_config: MemoryConfig,
) -> None:
    """Schema version 6 keeps SENSITIVE records' tokens apart: a store of version 5 (one
    token column) is rebuilt in place, and every record stays found, by class too."""
    from attune.memory.security.pipeline import close_shared

    async with _agent(mock_config) as mem:
        ids = {label: await _fill(mem, label) for label in ("PUBLIC", "INTERNAL", "SENSITIVE")}
    close_shared()
    with closing(sqlite3.connect(mock_config.storage_dir / DB_FILENAME)) as db, db:
        # Back to version 5's layout: one token column for every encrypted record.
        db.execute("DROP TRIGGER patterns_unindex")
        db.execute(
            "CREATE VIRTUAL TABLE v5 USING fts5(words, tokens, facets, "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )
        db.execute(
            "INSERT INTO v5 (rowid, words, tokens, facets) SELECT rowid, words, "
            "trim(tokens || ' ' || sensitive_tokens), facets FROM pattern_search"
        )
        db.execute("DROP TABLE pattern_search")
        db.execute("ALTER TABLE v5 RENAME TO pattern_search")
        db.execute(
            "CREATE TRIGGER patterns_unindex AFTER DELETE ON patterns "
            "WHEN old.search_rowid IS NOT NULL BEGIN "
            "DELETE FROM pattern_search WHERE rowid = old.search_rowid; END"
        )
        db.execute("UPDATE schema_version SET version = 5")
    async with _agent(mock_config, tier="STEWARD") as mem:
        for label, by_name in ids.items():
            page = await mem.search_patterns("SQL injection", classification=label)
            assert [r["pattern_id"] for r in page][:1] == [by_name["sqli"]], label
        everything = await mem.search_patterns("database", limit=100)
        assert len(everything) == 6  # two records of each class hold the word
        deleted = ids["SENSITIVE"]["bulk"]
        assert await mem.delete_pattern(deleted)  # the trigger was rebuilt with the table
        assert deleted not in [r["pattern_id"] for r in await mem.search_patterns("bulk")]
    with closing(sqlite3.connect(mock_config.storage_dir / DB_FILENAME)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(pattern_search)")]
        assert columns == ["words", "tokens", "sensitive_tokens", "facets"]
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 6


async def test_metadata_with_keys_of_mixed_types_is_stored_and_filtered(
    mock_config: MemoryConfig,
) -> None:
    """A nested mapping with a ``None`` key beside string keys (JSON stores both as
    strings): the write is indexed, not refused with a raw TypeError, and a filter of the
    same value finds it (found by the bad-input property test)."""
    nested = {"": 1, None: 2}
    async with _agent(mock_config) as mem:
        stored = await mem.persist_pattern("A note", "note", metadata={"content": nested})
        found = await mem.list_patterns(metadata={"content": nested})
        assert [r["pattern_id"] for r in found] == [stored["pattern_id"]]
