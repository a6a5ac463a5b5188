"""Metadata equality filters compare values as a user expects: numbers by value (1 == 1.0),
strings and keys after Unicode NFC normalisation, booleans apart from numbers, nested values
by the same rules; on every backend, for plaintext and encrypted records, and for records
whose facets earlier versions wrote (the JSON of the value as given) without a reindex."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from attune.errors import SerializationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.long_term import LongTermStore, PatternQuery
from attune.memory.long_term.sqlite_store import SQLiteLongTermStore
from attune.memory.search import blind_index, entries
from attune.memory.search.blind_index import (
    BlindIndex,
    derive_search_key,
    facet_text,
    facet_texts,
    legacy_text,
    plain_facet,
)

NFC = unicodedata.normalize("NFC", "Zürich café")
NFD = unicodedata.normalize("NFD", NFC)
KEY_NFC = unicodedata.normalize("NFC", "durée")
KEY_NFD = unicodedata.normalize("NFD", KEY_NFC)
E_NFC = unicodedata.normalize("NFC", "é")
E_NFD = unicodedata.normalize("NFD", E_NFC)
assert NFC != NFD and KEY_NFC != KEY_NFD and E_NFC != E_NFD

CLASSIFICATIONS = pytest.mark.parametrize("classification", ["PUBLIC", "SENSITIVE"])


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(
    request: pytest.FixtureRequest, mock_config: MemoryConfig
) -> Callable[[], LongTermStore]:
    """What opens a store of each backend on this test's own, empty data (PostgreSQL: a
    database of its own, see ``postgres_url`` in conftest.py; looked up here, outside the
    event loop, as tests/test_long_term_conformance.py does)."""
    if request.param == "sqlite":
        return lambda: SQLiteLongTermStore(mock_config.ensure_storage_dir())
    from attune.memory.long_term.postgres_store import PostgresLongTermStore

    url: str = request.getfixturevalue("postgres_url")
    return lambda: PostgresLongTermStore(url)


@pytest.fixture
async def store(open_store: Callable[[], LongTermStore]) -> AsyncIterator[LongTermStore]:
    opened = open_store()
    yield opened
    await opened.aclose()


def _agent(config: MemoryConfig, store: LongTermStore) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("filterer", config, long_term=store)


async def _put(
    mem: AsyncUnifiedMemory, classification: str, metadata: dict[str, Any], text: str = ""
) -> str:
    stored = await mem.persist_pattern(
        text or "Review the deployment checklist before release",
        "practice",
        classification=classification,
        metadata=metadata,
    )
    assert stored["encrypted"] is (classification == "SENSITIVE")
    return str(stored["pattern_id"])


async def _found(mem: AsyncUnifiedMemory, metadata: dict[str, Any]) -> set[str]:
    """The ids ``metadata`` finds, the same through list, count and search."""
    listed = {r["pattern_id"] for r in await mem.list_patterns(metadata=metadata, limit=100)}
    assert await mem.count_patterns(metadata=metadata) == len(listed)
    searched = await mem.search_patterns("deployment", metadata=metadata, limit=100)
    assert {r["pattern_id"] for r in searched} == listed
    return listed


# -- through the API, on both backends ------------------------------------------------------


@CLASSIFICATIONS
async def test_numbers_compare_by_value_and_booleans_are_not_numbers(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    async with _agent(mock_config, store) as mem:
        as_float = await _put(mem, classification, {"priority": 1.0})
        as_int = await _put(mem, classification, {"priority": 1})
        as_bool = await _put(mem, classification, {"priority": True})
        half = await _put(mem, classification, {"priority": 2.5})
        negative_zero = await _put(mem, classification, {"priority": -0.0})
        huge = await _put(mem, classification, {"priority": 10**400, "big": 1e300})

        assert await _found(mem, {"priority": 1}) == {as_float, as_int}
        assert await _found(mem, {"priority": 1.0}) == {as_float, as_int}
        assert await _found(mem, {"priority": True}) == {as_bool}
        assert await _found(mem, {"priority": 2.5}) == {half}
        assert await _found(mem, {"priority": 2}) == set()
        assert await _found(mem, {"priority": 0}) == {negative_zero}
        assert await _found(mem, {"priority": 0.0}) == {negative_zero}
        assert await _found(mem, {"priority": 10**400}) == {huge}
        assert await _found(mem, {"big": 10**300}) == set()  # 1e300 is not exactly 10**300
        assert await _found(mem, {"big": int(1e300)}) == {huge}
        assert await _found(mem, {"big": 1e300}) == {huge}
        assert await _found(mem, {"priority": None}) == set()


@CLASSIFICATIONS
async def test_strings_and_keys_compare_after_nfc(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    async with _agent(mock_config, store) as mem:
        value_nfc = await _put(mem, classification, {"city": NFC})
        value_nfd = await _put(mem, classification, {"city": NFD})
        key_nfc = await _put(mem, classification, {KEY_NFC: "short"})
        key_nfd = await _put(mem, classification, {KEY_NFD: "short"})

        assert await _found(mem, {"city": NFC}) == {value_nfc, value_nfd}
        assert await _found(mem, {"city": NFD}) == {value_nfc, value_nfd}
        assert await _found(mem, {KEY_NFC: "short"}) == {key_nfc, key_nfd}
        assert await _found(mem, {KEY_NFD: "short"}) == {key_nfc, key_nfd}
        assert await _found(mem, {"city": "Zurich cafe"}) == set()  # accents still count


@CLASSIFICATIONS
async def test_nested_values_compare_by_the_same_rules(
    mock_config: MemoryConfig, store: LongTermStore, classification: str
) -> None:
    async with _agent(mock_config, store) as mem:
        loose = await _put(mem, classification, {"tags": [1.0, E_NFD], "m": {E_NFD: 2.0}})
        tight = await _put(mem, classification, {"tags": [1, E_NFC], "m": {E_NFC: 2}})
        await _put(mem, classification, {"tags": [True, E_NFC], "m": {E_NFC: "2"}})

        assert await _found(mem, {"tags": [1, E_NFC]}) == {loose, tight}
        assert await _found(mem, {"tags": [1.0, E_NFD]}) == {loose, tight}
        assert await _found(mem, {"m": {E_NFD: 2}}) == {loose, tight}
        assert await _found(mem, {"tags": [E_NFC, 1]}) == set()  # order counts in a list


@CLASSIFICATIONS
async def test_records_indexed_by_the_old_formula_are_still_found(
    mock_config: MemoryConfig,
    store: LongTermStore,
    classification: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Facets written as earlier versions wrote them (the JSON of the value as given) are
    matched by the new query side, with no reindex."""
    old = {
        "priority": 1.0,
        "count": 3,
        "zero": -0.0,
        "city": NFD,
        KEY_NFD: "short",
        "tags": [1.0, E_NFD],
    }
    async with _agent(mock_config, store) as mem:
        with monkeypatch.context() as patch:
            patch.setattr(blind_index, "facet_text", legacy_text)
            pattern_id = await _put(mem, classification, old)
        # The record holds the old facets (the float's JSON), not the canonical ones.
        index = await mem._search_index()
        assert index is not None
        for text, held in ((facet_text("priority", 1), 0), (legacy_text("priority", 1.0), 1)):
            choices = (blind_index.plain_facet_of(text), index.facet_of(text))
            probe = PatternQuery(now_ms=0, namespace=None, facets=(choices,))
            assert await store.count(probe) == held

        assert await _found(mem, {"priority": 1}) == {pattern_id}
        assert await _found(mem, {"priority": 1.0}) == {pattern_id}
        assert await _found(mem, {"count": 3.0}) == {pattern_id}
        assert await _found(mem, {"zero": 0}) == {pattern_id}
        assert await _found(mem, {"city": NFC}) == {pattern_id}
        assert await _found(mem, {"city": NFD}) == {pattern_id}
        assert await _found(mem, {KEY_NFC: "short"}) == {pattern_id}
        assert await _found(mem, {"tags": [1.0, E_NFD]}) == {pattern_id}  # as given
        assert await _found(mem, {"priority": True}) == set()


