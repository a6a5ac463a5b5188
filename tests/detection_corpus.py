"""A seeded generator of labelled detection cases: secrets and PII in the containers agents write.

Independent of the detector's regexes: every value is drawn from its *format* (the provider's
token layout, Luhn-valid card numbers, mod-97 IBANs, SSN ranges ...) and rendered into a
container the way that container escapes it: plain prose, a chat message, a log line, a
``.env`` file, a shell command, YAML, JSON, a JSON document escaped inside a JSON string,
Python and JavaScript source, CSV and TSV rows, a URL query string, a Markdown table and SQL.
Each :class:`Case` knows where the rendered value is (``span``), so a scan can be scored:

* a secret positive is *detected* when a finding overlaps its span;
* a PII positive is *leaked* when, after scrubbing, its rendered value (or any four-digit or
  longer fragment of it, for the numeric kinds) is still in the text;
* a negative (a hash, UUID, placeholder, public key, version, order number failing Luhn,
  ZIP+4, date, price, or a sentence that only mentions a password) is *flagged* when the
  detector finds anything, and *falsely scrubbed* when scrubbing changes the text.

Known shapes left out on purpose (blind spots, not measured): a generic secret, an MRN or a
date of birth identified only by a table's header row (the value sits rows away from its
name); a password whose name says nothing (``DB_PASS``, ``pw``).

Every credential is synthetic and assembled from fragments at run time, so this file holds
no literal token a repository secret scanner would flag.
"""

from __future__ import annotations

import base64
import json
import random
import string
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
BASE32 = string.ascii_uppercase + "234567"
BASE64 = ALNUM + "+/"
HEX = "0123456789abcdef"
PASSWORD_CHARS = ALNUM + "!*+-_.~^"

CONTAINERS: tuple[str, ...] = (
    "prose",
    "chat",
    "log",
    "env",
    "shell",
    "yaml",
    "json",
    "json_escaped",
    "python",
    "js",
    "csv",
    "tsv",
    "url",
    "markdown",
    "sql",
)

SECRET_KINDS: tuple[str, ...] = (
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
)

PII_KINDS: tuple[str, ...] = (
    "email",
    "ssn",
    "phone",
    "credit_card",
    "ip",
    "iban",
    "address",
    "mrn",
    "dob",
)

NEGATIVE_SHAPES: tuple[str, ...] = (
    "sha1",
    "sha256",
    "uuid",
    "placeholder",
    "public_key",
    "version",
    "order_number",
    "zip4",
    "date",
    "price",
    "mention",
    "object_key",
    "identifier",
    "data_uri",
    "epoch_ms",
    "build",
)


@dataclass(frozen=True, slots=True)
class Case:
    """One text. ``family``: ``secret``, ``pii`` or ``negative``; ``kind``: the secret or PII
    kind, or the negative's shape; ``span``: where the rendered value is in ``text``."""

    family: str
    kind: str
    container: str
    text: str
    span: tuple[int, int]

    @property
    def value(self) -> str:
        return self.text[self.span[0] : self.span[1]]


# -- values --------------------------------------------------------------------------------------


