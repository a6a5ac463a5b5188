"""Tests of attune.memory.security.secrets: the labelled corpus, the interface, properties."""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attune.errors import ConfigurationError
from attune.memory.security.secrets import SecretFinding, SecretsDetector


def _load_corpus() -> ModuleType:
    path = Path(__file__).parent / "data" / "secrets_corpus.py"
    spec = importlib.util.spec_from_file_location("secrets_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()
POSITIVES = corpus.POSITIVES
NEGATIVES = corpus.NEGATIVES
POSITIVE_IDS = [f"{p.kind}-{i}" for i, p in enumerate(POSITIVES)]

ALL_KINDS = {
    "openai_api_key",
    "anthropic_api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "google_api_key",
    "private_key",
    "jwt",
    "connection_string_password",
    "generic_secret",
}


@pytest.fixture(scope="module")
def detector() -> SecretsDetector:
    return SecretsDetector()


def _covered(text: str, findings: list[SecretFinding]) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in findings]


# -- the corpus ---------------------------------------------------------------------------------


def test_corpus_is_large_and_covers_every_kind() -> None:
    assert len(POSITIVES) >= 40
    assert len(NEGATIVES) >= 40
    assert {p.kind for p in POSITIVES} == ALL_KINDS


@pytest.mark.parametrize("case", POSITIVES, ids=POSITIVE_IDS)
def test_true_positive_is_found_with_its_kind_and_exact_span(
    detector: SecretsDetector, case: Any
) -> None:
    findings = detector.detect(case.text)
    assert _covered(case.text, findings) == [(case.kind, case.secret)]
    assert detector.contains_secrets(case.text)
    assert detector.kinds(case.text) == {case.kind: 1}


@pytest.mark.parametrize("text", NEGATIVES, ids=[f"negative-{i}" for i in range(len(NEGATIVES))])
def test_tricky_negative_is_not_detected(detector: SecretsDetector, text: str) -> None:
    assert _covered(text, detector.detect(text)) == []
    assert not detector.contains_secrets(text)
    assert detector.kinds(text) == {}


def test_detection_and_false_positive_rates(detector: SecretsDetector) -> None:
    detected = sum(
        [(f.kind, p.text[f.start : f.end]) for f in detector.detect(p.text)] == [(p.kind, p.secret)]
        for p in POSITIVES
    )
    false_positives = sum(bool(detector.detect(text)) for text in NEGATIVES)
    detection_rate = detected / len(POSITIVES)
    false_positive_rate = false_positives / len(NEGATIVES)
    print(
        f"\nsecrets corpus: detection {detection_rate:.1%} of {len(POSITIVES)} positives, "
        f"false positives {false_positive_rate:.1%} of {len(NEGATIVES)} negatives"
    )
    assert detection_rate == 1.0
    assert false_positive_rate == 0.0


def test_documented_example_is_detected(detector: SecretsDetector) -> None:
    # docs: persisting "API key: sk-proj-abc123..." returns {"error": "secrets_detected"}
    assert detector.kinds("API key: sk-proj-abc123...") == {"openai_api_key": 1}


# -- findings never carry the value -------------------------------------------------------------