async def test_non_finite_filters_are_refused_with_a_typed_error(
    mock_config: MemoryConfig, store: LongTermStore
) -> None:
    async with _agent(mock_config, store) as mem:
        for bad in (float("nan"), float("inf"), [float("-inf")]):
            with pytest.raises(SerializationError, match="NaN or infinity"):
                await mem.list_patterns(metadata={"priority": bad})


# -- the canonical text ---------------------------------------------------------------------


def test_the_canonical_text_applies_the_rules() -> None:
    assert facet_text("n", 1) == facet_text("n", 1.0) == "n\x001"
    assert facet_text("n", -0.0) == facet_text("n", 0) == "n\x000"
    assert facet_text("n", 2.5) == "n\x002.5"
    assert facet_text("n", 1e300) == "n\x00" + str(int(1e300))
    assert facet_text("n", 10**30) == "n\x00" + "1" + "0" * 30
    assert facet_text("n", 1e30) != facet_text("n", 10**30)  # as Python: 1e30 != 10**30
    assert facet_text("n", True) == "n\x00true" != facet_text("n", 1)
    assert facet_text("n", None) == "n\x00null"
    assert len({facet_text("n", v) for v in (None, False, 0, "", "0", [], {})}) == 7
    assert (
        facet_text(KEY_NFD, NFD)
        == facet_text(KEY_NFC, NFC)
        == (KEY_NFC + '\x00"Z\\u00fcrich caf\\u00e9"')
    )
    nested = {"b": [1.0, E_NFD, None], E_NFD: {"z": 2.0, "a": -0.0}, None: 1}
    assert facet_text("m", nested) == (
        'm\x00{"b":[1,"\\u00e9",null],"null":1,"\\u00e9":{"a":0,"z":2}}'
    )
    # Two keys of one dict that NFC makes one: both kept, as given.
    both = facet_text("m", {E_NFC: 1, E_NFD: 2})
    assert both == 'm\x00{"e\\u0301":2,"\\u00e9":1}'
    for bad in (float("nan"), float("inf"), [float("-inf")]):
        with pytest.raises(ValueError, match="NaN and infinity"):
            facet_text("n", bad)
    with pytest.raises(TypeError, match="set"):
        facet_text("n", {1, 2})