class _Values:
    """Value generators drawn from formats, on one seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def rand(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def digits(self, n: int) -> str:
        return self.rand(n, string.digits)

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    # secrets ------------------------------------------------------------------------------

    def secret(self, kind: str) -> tuple[str, str]:
        """``(value, secret)``: what is written, and the part that is the secret."""
        sk, gh, xox = "sk" + "-", "gh", "xo" + "x"
        r = self.rand
        if kind == "openai_api_key":
            value = self.pick(
                [
                    sk + "proj-" + r(self.rng.randint(48, 120), URLSAFE),
                    sk + "svcacct-" + r(self.rng.randint(48, 100), URLSAFE),
                    sk + r(20) + "T3Blbk" + "FJ" + r(20),
                ]
            )
        elif kind == "anthropic_api_key":
            value = sk + "ant-api03-" + r(93, URLSAFE) + "AA"
        elif kind == "aws_access_key_id":
            value = self.pick(["AK", "AS"]) + "IA" + r(16, BASE32)
        elif kind == "aws_secret_access_key":
            value = r(40, BASE64)
        elif kind == "github_token":
            value = self.pick(
                [gh + c + "_" + r(36) for c in "pousr"] + ["github" + "_pat_" + r(22) + "_" + r(59)]
            )
        elif kind == "gitlab_token":
            value = "gl" + "pat-" + r(20, URLSAFE)
        elif kind == "slack_token":
            value = (
                xox
                + self.pick(["b", "p"])
                + "-"
                + self.digits(12)
                + "-"
                + self.digits(13)
                + "-"
                + r(24)
            )
        elif kind == "slack_webhook":
            value = (
                "https://hooks." + "slack.com/services/T" + r(8, BASE32) + "/B" + r(10, BASE32)
            ) + ("/" + r(24))
        elif kind == "stripe_key":
            value = self.pick(["sk", "rk"]) + self.pick(["_live_", "_test_"]) + r(24) + r(8)
        elif kind == "google_api_key":
            value = "AI" + "za" + r(35, URLSAFE)
        elif kind == "private_key":
            value = self.pem()
        elif kind == "jwt":
            value = self.jwt()
        elif kind == "connection_string_password":
            password = r(self.rng.randint(12, 24), ALNUM + "-_.~!*")
            scheme = self.pick(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp"])
            host = self.pick(["db.internal", "10.0.3.7", "cluster0.ab1cd.mongodb.net", "mq"])
            user = self.pick(["app", "svc_billing", "admin", "root"])
            return f"{scheme}://{user}:{password}@{host}:5432/main", password
        elif kind == "generic_secret":
            value = self.pick(
                [
                    r(40, HEX),
                    r(32, HEX),
                    r(self.rng.randint(20, 40)),
                    self.password(),
                    r(43, URLSAFE),
                ]
            )
        else:  # pragma: no cover - a kind without a generator
            raise ValueError(kind)
        return value, value

    def password(self) -> str:
        while True:
            value = self.rand(self.rng.randint(12, 20), PASSWORD_CHARS)
            if any(c.isdigit() for c in value) and value[0].isalnum() and value[-1].isalnum():
                return value

    def pem(self) -> str:
        label = self.pick(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "]) + "PRIVATE KEY"
        lines = [self.rand(64, BASE64) for _ in range(self.rng.randint(4, 12))]
        lines.append(self.rand(self.rng.randint(8, 60), BASE64) + "==")
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"

    def jwt(self) -> str:
        def b64(obj: object) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        header = {"alg": self.pick(["HS256", "RS256", "ES256"]), "typ": "JWT"}
        claims = {"sub": self.digits(8), "iat": int(self.digits(9)) + 1_600_000_000}
        return f"{b64(header)}.{b64(claims)}.{self.rand(43, URLSAFE)}"

    # PII ------------------------------------------------------------------------------------

    def pii(self, kind: str) -> str:
        r, rng = self.rand, self.rng
        if kind == "email":
            local = self.pick(["john", "a.smith", "maria_k", "dev+alerts", "j.doe"]) + r(
                3, "0123456789"
            )
            return local + "@" + self.pick(["example.com", "mail.co.uk", "corp.io", "gmail.com"])
        if kind == "ssn":
            while True:
                area, group, serial = rng.randint(1, 899), rng.randint(1, 99), rng.randint(1, 9999)
                if area != 666:
                    sep = self.pick(["-", "-", " "])
                    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"
        if kind == "phone":
            a, b, c = rng.randint(201, 989), rng.randint(200, 999), self.digits(4)
            return self.pick(
                [
                    f"({a}) {b}-{c}",
                    f"{a}-{b}-{c}",
                    f"{a}.{b}.{c}",
                    f"+1 {a}-{b}-{c}",
                    f"+44 7{self.digits(3)} {self.digits(6)}",
                ]
            )
        if kind == "credit_card":
            return self.card()
        if kind == "ip":
            if rng.random() < 0.2:
                return ":".join(f"{rng.randint(0x1000, 0xFFFF):x}" for _ in range(8))
            return ".".join(str(rng.randint(10, 254)) for _ in range(4))
        if kind == "iban":
            return self.iban()
        if kind == "address":
            street = self.pick(["Maple", "Oak", "Harbor View", "Lincoln", "Elmwood", "Cedar"])
            suffix = self.pick(["Street", "St", "Avenue", "Ave", "Road", "Blvd", "Lane", "Drive"])
            return f"{rng.randint(10, 9899)} {street} {suffix}"
        if kind == "mrn":
            return self.pick(["", "MRN", "A"]) + self.digits(rng.randint(6, 9))
        if kind == "dob":
            y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
            return self.pick([f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}"])
        raise ValueError(kind)  # pragma: no cover

    def card(self) -> str:
        prefix, length = self.pick([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15)])
        body = prefix + self.digits(length - len(prefix) - 1)
        number = body + _luhn_digit(body)
        style = self.rng.random()
        if length == 15:
            return f"{number[:4]} {number[4:10]} {number[10:]}" if style < 0.5 else number
        if style < 0.5:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        if style < 0.75:
            return "-".join(number[i : i + 4] for i in range(0, 16, 4))
        return number

    def iban(self) -> str:
        country, bban = self.pick(
            [
                ("DE", self.digits(18)),
                ("GB", self.rand(4, string.ascii_uppercase) + self.digits(14)),
                ("FR", self.digits(23)),
                ("NL", self.rand(4, string.ascii_uppercase) + self.digits(10)),
            ]
        )
        rearranged = bban + country + "00"
        check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
        compact = f"{country}{check:02d}{bban}"
        if self.rng.random() < 0.5:
            return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        return compact

    # negatives ------------------------------------------------------------------------------

    def negative(self, shape: str) -> str:
        r, rng = self.rand, self.rng
        if shape == "sha1":
            return r(40, HEX)
        if shape == "sha256":
            return r(64, HEX)
        if shape == "uuid":
            h = r(32, HEX)
            return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        if shape == "placeholder":
            return self.pick(
                [
                    "<your-key>",
                    "<your-api-key>",
                    "xxxx",
                    "xxxxxxxxxxxxxxxxxxxx",
                    "changeme",
                    "${API_KEY}",
                    "YOUR_API_KEY_HERE",
                    "sk" + "-...",
                    "********",
                    "<password>",
                    "REDACTED",
                    "{{ secrets.TOKEN }}",
                ]
            )
        if shape == "public_key":
            return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + r(43, BASE64) + " deploy@ci"
        if shape == "version":
            return self.pick(
                [
                    f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
                    f"v{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
                    f"-rc.{rng.randint(1, 5)}",
                ]
            )
        if shape == "order_number":
            while True:
                number = "4" + self.digits(15)
                if _luhn_digit(number[:-1]) != number[-1]:
                    break
            if rng.random() < 0.5:
                return " ".join(number[i : i + 4] for i in range(0, 16, 4))
            return number
        if shape == "zip4":
            return f"{rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}"
        if shape == "date":
            y, m, d = rng.randint(2015, 2027), rng.randint(1, 12), rng.randint(1, 28)
            return self.pick([f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}"])
        if shape == "price":
            return self.pick(
                [
                    f"${rng.randint(1, 9)},{self.digits(3)}.{self.digits(2)}",
                    f"{self.digits(3)}.99 USD",
                ]
            )
        if shape == "object_key":  # a storage key or cache key, not a credential
            return self.pick(
                [
                    f"uploads/2026/{rng.randint(10, 12)}/invoice-{self.digits(6)}.pdf",
                    f"user:{self.digits(6)}:profile:v{rng.randint(2, 9)}",
                    f"tenants/t-{self.digits(4)}/exports/report_{self.digits(8)}.csv.gz",
                ]
            )
        if shape == "identifier":  # what follows "token" and "key" words that is no secret
            return self.pick(
                [
                    "client_credentials",
                    "refreshTokenExpiresInSeconds",
                    "Bearer",
                    "AccessKeyRotationPolicy",
                    f"kms-key-{self.digits(2)}-primary",
                ]
            )
        if shape == "data_uri":
            return "data:image/png;base64,iVBORw0KGgo" + r(60, BASE64)
        if shape == "epoch_ms":
            return str(rng.randint(1_600_000_000_000, 1_800_000_000_000))
        if shape == "build":
            return self.pick(
                [
                    f"{rng.randint(2024, 2026)}.{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
                    f".{self.digits(4)}",
                    f"build-{self.digits(5)}-{r(7, HEX)}",
                ]
            )
        if shape == "mention":
            return self.pick(
                [
                    "rotated yesterday by ops",
                    "stored in the vault",
                    "expired, please refresh it",
                    "required for production",
                    "see the runbook",
                ]
            )
        raise ValueError(shape)  # pragma: no cover


def _luhn_digit(body: str) -> str:
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


# -- names and phrases ---------------------------------------------------------------------------

#: Names a secret of each kind goes by in assignments (the value alone identifies the
#: provider kinds; for these the name is incidental).
_SECRET_NAMES: dict[str, tuple[str, ...]] = {
    "openai_api_key": ("OPENAI_API_KEY", "openai_key", "apiKey", "value"),
    "anthropic_api_key": ("ANTHROPIC_API_KEY", "anthropic", "key"),
    "aws_access_key_id": ("aws_access_key_id", "AWS_ACCESS_KEY_ID", "AccessKeyId"),
    "aws_secret_access_key": (
        "aws_secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        "SecretAccessKey",
        "secretAccessKey",
        "aws-secret-access-key",
    ),
    "github_token": ("GITHUB_TOKEN", "gh_token", "token", "GH_PAT"),
    "gitlab_token": ("GITLAB_TOKEN", "private_token", "CI_JOB_TOKEN"),
    "slack_token": ("SLACK_BOT_TOKEN", "slack_token", "botToken"),
    "slack_webhook": ("SLACK_WEBHOOK_URL", "webhook", "slack_url"),
    "stripe_key": ("STRIPE_SECRET_KEY", "stripe_key", "apiKey"),
    "google_api_key": ("GOOGLE_API_KEY", "maps_key", "apiKey"),
    "private_key": ("private_key", "PRIVATE_KEY", "privateKey", "signing_key"),
    "jwt": ("id_token", "jwt", "session"),
    "connection_string_password": ("DATABASE_URL", "dsn", "broker_url", "connectionString"),
    "generic_secret": (
        "password",
        "db_password",
        "DB_PASSWORD",
        "dbPassword",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "ClientSecret",
        "CLIENT_SECRET",
        "api_key",
        "apiKey",
        "APIKEY",
        "api-key",
        "x_api_key",
        "X-Api-Key",
        "access_token",
        "auth_token",
        "AUTH_TOKEN",
        "refresh_token",
        "secret_key",
        "private_token",
        "credentials",
        "app_secret",
    ),
}

#: How a secret of each kind is introduced in prose; ``{v}`` is the value.
_SECRET_PHRASES: dict[str, tuple[str, ...]] = {
    "generic_secret": (
        "the database password for staging: {v}",
        "retrying with client secret {v}",
        "my password is {v} if you need to log in",
        "use the passphrase {v} to unlock the backup",
        "I set the API token to {v} yesterday",
        "auth failed for token {v}, retrying",
        "here's the secret for the webhook: {v}",
        "new api key {v} issued for the billing service",
    ),
    "aws_secret_access_key": (
        "the aws_secret_access_key is {v}",
        "AWS secret access key: {v}",
        "secret key for the deploy user is {v}",
    ),
}
_GENERIC_PHRASES: tuple[str, ...] = (
    "here is the key you asked for: {v}",
    "I used {v} and it worked",
    "the credential {v} was rotated",
    "can you check {v}? it stopped working",
)

_PII_NAMES: dict[str, tuple[str, ...]] = {
    "email": ("email", "contact", "user_email"),
    "ssn": ("ssn", "SSN", "social_security_number"),
    "phone": ("phone", "mobile", "contact_number"),
    "credit_card": ("card_number", "pan", "cc"),
    "ip": ("client_ip", "remote_addr", "ip"),
    "iban": ("iban", "account", "payout_iban"),
    "address": ("address", "street", "shipping_address"),
    "mrn": ("mrn", "MRN", "patient_id"),
    "dob": ("dob", "DOB", "date_of_birth", "birth_date"),
}
_PII_PHRASES: dict[str, tuple[str, ...]] = {
    "email": ("User {v} reported an issue", "please reply to {v} by Friday"),
    "ssn": ("her SSN is {v}", "SSN {v} was on the form", "social security number: {v}"),
    "phone": ("call me at {v} after five", "customer phone {v} unreachable"),
    "credit_card": ("charge it to {v}, exp 11/29", "card {v} was declined"),
    "ip": ("login from {v} blocked", "the request came from {v}"),
    "iban": ("wire it to {v} please", "refund to IBAN {v}"),
    "address": ("ship it to {v} tomorrow", "she lives at {v} now"),
    "mrn": ("patient MRN: {v} admitted", "MRN {v} transferred to ward 4"),
    "dob": ("DOB: {v}, allergic to penicillin", "date of birth {v} on file"),
}
#: Kinds that are only recognised next to their label: in tables they are written as
#: name/value rows (a header-only label is a blind spot, see the module docstring).
_LABELLED = frozenset({"mrn", "dob", "generic_secret", "aws_secret_access_key"})

_NEGATIVE_NAMES: dict[str, tuple[str, ...]] = {
    "sha1": ("commit", "sha", "etag"),
    "sha256": ("checksum", "sha256", "digest"),
    "uuid": ("request_id", "trace_id", "session_id"),
    "placeholder": ("api_key", "password", "client_secret", "APIKEY", "token", "x-api-key"),
    "public_key": ("public_key", "ssh_public_key", "authorized_key"),
    "version": ("version", "release", "image_tag"),
    "order_number": ("order_id", "order_number", "reference"),
    "zip4": ("zip", "postal_code", "zip_code"),
    "date": ("created", "updated_at", "due_date"),
    "price": ("price", "total", "amount"),
    "mention": ("note", "comment", "status"),
    "object_key": ("key", "s3_key", "cache_key", "object_key"),
    "identifier": ("grant_type", "token_field", "key_policy", "token_type"),
    "data_uri": ("avatar", "logo", "icon"),
    "epoch_ms": ("ts", "created_ms", "token_issued_at"),
    "build": ("build", "build_id", "key_version"),
}
_NEGATIVE_PHRASES: dict[str, tuple[str, ...]] = {
    "sha1": ("fixed in commit {v}", "the secret rotation landed in commit {v}"),
    "sha256": ("sha256 of the release tarball: {v}", "the key file checksum is {v}"),
    "uuid": ("request {v} timed out", "the token request {v} failed with 500"),
    "placeholder": (
        "set your api key to {v} in the config",
        "the password field shows {v}",
        "token: {v}",
    ),
    "public_key": ("add this public key to authorized_keys: {v}", "my ssh key is {v}"),
    "version": ("upgraded the client to {v}", "secret-manager version {v} is out"),
    "order_number": ("order {v} shipped", "refund for order number {v} approved"),
    "zip4": ("Springfield, IL {v}", "the zip code is {v}"),
    "date": ("the token expires on {v}", "password last changed {v}"),
    "price": ("the plan costs {v} per year", "total due: {v}"),
    "mention": ("the password was {v}", "the api key is {v}", "the token was {v}"),
    "object_key": ("the key is {v}", "cache key {v} evicted", "uploaded the secret report to {v}"),
    "identifier": ("token type: {v}", "the key policy is {v}", "grant type {v} for the token"),
    "data_uri": ("the avatar is {v}", "key visual: {v}"),
    "epoch_ms": ("token issued at {v}", "password changed at {v} ms"),
    "build": ("the key was created by build {v}", "deployed {v} with the new token"),
}

# -- containers ----------------------------------------------------------------------------------

_Render = Callable[["_Renderer", str, str], tuple[str, str, str]]


def _ident(name: str) -> str:
    return name.replace("-", "_")


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _json_str(value: str) -> str:
    return json.dumps(value)[1:-1]


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


class _Renderer:
    """Renders ``(name, value)`` into each container: returns prefix, rendered value, suffix."""

    def __init__(self, values: _Values) -> None:
        self.v = values

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.v.pick(options)

    def timestamp(self) -> str:
        r = self.v.rng
        day = f"2026-0{r.randint(1, 9)}-1{r.randint(0, 9)}"
        clock = f"{r.randint(10, 23)}:{r.randint(10, 59)}:{r.randint(10, 59)}"
        millis = self.v.digits(3)
        return self.pick([f"{day}T{clock}.{millis}Z", f"{day} {clock},{millis}"])

    def phrase_parts(self, phrase: str, value: str) -> tuple[str, str, str]:
        before, _, after = phrase.partition("{v}")
        return before, value, after

    def render(
        self, container: str, name: str, value: str, phrase: str, labelled: bool
    ) -> tuple[str, str, str]:
        multiline = "\n" in value
        if container == "prose":
            before, v, after = self.phrase_parts(phrase, value)
            lead = self.pick(["", "Quick note: ", "FYI, ", "As discussed, "])
            return lead + before, v, after + self.pick([".", "", " - thanks!", ". Thanks."])
        if container == "chat":
            who = self.pick(["alice", "bob", "ops-bot", "user"])
            before, v, after = self.phrase_parts(phrase, value)
            return (
                f"[{self.v.rng.randint(10, 23)}:{self.v.rng.randint(10, 59)}] {who}: {before}",
                v,
                after,
            )
        if container == "log":
            level = self.pick(["INFO", "WARN", "ERROR", "DEBUG"])
            svc = self.pick(["billing", "auth", "worker-3", "api.gateway"])
            if multiline or self.v.rng.random() < 0.5:
                before, v, after = self.phrase_parts(phrase, value)
                head = f"{self.timestamp()} {level} [{svc}] {before}"
                return head, v, after
            return f"{self.timestamp()} {level} [{svc}] config loaded {name}=", value, " ok"
        if container == "env":
            key = _env_name(name)
            if multiline:
                return (
                    f'# service config\n{key}="',
                    value.replace("\n", "\\n"),
                    '"\nLOG_LEVEL=info\n',
                )
            quote = self.pick(["", '"', "'"])
            return (
                f"# service config\nPORT=8080\n{key}={quote}",
                value,
                f"{quote}\nLOG_LEVEL=info\n",
            )
        if container == "shell":
            key = _env_name(name)
            style = self.v.rng.randint(0, 3)
            if style == 0 or multiline:
                return f"export {key}='", value, "'\n./deploy.sh --env staging"
            if style == 1:
                return f'{key}="', value, '" python manage.py migrate'
            if style == 2:
                return (
                    f"./cli login --{name.lower().replace('_', '-')}=",
                    value,
                    " --region eu-west-1",
                )
            return f'curl -s -H "{name}: ', value, '" https://api.internal/v1/items'
        if container == "yaml":
            indent = "  "
            if multiline:
                body = "\n".join(indent * 2 + line for line in value.split("\n"))
                return (
                    f"service:\n{indent}name: billing\n{indent}{name}: |\n",
                    body,
                    "\n  replicas: 2\n",
                )
            quote = self.pick(["", '"', "'"])
            return (
                f"service:\n{indent}name: billing\n{indent}{name}: {quote}",
                value,
                f"{quote}\n{indent}replicas: 2\n",
            )
        if container == "json":
            return (
                '{"service": "billing", "' + name + '": "',
                _json_str(value),
                '", "region": "eu-west-1"}',
            )
        if container == "json_escaped":
            inner_before = '{"' + name + '": "'
            inner_after = '", "enabled": true}'
            outer = json.dumps(inner_before + _json_str(value) + inner_after)
            vr = _json_str(_json_str(value))
            head = json.dumps(inner_before)[:-1]
            tail = json.dumps(inner_after)[1:]
            assert outer == head + vr + tail
            return '{"kind": "config", "payload": ' + head, vr, tail + "}"
        if container == "python":
            style = self.v.rng.randint(0, 3)
            lit = _json_str(value)
            if style == 0:
                return f'import os\n\n{_ident(name)} = "', lit, '"\n'
            if style == 1:
                return f'import os\n\nos.environ["{name}"] = "', lit, '"\n'
            if style == 2:
                return f'client = Client({_ident(name)}="', lit, '", timeout=30)\n'
            return f'CONFIG = {{\n    "{name}": "', lit, '",\n    "debug": False,\n}\n'
        if container == "js":
            style = self.v.rng.randint(0, 2)
            lit = _json_str(value)
            if style == 0:
                return f'const {_ident(name)} = "', lit, '";\n'
            if style == 1:
                return f"const config = {{ {_ident(name)}: '", lit, "', retries: 3 };\n"
            return f'headers["{name}"] = `', lit, "`;\n"
        if container in ("csv", "tsv"):
            sep = "," if container == "csv" else "\t"
            field = _csv_field(value) if container == "csv" else value.replace("\n", "\\n")
            if labelled:
                head = sep.join(["name", "value", "updated"]) + "\n"
                return (
                    f"{head}billing{sep}x{sep}2026-01-02\n{name}{sep}",
                    field,
                    f"{sep}2026-01-03\n",
                )
            head = sep.join(["id", "name", name, "expires", "note"]) + "\n"
            row_id = self.v.digits(5)
            return f"{head}{row_id}{sep}svc-billing{sep}", field, f"{sep}11/29{sep}ok\n"
        if container == "url":
            host = self.pick(["https://api.acme.io/v2/items", "https://app.acme.io/callback"])
            quoted = urllib.parse.quote(value, safe="")
            key = urllib.parse.quote(name, safe="")
            return f"{host}?page=2&{key}=", quoted, "&limit=50"
        if container == "markdown":
            cell = value.replace("\n", "\\n").replace("|", "\\|")
            if labelled:
                return (
                    f"| setting | value |\n|---|---|\n| region | eu-west-1 |\n| {name} | ",
                    cell,
                    " |\n",
                )
            return f"| service | {name} | owner |\n|---|---|---|\n| billing | ", cell, " | ops |\n"
        if container == "sql":
            lit = _sql_str(value)
            style = self.v.rng.randint(0, 1)
            if style == 0 or labelled:
                col = _ident(name)
                if labelled:
                    return f"INSERT INTO settings (name, value) VALUES ('{name}', '", lit, "');"
                return f"UPDATE accounts SET {col} = '", lit, "' WHERE id = 42;"
            return f"INSERT INTO records (id, {_ident(name)}, note) VALUES (42, '", lit, "', 'ok');"
        raise ValueError(container)  # pragma: no cover


# -- the corpus ----------------------------------------------------------------------------------


def generate(seed: int, per_cell: int = 4) -> list[Case]:
    """``per_cell`` positives per secret kind x container and per PII kind x container, and
    ``per_cell`` negatives per shape x container, all drawn from ``seed``."""
    rng = random.Random(seed)
    values = _Values(rng)
    renderer = _Renderer(values)
    return list(_cases(values, renderer, per_cell))


def _cases(values: _Values, renderer: _Renderer, n: int) -> Iterator[Case]:
    for container in CONTAINERS:
        for kind in SECRET_KINDS:
            for _ in range(n):
                written, secret = values.secret(kind)
                name = values.pick(_SECRET_NAMES[kind])
                phrase = values.pick(_SECRET_PHRASES.get(kind, _GENERIC_PHRASES))
                yield _case("secret", kind, container, renderer, name, written, phrase, secret)
        for kind in PII_KINDS:
            for _ in range(n):
                value = values.pii(kind)
                name = values.pick(_PII_NAMES[kind])
                phrase = values.pick(_PII_PHRASES[kind])
                yield _case("pii", kind, container, renderer, name, value, phrase, value)
        for shape in NEGATIVE_SHAPES:
            for _ in range(n):
                value = values.negative(shape)
                name = values.pick(_NEGATIVE_NAMES[shape])
                phrase = values.pick(_NEGATIVE_PHRASES[shape])
                yield _case("negative", shape, container, renderer, name, value, phrase, value)


def _case(
    family: str,
    kind: str,
    container: str,
    renderer: _Renderer,
    name: str,
    written: str,
    phrase: str,
    secret: str,
) -> Case:
    """Render ``written`` (whose secret part is ``secret``) and locate the secret's span."""
    before, rendered, after = renderer.render(container, name, written, phrase, kind in _LABELLED)
    start = len(before)
    end = start + len(rendered)
    if secret != written:  # a part of the value: find its rendering inside the rendered value
        inner = _rendered_part(container, secret, rendered)
        start += inner
        end = start + len(_encode_like(container, secret))
    return Case(family, kind, container, before + rendered + after, (start, end))


