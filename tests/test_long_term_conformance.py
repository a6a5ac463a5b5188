"""One conformance suite for every long-term backend: the same tests, through the core API
(``AsyncUnifiedMemory(..., long_term=store)``) and straight against the
:class:`~attune.memory.long_term.LongTermStore` protocol.

A backend joins with one line in :data:`BACKENDS`: how a test opens a store of it on
this test's own, empty data. PostgreSQL runs on a database of the test session's own
(see ``postgres_session_url`` in conftest.py: skipped without a server, failed under
``CI=true``). Scores are each engine's own (SQLite BM25, PostgreSQL ts_rank): the tests
compare orders, never score values across backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from records import pattern_record

from attune._runner import run_sync
from attune.errors import AuditLogError, ConfigurationError, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.long_term import (
    Audited,
    DeleteOp,
    EraseOp,
    IndexOp,
    InsertOp,
    LongTermStore,
    Match,
    MetaOp,
    PatternQuery,
    PurgeOp,
    RewrapOp,
    RingAdd,
    RingCreate,
    RingKey,
    RingReroot,
    SearchEntry,
    StoredRing,
    SubjectOp,
    WrappedKey,
)
from attune.memory.long_term.queries import PARTIAL
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
from attune.memory.security.audit import AuditEvent, AuditLogger

OpenStore = Callable[[], LongTermStore]


def _sqlite(request: pytest.FixtureRequest, config: MemoryConfig) -> OpenStore:
    return lambda: SQLiteLongTermStore(config.ensure_storage_dir())


def _postgres(request: pytest.FixtureRequest, config: MemoryConfig) -> OpenStore:
    from attune.memory.long_term.postgres_store import PostgresLongTermStore

    url: str = request.getfixturevalue("postgres_url")  # an empty database
    return lambda: PostgresLongTermStore(url)


#: backend name -> (at fixture set-up) what opens store objects on this test's own data
#: (every call: a new object on the same data).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, MemoryConfig], OpenStore]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


def _file_log(request: pytest.FixtureRequest, config: MemoryConfig) -> AuditLogger:
    return AuditLogger(config.audit_log_path)


def _table_log(request: pytest.FixtureRequest, config: MemoryConfig) -> AuditLogger:
    from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger

    return DatabaseAuditLogger(request.getfixturevalue("postgres_url"))


#: backend name -> the audit log a deployment of it writes (the file beside SQLite; the
#: database's own table with PostgreSQL).
AUDIT_LOGS: dict[str, Callable[[pytest.FixtureRequest, MemoryConfig], AuditLogger]] = {
    "sqlite": _file_log,
    "postgres": _table_log,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, mock_config: MemoryConfig) -> OpenStore:
    return BACKENDS[request.param](request, mock_config)


@pytest.fixture
def audit_log(
    request: pytest.FixtureRequest, backend: OpenStore, mock_config: MemoryConfig
) -> Iterator[AuditLogger]:
    """The audit log of the backend's deployment, on this test's data."""
    log = AUDIT_LOGS[request.node.callspec.params["backend"]](request, mock_config)
    yield log
    log.close()


@pytest.fixture
async def open_store(backend: OpenStore) -> AsyncIterator[OpenStore]:
    """Opens store objects of the backend on this test's data; all closed afterwards."""
    opened: list[LongTermStore] = []

    def open_() -> LongTermStore:
        store = backend()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.aclose()


@pytest.fixture
def store(open_store: OpenStore) -> LongTermStore:
    return open_store()


def _agent(
    config: MemoryConfig, store: LongTermStore, user: str = "agent", **kw: Any
) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory(user, config, long_term=store, **kw)


def _rec(pattern_id: str, **changes: Any) -> Any:
    return pattern_record(pattern_id)._replace(**changes)


CORPUS = {
    "sqli": "Use parameterized queries to prevent SQL injection in every database call",
    "xss": "Escape user input in templates to stop cross-site scripting",
    "retry": "Retry idempotent requests with exponential backoff and jitter",
    "cafe": "The Café team reviews schema migrations on Tuesdays",
    "bulk": "Use bulk inserts for large database imports; batch the commits",
}


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


def _ids(page: Any) -> list[str]:
    return [r["pattern_id"] for r in page]