def test_finding_holds_only_kind_and_span() -> None:
    assert [f.name for f in dataclasses.fields(SecretFinding)] == ["kind", "start", "end"]
    finding = SecretFinding("jwt", 1, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.kind = "other"  # type: ignore[misc]


@pytest.mark.parametrize("case", POSITIVES, ids=POSITIVE_IDS)
def test_reports_never_contain_the_secret(detector: SecretsDetector, case: Any) -> None:
    findings = detector.detect(case.text)
    assert findings
    for finding in findings:
        assert case.secret not in repr(finding)
        assert case.secret not in str(finding)
    assert case.secret not in str(detector.kinds(case.text))


# -- overlaps, ordering, counting ---------------------------------------------------------------


def test_the_most_specific_kind_wins_an_overlap(detector: SecretsDetector) -> None:
    token = "gh" + "p_" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"
    for text in (
        f"GITHUB_TOKEN={token}",  # generic assignment and github_token on the same span
        f"git clone https://ci:{token}@github.com/acme/app.git",  # connection string too
        f'{{"token": "{token}"}}',
    ):
        assert _covered(text, detector.detect(text)) == [("github_token", token)]


def test_several_secrets_are_sorted_non_overlapping_and_counted(
    detector: SecretsDetector,
) -> None:
    picked = [p for p in POSITIVES if p.kind in ("jwt", "stripe_key", "generic_secret")][:6]
    text = "\n---\n".join(p.text for p in picked)
    findings = detector.detect(text)
    assert [text[f.start : f.end] for f in findings] == [p.secret for p in picked]
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    expected: dict[str, int] = {}
    for p in picked:
        expected[p.kind] = expected.get(p.kind, 0) + 1
    assert detector.kinds(text) == expected


def test_keywords_match_in_any_case(detector: SecretsDetector) -> None:
    for name in ("PASSWORD", "Password", "db_passWord", "ClientSecret", "X-Api-Key"):
        text = f"{name}: Zq8#vLm2Rt"
        assert _covered(text, detector.detect(text)) == [("generic_secret", "Zq8#vLm2Rt")], name


def test_text_whose_lowercase_changes_length_is_still_scanned(detector: SecretsDetector) -> None:
    # "\u0130".lower() is two characters: keyword positions then come from a direct search.
    text = "\u0130stanbul office, \u0130zmir backup: password = 'Zq8#vLm2Rt' \u0130"
    assert len(text.lower()) != len(text)
    assert _covered(text, detector.detect(text)) == [("generic_secret", "Zq8#vLm2Rt")]


@pytest.mark.parametrize(
    "name",
    [
        "credent\u0131als",  # dotless i
        "pa\u017f\u017fword",  # long s
        "db_PA\u0130NTED_password",  # a dotted capital I before the keyword
        "\u017fecret",
        "AP\u0130_KEY",
    ],
)
def test_keyword_spelled_with_a_case_fold_oddity_is_found(
    detector: SecretsDetector, name: str
) -> None:
    # The rules' regexes match these letters for "i", "s" (case-insensitively); the keyword
    # scan, ASCII only, did not, so the rule never ran and the value was stored.
    text = f"{name}=Zq8#vLm2Rt9x"
    assert _covered(text, detector.detect(text)) == [("generic_secret", "Zq8#vLm2Rt9x")], name


@pytest.mark.parametrize(
    "text",
    [
        "the database pa\u017f\u017fword for staging is Xk9mQ2vL7pR4tZ8wN3, ask ops",
        # An "\u0130" anywhere in a text used to switch the prose rules off for all of it.
        "\u0130stanbul: the database password for staging is Xk9mQ2vL7pR4tZ8wN3, ask ops",
    ],
)
def test_context_word_in_a_text_with_an_oddity_is_found(
    detector: SecretsDetector, text: str
) -> None:
    assert _covered(text, detector.detect(text)) == [("generic_secret", "Xk9mQ2vL7pR4tZ8wN3")]


def _jwt_with_header(header: bytes) -> str:
    encoded = base64.urlsafe_b64encode(header).decode().rstrip("=")
    return f"{encoded}.eyJzdWIiOiIxIn0.abcdefghijklmnopqrstuvwxyz"


def test_pathological_inputs_finish_without_findings_or_errors(detector: SecretsDetector) -> None:
    # Bounded and possessive quantifiers: these run in linear time (pytest-timeout guards).
    for text in (
        "sk-" + "a" * 100_000,
        "password=" * 20_000,
        "eyJ" + "A" * 50_000 + "." + "B" * 50_000,
        "://" + ":" * 50_000,
        "AKIA" * 25_000,
        "-----BEGIN RSA PRIVATE KEY-----" + "-" * 50_000,
        _jwt_with_header(b'{"alg":' + b"[" * 1400),  # json.loads would raise RecursionError
    ):
        assert detector.detect(text) == []


# -- extra patterns -----------------------------------------------------------------------------


def test_extra_patterns_block_too() -> None:
    text = "the build bot signs in with itk_0123456789abcdef every night"
    assert SecretsDetector().detect(text) == []
    detector = SecretsDetector(extra_patterns={"internal_token": r"itk_[0-9a-f]{16}"})
    assert _covered(text, detector.detect(text)) == [("internal_token", "itk_0123456789abcdef")]
    assert detector.kinds(text) == {"internal_token": 1}


def test_extra_pattern_outranks_a_generic_assignment() -> None:
    detector = SecretsDetector(extra_patterns={"internal_token": r"itk_[0-9a-f]{16}"})
    text = "token = itk_0123456789abcdef"
    assert _covered(text, detector.detect(text)) == [("internal_token", "itk_0123456789abcdef")]


def test_extra_pattern_matching_empty_text_yields_no_empty_findings() -> None:
    detector = SecretsDetector(extra_patterns={"maybe": r"x*"})
    assert _covered("a xx b", detector.detect("a xx b")) == [("maybe", "xx")]


def test_invalid_extra_regex_names_the_kind_but_not_the_pattern() -> None:
    pattern = r"(?P<leak>hunter2[unclosed"
    with pytest.raises(ConfigurationError) as excinfo:
        SecretsDetector(extra_patterns={"corp_key": pattern})
    message = str(excinfo.value)
    assert "corp_key" in message
    assert pattern not in message
    assert "hunter2" not in message
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize("kind", ["", "Bad-Kind", "9lives", "has space", "x" * 65, "trailing_"])
def test_bad_extra_kind_name_is_a_configuration_error(kind: str) -> None:
    with pytest.raises(ConfigurationError, match="snake_case"):
        SecretsDetector(extra_patterns={kind: r"abc"})


def test_non_string_extra_regex_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="corp_key"):
        SecretsDetector(extra_patterns={"corp_key": 42})  # type: ignore[dict-item]


# -- properties ---------------------------------------------------------------------------------

_FRAGMENTS = (
    [p.text for p in POSITIVES]
    + NEGATIVES
    + [
        "password=",
        "sk-",
        "eyJ",
        "://a:",
        "@h",
        "-----BEGIN PRIVATE KEY-----\n",
        "\u0130",
        "\u0131",
        "\u017f",
        "\u212a",
        '"',
        "'",
    ]
)
_texts = st.lists(st.one_of(st.text(max_size=40), st.sampled_from(_FRAGMENTS)), max_size=8).map(
    "".join
)


