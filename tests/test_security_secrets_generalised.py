"""The secrets detector on the shapes issue 17 found it missing: escaped text, prose and log
lines, unusual key spellings, name/value rows of delimited data; and the unescaping layer.
Then values starting with "$", "@" or "%", "&" inside a value, YAML lists in text, names
with a variant in prose, and key ids and digests after "key" (not secrets)."""

from __future__ import annotations

import json
import random
import string
import urllib.parse

import pytest

from attune.errors import SecretsDetectedError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
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


# -- values that start with "$", "@" or "%" --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password=$ecr3tP@ss!", "$ecr3tP@ss!"),
        ("DB_PASSWORD=@xY9#kLm2Qp", "@xY9#kLm2Qp"),
        ("DB_PASSWORD=%Tq8!zW3rLp", "%Tq8!zW3rLp"),
        ('api_key: "$Summer2024x!"', "$Summer2024x!"),
        ("client_secret = '@Tr0ub4dor&3x'", "@Tr0ub4dor&3x"),
        ("the password is now $ecr3tP@ss9x", "$ecr3tP@ss9x"),
        ("passwords:\n  - @xY9#kLm2Qp\n", "@xY9#kLm2Qp"),
    ],
)
def test_value_that_only_starts_with_a_sigil_is_a_secret(
    detector: SecretsDetector, text: str, value: str
) -> None:
    assert _found(detector, text) == [("generic_secret", value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("postgres://app:$ecr3tP!ss9@db/app", "$ecr3tP!ss9"),
        ("redis://:%40xY9kLm2Qp@cache:6379", "%40xY9kLm2Qp"),  # "@xY9kLm2Qp", escaped
    ],
)
def test_connection_string_password_starting_with_a_sigil(
    detector: SecretsDetector, text: str, value: str
) -> None:
    assert _found(detector, text) == [("connection_string_password", value)]


@pytest.mark.parametrize(
    "text",
    [
        "postgres://app:$PGPASSWORD@db/app",
        "postgres://app:%24%7BDB_PASSWORD%7D@db/app",
        "STRIPE_SECRET=$STRIPE_KEY_LIVE",
        "STRIPE_SECRET=${STRIPE_KEY_LIVE:-x}",
        "STRIPE_SECRET=$${STRIPE_KEY_LIVE}",
        'STRIPE_SECRET="$(cat_stripe_v2)"',
        "api_key: $env:STRIPE_KEY_LIVE",
        'password: "$config.db.prodPass"',
        "password: $HOME/.pgpass2",
        'password = "%(db_pass_prod)s"',
        'password: "%env(DB_PASS_PROD)%"',
        "api_key: %{stripe_live_2}",
        "password=%24%7BDB_PASS_PROD%7D",  # ${DB_PASS_PROD}, URL-encoded
        'DB_PASSWORD="@Microsoft.KeyVault(VaultName=kv1;Name=dbprod2)"',
        "password=@{pipeline().parameters.dbPass2}",
        "password=@/etc/stripe/live2.key",
        'password: "@prodDbPass"',
        'admin_password = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"',
        "ADMIN_PASSWORD='$apr1$x9Kq2mLp$Zx8Qm2Lr7Tp4Wn9KabcdE1'",  # a hash, not the password
    ],
)
def test_reference_syntax_is_not_a_secret(detector: SecretsDetector, text: str) -> None:
    assert detector.detect(text) == []


# -- "&" in an unquoted value --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("API_SECRET=ab&Xk92mQz7Lp4Rt", "ab&Xk92mQz7Lp4Rt"),
        ("API_SECRET=Xk92mQz7&Lp4Rt\nDEBUG=1", "Xk92mQz7&Lp4Rt"),
        ("export DB_PASSWORD=Zr8&vQ2&pLm9xW", "Zr8&vQ2&pLm9xW"),
        # a query string's next parameter, an HTML entity or "&&" ends the value
        ("https://x.io/cb?token=Xk92mQz7Lp4Rt&limit=5", "Xk92mQz7Lp4Rt"),
        ("https://x.io/cb?token=Xk92mQz7Lp4Rt&amp;limit=5", "Xk92mQz7Lp4Rt"),
        ("grant_type=client_credentials&client_secret=Xk92mQz7Lp4Rt&scope=read", "Xk92mQz7Lp4Rt"),
        ("TOKEN=Xk92mQz7Lp4Rt&& echo ok", "Xk92mQz7Lp4Rt"),
    ],
)
def test_ampersand_inside_an_unquoted_value_belongs_to_it(
    detector: SecretsDetector, text: str, value: str
) -> None:
    assert _found(detector, text) == [("generic_secret", value)]


# -- YAML block lists in text --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api_keys", "tokens", "passwords", "secrets", "DB_PASSWORDS"])
def test_yaml_list_under_a_secret_name_in_text(detector: SecretsDetector, name: str) -> None:
    text = f"service: x\n{name}:\n  - Zx8Qm2Lr7Tp4Wn9K\n  - 'Hy7!kPq2Lm9s'  # old\nretries: 3\n"
    assert _found(detector, text) == [
        ("generic_secret", "Zx8Qm2Lr7Tp4Wn9K"),
        ("generic_secret", "Hy7!kPq2Lm9s"),
    ]