def _encode_like(container: str, part: str) -> str:
    if container == "url":
        return urllib.parse.quote(part, safe="")
    if container == "json_escaped":
        return _json_str(_json_str(part))
    if container in ("json", "python", "js"):
        return _json_str(part)
    if container == "sql":
        return _sql_str(part)
    return part


def _rendered_part(container: str, part: str, rendered: str) -> int:
    at = rendered.find(_encode_like(container, part))
    if at < 0:  # pragma: no cover - a renderer that mangles the value
        raise AssertionError(f"{container}: part not found in the rendered value")
    return at


# -- scoring -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Counts for one kind x container cell: ``hits`` of ``total`` (detected positives, leaked
    PII values, flagged or falsely scrubbed negatives)."""

    hits: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else 0.0


@dataclass(slots=True)
class Score:
    """Per ``(kind, container)`` tallies: secret recall, PII leaks, negative flags and scrubs,
    and the cases behind each failure (to print)."""

    recall: dict[tuple[str, str], Tally]
    leaked: dict[tuple[str, str], Tally]
    flagged: dict[tuple[str, str], Tally]
    scrubbed: dict[tuple[str, str], Tally]
    failures: list[tuple[str, Case]]

    @staticmethod
    def overall(cells: dict[tuple[str, str], Tally]) -> Tally:
        return Tally(sum(t.hits for t in cells.values()), sum(t.total for t in cells.values()))

    @staticmethod
    def by(cells: dict[tuple[str, str], Tally], axis: int) -> dict[str, Tally]:
        out: dict[str, Tally] = {}
        for key, t in cells.items():
            agg = out.setdefault(key[axis], Tally())
            agg.hits += t.hits
            agg.total += t.total
        return out


def _fragments(case: Case) -> list[str]:
    """What must not survive a scrub: the value and, for numeric kinds, its 4+ digit runs."""
    value = case.value
    frags = [value]
    if case.kind in ("ssn", "phone", "credit_card", "iban"):
        run = ""
        for c in value + " ":
            if c.isdigit():
                run += c
            else:
                if len(run) >= 4:
                    frags.append(run)
                run = ""
    if case.kind == "email":
        frags.append(value.split("@")[0].split("%40")[0])
    return frags


def score(
    cases: list[Case],
    detect: Callable[[str], list[tuple[int, int]]],
    scrub: Callable[[str], str],
) -> Score:
    """Score ``detect`` (text -> finding spans) and ``scrub`` (text -> scrubbed text)."""
    result = Score({}, {}, {}, {}, [])
    for case in cases:
        key = (case.kind, case.container)
        if case.family == "secret":
            spans = detect(case.text)
            hit = any(s < case.span[1] and case.span[0] < e for s, e in spans)
            tally = result.recall.setdefault(key, Tally())
            tally.total += 1
            tally.hits += hit
            if not hit:
                result.failures.append(("missed secret", case))
        elif case.family == "pii":
            out = scrub(case.text)
            before = case.text[: case.span[0]] + case.text[case.span[1] :]
            leak = any(f in out and f not in before for f in _fragments(case))
            tally = result.leaked.setdefault(key, Tally())
            tally.total += 1
            tally.hits += leak
            if leak:
                result.failures.append(("leaked PII", case))
        else:
            flagged = bool(detect(case.text))
            altered = scrub(case.text) != case.text
            for cells, bad, label in (
                (result.flagged, flagged, "flagged negative"),
                (result.scrubbed, altered, "scrubbed negative"),
            ):
                tally = cells.setdefault(key, Tally())
                tally.total += 1
                tally.hits += bad
                if bad:
                    result.failures.append((label, case))
    return result