@settings(max_examples=150, deadline=None)
@given(text=_texts)
def test_detect_returns_sorted_disjoint_in_bounds_spans(text: str) -> None:
    detector = SecretsDetector()
    findings = detector.detect(text)
    for finding in findings:
        assert 0 <= finding.start < finding.end <= len(text)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    assert sum(detector.kinds(text).values()) == len(findings)
    assert detector.contains_secrets(text) == bool(findings)


@pytest.mark.parametrize(
    "text",
    [
        "NEXTAUTH_SECRET=Zq8vHNsG9eh6Yo4g",
        "Set NEXTAUTH_SECRET to Zq8vHNsG9eh6Yo4g in Vercel",
        "NEXTCLOUD_ADMIN_PASSWORD=Zq8vHNsG9eh6Yo4g",
        "PREVIEW_DB_PASSWORD=Zq8vHNsG9eh6Yo4g",
        "PREVIOUS_SECRET_KEY=Zq8vHNsG9eh6Yo4g",
    ],
)
def test_a_secret_whose_name_starts_with_next_or_prev_is_found(text: str) -> None:
    """Names of page tokens start so (``nextForwardToken``); secrets' names can too."""
    assert set(SecretsDetector().kinds(text)) == {"generic_secret"}


@pytest.mark.parametrize(
    "text", ["nextForwardToken=Zq8vHNsG9eh6Yo4g", "prevPageToken: Zq8vHNsG9eh6Yo4g"]
)
def test_a_next_or_previous_page_token_is_no_secret(text: str) -> None:
    assert not SecretsDetector().kinds(text)


_PW = "Zq8vHNsG9eh6Yo4g"


@pytest.mark.parametrize(
    "text",
    [
        f"DB_PASSWORD_PROD={_PW}",
        f"API_KEY_PROD={_PW}",
        "SECRET_KEY_BASE=Zq8vHNsG9eh6Yo4ga81c3e",
        "production:\n  secret_key_base: 9c1f0e7a2bZq8vHNsG9eh6Yo4g",
        f"TOKEN_GITHUB={_PW}",
        f"PASSWORD_1={_PW}",
        f"POSTGRES_PASSWORD_PRIMARY={_PW}",
        f"JWT_SECRET_KEY_V2={_PW}",
        f"const apiKeyProd = '{_PW}';",
        f'{{"api_key_v2": "{_PW}"}}',
    ],
)
def test_a_secret_named_with_a_qualifier_after_the_keyword_is_found(text: str) -> None:
    """DB_PASSWORD_PROD names a password as DB_PASSWORD does (they were stored)."""
    assert set(SecretsDetector().kinds(text)) == {"generic_secret"}


@pytest.mark.parametrize(
    "text",
    [
        "password_reset_url=https://x.example/reset?u=1",
        "secret_name: prod-db-creds-2024x",
        "api_key_name=prod-key-7fa9x2",
        "password_min_length: 12",
        "token_count=1234567",
        "secretary = Jane0Smith9x",
        "SECRETARY=Jane0Smith9x",
        "tokenizer = AutoTokenizer.from_pretrained('x')",
    ],
)
def test_a_name_for_a_credentials_attribute_is_no_secret(text: str) -> None:
    assert not SecretsDetector().kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"headers": {"Authorization": "Basic c3ZjLWNpOlpxOHZITnNHOWVoNllvNGc="}}',
        'requests.get(url, headers={"Authorization": "Basic c3ZjLWNpOlpxOHZITnNHOWVoNllvNGc="})',
        "{'Authorization': 'Token Zq8vHNsG9eh6Yo4gK2m'}",
    ],
)
def test_basic_and_token_authorization_as_a_json_or_dict_entry_is_found(text: str) -> None:
    assert set(SecretsDetector().kinds(text)) == {"generic_secret"}


@pytest.mark.parametrize(
    "text",
    [
        "PWD=/home/ci/work/repo-42",
        "OLDPWD=/var/lib/jenkins/workspace/build-1187",
        "master key k_3f9a2b7c1d4e5f60 rotated",
        "encryption key k_3f9a2b7c1d4e5f60 is active",
    ],
)
def test_a_path_or_an_attune_key_id_is_no_secret(text: str) -> None:
    """An environment dump's PWD is a directory; ``k_`` and 16 hex digits names a master
    key (what attune's own logs and rotation results show), it is not one."""
    assert not SecretsDetector().kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "//registry.npmjs.org/:_authToken=Zq8vHNsG9eh6Yo4g",
        "//registry.example.net/:_password=Zq8vHNsG9eh6Yo4g",
    ],
)
def test_an_npmrc_credential_scoped_to_a_registry_is_found(text: str) -> None:
    """``//host/:_authToken=`` is a name after a colon, as ``A::B`` and ARNs are, but a
    credential's: it was stored."""
    assert set(SecretsDetector().kinds(text)) == {"generic_secret"}