def test_a_value_already_canonical_keeps_its_old_facet() -> None:
    """An ASCII string, an int, a non-integral float: the hash on disk is the one
    earlier versions wrote (pinned here: it must never change)."""
    for key, value in (("topic", "bulk"), ("rank", 4), ("score", 0.25), ("ok", False)):
        assert facet_text(key, value) == legacy_text(key, value)
    old = hashlib.sha256(b'facet\x00topic\x00"bulk"').digest()[:8].hex()
    assert plain_facet("topic", "bulk") == old
    index = BlindIndex(derive_search_key(b"k" * 32))
    assert index.facet("topic", "bulk") == index.facet_of(legacy_text("topic", "bulk"))


def test_the_canonical_text_is_the_same_in_every_process() -> None:
    values = [1.0, 1e300, 0.1, NFD, {"b": [2.0, E_NFD], "a": None}, 10**30]
    script = (
        "import json, sys\n"
        "from attune.memory.search.blind_index import facet_text, plain_facet\n"
        "values = json.loads(sys.stdin.read())\n"
        "print(json.dumps([[facet_text('k', v), plain_facet('k', v)] for v in values]))\n"
    )
    here = [[facet_text("k", v), plain_facet("k", v)] for v in values]
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(values),
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(done.stdout) == here


def test_a_filter_asks_for_a_few_texts_canonical_first() -> None:
    assert facet_texts("n", 1) == ("n\x001", "n\x001.0")
    assert facet_texts("n", 1.0) == ("n\x001", "n\x001.0")
    assert facet_texts("n", 0) == ("n\x000", "n\x000.0", "n\x00-0.0")
    assert facet_texts("n", 2.5) == ("n\x002.5",)
    assert facet_texts("n", True) == ("n\x00true",)
    assert facet_texts("n", 10**30) == ("n\x00" + "1" + "0" * 30,)  # no float equals it
    assert facet_texts("n", 10**400) == ("n\x00" + "1" + "0" * 400,)  # past the largest float
    assert facet_texts("n", 1e300) == ("n\x00" + str(int(1e300)), "n\x001e+300")
    assert facet_texts("s", NFD) == (facet_text("s", NFC), legacy_text("s", NFD))
    assert facet_texts("s", "plain") == ('s\x00"plain"',)
    nested = [1.0, E_NFD]
    assert facet_texts("t", nested) == (facet_text("t", nested), legacy_text("t", nested))
    assert facet_texts(KEY_NFD, NFC) == (
        facet_text(KEY_NFC, NFC),
        legacy_text(KEY_NFD, NFC),
        legacy_text(KEY_NFD, NFD),
        legacy_text(KEY_NFC, NFD),
    )
    # Bounded: a key and a value each mixing both forms (neither NFC nor NFD) give 9.
    mixed = E_NFC + E_NFD
    assert len(facet_texts(mixed, mixed)) == 9
    index = BlindIndex(derive_search_key(b"k" * 32))
    ((plain_1, plain_1_0, keyed_1, keyed_1_0),) = entries.facets({"n": 1}, index)
    assert (plain_1, keyed_1) == (plain_facet("n", 1.0), index.facet("n", 1.0))
    assert (plain_1_0, keyed_1_0) == (
        blind_index.plain_facet_of("n\x001.0"),
        index.facet_of("n\x001.0"),
    )
    assert entries.facets({"n": 1}, None) == ((plain_1, plain_1_0),)
