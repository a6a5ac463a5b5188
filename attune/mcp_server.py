"""An MCP (Model Context Protocol) server over attune's memory: ``attune mcp``.

Built on the official ``mcp`` SDK (``pip install 'attune[mcp]'``), it exposes one tool per
call of :class:`~attune.memory.AsyncUnifiedMemory`, with the library's own arguments:

    stash(key, value, ttl_seconds?)                  -> {"stored": true, "key"}
    retrieve(key, agent_id?)                         -> {"key", "value"} (value null: none)
    stage_pattern(pattern_data, pattern_type, ttl_hours?)
                                                     -> {"staged_pattern_id"}
    get_staged_patterns(namespace?)                  -> {"staged": [staged pattern, ...]}
    promote_pattern(staged_pattern_id, classification?)
                                                     -> what persist_pattern returns
    reject_pattern(staged_pattern_id, reason?)       -> {"rejected": true, "staged_pattern_id"}
    persist_pattern(content, pattern_type, classification?, auto_classify?, metadata?)
                                                     -> {"pattern_id", "classification", ...}
    recall_pattern(pattern_id, namespace?)           -> {"pattern": pattern or null}
    search_patterns(query?, filters..., limit?, cursor?)
    list_patterns(filters..., limit?, cursor?)       -> {"results": [...], "next_cursor"}
    health_check()                                   -> both tiers' and the audit's health

Identity. The server acts as ONE agent: its user id and access tier come from the server's
configuration (``attune mcp --user U --tier T``; defaults ``mcp-agent`` and CONTRIBUTOR),
its storage, Redis and namespace from the usual environment (``ATTUNE_*``, ``REDIS_URL``,
read by :class:`~attune.memory.MemoryConfig`). No tool takes a user or a tier: a client
cannot raise its own tier; every call is checked and audited as that agent.

Errors. An argument of the wrong JSON type (a list where a string is due, text or a boolean
where a number is), a missing one, or one the tool does not take, is refused before the
tool runs: the tool error names the argument and the type expected (or that it is not one
of the tool's), never the value given nor any other argument's. Values are
then checked by the library itself: an :class:`~attune.errors.AttuneError` (bad input,
refused access, a store down) becomes a tool error carrying the library's message, which
never holds the value. A pattern holding a credential is stored nowhere and comes back as
a tool error naming the kinds of secret found, never the secret.

Without ``REDIS_URL`` the short-term tier is the in-process stand-in: working data and staged
patterns then live in the server process only (the long-term tier is on disk as usual).

HTTP. ``attune mcp --http HOST:PORT`` serves streamable HTTP at ``/mcp``. With
``ATTUNE_MCP_TOKEN`` set, every request must carry ``Authorization: Bearer <token>`` (else
401; the scheme's name in any case); without it the server accepts anyone who reaches it,
so it refuses to bind anything but a loopback address. The token comes from the
environment, never the command line (which other users of the machine can read). On any
loopback address, a request must name a loopback host and come from no web page but a
loopback one (``Host`` / ``Origin``, else 421 / 403): a page elsewhere cannot reach it
through a DNS name of its own (DNS rebinding). A store the library refuses, or an address
HTTP cannot listen on, is an error before anything is served (exit 2 from ``attune``).
The HTTP transport (token, loopback guard) is :mod:`attune.mcp_http`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool

import attune
from attune import mcp_arguments
from attune.errors import AttuneError, ConfigurationError
from attune.mcp_arguments import HIDDEN_NAME
from attune.mcp_http import TOKEN_ENV, BearerToken, http_app
from attune.memory import validation
from attune.memory.config import MemoryConfig
from attune.memory.reads import PatternPage
from attune.memory.types import AccessTier
from attune.memory.unified import AsyncUnifiedMemory

__all__ = [
    "DEFAULT_TIER",
    "DEFAULT_USER",
    "HIDDEN_NAME",
    "TOKEN_ENV",
    "TOOLS",
    "BearerToken",
    "build_server",
    "http_app",
    "serve",
]

DEFAULT_USER = "mcp-agent"
DEFAULT_TIER = AccessTier.CONTRIBUTOR
#: The tools' names, in the order they are listed.
TOOLS = (
    "stash",
    "retrieve",
    "stage_pattern",
    "get_staged_patterns",
    "promote_pattern",
    "reject_pattern",
    "persist_pattern",
    "recall_pattern",
    "search_patterns",
    "list_patterns",
    "health_check",
)

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Awaitable[dict[str, Any]]])


def _page(page: PatternPage) -> dict[str, Any]:
    return {"results": list(page), "next_cursor": page.next_cursor}


def build_server(
    user_id: str = DEFAULT_USER,
    access_tier: AccessTier | str = DEFAULT_TIER,
    config: MemoryConfig | None = None,
) -> MCPServer[None]:
    """The MCP server acting as ``user_id`` at ``access_tier`` (both checked here: a bad
    one raises the library's error before anything starts). The memory opens when the
    server starts and closes when it stops."""
    user_id = validation.check_agent_id(user_id)
    tier = AccessTier.parse(access_tier)
    config = config if config is not None else MemoryConfig()
    opened: list[AsyncUnifiedMemory] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer[None]) -> AsyncIterator[None]:
        memory = AsyncUnifiedMemory(user_id, config, access_tier=tier)
        opened.append(memory)
        try:
            yield None
        finally:
            opened.clear()
            await memory.aclose()

    async def call(work: Callable[[AsyncUnifiedMemory], Awaitable[_T]]) -> _T:
        if not opened:  # pragma: no cover - tools run only inside the lifespan
            raise ToolError("the memory is not open")
        try:
            return await work(opened[0])
        except AttuneError as exc:
            # The library's messages name kinds and limits, never the value.
            raise ToolError(f"{type(exc).__name__}: {exc}") from None

    tools: list[Tool] = []

    def tool(fn: _F) -> _F:
        tools.append(mcp_arguments.tool(fn))
        return fn

    @tool
    async def stash(key: str, value: Any, ttl_seconds: float | None = None) -> dict[str, Any]:
        """Store working data (any JSON value) under key, for ttl_seconds (default: the
        configured TTL). Needs CONTRIBUTOR."""
        await call(lambda m: m.stash(key, value, ttl_seconds))
        return {"stored": True, "key": key}

    @tool
    async def retrieve(key: str, agent_id: str | None = None) -> dict[str, Any]:
        """The working data stashed under key (by this agent, or by agent_id); value is
        null when there is none."""
        return {"key": key, "value": await call(lambda m: m.retrieve(key, agent_id))}

    @tool
    async def stage_pattern(
        pattern_data: dict[str, Any], pattern_type: str, ttl_hours: float | None = None
    ) -> dict[str, Any]:
        """Park a discovered pattern for review. pattern_data must hold a "content"
        string; its other fields are kept. Expires after ttl_hours unless promoted.
        Needs CONTRIBUTOR."""
        staged_id = await call(lambda m: m.stage_pattern(pattern_data, pattern_type, ttl_hours))
        return {"staged_pattern_id": staged_id}

    @tool
    async def get_staged_patterns(namespace: str | None = None) -> dict[str, Any]:
        """Every staged pattern of this agent's namespace not yet expired."""
        return {"staged": await call(lambda m: m.get_staged_patterns(namespace=namespace))}

    @tool
    async def promote_pattern(
        staged_pattern_id: str, classification: str | None = None
    ) -> dict[str, Any]:
        """Move a staged pattern into long-term memory (optionally forcing PUBLIC,
        INTERNAL or SENSITIVE). Needs VALIDATOR."""
        return await call(lambda m: m.promote_pattern(staged_pattern_id, classification))

    @tool
    async def reject_pattern(staged_pattern_id: str, reason: str | None = None) -> dict[str, Any]:
        """Drop a staged pattern without promoting it. Needs VALIDATOR."""
        await call(lambda m: m.reject_pattern(staged_pattern_id, reason))
        return {"rejected": True, "staged_pattern_id": staged_pattern_id}

    @tool
    async def persist_pattern(
        content: str,
        pattern_type: str,
        classification: str | None = None,
        auto_classify: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a pattern for the long term (PII scrubbed, classified, encrypted when
        SENSITIVE). Content holding a credential is refused, and nothing is stored.
        Needs CONTRIBUTOR."""
        result = await call(
            lambda m: m.persist_pattern(
                content, pattern_type, classification, auto_classify, metadata
            )
        )
        if result.get("blocked"):
            kinds = ", ".join(result.get("secret_kinds") or ()) or "a secret"
            raise ToolError(f"SecretsDetectedError: {result.get('message') or kinds}")
        return result

    @tool
    async def recall_pattern(pattern_id: str, namespace: str | None = None) -> dict[str, Any]:
        """The long-term pattern with this id; pattern is null if unknown, past its
        retention or in another namespace."""
        pattern = await call(lambda m: m.recall_pattern(pattern_id, namespace=namespace))
        return {"pattern": pattern}

    @tool
    async def search_patterns(
        query: str | None = None,
        pattern_type: str | None = None,
        classification: str | None = None,
        limit: int = 10,
        created_by: str | None = None,
        since: str | None = None,
        until: str | None = None,
        metadata: dict[str, Any] | None = None,
        cursor: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Ranked keyword search of long-term patterns ("quoted phrases" match as
        phrases), best first; without query, newest first. Pass next_cursor as cursor for
        the next page."""
        page = await call(
            lambda m: m.search_patterns(
                query,
                pattern_type,
                classification,
                limit,
                created_by=created_by,
                since=since,
                until=until,
                metadata=metadata,
                cursor=cursor,
                namespace=namespace,
            )
        )
        return _page(page)

    @tool
    async def list_patterns(
        pattern_type: str | None = None,
        classification: str | None = None,
        limit: int = 50,
        created_by: str | None = None,
        since: str | None = None,
        until: str | None = None,
        metadata: dict[str, Any] | None = None,
        cursor: str | None = None,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Long-term patterns, newest first, with the filters of search_patterns."""
        page = await call(
            lambda m: m.list_patterns(
                pattern_type,
                classification,
                limit,
                created_by=created_by,
                since=since,
                until=until,
                metadata=metadata,
                cursor=cursor,
                namespace=namespace,
            )
        )
        return _page(page)

    @tool
    async def health_check() -> dict[str, Any]:
        """Both memory tiers' and the audit log's health, and this server's agent id and
        access tier."""
        return await call(lambda m: m.health_check())

    return MCPServer(
        "attune",
        version=attune.__version__,
        instructions=(
            f"attune two-tier memory, acting as agent {user_id!r} with access tier "
            f"{tier.name} (fixed by the server; no tool changes it). Short-term: stash / "
            "retrieve working data. Long-term: stage_pattern for review, then "
            "promote_pattern or reject_pattern (VALIDATOR and above); persist_pattern, "
            "recall_pattern, search_patterns, list_patterns."
        ),
        tools=tools,
        lifespan=lifespan,
        log_level="WARNING",
    )


def serve(
    user_id: str = DEFAULT_USER,
    access_tier: AccessTier | str = DEFAULT_TIER,
    *,
    http: str | None = None,
) -> None:
    """Run the server until its client goes: over stdio, or over streamable HTTP at
    ``http`` (``HOST:PORT``, path ``/mcp``; see the module docstring for its token).

    The memory is opened (and closed) once before serving: a store the library refuses
    (a storage directory that is a file, a bad key) raises its error here, rather than a
    traceback from inside the transport; so does an address HTTP cannot listen on."""
    config = MemoryConfig()
    server = build_server(user_id, access_tier, config)
    if http is None:
        _open_once(user_id, access_tier, config)
        server.run()
        return
    host, sep, port = http.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError("--http must be HOST:PORT, e.g. 127.0.0.1:8000")
    host = host.strip("[]")
    app = http_app(server, host, os.environ.get(TOKEN_ENV))
    _open_once(user_id, access_tier, config)
    import uvicorn

    try:
        uvicorn.run(app, host=host, port=int(port), log_level="warning")
    except SystemExit as exc:  # uvicorn's way out when it could not start; it said why
        if exc.code:
            raise ConfigurationError(
                f"could not serve MCP over HTTP at {http} (the reason is above: an address "
                "already in use, or not one of this machine's)"
            ) from None
        raise


def _open_once(user_id: str, access_tier: AccessTier | str, config: MemoryConfig) -> None:
    async def open_and_close() -> None:
        await AsyncUnifiedMemory(user_id, config, access_tier=access_tier).aclose()

    asyncio.run(open_and_close())