# -- records through the core ---------------------------------------------------------------


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_persist_and_recall(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    async with _agent(mock_config, store) as mem:
        stored = await mem.persist_pattern(
            "Use dependency injection for testable code",
            "architecture",
            classification=classification,
            metadata={"source": "review", "tags": ["di"]},
        )
        assert stored["encrypted"] is (classification == "SENSITIVE")
        pattern = await mem.recall_pattern(stored["pattern_id"])
        assert pattern is not None
        assert pattern["content"] == "Use dependency injection for testable code"
        assert pattern["classification"] == classification
        assert pattern["metadata"] == {"source": "review", "tags": ["di"]}
        assert pattern["created_at"] == stored["created_at"]
        assert await mem.recall_pattern("pat_unknown") is None
    record = await store.get(stored["pattern_id"], 0)
    assert record is not None and record.encrypted is (classification == "SENSITIVE")
    if record.encrypted:  # stored as ciphertext, with its wrapped key
        assert b"injection" not in record.content and record.wrapped_key


async def test_a_second_store_object_sees_the_same_records(
    mock_config: MemoryConfig, open_store: OpenStore
) -> None:
    async with _agent(mock_config, open_store()) as writer:
        stored = await writer.persist_pattern("Log with request ids", "observability")
    async with _agent(mock_config, open_store(), "reader") as reader:
        pattern = await reader.recall_pattern(stored["pattern_id"])
    assert pattern is not None and pattern["content"] == "Log with request ids"


def test_the_blocking_facade_reads_and_writes_through_the_store(
    mock_config: MemoryConfig, backend: OpenStore
) -> None:
    """Each thread of the blocking facade drives its own event loop: the store opens a
    connection (pool) per loop."""
    store = backend()
    with UnifiedMemory("a", mock_config, long_term=store) as mem:
        stored = mem.persist_pattern("The facade mirrors the core", "misc")
        pattern = mem.recall_pattern(stored["pattern_id"])
        assert pattern is not None and pattern["content"] == "The facade mirrors the core"
        assert _ids(mem.search_patterns("facade")) == [stored["pattern_id"]]
    with UnifiedMemory("b", mock_config, long_term=store) as other:
        assert other.count_patterns() == 1
    run_sync(store.aclose())


async def test_64_concurrent_persists_are_all_stored_with_their_audit_events(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    async with _agent(mock_config, store) as mem:
        results = await asyncio.gather(
            *(mem.persist_pattern(f"Pattern number {i}", "misc") for i in range(64))
        )
        ids = {r["pattern_id"] for r in results}
        assert len(ids) == 64
        assert await store.count() == 64
        assert await store.existing(sorted(ids)) == ids
        events = mem.pipeline.audit_logger.query(event_type="pattern.store")
        assert {e["target_id"] for e in events} == ids


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"content": ""}, "content"),
        ({"content": 12}, "content"),
        ({"pattern_type": ""}, "pattern_type"),
        ({"classification": "SECRET"}, "classification"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
        ({"metadata": {"o": object()}}, "JSON"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    mock_config: MemoryConfig, store: LongTermStore, kwargs: dict[str, Any], fragment: str
) -> None:
    args: dict[str, Any] = {"content": "fine", "pattern_type": "misc", **kwargs}
    async with _agent(mock_config, store) as mem:
        with pytest.raises((ValidationError, TypeError), match=fragment):
            await mem.persist_pattern(**args)
    assert await store.count() == 0


async def test_delete_and_purge(mock_config: MemoryConfig, store: LongTermStore) -> None:
    async with _agent(mock_config, store, access_tier="STEWARD") as mem:
        stored = await mem.persist_pattern("Delete me", "misc", classification="SENSITIVE")
        assert await mem.delete_pattern(stored["pattern_id"]) is True
        assert await mem.delete_pattern(stored["pattern_id"]) is False
        assert await mem.recall_pattern(stored["pattern_id"]) is None
        assert await store.existing([stored["pattern_id"]]) == set()
    # Expired records: never returned, listed by existing(), deleted by a purge.
    assert await store.write(InsertOp(_rec("pat_old", expires_at_ms=100)))
    assert await store.write(InsertOp(_rec("pat_new", expires_at_ms=10_000)))
    assert await store.write(InsertOp(_rec("pat_forever")))
    assert await store.get("pat_old", 99) is not None
    assert await store.get("pat_old", 100) is None
    assert await store.existing(["pat_old", "pat_new", "pat_none"]) == {"pat_old", "pat_new"}
    assert await store.count(PatternQuery(now_ms=100)) == 2
    assert await store.write(PurgeOp(100)) == 1
    assert await store.write(PurgeOp(100)) == 0
    assert await store.existing(["pat_old", "pat_new"]) == {"pat_new"}
    assert await store.write(DeleteOp("pat_new")) is True
    assert await store.count() == 1


async def test_a_purge_goes_in_batches_those_expired_first(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    """``PurgeOp(now, limit)`` deletes at most ``limit`` expired records, those that
    expired first; ``purge_expired(batch_size=...)`` loops until a batch comes back short
    and reports each batch to ``progress``, the audit event counting them all."""
    for n in range(7):
        assert await store.write(InsertOp(_rec(f"pat_{n}", expires_at_ms=100 + n)))
    assert await store.write(InsertOp(_rec("pat_live")))  # kept for ever
    assert await store.write(PurgeOp(1_000, 3)) == 3
    assert await store.existing([f"pat_{n}" for n in range(7)]) == {
        f"pat_{n}" for n in (3, 4, 5, 6)
    }
    seen: list[tuple[int, int | None]] = []
    async with _agent(mock_config, store, access_tier="STEWARD") as mem:
        assert await mem.purge_expired(batch_size=3, progress=lambda d, t: seen.append((d, t))) == 4
        assert await mem.purge_expired(batch_size=3) == 0
        with pytest.raises(ValidationError, match="batch_size"):
            await mem.purge_expired(batch_size=0)
    assert seen == [(0, None), (3, None), (4, None)]
    assert await store.count() == 1


async def test_rotate_keys_rewraps_and_records_still_read(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    async with _agent(mock_config, store, access_tier="STEWARD") as mem:
        secret = await mem.persist_pattern(
            "The vault code is 4417", "ops", classification="SENSITIVE"
        )
        public = await mem.persist_pattern("Open at nine", "ops", classification="PUBLIC")
        before = await store.wrapped_keys("", 10)
        assert [k.pattern_id for k in before] == [secret["pattern_id"]]
        await mem.rotate_keys()
        after = await store.wrapped_keys("", 10)
        assert after[0].key_id != before[0].key_id
        assert after[0].wrapped_key != before[0].wrapped_key
        pattern = await mem.recall_pattern(secret["pattern_id"])
        assert pattern is not None and pattern["content"] == "The vault code is 4417"
        assert [r["pattern_id"] for r in await mem.search_patterns("vault")] == [
            secret["pattern_id"]
        ]
        assert (await mem.recall_pattern(public["pattern_id"])) is not None
    # A rewrap touches encrypted records only, and says how many changed.
    update = WrappedKey(public["pattern_id"], "PUBLIC", "k2", b"w")
    assert await store.write(RewrapOp((update,))) == 0
    assert await store.write(RewrapOp(())) == 0


async def test_encrypted_records_are_under_the_stores_ring_when_it_keeps_one(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    async with _agent(mock_config, store, access_tier="STEWARD") as mem:
        stored = await mem.persist_pattern("The vault code is 4417", "ops", "SENSITIVE")
        ring = await store.key_ring()
        local = mem.pipeline.cipher.ring
        record = await store.get(stored["pattern_id"], 0)
        assert record is not None
        if ring is None:  # the key file is the ring
            assert not local.in_store and record.key_id == local.active_key_id
            return
        assert ring.created and local.in_store
        root = local._root_key()
        assert root is not None and ring.root_key_id == root[0]
        assert record.key_id == ring.active_key_id != root[0]
        rotated = await mem.rotate_keys()
        after = await store.key_ring()
        assert after is not None and after.active_key_id == rotated["key_id"]
        assert [k.key_id for k in after.keys] == [record.key_id, rotated["key_id"]]


async def test_writes_and_reads_do_not_read_the_key_ring_each_time(
    mock_config: MemoryConfig, store: LongTermStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    read_ring = store.key_ring

    async def counted(on_change: Any = None) -> Any:
        nonlocal reads
        reads += 1
        return await read_ring(on_change)

    monkeypatch.setattr(store, "key_ring", counted)
    async with _agent(mock_config, store) as mem:
        ids = [
            (await mem.persist_pattern(f"Vault {n} code {n}417", "ops", "SENSITIVE"))["pattern_id"]
            for n in range(20)
        ]
        for pattern_id in ids:
            assert await mem.recall_pattern(pattern_id) is not None
        assert len(await mem.search_patterns("vault", limit=50)) == 20
    assert reads <= 2  # whether it keeps one; then (if it does) the ring itself, once


async def test_the_key_ring_is_kept_for_every_host_or_refused(
    open_store: Callable[[], LongTermStore],
) -> None:
    store, other = open_store(), open_store()
    create = RingCreate("k_root", b"check", "k_1", (RingKey("k_1", b"w1"),))
    heard = asyncio.Event()
    ring = await store.key_ring(heard.set)
    if ring is None:  # a store of one host keeps none, and says so on a change
        with pytest.raises(ConfigurationError, match="keeps no key ring"):
            await store.change_key_ring(create)
        return
    assert not ring.created and ring.keys == () and ring.active_key_id is None
    # Hosts creating it at once: one ring, the first writer's, for all of them.
    rivals = [
        RingCreate(f"k_root{n}", b"check", f"k_{n}", (RingKey(f"k_{n}", b"w"),)) for n in range(8)
    ]
    made = await asyncio.gather(*(open_store().change_key_ring(op) for op in rivals))
    assert len(set(made)) == 1 and made[0].created and len(made[0].keys) == 1
    first = made[0]
    assert await store.change_key_ring(create) == first
    root = first.root_key_id
    assert root is not None
    # A key added under another root changes nothing; under the root it becomes active.
    assert await other.change_key_ring(RingAdd("k_other", RingKey("k_x", b"wx"))) == first
    assert not heard.is_set()
    added = await other.change_key_ring(RingAdd(root, RingKey("k_y", b"wy")))
    assert added.active_key_id == "k_y" and added.keys[-1] == RingKey("k_y", b"wy")
    await asyncio.wait_for(heard.wait(), 30)  # another store object's change was heard
    kept = await other.change_key_ring(RingAdd(root, RingKey("k_z", b"wz"), activate=False))
    assert kept.active_key_id == "k_y" and len(kept.keys) == 3
    assert await store.key_ring() == kept
    # A new root: only from the current one, only naming every key.
    names = [k.key_id for k in kept.keys]
    partial = tuple(RingKey(k, b"new") for k in names[:-1])
    assert await store.change_key_ring(RingReroot(root, "k_new", b"c2", partial)) == kept
    wrong = tuple(RingKey(k, b"new") for k in names)
    assert await store.change_key_ring(RingReroot("k_other", "k_new", b"c2", wrong)) == kept
    moved = await store.change_key_ring(RingReroot(root, "k_new", b"c2", wrong))
    assert moved == StoredRing("k_new", b"c2", "k_y", wrong)
    assert await other.key_ring() == moved


async def test_wrapped_keys_page_by_id(store: LongTermStore) -> None:
    for n in range(5):
        record = _rec(f"pat_{n}", encrypted=True, key_id="k1", wrapped_key=bytes([n]), nonce=b"n")
        assert await store.write(InsertOp(record))
    assert await store.write(InsertOp(_rec("pat_plain")))
    first = await store.wrapped_keys("", 3)
    assert [k.pattern_id for k in first] == ["pat_0", "pat_1", "pat_2"]
    rest = await store.wrapped_keys(first[-1].pattern_id, 3)
    assert [(k.pattern_id, k.wrapped_key) for k in rest] == [("pat_3", b"\x03"), ("pat_4", b"\x04")]


async def test_erase_user(mock_config: MemoryConfig, store: LongTermStore) -> None:
    async with _agent(mock_config, store, "alice-7f3k") as alice:
        mine = [
            (await alice.persist_pattern(f"Alice note {c}", "note", classification=c))["pattern_id"]
            for c in ("PUBLIC", "INTERNAL", "SENSITIVE")
        ]
        assert await alice.audit_pseudonym() is not None
    async with _agent(mock_config, store, "carol") as carol:
        hers = (await carol.persist_pattern("Carol note", "note"))["pattern_id"]
    assert await store.subject_secret("alice-7f3k") is not None
    async with _agent(mock_config, store, "admin", access_tier="STEWARD") as admin:
        result = await admin.erase_user("alice-7f3k")
        assert result["patterns"] == 3 and result["pseudonym_erased"] is True
        assert await store.existing([*mine, hers]) == {hers}
        assert await store.subject_secret("alice-7f3k") is None
        assert await admin.count_patterns() == 1
        assert _ids(await admin.search_patterns("note")) == [hers]
        again = await admin.erase_user("alice-7f3k")
        assert again["patterns"] == 0 and again["pseudonym_erased"] is False
    # Straight against the store: the user's records and the ids named, and the secret.
    assert await store.write(InsertOp(_rec("pat_x", created_by="bob")))
    assert await store.write(InsertOp(_rec("pat_y", created_by="dan")))
    assert await store.write(SubjectOp("bob", b"s" * 32)) == b"s" * 32
    assert await store.write(EraseOp("bob", ("pat_y", "pat_missing"))) == 2
    assert await store.existing(["pat_x", "pat_y", hers]) == {hers}
    assert await store.subject_secret("bob") is None


async def test_export_and_import_round_trip(
    mock_config: MemoryConfig, store: LongTermStore, tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    async with _agent(mock_config, store, "admin", access_tier="STEWARD") as admin:
        ids = []
        for label in ("PUBLIC", "INTERNAL", "SENSITIVE"):
            stored = await admin.persist_pattern(
                f"The {label.lower()} lighthouse note",
                "note",
                classification=label,
                metadata={"label": label},
            )
            ids.append(stored["pattern_id"])
        originals = {pid: await admin.recall_pattern(pid) for pid in ids}
        records = {pid: await store.get(pid, 0) for pid in ids}
        manifest = await admin.export_patterns(out)
        assert manifest["records"] == 3
        for pid in ids:
            assert await admin.delete_pattern(pid)
        assert await admin.import_patterns(out) == {"imported": 3, "skipped": 0, "expired": 0}
        assert await admin.import_patterns(out) == {"imported": 0, "skipped": 3, "expired": 0}
        for pid in ids:
            assert await admin.recall_pattern(pid) == originals[pid]
            assert await store.get(pid, 0) == records[pid]  # as stored, field for field
    async with _agent(mock_config, store, "reader", access_tier="OBSERVER") as reader:
        assert set(_ids(await reader.search_patterns("lighthouse"))) == set(ids)
        assert await reader.count_patterns(metadata={"label": "INTERNAL"}) == 1


# -- the store's own operations ---------------------------------------------------------------


async def test_duplicate_ids_are_false_for_their_own_caller_only(store: LongTermStore) -> None:
    assert await store.write(InsertOp(_rec("pat_existing"))) is True
    ids = ["pat_existing", "pat_a", "pat_b", "pat_a"]
    results = await asyncio.gather(*(store.write(InsertOp(_rec(i))) for i in ids))
    assert results == [False, True, True, False]
    assert await store.count() == 3
    record = await store.get("pat_a", 0)
    assert record == _rec("pat_a")


async def test_meta_and_subject_secrets_go_to_the_first_writer(store: LongTermStore) -> None:
    values = await asyncio.gather(
        *(store.write(MetaOp("search_key_id", f"k{n}")) for n in range(8))
    )
    assert len(set(values)) == 1 and values[0].startswith("k")
    assert await store.write(MetaOp("search_key_id", "other")) == values[0]
    secrets = await asyncio.gather(
        *(store.write(SubjectOp("user-1", bytes([n]) * 32)) for n in range(8))
    )
    assert len(set(secrets)) == 1
    assert await store.subject_secret("user-1") == secrets[0]
    assert await store.subject_secret("user-2") is None


async def test_a_failing_journal_tells_its_callers_the_records_are_stored(
    store: LongTermStore,
) -> None:
    class Failing:
        def __init__(self) -> None:
            self.appended: list[Any] = []

        def begin(self, events: Any) -> None:
            return None

        async def append(self, events: Any) -> None:
            self.appended.append(list(events))
            raise OSError("disk full")

    journal = Failing()
    results = await asyncio.gather(
        *(store.write(InsertOp(_rec(i), Audited(journal, i))) for i in ("pat_1", "pat_2")),
        return_exceptions=True,
    )
    for result in results:
        assert isinstance(result, AuditLogError) and result.committed
        assert "WAS stored" in str(result)
    assert await store.existing(["pat_1", "pat_2"]) == {"pat_1", "pat_2"}
    assert sorted(e for batch in journal.appended for e in batch) == ["pat_1", "pat_2"]


async def test_audit_events_commit_with_their_records_and_only_with_them(
    store: LongTermStore, audit_log: AuditLogger
) -> None:
    """With the deployment's own audit log: every stored record has its event, and an
    insert that stores nothing (a duplicate id) has none; the chain verifies."""

    def insert(pattern_id: str) -> InsertOp:
        event = AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id=pattern_id)
        return InsertOp(_rec(pattern_id), Audited(audit_log.journal, event))

    assert await store.write(insert("pat_1")) is True
    ids = ["pat_1", "pat_2", "pat_3", "pat_2", *(f"pat_x{n}" for n in range(60))]
    results = await asyncio.gather(*(store.write(insert(i)) for i in ids))
    assert results == [False, True, True, False] + [True] * 60
    events = audit_log.query(event_type="pattern.store")
    assert sorted(e["target_id"] for e in events) == sorted(set(ids))
    assert await store.existing(sorted(set(ids))) == set(ids)
    result = audit_log.verify()
    assert result.ok and result.lines_checked == len(set(ids)), str(result)


async def test_a_store_refuses_what_is_not_a_write(store: LongTermStore) -> None:
    with pytest.raises(TypeError, match="not a long-term write"):
        await store.write("DELETE FROM patterns")  # type: ignore[call-overload]
    assert await store.count() == 0


async def test_unindexed_records_are_indexed_once(store: LongTermStore) -> None:
    assert await store.write(InsertOp(_rec("pat_a")))  # no search entry (an import)
    assert await store.write(InsertOp(_rec("pat_b"), index=SearchEntry(words=("beta",))))
    assert await store.write(InsertOp(_rec("pat_c")))
    waiting = await store.unindexed("", 10)
    assert [r.pattern_id for r in waiting] == ["pat_a", "pat_c"]
    assert [r.pattern_id for r in await store.unindexed("pat_a", 10)] == ["pat_c"]
    query = PatternQuery(now_ms=0, match=Match((("alpha",),)))
    assert await store.find(query) == []
    entries = (("pat_a", SearchEntry(words=("alpha",))), ("pat_gone", SearchEntry(("x",))))
    assert await store.write(IndexOp(entries)) == 1
    assert await store.write(IndexOp(entries)) == 0  # indexed already
    assert [f.record.pattern_id for f in await store.find(query)] == ["pat_a"]
    assert [r.pattern_id for r in await store.unindexed("", 10)] == ["pat_c"]


async def test_store_search_semantics(store: LongTermStore) -> None:
    """Ranked by how much of the match a record holds, ties by id; phrases in order;
    tokens in their classification's columns; facets an AND of OR-groups; a match with
    no phrase finds nothing; user text in terms is never syntax."""
    rows = [
        ("pat_1", ("red", "green", "blue"), (), ("f:a",), False),
        ("pat_2", ("red", "blue"), (), ("f:b",), False),
        ("pat_3", ("green",), (), ("f:a", "g:1"), False),
        ("pat_4", (), ("tk1", "tk2"), ("f:a",), True),
        ("pat_5", (), ("tk1",), ("f:b",), False),
        ("pat_6", ("it's", 'say "hi"', "a\\b", "x | !y & <->"), (), (), False),
    ]
    for pid, words, tokens, facets, sensitive in rows:
        classification = "SENSITIVE" if sensitive else ("INTERNAL" if tokens else "PUBLIC")
        entry = SearchEntry(words=words, tokens=tokens, facets=facets, sensitive=sensitive)
        assert await store.write(InsertOp(_rec(pid, classification=classification), index=entry))

    async def found(match: Match, **kw: Any) -> list[str]:
        return [f.record.pattern_id for f in await store.find(PatternQuery(0, match=match, **kw))]

    assert await found(Match((("red",), ("green",)))) == ["pat_1", "pat_2", "pat_3"]
    page = await store.find(PatternQuery(0, match=Match((("red",), ("green",)))))
    assert page[0].score is not None and page[1].score is not None
    assert page[0].score > page[1].score  # two of the phrases beat one
    assert await found(Match((("red", "green"),))) == ["pat_1"]
    assert await found(Match((("green", "red"),))) == []
    assert sorted(await found(Match((), (("tk1",),)))) == ["pat_4", "pat_5"]
    assert await found(Match((), (("tk1", "tk2"),))) == ["pat_4"]
    assert await found(Match((), (("tk1",),)), classification="SENSITIVE") == ["pat_4"]
    assert await found(Match((), (("tk1",),)), classification="INTERNAL") == ["pat_5"]
    assert sorted(await found(Match((("red",),)), facets=(("f:a", "f:b"),))) == ["pat_1", "pat_2"]
    assert await found(Match((("green",),)), facets=(("f:a",), ("g:1",))) == ["pat_3"]
    assert await found(Match(())) == []
    assert await store.count(PatternQuery(0, match=Match(()))) == 0
    assert await store.count(PatternQuery(0, facets=(("f:a",),))) == 3
    assert await store.count(PatternQuery(0, facets=(("f:a",), ("f:b",)))) == 0
    for term in ("it's", 'say "hi"', "a\\b", "x | !y & <->"):
        assert await found(Match(((term,),))) == ["pat_6"], term


async def test_ranked_ties_are_ordered_by_id_and_cursors_cross_them(store: LongTermStore) -> None:
    for pid in ("pat_t3", "pat_t1", "pat_t4", "pat_t2"):
        assert await store.write(InsertOp(_rec(pid), index=SearchEntry(words=("tie", "knot"))))
    assert await store.write(InsertOp(_rec("pat_best"), index=SearchEntry(words=("tie",) * 3)))
    match = Match((("tie",),))
    seen: list[str] = []
    query = PatternQuery(0, match=match, limit=2)
    while True:
        page = await store.find(query)
        seen += [f.record.pattern_id for f in page]
        if len(page) < 2:
            break
        last = page[-1]
        assert last.score is not None
        query = PatternQuery(0, match=match, limit=2, after=(last.score, last.record.pattern_id))
    assert seen == ["pat_best", "pat_t1", "pat_t2", "pat_t3", "pat_t4"]


async def test_list_is_newest_first_and_its_cursor_survives_inserts(
    store: LongTermStore,
) -> None:
    for n, at in enumerate([5, 7, 7, 7, 9, 3]):
        assert await store.write(InsertOp(_rec(f"pat_{n}", created_at_ms=at)))
    seen: list[tuple[int, str]] = []
    query = PatternQuery(now_ms=0, limit=2)
    while True:
        page = await store.find(query)
        assert all(f.score is None for f in page)
        seen += [(f.record.created_at_ms, f.record.pattern_id) for f in page]
        if len(page) < 2:
            break
        await store.write(InsertOp(_rec(f"pat_late{len(seen)}", created_at_ms=100)))
        last = page[-1].record
        query = PatternQuery(now_ms=0, limit=2, after=(last.created_at_ms, last.pattern_id))
    assert seen == sorted(seen, reverse=True)
    assert [pid for _at, pid in seen] == ["pat_4", "pat_3", "pat_2", "pat_1", "pat_0", "pat_5"]
    assert await store.count() == 6 + 3


# -- search, list and count through the core ---------------------------------------------------


@pytest.mark.parametrize("classification", ["PUBLIC", "INTERNAL", "SENSITIVE"])
async def test_search_ranks_and_matches_phrases(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    async with _agent(mock_config, store) as mem:
        ids = await _fill(mem, classification)
        page = await mem.search_patterns("database injection")
        assert _ids(page)[:1] == [ids["sqli"]]
        assert set(_ids(page)) == {ids["sqli"], ids["bulk"]}
        assert page[0]["score"] > 0 > page[1]["score"]  # both words, then one of them
        assert page[0]["content"] == CORPUS["sqli"]
        assert _ids(await mem.search_patterns('"bulk inserts"')) == [ids["bulk"]]
        assert list(await mem.search_patterns('"inserts bulk"')) == []
        assert _ids(await mem.search_patterns("CAFE")) == [ids["cafe"]]
        assert _ids(await mem.search_patterns("càfé")) == [ids["cafe"]]
        assert _ids(await mem.search_patterns('") OR "x')) == []  # no syntax reaches the engine


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_records_holding_every_word_rank_first(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    """A record holding all of a query's words comes before every record holding only some,
    even where relevance alone would not put it there: ``retry`` is in most records (SQLite's
    BM25 then weighs it next to nothing) and the partial matches are shorter."""
    async with _agent(mock_config, store) as mem:
        both = await mem.persist_pattern(
            "retry the flaky upload with backoff after the gateway times out twice in a row",
            "ops",
            classification=classification,
        )
        partial = [
            await mem.persist_pattern("gateway", "ops", classification=classification),
            await mem.persist_pattern("gateway gateway", "ops", classification=classification),
        ]
        for n in range(6):
            await mem.persist_pattern(f"retry {n}", "ops", classification=classification)
        assert both is not None and None not in partial
        page = await mem.search_patterns("retry gateway", limit=3)
        assert _ids(page)[0] == both["pattern_id"]
        assert set(_ids(page)[1:]) == {p["pattern_id"] for p in partial if p}
        assert page[0]["score"] > 0 > page[1]["score"] >= page[2]["score"]
        # The cursor crosses from full to partial matches: nothing lost or repeated.
        first = await mem.search_patterns("retry gateway", limit=1)
        rest = await mem.search_patterns("retry gateway", limit=20, cursor=first.next_cursor)
        assert _ids(first) + _ids(rest)[:2] == _ids(page)
        assert len(_ids(first) + _ids(rest)) == 9 == len(set(_ids(first) + _ids(rest)))


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_records_holding_more_of_the_words_rank_higher(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    """Of a three-word query, records holding all three come first, then those holding
    two, then one, whatever relevance alone says: ``retry`` is in most records, and
    the one-word matches are the shortest (BM25 favours short records); scores go down
    group by group, and a cursor crosses the groups."""
    async with _agent(mock_config, store) as mem:

        async def put(content: str) -> str:
            stored = await mem.persist_pattern(content, "ops", classification=classification)
            assert stored is not None
            return str(stored["pattern_id"])

        three = await put("retry the upload when the gateway times out and the queue backs up")
        two = {
            await put("retry the upload with backoff when the gateway times out twice a day"),
            await put("retry until the message queue drains, then alert the owner of the job"),
        }
        one = {await put("gateway"), await put("queue queue")}
        for n in range(6):
            await put(f"retry {n}")
        page = await mem.search_patterns("retry gateway queue", limit=50)
        ids = _ids(page)
        assert ids[0] == three
        assert set(ids[1:3]) == two
        assert set(ids[3:5]) == one
        assert len(ids) == 11  # the six "retry" records hold one word too
        scores = [p["score"] for p in page]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] > 0 > scores[1] >= scores[2] > -PARTIAL > scores[3]
        walked: list[str] = []
        cursor = None
        while True:
            part = await mem.search_patterns("retry gateway queue", limit=2, cursor=cursor)
            walked += _ids(part)
            cursor = part.next_cursor
            if cursor is None:
                break
        assert walked == ids


@pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])
async def test_filters_narrow_search_list_and_count(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    async with _agent(mock_config, store) as mem:
        ids = await _fill(mem, classification)
        assert set(_ids(await mem.list_patterns("security"))) == {ids["sqli"], ids["xss"]}
        assert await mem.count_patterns("security") == 2
        assert await mem.count_patterns() == len(CORPUS)
        assert await mem.count_patterns(classification=classification) == len(CORPUS)
        other = "PUBLIC" if classification == "SENSITIVE" else "SENSITIVE"
        assert await mem.count_patterns(classification=other) == 0
        assert list(await mem.search_patterns("database", classification=other)) == []
        found = await mem.search_patterns("database", classification=classification)
        assert set(_ids(found)) == {ids["sqli"], ids["bulk"]}
        found = await mem.search_patterns("database", metadata={"topic": "bulk"})
        assert _ids(found) == [ids["bulk"]]
        assert await mem.count_patterns(metadata={"topic": "xss", "rank": 3}) == 1
        assert await mem.count_patterns(metadata={"topic": "xss", "rank": 4}) == 0
        assert await mem.count_patterns(created_by="someone-else") == 0
        assert await mem.count_patterns(created_by="agent") == len(CORPUS)
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await mem.count_patterns(since=later) == 0
        assert await mem.count_patterns(until=later.isoformat()) == len(CORPUS)
        assert _ids(await mem.search_patterns("database", pattern_type="security")) == [ids["sqli"]]


async def test_cursors_page_through_search_and_list_while_records_arrive(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    async with _agent(mock_config, store) as mem:
        first = [
            (await mem.persist_pattern(f"Paging note number {i}", "note"))["pattern_id"]
            for i in range(7)
        ]
        page = await mem.list_patterns(limit=3)
        rows = list(page)
        while page.next_cursor is not None:
            await mem.persist_pattern("Arrived later", "note")
            page = await mem.list_patterns(limit=3, cursor=page.next_cursor)
            rows += page
        assert sorted(_ids(rows)) == sorted(first)
        keys = [(r["created_at"], r["pattern_id"]) for r in rows]
        assert keys == sorted(keys, reverse=True)
        ranked: list[str] = []
        page = await mem.search_patterns("paging note", limit=2)
        ranked += _ids(page)
        while page.next_cursor is not None:
            page = await mem.search_patterns("paging note", limit=2, cursor=page.next_cursor)
            ranked += _ids(page)
        assert len(ranked) == len(set(ranked)) == 7
        assert set(ranked) == set(first)


async def test_namespaces_separate_every_read(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    async with (
        _agent(mock_config, store, "a", namespace="team-a") as a,
        _agent(mock_config, store, "b", namespace="team-b") as b,
        _agent(mock_config, store, "admin", access_tier="STEWARD") as admin,
    ):
        in_a = (await a.persist_pattern("Shared word harbour", "note"))["pattern_id"]
        in_b = (await b.persist_pattern("Shared word harbour", "note"))["pattern_id"]
        assert _ids(await a.search_patterns("harbour")) == [in_a]
        assert _ids(await b.list_patterns()) == [in_b]
        assert await a.count_patterns() == 1
        everywhere = await admin.search_patterns("harbour", namespace="*")
        assert set(_ids(everywhere)) == {in_a, in_b}
        assert await admin.count_patterns(namespace="team-b") == 1


async def test_expired_records_are_never_returned(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    entry = SearchEntry(words=("harbour",))
    assert await store.write(InsertOp(_rec("pat_old", expires_at_ms=1000), index=entry))
    assert await store.write(InsertOp(_rec("pat_live"), index=entry))
    harbour = Match((("harbour",),))
    for now in (999, 1000):
        found = await store.find(PatternQuery(now, match=harbour))
        listed = await store.find(PatternQuery(now))
        expect = ["pat_live", "pat_old"] if now < 1000 else ["pat_live"]
        assert sorted(f.record.pattern_id for f in found) == expect
        assert sorted(f.record.pattern_id for f in listed) == expect
        assert await store.count(PatternQuery(now, match=harbour)) == len(expect)


async def test_health_reports_the_backend(store: LongTermStore) -> None:
    assert await store.write(InsertOp(_rec("pat_1")))
    report = await store.health()
    assert report["available"] is True and report["patterns"] == 1
    assert report["backend"] == store.backend


async def test_a_search_entry_that_cannot_be_made_leaves_the_record_stored_unindexed(
    store: LongTermStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A store makes a new record's search entry when it suits it (SQLite: while its
    commit runs; PostgreSQL: before its INSERT); if making it fails (a bug), the write
    stands, the record waits for the backfill, and the ERROR log names the failure's type,
    never its message (it could quote content)."""
    import logging

    def broken() -> Any:
        raise RuntimeError("kestrel-content-that-must-not-be-logged")

    with caplog.at_level(logging.ERROR, logger="attune.long_term"):
        assert await store.write(InsertOp(_rec("pat_x"), index=broken))
    assert (await store.get("pat_x", 0)) is not None
    assert [r.pattern_id for r in await store.unindexed("", 10)] == ["pat_x"]
    logged = [r for r in caplog.records if r.name == "attune.long_term"]
    assert [r.levelno for r in logged] == [logging.ERROR]
    assert "RuntimeError" in logged[0].getMessage()
    assert "kestrel" not in caplog.text
