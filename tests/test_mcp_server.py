"""``attune mcp`` driven through a real MCP client session over stdio.

The server runs as a subprocess (``python -m attune.cli mcp``) on a temporary storage
directory, without ``REDIS_URL``: its short-term tier is the in-process stand-in, so
working data and staged patterns live in that process for the session. Skipped when the
``mcp`` SDK is not installed -- except under ``CI=true``, where that fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import CI

try:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
except ImportError:  # pragma: no cover - depends on the environment
    if CI:
        raise
    pytest.skip("the mcp SDK is not installed (pip install 'attune[mcp]')", allow_module_level=True)

from mcp_serving import serving, status

from attune.cli import main
from attune.mcp_server import HIDDEN_NAME, TOOLS

REPO = Path(__file__).resolve().parents[1]
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
TIMEOUT = 20


@asynccontextmanager
async def session(storage: Path, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "attune.cli", "mcp", *args],
        env={"ATTUNE_STORAGE_DIR": str(storage), "PYTHONPATH": str(REPO)},
        cwd=str(storage),
    )
    with open(storage / "server-stderr.log", "w") as errlog:  # noqa: ASYNC230
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=TIMEOUT) as client,
        ):
            await client.initialize()
            yield client


async def call(client: ClientSession, name: str, **arguments: Any) -> Any:
    """The tool's JSON result (it must succeed)."""
    result = await client.call_tool(name, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"{name} failed: {text}"
    return json.loads(text)


async def refused(client: ClientSession, name: str, **arguments: Any) -> str:
    """The tool's error message (it must fail), without the SDK's "Error executing tool
    NAME: " prefix."""
    result = await client.call_tool(name, arguments)
    assert result.is_error, f"{name} succeeded: {result.content}"
    text = "".join(getattr(block, "text", "") for block in result.content)
    return text.removeprefix(f"Error executing tool {name}: ")


@pytest.mark.timeout(60)
async def test_every_tool_over_stdio(tmp_path: Path) -> None:
    async with session(tmp_path, "--user", "mcp-tester", "--tier", "VALIDATOR") as client:
        listed = await client.list_tools()
        assert sorted(tool.name for tool in listed.tools) == sorted(TOOLS)
        for tool in listed.tools:  # no tool lets a client pick its identity or tier
            properties = tool.input_schema.get("properties", {})
            assert not {"user_id", "access_tier", "tier", "user"} & set(properties)

        # Short-term working data.
        assert await call(client, "stash", key="plan", value={"step": 1}) == {
            "stored": True,
            "key": "plan",
        }
        assert (await call(client, "retrieve", key="plan"))["value"] == {"step": 1}
        assert (await call(client, "retrieve", key="nothing-here"))["value"] is None

        # Staging, review, long term.
        staged = await call(
            client,
            "stage_pattern",
            pattern_data={"content": "Retry idempotent calls with jittered backoff"},
            pattern_type="practice",
        )
        other = await call(
            client,
            "stage_pattern",
            pattern_data={"content": "Never retry a payment"},
            pattern_type="practice",
        )
        listing = (await call(client, "get_staged_patterns"))["staged"]
        assert {p["pattern_id"] for p in listing} == {
            staged["staged_pattern_id"],
            other["staged_pattern_id"],
        }
        assert {p["staged_by"] for p in listing} == {"mcp-tester"}

        promoted = await call(
            client, "promote_pattern", staged_pattern_id=staged["staged_pattern_id"]
        )
        assert promoted["staged_pattern_id"] == staged["staged_pattern_id"]
        rejected = await call(
            client, "reject_pattern", staged_pattern_id=other["staged_pattern_id"], reason="no"
        )
        assert rejected == {"rejected": True, "staged_pattern_id": other["staged_pattern_id"]}
        assert (await call(client, "get_staged_patterns"))["staged"] == []

        recalled = (await call(client, "recall_pattern", pattern_id=promoted["pattern_id"]))[
            "pattern"
        ]
        assert recalled["content"] == "Retry idempotent calls with jittered backoff"
        assert recalled["created_by"] == "mcp-tester"

        persisted = await call(
            client, "persist_pattern", content="Cache DNS lookups briefly", pattern_type="tip"
        )
        found = await call(client, "search_patterns", query="jittered backoff")
        assert [r["pattern_id"] for r in found["results"]] == [promoted["pattern_id"]]
        assert found["next_cursor"] is None
        page = await call(client, "list_patterns", limit=1)
        assert [r["pattern_id"] for r in page["results"]] == [persisted["pattern_id"]]
        assert page["next_cursor"]
        rest = await call(client, "list_patterns", limit=1, cursor=page["next_cursor"])
        assert [r["pattern_id"] for r in rest["results"]] == [promoted["pattern_id"]]

        health = await call(client, "health_check")
        assert health["user_id"] == "mcp-tester"
        assert health["access_tier"] == "VALIDATOR"

        # The library's own checks, as tool errors carrying its message.
        blocked = await refused(
            client, "persist_pattern", content=f"token {GITHUB_TOKEN}", pattern_type="tip"
        )
        assert "SecretsDetectedError" in blocked
        assert GITHUB_TOKEN not in blocked and GITHUB_TOKEN[4:] not in blocked
        assert (await call(client, "list_patterns"))["results"][0]["pattern_id"] == persisted[
            "pattern_id"
        ]  # nothing was stored
        staged_secret = await refused(
            client,
            "stage_pattern",
            pattern_data={"content": f"token {GITHUB_TOKEN}"},
            pattern_type="tip",
        )
        assert GITHUB_TOKEN not in staged_secret
        bad = await refused(client, "stash", key="", value=1)
        assert bad.startswith("ValidationError:")
        missing = await refused(client, "promote_pattern", staged_pattern_id="not-a-staged-id")
        assert missing.startswith(("ValidationError:", "PatternNotFoundError:"))
        # A VALIDATOR may not read another namespace (STEWARD only).
        denied = await refused(client, "list_patterns", namespace="*")
        assert denied.startswith("AccessDeniedError:")


@pytest.mark.timeout(60)
async def test_observer_server_refuses_writes(tmp_path: Path) -> None:
    async with session(tmp_path, "--tier", "OBSERVER") as client:
        health = await call(client, "health_check")
        assert (health["user_id"], health["access_tier"]) == ("mcp-agent", "OBSERVER")
        stash = await refused(client, "stash", key="plan", value="x")
        persist = await refused(client, "persist_pattern", content="A tip", pattern_type="tip")
        stage = await refused(
            client, "stage_pattern", pattern_data={"content": "A tip"}, pattern_type="tip"
        )
        for message, action in ((stash, "stash"), (persist, "persist_pattern"), (stage, None)):
            assert message.startswith("AccessDeniedError:"), message
            assert "OBSERVER" in message and "CONTRIBUTOR" in message
            if action:
                assert action in message
        # Reads are allowed.
        assert (await call(client, "retrieve", key="plan"))["value"] is None
        assert await call(client, "list_patterns") == {"results": [], "next_cursor": None}


EMAIL = "john.doe@example.com"
#: (tool, arguments, the argument at fault, what the error says is expected): wrong JSON
#: types, and missing arguments (whose error once quoted every other argument given).
WRONG_ARGUMENTS = [
    ("persist_pattern", {"content": {"c": GITHUB_TOKEN}, "pattern_type": "t"}, "content", "string"),
    (
        "persist_pattern",
        {"content": "A tip", "pattern_type": "t", "metadata": EMAIL},
        "metadata",
        "dictionary",
    ),
    (
        "persist_pattern",
        {"content": "A tip", "pattern_type": "t", "auto_classify": EMAIL},
        "auto_classify",
        "boolean",
    ),
    ("persist_pattern", {"content": f"{EMAIL} {GITHUB_TOKEN}"}, "pattern_type", "required"),
    ("stash", {"key": {"k": GITHUB_TOKEN}, "value": 1}, "key", "string"),
    (
        "stash",
        {"key": "plan", "value": GITHUB_TOKEN, "ttl_seconds": EMAIL},
        "ttl_seconds",
        "number",
    ),
    ("stash", {"value": {"token": GITHUB_TOKEN, "email": EMAIL}}, "key", "required"),
    ("retrieve", {"key": "plan", "agent_id": [EMAIL]}, "agent_id", "string"),
    (
        "stage_pattern",
        {"pattern_data": [GITHUB_TOKEN], "pattern_type": "t"},
        "pattern_data",
        "dictionary",
    ),
    ("search_patterns", {"limit": EMAIL}, "limit", "integer"),
    ("search_patterns", {"query": {"q": GITHUB_TOKEN}}, "query", "string"),
    ("list_patterns", {"cursor": [EMAIL, GITHUB_TOKEN]}, "cursor", "string"),
]


@pytest.mark.timeout(60)
async def test_wrong_typed_arguments_are_refused_without_echoing_their_values(
    tmp_path: Path,
) -> None:
    """The SDK checks argument types before a tool runs; its error names the argument and
    the type expected, never the value given (nor, for a missing one, the others)."""
    async with session(tmp_path) as client:
        for name, arguments, argument, expected in WRONG_ARGUMENTS:
            message = await refused(client, name, **arguments)
            for value in (GITHUB_TOKEN, GITHUB_TOKEN[4:], EMAIL, "john.doe"):
                assert value not in message, (name, argument, message)
            assert "input_value" not in message, message
            assert argument in message.splitlines(), (name, argument, message)
            assert expected in message.lower(), (name, argument, message)
        # Nothing refused was stored; the advertised schema and the SDK's coercion of
        # numeric strings are as before.
        assert (await call(client, "retrieve", key="plan"))["value"] is None
        assert await call(client, "list_patterns", limit="5") == {
            "results": [],
            "next_cursor": None,
        }
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        assert schemas["stash"]["required"] == ["key", "value"]
        assert schemas["stash"]["properties"]["key"]["type"] == "string"
        assert schemas["search_patterns"]["properties"]["limit"]["type"] == "integer"
        assert schemas["persist_pattern"]["properties"]["auto_classify"]["type"] == "boolean"
    log = (tmp_path / "server-stderr.log").read_text()
    assert GITHUB_TOKEN[4:] not in log and EMAIL not in log


@pytest.mark.timeout(60)
async def test_unknown_arguments_are_refused_naming_them_not_their_values(
    tmp_path: Path,
) -> None:
    """An argument a tool does not take (a typo, a guessed ``user_id``) was silently
    dropped: the call ran without it. It is a tool error naming each unknown argument,
    never its value, and nothing is done."""
    async with session(tmp_path) as client:
        message = await refused(
            client, "stash", key="plan", value=1, ttl=EMAIL, user_id=GITHUB_TOKEN
        )
        lines = message.splitlines()
        assert "ttl" in lines and "user_id" in lines, message
        assert "extra inputs are not permitted" in message.lower(), message
        for value in (GITHUB_TOKEN, GITHUB_TOKEN[4:], EMAIL, "john.doe"):
            assert value not in message, message
        assert (await call(client, "retrieve", key="plan"))["value"] is None
        for name, arguments in (
            ("health_check", {"verbose": True}),
            ("search_patterns", {"query": "retry", "namepsace": "*"}),
            ("persist_pattern", {"content": "A tip", "pattern_type": "t", "tier": "STEWARD"}),
        ):
            unknown = next(iter(set(arguments) - {"query", "content", "pattern_type"}))
            assert unknown in (await refused(client, name, **arguments)).splitlines()
        assert await call(client, "list_patterns") == {"results": [], "next_cursor": None}
        schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        assert schemas["stash"]["additionalProperties"] is False
        # A secret or an address pasted as an argument's *name* is not shown either.
        message = await refused(client, "stash", key="plan", value=1, **{GITHUB_TOKEN: 1})
        assert HIDDEN_NAME in message.splitlines(), message
        assert GITHUB_TOKEN[4:] not in message, message
        message = await refused(client, "retrieve", key="plan", **{EMAIL: 1, "ghp": 2})
        assert HIDDEN_NAME in message.splitlines() and "ghp" in message.splitlines()
        assert "john.doe" not in message, message
        message = await refused(client, "retrieve", key="plan", **{EMAIL: 1, GITHUB_TOKEN: 2})
        lines = message.splitlines()
        assert f"{HIDDEN_NAME} 1" in lines and f"{HIDDEN_NAME} 2" in lines, message
    log = (tmp_path / "server-stderr.log").read_text()
    assert GITHUB_TOKEN[4:] not in log and EMAIL not in log


@pytest.mark.timeout(60)
async def test_a_boolean_is_not_a_number_and_json_text_stays_text(tmp_path: Path) -> None:
    """As in the library: ``true`` for ttl_seconds / ttl_hours / limit is refused (it was
    read as 1), and a string value that reads as JSON is stored as that string (the SDK
    parsed it: "null" was stored as null, '{"a": 1}' as an object)."""
    async with session(tmp_path) as client:
        for name, arguments, argument in (
            ("stash", {"key": "plan", "value": 1, "ttl_seconds": True}, "ttl_seconds"),
            (
                "stage_pattern",
                {"pattern_data": {"content": "A tip"}, "pattern_type": "t", "ttl_hours": True},
                "ttl_hours",
            ),
            ("list_patterns", {"limit": False}, "limit"),
        ):
            message = await refused(client, name, **arguments)
            assert argument in message.splitlines(), message
            assert "not a boolean" in message, message
        assert (await call(client, "retrieve", key="plan"))["value"] is None
        assert (await call(client, "get_staged_patterns"))["staged"] == []
        for text in ("null", '{"a": 1}', "[1, 2]", '"quoted"', "42"):
            await call(client, "stash", key="text", value=text)
            assert (await call(client, "retrieve", key="text"))["value"] == text
        await call(client, "stash", key="object", value={"a": [1, None]})
        assert (await call(client, "retrieve", key="object"))["value"] == {"a": [1, None]}
        # Typed arguments keep the SDK's coercions: an object sent as JSON text.
        staged = await call(
            client, "stage_pattern", pattern_data='{"content": "A tip"}', pattern_type="t"
        )
        assert staged["staged_pattern_id"].startswith("stg_")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "BOSS"], "invalid access tier"),
        (["--user", ""], "user_id"),
        (["--http", "nowhere"], "--http must be HOST:PORT"),
    ],
)
def test_bad_configuration_is_refused_before_serving(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["mcp", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


# -- HTTP: a bearer token, or loopback only ------------------------------------------------------

MCP_TOKEN = "t0ken-" + "x" * 26


def _initialize(port: int, token: str | None) -> int:
    """The HTTP status of an MCP initialize request to the server at ``port``."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return status("127.0.0.1", port, headers)


@pytest.mark.timeout(60)
def test_over_http_a_request_without_the_token_is_refused(tmp_path: Path) -> None:
    """``ATTUNE_MCP_TOKEN`` set: no token or a wrong one gets 401, the right one is served."""
    with serving(tmp_path, "127.0.0.1", MCP_TOKEN) as port:
        assert _initialize(port, None) == 401
        assert _initialize(port, "not-" + MCP_TOKEN) == 401
        assert _initialize(port, MCP_TOKEN) == 200


@pytest.mark.parametrize(
    ("host", "token", "message"),
    [
        ("0.0.0.0", None, "set ATTUNE_MCP_TOKEN"),
        ("192.0.2.7", None, "set ATTUNE_MCP_TOKEN"),
        ("127.0.0.1", "short", "at least 16 characters"),
    ],
)
def test_http_without_a_token_is_refused_off_loopback(
    host: str, token: str | None, message: str
) -> None:
    from attune.errors import ConfigurationError
    from attune.mcp_server import build_server, http_app

    with pytest.raises(ConfigurationError, match=message):
        http_app(build_server(), host, token)


def test_http_on_loopback_without_a_token_serves_as_before() -> None:
    from attune.mcp_server import BearerToken, build_server, http_app

    for host in ("127.0.0.1", "::1", "localhost"):
        assert not isinstance(http_app(build_server(), host, None), BearerToken)
    assert isinstance(http_app(build_server(), "0.0.0.0", MCP_TOKEN), BearerToken)


async def test_the_token_check_passes_lifespan_through_and_compares_whole_headers() -> None:
    from attune.mcp_server import BearerToken

    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {}

    app = BearerToken(inner, MCP_TOKEN)
    await app({"type": "lifespan"}, receive, send)
    for header in (None, f"Bearer {MCP_TOKEN[:-1]}", f"bearer{MCP_TOKEN}", MCP_TOKEN):
        headers = [] if header is None else [(b"authorization", header.encode())]
        await app({"type": "http", "headers": headers}, receive, send)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [401] * 4
    await app(
        {"type": "http", "headers": [(b"Authorization", f"Bearer {MCP_TOKEN}".encode())]},
        receive,
        send,
    )
    assert seen == ["lifespan", "http"]
