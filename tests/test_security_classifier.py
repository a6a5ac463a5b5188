"""The classification rule table: documented examples, whole-word matching, precedence."""

from __future__ import annotations

import pytest

from attune.errors import ValidationError
from attune.memory import Classification
from attune.memory.security import scan_engine
from attune.memory.security.classifier import RULES, classify, decide


@pytest.mark.parametrize(
    ("content", "pattern_type", "expected"),
    [
        # The reference documentation's examples.
        ("JWT refresh pattern for auth tokens", "security", Classification.INTERNAL),
        (
            "Patient data handling protocol for HIPAA compliance",
            "clinical_protocol",
            Classification.SENSITIVE,
        ),
        ("Use dependency injection for testable code", "architecture", Classification.PUBLIC),
        (
            "When handling API errors, always include request_id for tracing",
            "best_practice",
            Classification.PUBLIC,
        ),
        ("Use connection pooling for database access", "optimization", Classification.PUBLIC),
        (
            "Always sanitize SQL inputs using parameterized queries",
            "security",
            Classification.INTERNAL,
        ),
    ],
)
def test_documented_examples(content: str, pattern_type: str, expected: Classification) -> None:
    assert classify(content, pattern_type).classification is expected


@pytest.mark.parametrize(
    "content",
    [
        "A philosophy of small functions",  # "phi"
        "Use an internally-linked list for the LRU",  # "internal"
        "Tokenizers split text into subwords",  # "token"
        "Authors should keep commits small",  # "auth"
        "The patiently retried request eventually succeeds",  # "patient"
        "Secretary pattern for delegating work",  # "secret"
    ],
)
def test_substrings_do_not_fire(content: str) -> None:
    decision = classify(content, "misc")
    assert decision.classification is Classification.PUBLIC, decision


@pytest.mark.parametrize(
    ("content", "rule", "term"),
    [
        ("Store PHI only in the vault", "health", "phi"),
        ("Medical record numbers are never logged", "health", "medical record"),
        ("Clinical\nnotes are reviewed weekly", "health", "clinical"),
        ("Mask the SSN in every export", "personal-data", "ssn"),
        ("Hash passwords with argon2id", "security", "passwords"),
        ("This is our proprietary ranking formula", "proprietary", "proprietary"),
        ("Internal use only: the release checklist", "proprietary", "internal"),
    ],
)
def test_rules_name_what_fired(content: str, rule: str, term: str) -> None:
    decision = classify(content, "misc")
    assert decision.rule == rule
    assert decision.term == term


def test_sensitive_wins_over_internal() -> None:
    decision = classify("Authentication flow for patient portal logins", "security")
    assert decision.classification is Classification.SENSITIVE
    assert decision.rule == "health"


@pytest.mark.parametrize("engine", scan_engine.available())
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("pat\u0131ent d\u0131agnosis notes", Classification.SENSITIVE),  # dotless i
        ("MED\u0130CAL record attached", Classification.SENSITIVE),  # dotted capital I
        ("pa\u017f\u017fword reset flow", Classification.INTERNAL),  # long s
    ],
)
def test_terms_spelled_with_a_case_fold_oddity_classify_as_spelled_plainly(
    content: str, expected: Classification, engine: str
) -> None:
    # Read as the secrets and PII detectors read them: these spellings were PUBLIC.
    plain = content.replace("\u0131", "i").replace("\u0130", "I").replace("\u017f", "s")
    assert classify(plain, engine=engine).classification is expected
    assert classify(content, engine=engine).classification is expected


def test_pattern_type_and_metadata_are_read() -> None:
    assert classify("Handoff checklist", "clinical_protocol").classification is (
        Classification.SENSITIVE
    )
    assert classify("Handoff checklist", "misc", {"tags": ["confidential"]}).classification is (
        Classification.INTERNAL
    )
    assert classify("Handoff checklist", "misc", {"nested": {"k": "HIPAA"}}).rule == "health"


def test_explicit_wins_and_auto_off_defaults_to_internal() -> None:
    assert decide(Classification.PUBLIC, "HIPAA patient data", "clinical", {}).rule == "explicit"
    assert decide(Classification.PUBLIC, "HIPAA", "x", {}).classification is Classification.PUBLIC
    off = decide(None, "Use dependency injection", "architecture", {}, auto_classify=False)
    assert (off.classification, off.rule) == (Classification.INTERNAL, "unclassified")


@pytest.mark.parametrize("value", ["sensitive", "Internal", " PUBLIC ", Classification.PUBLIC])
def test_parse_accepts_names_in_any_case(value: str | Classification) -> None:
    assert isinstance(Classification.parse(value), Classification)


@pytest.mark.parametrize("value", ["secret", "", 3, None, "PUBLICX"])
def test_parse_rejects_anything_else(value: object) -> None:
    with pytest.raises(ValidationError, match="expected one of PUBLIC, INTERNAL, SENSITIVE"):
        Classification.parse(value)  # type: ignore[arg-type]


def test_rule_table_is_ordered_most_sensitive_first() -> None:
    order = [Classification.SENSITIVE, Classification.INTERNAL]
    ranks = [order.index(rule.classification) for rule in RULES]
    assert ranks == sorted(ranks)


def test_non_ascii_text_takes_the_same_word_rules() -> None:
    assert classify("Le dossier du patient\u2019s suivi", "soins").rule == "health"
    assert classify("Überprüfe die Authentifizierung—auth—immer", "x").rule == "security"
    assert classify("Philosophie der Softwaretechnik", "x").classification is Classification.PUBLIC


def test_metadata_keys_count_as_what_the_record_holds() -> None:
    """``{"date_of_birth": ...}`` or ``{"diagnosis": ...}`` says what the data is even when
    the value (scrubbed, or a code) does not: such a record is not PUBLIC."""
    assert classify("Intake note", "note").classification is Classification.PUBLIC
    for metadata in ({"date_of_birth": "[DOB]"}, {"patient": {"diagnosis": "J45.909"}}):
        decision = classify("Intake note", "note", metadata)
        assert decision.classification is Classification.SENSITIVE, metadata
