"""Labelled corpus for the secrets detector: true positives and tricky negatives.

Every credential here is synthetic: drawn from a seeded generator and assembled from
fragments at import time, so this file holds no literal token that a repository
secret scanner (for example push protection) would flag. Loaded by
tests/test_security_secrets.py through importlib (tests/data is not a package).
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from dataclasses import dataclass

_rng = random.Random(0x5EC2E7)

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
BASE32 = string.ascii_uppercase + "234567"
BASE64 = ALNUM + "+/"
HEX = string.hexdigits[:16]


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def digits(n: int) -> str:
    return rand(n, string.digits)


def b64url(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(header: dict[str, str], claims: dict[str, object]) -> str:
    return f"{b64url(header)}.{b64url(claims)}.{rand(43, URLSAFE)}"


def pem(label: str, lines: int = 6, headers: str = "") -> str:
    body = "\n".join(rand(64, BASE64) for _ in range(lines))
    return f"-----BEGIN {label}-----\n{headers}{body}\n{rand(20, BASE64)}==\n-----END {label}-----"


@dataclass(frozen=True)
class Positive:
    """``text`` contains exactly one secret, ``secret``, of kind ``kind``."""

    kind: str
    secret: str
    text: str


def _p(kind: str, secret: str, template: str) -> Positive:
    return Positive(kind, secret, template.replace("{s}", secret))


_SK = "sk" + "-"
_GH = "gh"
_XOX = "xo" + "x"
_HOOK = "hooks." + "slack.com/services/"  # the span starts at the host

POSITIVES: list[Positive] = [
    # openai_api_key
    _p("openai_api_key", _SK + "proj-abc123", "API key: {s}..."),  # the documented example
    _p(
        "openai_api_key",
        _SK + "proj-" + rand(20) + "_" + rand(60, URLSAFE) + "A",
        'OPENAI_API_KEY="{s}"',
    ),
    _p(
        "openai_api_key",
        _SK + rand(20) + "T3Blbk" + "FJ" + rand(20),
        'client = OpenAI(api_key="{s}")',
    ),
    _p(
        "openai_api_key",
        _SK + "svcacct-" + rand(40, URLSAFE) + "Q",
        "openai:\n  key: {s}\n  model: gpt-4o",
    ),
    # anthropic_api_key
    _p(
        "anthropic_api_key",
        _SK + "ant-api03-" + rand(93, URLSAFE) + "AA",
        "export ANTHROPIC_API_KEY={s}",
    ),
    _p(
        "anthropic_api_key",
        _SK + "ant-" + rand(40, URLSAFE) + "x",
        '{"provider": "anthropic", "credential": "{s}"}',
    ),
    # aws_access_key_id
    _p(
        "aws_access_key_id",
        "AK" + "IA" + rand(16, BASE32),
        "[default]\naws_access_key_id = {s}\nregion = eu-west-1",
    ),
    _p(
        "aws_access_key_id",
        "AS" + "IA" + rand(16, BASE32),
        "2024-05-01 12:00:01 assumed role, temporary key {s} expires in 1h",
    ),
    # aws_secret_access_key
    _p("aws_secret_access_key", rand(40, BASE64), "aws_secret_access_key = {s}"),
    _p(
        "aws_secret_access_key",
        rand(40, BASE64),
        '{"Credentials": {"SecretAccessKey": "{s}", "Expiration": "2024-05-01"}}',
    ),
    _p("aws_secret_access_key", rand(40, BASE64), "export AWS_SECRET_ACCESS_KEY='{s}'"),
    # github_token
    _p("github_token", _GH + "p_" + rand(36), "export GITHUB_TOKEN={s}"),
    _p("github_token", _GH + "o_" + rand(36), '{"access_token": "{s}", "scope": "repo"}'),
    _p(
        "github_token",
        _GH + "s_" + rand(36),
        "git clone https://x-access-token:{s}@github.com/acme/app.git",
    ),
    _p("github_token", _GH + "u_" + rand(36), "user-to-server token {s} was issued"),
    _p("github_token", _GH + "r_" + rand(36), "refresh_token: {s}"),
    _p(
        "github_token",
        "github" + "_pat_" + rand(22) + "_" + rand(59),
        "Use {s} in the Authorization header",
    ),
    # gitlab_token
    _p(
        "gitlab_token",
        "gl" + "pat-" + rand(20, URLSAFE),
        'curl --header "PRIVATE-TOKEN: {s}" https://gitlab.example.com/api/v4/projects',
    ),
    _p(
        "gitlab_token",
        "gl" + "pat-" + rand(20, ALNUM),
        "git remote add origin https://oauth2:{s}@gitlab.com/acme/app.git",
    ),
    # slack_token
    _p(
        "slack_token",
        _XOX + "b-" + digits(12) + "-" + digits(13) + "-" + rand(24),
        "SLACK_BOT_TOKEN={s}",
    ),
    _p(
        "slack_token",
        _XOX + "p-" + digits(11) + "-" + digits(12) + "-" + digits(13) + "-" + rand(32, HEX),
        'slack = WebClient(token="{s}")',
    ),
    _p(
        "slack_token",
        _XOX + "a-2-" + digits(12) + "-" + rand(40, ALNUM),
        "legacy workspace app token {s}",
    ),
    _p("slack_token", _XOX + "r-" + digits(12) + "-" + rand(32), "refresh with {s} tomorrow"),
    _p(
        "slack_token",
        _XOX + "s-" + digits(10) + "-" + digits(12) + "-" + rand(30),
        "session cookie d={s}",
    ),
    # slack_webhook
    _p(
        "slack_webhook",
        _HOOK + "T" + rand(8, BASE32) + "/B" + rand(10, BASE32) + "/" + rand(24),
        'curl -X POST -d \'{"text":"deploy done"}\' https://{s}',
    ),
    _p(
        "slack_webhook",
        _HOOK + "T" + rand(10, BASE32) + "/B" + rand(10, BASE32) + "/" + rand(24),
        "alerts:\n  slack_url: https://{s}\n  channel: '#ops'",
    ),
    # stripe_key
    _p("stripe_key", "sk" + "_live_" + rand(24), "stripe.api_key = '{s}'"),
    _p("stripe_key", "rk" + "_live_" + rand(99), "STRIPE_RESTRICTED={s}"),
    _p("stripe_key", "sk" + "_test_" + rand(24), "Test mode key: {s}"),
    _p("stripe_key", "wh" + "sec_" + rand(32), "endpoint secret is {s}, verify signatures"),
    # google_api_key
    _p(
        "google_api_key",
        "AI" + "za" + rand(33, ALNUM) + "-x",
        "https://maps.googleapis.com/maps/api/geocode/json?address=Paris&key={s}",
    ),
    _p(
        "google_api_key",
        "AI" + "za" + "Sy" + rand(33, ALNUM),
        "const firebaseConfig = { apiKey: '{s}', projectId: 'demo' };",
    ),
    # private_key
    _p("private_key", pem("RSA " + "PRIVATE KEY"), "deploy key:\n{s}\n"),
    _p("private_key", pem("OPENSSH " + "PRIVATE KEY", lines=8), "cat ~/.ssh/id_ed25519\n{s}"),
    _p("private_key", pem("EC " + "PRIVATE KEY", lines=3), '{"key": "{s}"}'),
    _p("private_key", pem("PRIVATE KEY", lines=10), "{s}"),
    _p(
        "private_key",
        pem(
            "RSA " + "PRIVATE KEY",
            headers="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
            + rand(32, HEX).upper()
            + "\n\n",
        ),
        "encrypted key:\n{s}",
    ),
    _p("private_key", pem("PGP " + "PRIVATE KEY BLOCK", headers="Version: GnuPG v2\n\n"), "{s}\n"),
    # jwt
    _p(
        "jwt",
        jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "42", "iat": 1714557600}),
        "Authorization: Bearer {s}",
    ),
    _p(
        "jwt",
        jwt({"alg": "RS256", "kid": rand(8)}, {"sub": "agent-7", "scope": "memory:rw"}),
        "Set-Cookie: session={s}; HttpOnly; Secure",
    ),
    _p(
        "jwt",
        jwt({"typ": "JWT", "alg": "ES256"}, {"iss": "https://auth.example.com"}),
        '{"id_token": "{s}"}',
    ),
    # connection_string_password
    _p(
        "connection_string_password",
        "Xk9#mQ2v" + rand(6),
        "DATABASE_URL=postgresql://app:{s}@db.internal:5432/prod",
    ),
    _p("connection_string_password", "s3cr3t" + rand(10), "redis://:{s}@cache.internal:6379/0"),
    _p(
        "connection_string_password",
        "p%40ss" + rand(8),
        "mongodb+srv://svc_reader:{s}@cluster0.ab1cd.mongodb.net/app?retryWrites=true",
    ),
    _p("connection_string_password", "hunter2", "mysql://deploy:{s}@localhost/shop"),
    _p("connection_string_password", rand(12), "broker: amqp://worker:{s}@mq.internal:5672/%2f"),
    # generic_secret
    _p("generic_secret", "Tr0ub4dor&3", 'password = "{s}"'),
    _p("generic_secret", rand(32, HEX), "api_key: {s}"),
    _p("generic_secret", rand(24), "https://api.example.com/v1/items?token={s}&page=2"),
    _p("generic_secret", rand(16) + "!", "jwt_secret: '{s}'"),
    _p("generic_secret", rand(40, URLSAFE), '{"client_id": "web", "client_secret": "{s}"}'),
    _p("generic_secret", rand(30), "AUTH_TOKEN={s}"),
    _p("generic_secret", rand(20, BASE32), "access_key = '{s}'"),
    _p("generic_secret", "Summer2024!" + digits(2), "DB_PASSWORD={s}"),
    _p("generic_secret", rand(28), 'const config = { apiKey: "{s}" };'),
    _p("generic_secret", rand(48, URLSAFE), "Authorization: Bearer {s}"),
    _p("generic_secret", "N0t-" + rand(10), "mysqldump --password={s} shop > dump.sql"),
    _p("generic_secret", str(uuid.UUID(int=_rng.getrandbits(128))), "HEROKU_API_KEY: {s}"),
]

_IMAGE = base64.b64encode(_rng.randbytes(900)).decode()

NEGATIVES: list[str] = [
    # prose and code that only mention credentials
    "Rotate the API token every 90 days and never share your password.",
    "password = input('Password: ')",
    "token = get_token()",
    "The secret to good code is small functions.",
    "password: must be at least 12 characters long",
    "Use the Bearer authentication scheme for all requests.",
    "max_tokens: 4096",
    "token_type: bearer",
    "def login(username: str, password: str) -> Token:",
    "api_key: str | None = None",
    "token: Optional[str] = None",
    "token = tokenizer.encode(text)",
    "password=None",
    "`SECRET_KEY` must be set; see settings.py",
    "secret_name: prod/db/credentials",
    'password_hash = "$2b$12$' + rand(53, ALNUM + "./") + '"',
    # identifiers and digests
    f"request_id={uuid.UUID(int=_rng.getrandbits(128))}",
    f"commit {rand(40, HEX)} fixed the flaky test",
    f"sha256:{rand(64, HEX)}",
    f"sha1 {rand(40, HEX)}  README.md",
    f'<img src="data:image/png;base64,{_IMAGE}">',
    "-----BEGIN CERTIFICATE-----\n" + rand(64, BASE64) + "\n-----END CERTIFICATE-----",
    "Install scikit-learn (import sklearn; sometimes written sk-learn) for task-sk-1.",
    "pk" + "_live_" + rand(24) + " is the publishable key; it is safe in the browser",
    "eyJub3QiOiJqd3QifQ.eyJhIjoxfQ.c2lnbmF0dXJlc2lnbmF0dXJl",  # header has no "alg"
    # placeholders
    'OPENAI_API_KEY="' + _SK + '..."',
    'curl -H "Authorization: Bearer <API_KEY>" https://api.example.com',
    'api_key = "YOUR_API_KEY_HERE"',
    "token: xxxxxxxx",
    "Bearer YOUR_TOKEN_HERE",
    "access_key: <your-access-key>",
    "stripe.api_key = 'sk" + "_live_...'",
    "export GITHUB_TOKEN=" + _GH + "p_" + "x" * 36,
    "The AWS docs use AK" + "IAIOSFODNN7EXAMPLE as the example key id.",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
    "https://" + _HOOK + "T00000000/B00000000/" + "X" * 24,
    "-----BEGIN RSA " + "PRIVATE KEY-----\n...\n-----END RSA " + "PRIVATE KEY-----",
    "Key files start with -----BEGIN OPENSSH " + "PRIVATE KEY----- and must be chmod 600.",
    # documented choice: well-known default passwords are not reported
    "password: changeme",
    'password = "password123"',
    # references to secrets
    "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "export OPENAI_API_KEY=$OPENAI_API_KEY",
    'api_key = os.environ["OPENAI_API_KEY"]',
    'password = os.getenv("DB_PASSWORD")',
    'token = request.headers.get("X-Token")',
    "api_key = settings.API_KEY",
    "client_secret: '{{ vault_client_secret }}'",
    'headers = {"Authorization": f"Bearer {token}"}',
    "db_password: vault:secret/data/prod/db#password",
    # connection strings without a real password
    "postgres://user@localhost:5432/db",
    "postgresql://user:password@localhost/db",
    "mysql://app:pass@db/app",
    "postgres://app:<password>@db/app",
    "postgres://app:${DB_PASSWORD}@db/app",
    "redis://:****@cache:6379",
    "postgres://postgres:postgres@localhost:5432/test",
    "https://example.com:8443/path?q=1#frag",
    "ssh://git@github.com/acme/app.git and git@github.com:acme/app.git",
]
