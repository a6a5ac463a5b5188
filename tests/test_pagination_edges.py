"""Pages and filters of the long-term reads at their edges, on every backend: time bounds
to the millisecond, cursors of pages that end on a long id, and cursors taken to another
backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, tzinfo
from typing import Any

import pytest
from records import pattern_record

from attune.errors import ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, clock
from attune.memory.long_term import InsertOp, LongTermStore
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
from attune.memory.read_args import time_ms
from attune.memory.timestamps import iso_ms

OpenStore = Callable[[], LongTermStore]


def _open(name: str, request: pytest.FixtureRequest, config: MemoryConfig) -> OpenStore:
    if name == "sqlite":
        return lambda: SQLiteLongTermStore(config.ensure_storage_dir())
    from attune.memory.long_term.postgres_store import PostgresLongTermStore

    url: str = request.getfixturevalue("postgres_url")  # an empty database
    return lambda: PostgresLongTermStore(url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, mock_config: MemoryConfig) -> OpenStore:
    return _open(request.param, request, mock_config)


@pytest.fixture
async def store(backend: OpenStore) -> AsyncIterator[LongTermStore]:
    opened = backend()
    yield opened
    await opened.aclose()


def _agent(config: MemoryConfig, store: LongTermStore) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("agent", config, long_term=store, access_tier="STEWARD")


async def _every_page(read: Any, **kw: Any) -> list[str]:
    page = await read(**kw)
    ids = [r["pattern_id"] for r in page]
    while page.next_cursor:
        page = await read(**kw, cursor=page.next_cursor)
        ids += [r["pattern_id"] for r in page]
    return ids


#: A creation time whose ISO text ``timestamp() * 1000`` in floats read as one
#: millisecond less (2004-04-17T19:04:30.370Z; about 1 in 200 such times are).
AWKWARD_MS = 1_082_228_670_370


def test_a_time_is_read_to_the_exact_millisecond() -> None:
    at = iso_ms(AWKWARD_MS)
    assert time_ms(at, "since") == AWKWARD_MS
    # A time between two milliseconds is the next one (creation times are whole ms).
    assert time_ms(at.replace(".370+", ".370500+"), "until") == AWKWARD_MS + 1
    assert time_ms("1969-12-31T23:59:59.998500+00:00", "since") == -1
    # A tzinfo without an offset is naive: UTC, as a datetime without one.
    assert time_ms(datetime(2004, 4, 17, tzinfo=_NoOffset()), "since") == time_ms(
        datetime(2004, 4, 17), "since"
    )


class _NoOffset(tzinfo):
    def utcoffset(self, dt: datetime | None) -> None:
        return None


async def test_since_and_until_bound_creation_times_exactly(
    mock_config: MemoryConfig, store: LongTermStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``since`` is "created at or after", ``until`` "created before", to the millisecond
    and below it: a bound given as a record's own ``created_at`` used to miss it by one."""
    async with _agent(mock_config, store) as mem:
        ids = {}
        for ms in (AWKWARD_MS - 1, AWKWARD_MS):
            monkeypatch.setattr(clock, "now_ms", lambda ms=ms: ms)
            stored = await mem.persist_pattern(f"made at {ms}", "note")
            ids[ms] = stored["pattern_id"]
        monkeypatch.setattr(clock, "now_ms", lambda: AWKWARD_MS + 1)
        at = (await mem.recall_pattern(ids[AWKWARD_MS]) or {})["created_at"]
        assert at == iso_ms(AWKWARD_MS)
        half_past = f"{at[:-6]}500{at[-6:]}"  # half a millisecond after the later record
        cases: list[tuple[dict[str, Any], list[int]]] = [
            ({"since": at}, [AWKWARD_MS]),
            ({"until": at}, [AWKWARD_MS - 1]),
            ({"since": at, "until": at}, []),
            ({"since": half_past}, []),
            ({"until": half_past}, [AWKWARD_MS, AWKWARD_MS - 1]),
        ]
        for bounds, expected in cases:
            want = [ids[ms] for ms in expected]
            assert [r["pattern_id"] for r in await mem.list_patterns(**bounds)] == want, bounds
            assert await mem.count_patterns(**bounds) == len(want), bounds
            page = await mem.search_patterns("made", **bounds)
            assert sorted(r["pattern_id"] for r in page) == sorted(want), bounds


#: Ids an export file may bring (1-256 printable characters): each takes up to four
#: bytes in UTF-8, or two as JSON escapes a quote; a cursor holds the last one.
LONG_IDS = ["pat_" + "é" * 252, "pat_" + "日" * 252, "pat_" + '"' * 252, "pat_" + "𝄞" * 252]


async def test_pages_ending_on_a_long_id_have_a_cursor_that_works(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    """A cursor of a page ending on a long non-ASCII id was over the cursor length cap,
    so the next page raised ValidationError for the cursor the read had just returned."""
    now = clock.now_ms()
    for n, pid in enumerate(LONG_IDS):
        record = pattern_record(pid)._replace(
            created_at_ms=now - n,
            content=b"shared words",
            metadata_json=json.dumps({"k": 1}),
        )
        assert await store.write(InsertOp(record))
    async with _agent(mock_config, store) as mem:
        listed = await _every_page(mem.list_patterns, limit=1)
        assert listed == LONG_IDS  # newest first
        filtered = await _every_page(mem.list_patterns, limit=1, metadata={"k": 1})
        assert filtered == listed
        found = await _every_page(mem.search_patterns, query="shared", limit=1)
        assert sorted(found) == sorted(LONG_IDS)


async def test_a_search_cursor_is_refused_by_another_backend(
    mock_config: MemoryConfig, postgres_url: str
) -> None:
    """Scores are each engine's own (BM25, ts_rank): a SQLite search cursor on PostgreSQL
    (or back) paged on from an unrelated score, repeating or skipping records. A list
    cursor (creation time and id) means the same on both, and is taken."""
    from attune.memory.long_term.postgres_store import PostgresLongTermStore

    cursors: dict[str, tuple[str, str]] = {}
    stores = {
        "sqlite": SQLiteLongTermStore(mock_config.ensure_storage_dir()),
        "postgres": PostgresLongTermStore(postgres_url),
    }
    try:
        for name, opened in stores.items():
            async with _agent(mock_config, opened) as mem:
                for n in range(4):
                    await mem.persist_pattern(f"retry with backoff {n}", "note")
                searched = await mem.search_patterns("retry backoff", limit=2)
                listed = await mem.list_patterns(limit=2)
                assert searched.next_cursor and listed.next_cursor
                cursors[name] = (searched.next_cursor, listed.next_cursor)
        for name, opened in stores.items():
            other = "postgres" if name == "sqlite" else "sqlite"
            async with _agent(mock_config, opened) as mem:
                with pytest.raises(ValidationError, match="cursor"):
                    await mem.search_patterns("retry backoff", limit=2, cursor=cursors[other][0])
                assert len(await mem.search_patterns("retry backoff", cursor=cursors[name][0])) == 2
                await mem.list_patterns(limit=2, cursor=cursors[other][1])  # taken
    finally:
        for opened in stores.values():
            await opened.aclose()
