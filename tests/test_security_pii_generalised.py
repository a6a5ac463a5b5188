"""The PII scrubber on the shapes issue 17 found leaking: values in delimited rows (digits next
to commas and tabs), labels spelled as keys (``patient_id``, ``"dob": "..."``), and escaped
text (URL-encoded, JSON-escaped) scrubbed through its decoded form."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attune.memory.security.pii import PIIScrubber


@pytest.fixture(scope="module")
def scrubber() -> PIIScrubber:
    return PIIScrubber()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("63249,4204 8701 4039 6047,11/29", "63249,[CC],11/29"),
        ("63249,4111111111111111,123,ok", "63249,[CC],123,ok"),
        ("id\tcard\n7\t5500-0000-0000-0004\t11/29", "id\tcard\n7\t[CC]\t11/29"),
        ("1,123-45-6789,2026-01-02", "1,[SSN],2026-01-02"),
        ("a|123-45-6789|b", "a|[SSN]|b"),
        ("42,123 Maple Street,Springfield", "42,[ADDRESS],Springfield"),
        ('"4111111111111111","x"', '"[CC]","x"'),
    ],
)
def test_values_in_delimited_rows(scrubber: PIIScrubber, text: str, expected: str) -> None:
    assert scrubber.scrub(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "1,234,567,890,123,456",  # thousands, not a card
        "total: $1,299.99, 62704-1234",
        "4111111111111112,ok",  # fails Luhn
        "version 4.1.2,build 4111",
    ],
)
def test_delimited_numbers_that_are_not_pii(scrubber: PIIScrubber, text: str) -> None:
    assert scrubber.scrub(text).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"patient_id": "A1234567"}', '{"patient_id": "[MRN]"}'),
        ('{"dob": "1980-02-03"}', '{"dob": "[DOB]"}'),
        ("DATE_OF_BIRTH=02/03/1980", "DATE_OF_BIRTH=[DOB]"),
        ("name,value\nmrn,A1234567\n", "name,value\nmrn,[MRN]\n"),
        ("| birth_date | 1980-02-03 |", "| birth_date | [DOB] |"),
        ("INSERT INTO t VALUES ('ssn', '123-45-6789');", "INSERT INTO t VALUES ('ssn', '[SSN]');"),
        ('os.environ["MRN"] = "A1234567"', 'os.environ["MRN"] = "[MRN]"'),
    ],
)
def test_labels_spelled_as_keys(scrubber: PIIScrubber, text: str, expected: str) -> None:
    assert scrubber.scrub(text).text == expected


def test_a_placeholder_is_not_a_label(scrubber: PIIScrubber) -> None:
    once = scrubber.scrub("MRN 00123456 001-01-0001").text
    assert scrubber.scrub(once).text == once


def test_url_encoded_values_are_scrubbed_where_they_are_written(scrubber: PIIScrubber) -> None:
    email, phone = "john.doe@example.com", "+1 415-555-0123"
    query = urllib.parse.urlencode({"email": email, "phone": phone}, quote_via=urllib.parse.quote)
    result = scrubber.scrub(f"https://app.acme.io/cb?{query}&page=2")
    assert result.text == "https://app.acme.io/cb?email=[EMAIL]&phone=[PHONE]&page=2"
    assert result.counts == {"email": 1, "phone": 1}
    assert scrubber.scrub(result.text).text == result.text


def test_json_escaped_values_are_scrubbed(scrubber: PIIScrubber) -> None:
    inner = json.dumps({"note": "call\n123-45-6789", "email": "a.b@example.com"})
    text = json.dumps({"payload": inner})
    out = scrubber.scrub(text).text
    assert "123-45-6789" not in out and "a.b@example.com" not in out
    assert "[SSN]" in out and "[EMAIL]" in out
    assert scrubber.scrub(out).text == out


def test_documented_example_is_exact(scrubber: PIIScrubber) -> None:
    text = "User john@example.com reported issue with SSN 123-45-6789"
    assert scrubber.scrub(text).text == "User [EMAIL] reported issue with SSN [SSN]"


_WORDS_WITHOUT_TRIGGERS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "dob",
                "DOB",
                "mrn",
                "ssn",
                "patient_id",
                "date_of_birth",
                "email",
                "phone",
                "card",
                "iban",
                "Main St",
                "Apt",
                "March",
                "john.doe",
                "example.com",
                "٣٤٥",
                "\uff11\uff12\uff13",  # fullwidth digits
                "|",
                ",",
                "\t",
                '"',
                "'",
                "[",
                "]",
                "(",
                ")",
                "=",
                "-",
                "_",
                ".",
                "#",
            ]
        ),
        st.text(alphabet=st.characters(blacklist_characters="0123456789@:%\\"), max_size=12),
    ),
    max_size=40,
).map(" ".join)


@given(_WORDS_WITHOUT_TRIGGERS)
@settings(max_examples=300, deadline=None)
def test_a_text_without_a_digit_at_colon_or_escape_has_nothing_to_scrub(text: str) -> None:
    """``scrub`` returns such a text untouched without a pass; the full pass (private: the
    shortcut is what is checked) finds nothing in it either, so the shortcut is exact."""
    scrubber = PIIScrubber()
    assert scrubber._find(text)[0] == []
    assert scrubber.scrub(text).text == text