def test_yaml_list_of_keys_with_a_provider_key_and_crlf(detector: SecretsDetector) -> None:
    stripe = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    text = f"api_keys:\r\n- {stripe}\r\n- Zx8Qm2Lr7Tp4Wn9K\r\n"
    assert _found(detector, text) == [
        ("stripe_key", stripe),
        ("generic_secret", "Zx8Qm2Lr7Tp4Wn9K"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "tokens:\n  - name: github\n    value: ${GH_TOKEN}\n",
        "services:\n  web:\n    secrets:\n      - stripe_live_v2\n      - tls_cert_2025\n",
        "passwords:\n- Use a password manager\n- Rotate them yearly\n",
        "keys:\n  - id\n  - created_at\n",
        'api_keys:\n  - ${STRIPE_KEY}\n  - "{{ vault_key }}"\n  - *default_key\n',
        "tokens:\n  - 3f2b8c1e-9a4d-4c1b-a0e2-7d5f6b8c9e01\n",
        "primary_keys:\n  - user_id\n  - tenant_id\n",
        "token_types:\n  - Bearer2026x\n",
        "cache keys:\n  - 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
    ],
)
def test_yaml_lists_of_names_references_or_ids_are_clean(
    detector: SecretsDetector, text: str
) -> None:
    assert detector.detect(text) == []


# -- prose: a name with a variant, and what only mentions a password -----------------------------


@pytest.mark.parametrize(
    "text",
    [
        "the DB_PASSWORD_PROD value is Xk92mQz7Lp4Rt",
        "the password is Xk92mQz7Lp4Rt",
        "the db_password_staging is Xk92mQz7Lp4Rt, rotate it",
        "use API_TOKEN_V2 Xk92mQz7Lp4Rt for the new client",
    ],
)
def test_secret_after_a_variant_of_a_secret_name_in_prose(
    detector: SecretsDetector, text: str
) -> None:
    assert _found(detector, text) == [("generic_secret", "Xk92mQz7Lp4Rt")]


@pytest.mark.parametrize(
    "text",
    [
        "the password is stored in the vault",
        "the password is required",
        "the token_type is bearer and the key_policy v2Xk92mQz7",
        "tokens_used 4096 for gpt4o-2024-08-06 today",
        'PRIVATE_KEY_USAGE_PERIOD = ObjectIdentifier("2.5.29.16")',
        "the token.actions.githubusercontent.com audience sts9x2Amazon",
        "aws secretsmanager get-secret-value --secret-id prod/db2Xk92mQ",
        "the token is owned by jane.roe2@example.org",
        "the token from @octocat2019x",
        "ssh key for deploy01@ci-runner7:~/keys",
        'url = f"redis://agent:{PASSWORD}@127.0.0.1:{port}/0"',
    ],
)
def test_prose_naming_a_password_without_one_is_clean(detector: SecretsDetector, text: str) -> None:
    assert detector.detect(text) == []


# -- key ids and digests after "key" -------------------------------------------------------------

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    "text",
    [
        "gpg --keyserver keyserver.ubuntu.com --recv-keys 0x3B4FE6ACC0B21F32",
        "gpg --keyserver hkps://keys.openpgp.org --recv-keys 0x3B4FE6ACC0B21F32",
        "apt-key adv --keyserver hkp://keyserver.ubuntu.com:80 --recv-keys 3B4FE6ACC0B21F32",
        "the GPG key 0x3B4FE6ACC0B21F32 signs the releases",
        f"cache key {SHA256}",
        f"Cache key: {SHA256}",
        f"the key fingerprint is {SHA256}",
        f"idempotency key {SHA256}",
        f"the partition key is {SHA256[:32]}",
    ],
)
def test_key_ids_and_digests_after_key_are_clean(detector: SecretsDetector, text: str) -> None:
    assert detector.detect(text) == []


@pytest.mark.parametrize(
    "text",
    [
        f'secret_key = "{SHA256}"',
        f"SECRET_KEY={SHA256}",
        f"the encryption key is {SHA256}",
        f"the key is {SHA256}",
        f"Primary key: {SHA256}",  # an Azure account's primary key is one
    ],
)
def test_hex_that_is_a_secret_key_is_still_a_secret(detector: SecretsDetector, text: str) -> None:
    assert _found(detector, text) == [("generic_secret", SHA256)]


# -- the write is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "password=$ecr3tP@ss!",
        "API_SECRET=ab&Xk92mQz7Lp4Rt",
        "api_keys:\n  - Zx8Qm2Lr7Tp4Wn9K\n",
        "the DB_PASSWORD_PROD value is Xk92mQz7Lp4Rt",
    ],
)
async def test_a_write_with_such_a_secret_is_blocked(mock_config: MemoryConfig, text: str) -> None:
    async with AsyncUnifiedMemory("agent-1", mock_config) as mem:
        with pytest.raises(SecretsDetectedError) as info:
            await mem.stage_pattern({"content": "setup notes", "context": text}, "optimization")
        assert info.value.kinds == {"generic_secret": 1}
        assert await mem.get_staged_patterns() == []


@pytest.mark.parametrize(
    "text",
    [
        "password=%DB_PASS_PROD%",
        'set "DB_PASSWORD=%DB_PASSWORD%"',
        "secret: %AB_CLIENT_SECRET%",
        "token=(%FEED_TOKEN%)",
    ],
)
def test_a_windows_reference_whose_name_starts_like_an_escape_is_no_secret(text: str) -> None:
    """``%DB_PASS_PROD%`` is a Windows environment reference; its ``%DB`` was decoded as a
    URL escape, and the decoded value read as a random secret: the write was blocked."""
    assert SecretsDetector().detect(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "url=postgres%3A%2F%2Fadmin%3AXk92mQz7Lp4Rt%40db.internal%2Fapp",
        "password=%DB_Xk92mQz7Lp4Rt",  # no closing %: an escape, then a secret
    ],
)
def test_url_escapes_next_to_names_are_still_decoded(text: str) -> None:
    assert SecretsDetector().detect(text) != []
