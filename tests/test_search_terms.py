"""Search terms and blind-index tokens: one normalisation for index and query."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attune.errors import ValidationError
from attune.memory.search.blind_index import TOKEN_BYTES, BlindIndex, derive_search_key
from attune.memory.search.terms import (
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    MAX_TERM_CHARS,
    STOP_WORDS,
    parse_query,
    terms,
)


def test_terms_fold_case_and_accents_and_drop_stop_words() -> None:
    assert terms("The Café serves CAFE and café_au-lait") == [
        "cafe",
        "serves",
        "cafe",
        "cafe",
        "au",
        "lait",
    ]
    assert terms("Straße ﬁle") == ["strasse", "file"]  # folding may split or widen a word
    assert terms("SQL-Injection: 42 times!") == ["sql", "injection", "42", "times"]


def test_a_long_word_is_cut_alike_on_both_sides() -> None:
    word = "x" * (MAX_TERM_CHARS + 10)
    assert terms(word) == ["x" * MAX_TERM_CHARS]
    assert parse_query(word).phrases == (("x" * MAX_TERM_CHARS,),)


def test_query_words_and_phrases() -> None:
    parsed = parse_query('sql "SQL Injection" sql prevention "unclosed phrase')
    assert parsed.phrases == (
        ("sql",),
        ("sql", "injection"),
        ("prevention",),
        ("unclosed", "phrase"),
    )


@pytest.mark.parametrize(
    "query",
    ["sql AND injection", "NEAR(sql injection)", "sql*", "content: sql", "(sql) OR ^injection"],
)
def test_fts_syntax_in_a_query_is_only_text(query: str) -> None:
    words = {term for phrase in parse_query(query).phrases for term in phrase}
    assert words <= {"sql", "injection", "near", "content"}
    assert "sql" in words


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no words"),
        ("the and of", "no words"),
        ('"" !!! ...', "no words"),
        ("sql\x00", "NUL"),
        ("x" * (MAX_QUERY_CHARS + 1), "longer than"),
        (" ".join(f"w{i}" for i in range(MAX_QUERY_TERMS + 1)), "more than"),
        (b"sql", "must be a string"),
        (None, "must be a string"),
    ],
)
def test_unusable_queries_are_validation_errors(query: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        parse_query(query)
    if isinstance(query, str) and len(query) > 3:
        assert query not in str(raised.value)  # never echoed


@given(st.text(max_size=200))
def test_any_text_parses_or_is_a_validation_error(text: str) -> None:
    try:
        parsed = parse_query(text)
    except ValidationError:
        return
    for phrase in parsed.phrases:
        for term in phrase:
            assert term and term not in STOP_WORDS and len(term) <= MAX_TERM_CHARS
            assert term == terms(term)[0]  # a term is a fixed point of the normalisation


def test_tokens_are_keyed_deterministic_and_short() -> None:
    one = BlindIndex(derive_search_key(b"k" * 32))
    other = BlindIndex(derive_search_key(b"j" * 32))
    assert one.token("injection") == one.token("injection")
    assert one.token("injection") != one.token("sql")
    assert one.token("injection") != other.token("injection")
    assert len(one.token("injection")) == 16 and int(one.token("injection"), 16) >= 0
    assert "key" not in repr(one).lower().replace("<key>", "")


def test_facets_do_not_depend_on_key_order_or_spacing() -> None:
    index = BlindIndex(derive_search_key(b"k" * 32))
    assert index.facet("team", {"a": 1, "b": [2]}) == index.facet("team", {"b": [2], "a": 1})
    assert index.facet("team", "red") != index.facet("team", "Red")
    assert index.facet("team", 1) != index.facet("team", "1")


def test_a_search_key_has_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        BlindIndex(b"short")


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_a_token_is_the_hmac_of_its_term(term: str) -> None:
    key = derive_search_key(b"k" * 32)
    mac = hmac.new(key, b"term\x00" + term.encode("utf-8"), hashlib.sha256)
    assert BlindIndex(key).token(term) == mac.digest()[:TOKEN_BYTES].hex()


def test_remembered_tokens_are_the_tokens_and_hold_no_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``tokens`` remembers what it made (by the term's hash, never the term) and starts
    afresh past its bound; every answer is the term's own HMAC token all the same."""
    import gc

    from attune.memory.search import blind_index

    monkeypatch.setattr(blind_index, "CACHE_TOKENS", 8)
    # Remembering is off under a fixed PYTHONHASHSEED (tox sets one): this test is about
    # what is remembered, so it reads the environment as the default (no seed).
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    key = derive_search_key(b"k" * 32)
    index, fresh = BlindIndex(key), BlindIndex(key)
    words = [f"harbour{i}" for i in range(20)] + ["harbour3", "kestrel", "harbour3"]
    for _round in range(3):  # cold, then remembered, across the bound's clears
        assert index.tokens(words) == [fresh.token(w) for w in words]
    remembered = index._cache  # what the object keeps is the point
    assert 0 < len(remembered) <= 8 + len(words)
    assert not any(isinstance(k, str) for k in remembered)
    kept = gc.get_referents(remembered)
    assert not any(isinstance(o, str) and ("harbour" in o or "kestrel" in o) for o in kept)


@pytest.mark.parametrize(("seed", "remembers"), [("random", True), ("0", False), ("4242", False)])
def test_tokens_are_remembered_only_under_a_secret_hash_seed(seed: str, remembers: bool) -> None:
    """With PYTHONHASHSEED set to a number, two words of one str hash can be made by
    whoever knows it, and a remembered token would answer for the other word: nothing is
    remembered then (the tokens are the same either way)."""
    import os
    import subprocess
    import sys

    script = (
        "from attune.memory.search.blind_index import BlindIndex, derive_search_key\n"
        "index = BlindIndex(derive_search_key(bytes(32)))\n"
        "words = ['harbour', 'kestrel', 'harbour']\n"
        "assert index.tokens(words) == [index.token(w) for w in words]\n"
        "print(len(index._cache))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == (2 if remembers else 0)


def test_one_blind_index_per_search_key_in_a_process() -> None:
    """Agents of one store share their key's index (and what it remembers)."""
    from attune.memory.search import blind_index

    key, other = derive_search_key(b"k" * 32), derive_search_key(b"j" * 32)
    one = blind_index.shared(key)
    assert blind_index.shared(bytes(key)) is one
    assert blind_index.shared(other) is not one
    assert blind_index.shared(other).token("harbour") != one.token("harbour")
