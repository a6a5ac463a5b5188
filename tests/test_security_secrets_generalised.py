"""The secrets detector on the shapes issue 17 found it missing: escaped text, prose and log
lines, unusual key spellings, name/value rows of delimited data; and the unescaping layer."""

from __future__ import annotations

import json
import random
import string
import urllib.parse

import pytest

from attune.memory.security.pii import PIIScrubber
from attune.memory.security.secrets import SecretsDetector
from attune.memory.security.unescape import decode, decoded_layers

_rng = random.Random(1717)
B64 = string.ascii_letters + string.digits + "+/"


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


HEX40 = _rand(40, "0123456789abcdef")
AWS40 = _rand(40, B64)
PASSWORD = _rand(9) + "7!x" + _rand(4)
PEM_LABEL = "PRIVATE " + "KEY"
PEM = (
    f"-----BEGIN {PEM_LABEL}-----\n"
    + "\n".join(_rand(64, B64) for _ in range(5))
    + f"\n{_rand(20, B64)}==\n-----END {PEM_LABEL}-----\n"
)


@pytest.fixture(scope="module")
def detector() -> SecretsDetector:
    return SecretsDetector()


def _found(detector: SecretsDetector, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in detector.detect(text)]


# -- escaped text --------------------------------------------------------------------------------


def test_pem_with_escaped_line_breaks_in_json_is_found_over_its_escaped_span(
    detector: SecretsDetector,
) -> None:
    text = json.dumps({"type": "service_account", "private_key": PEM, "client_id": "1"})
    escaped = json.dumps(PEM)[1:-1]
    found = _found(detector, text)
    assert len(found) == 1 and found[0][0] == "private_key"
    assert escaped.startswith(found[0][1]) and found[0][1].endswith("-----")


def test_json_inside_a_json_string_is_decoded_twice(detector: SecretsDetector) -> None:
    inner = json.dumps({"client_secret": PASSWORD})
    text = json.dumps({"payload": inner})
    assert _found(detector, text) == [("generic_secret", PASSWORD)]


def test_url_encoded_connection_string_password(detector: SecretsDetector) -> None:
    dsn = urllib.parse.quote(f"postgres://app:{PASSWORD}@db.internal:5432/main", safe="")
    text = f"https://app.acme.io/cb?dsn={dsn}&limit=5"
    assert _found(detector, text) == [
        ("connection_string_password", urllib.parse.quote(PASSWORD, safe=""))
    ]


def test_decoded_spans_map_back_to_the_escapes() -> None:
    layer = decode('a\\nb%41c\\u0044d\\"')
    assert layer is not None
    assert layer.text == 'a\nbAcDd"'
    assert layer.span(0, 1) == (0, 1)
    assert layer.span(1, 2) == (1, 3)  # \n
    assert layer.span(3, 4) == (4, 7)  # %41
    assert layer.span(5, 6) == (8, 14)  # \u0044
    assert layer.span(0, len(layer.text)) == (0, len(layer.source))
    assert decode("plain text") is None
    assert decode("100% sure, C:\\x") is None


def test_layers_compose_back_to_the_source() -> None:
    source = json.dumps(json.dumps({"k": "a\nb"}))
    layers = decoded_layers(source)
    assert len(layers) == 2
    inner = layers[-1]
    at = inner.text.index("\n")
    start, end = inner.span(at, at + 1)
    assert source[start:end] == "\\\\n"


# -- prose and logs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "kind", "value"),
    [
        ("the database password for staging: {v}", "generic_secret", PASSWORD),
        ("2026-03-01T12:00:03Z ERROR retrying with client secret {v}", "generic_secret", HEX40),
        ("the aws_secret_access_key is {v}", "aws_secret_access_key", AWS40),
        ("I set the API token to {v} yesterday.", "generic_secret", PASSWORD),
    ],
)
def test_secret_introduced_in_prose(
    detector: SecretsDetector, template: str, kind: str, value: str
) -> None:
    assert _found(detector, template.replace("{v}", value)) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        f"the secret rotation landed in commit {HEX40}",
        "the token request 3f2b8c1e-9a4d-4c1b-a0e2-7d5f6b8c9e01 failed with 500",
        f"the key file checksum is {HEX40}{HEX40[:24]}",
        "add this public key to authorized_keys: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"
        + _rand(43, B64)
        + " deploy@ci",
        "the password was rotated yesterday by ops",
        "the token expires on 2026-03-01",
        "client = Client(token='xxxx', timeout=30)",
        "a monkey key1234567890abc is not a key",
        "the api key is stored in the vault at /secret/data/billing-api-2",
    ],
)
def test_prose_that_only_mentions_a_secret_is_clean(detector: SecretsDetector, text: str) -> None:
    assert detector.detect(text) == []


# -- key spellings and delimited data ------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        'os.environ["APIKEY"] = "{v}"',
        "api-key: {v}",
        "X_API_KEY={v}",
        '{"ClientSecret": "{v}"}',
        "export CLIENTSECRET='{v}'",
        'headers["X-Api-Key"] = `{v}`;',
        "name,value\ndb_password,{v}\n",
        "name\tvalue\nclient_secret\t{v}\n",
        "| setting | value |\n|---|---|\n| api_key | {v} |\n",
        "INSERT INTO settings (name, value) VALUES ('auth_token', '{v}');",
    ],
)
def test_assignment_with_unusual_spelling_or_delimiter(
    detector: SecretsDetector, template: str
) -> None:
    assert _found(detector, template.replace("{v}", PASSWORD)) == [("generic_secret", PASSWORD)]


def test_delimited_names_without_a_credential_are_clean(detector: SecretsDetector) -> None:
    assert detector.detect("field,type\npassword,string\ntoken,uuid\napi_key,4096\n") == []
    assert detector.detect("password, token and secret, in that order") == []


def test_documented_example_still_holds(detector: SecretsDetector) -> None:
    text = "API key: sk-" + "proj-abc123..."
    assert _found(detector, text) == [("openai_api_key", "sk-" + "proj-abc123")]


def test_pathological_escapes_and_context_words_finish(detector: SecretsDetector) -> None:
    # Decoding is linear per layer and there are at most three layers; the context scan
    # reads a bounded window after each word (pytest-timeout guards).
    scrubber = PIIScrubber()
    for text in (
        "\\\\" * 50_000,
        "%25" * 30_000,
        "%2525" * 10_000 + "41",
        "\\u0041" * 20_000,
        "password " * 20_000,
        "key" * 30_000,
        "Pwd+" * 20_000,
        "the secret is " + "a1" * 50_000,
    ):
        detector.detect(text)
        scrubber.scrub(text)
