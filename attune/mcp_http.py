"""The MCP server's HTTP transport: the bearer token and the loopback guard (``attune mcp
--http``; see :mod:`attune.mcp_server` for the tools).

:func:`http_app` serves an :class:`MCPServer` as streamable HTTP at ``/mcp``. With a token
(``ATTUNE_MCP_TOKEN``) every request must carry ``Authorization: Bearer <token>``
(:class:`BearerToken`, compared in constant time; the scheme's name in any case); without
one the server refuses to bind anything but a loopback address. On a loopback address a
request must name a loopback host and come from no web page but a loopback one
(:func:`_loopback_only`, DNS-rebinding protection).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from attune.errors import ConfigurationError

__all__ = ["MIN_TOKEN_CHARS", "TOKEN_ENV", "ASGIApp", "BearerToken", "http_app"]

#: The environment variable holding the bearer token HTTP clients must send.
TOKEN_ENV = "ATTUNE_MCP_TOKEN"  # noqa: S105 - the variable's name, not a secret
#: Shortest token accepted (a guessable token is no protection).
MIN_TOKEN_CHARS = 16

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def http_app(server: MCPServer, host: str, token: str | None) -> ASGIApp:
    """The streamable HTTP app of ``server`` bound at ``host``: behind :class:`BearerToken`
    when ``token`` is given; without one only on a loopback address (ConfigurationError)."""
    token = None if token is None else token.strip()
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigurationError(
            f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if token is None and not _is_loopback(host):
        raise ConfigurationError(
            f"serving MCP over HTTP on {host} lets anyone who reaches it act as this agent: "
            f"set {TOKEN_ENV} to a secret token (clients send it as 'Authorization: Bearer "
            "<token>'), or bind to 127.0.0.1"
        )
    guard = _loopback_only(host) if _is_loopback(host) else None
    app: ASGIApp = server.streamable_http_app(host=host, transport_security=guard)
    return app if token is None else BearerToken(app, token)


def _loopback_only(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server bound to the loopback address ``host``: a
    request must name a loopback host (``Host``) and, from a browser, come from a loopback
    page (``Origin``), else 421 / 403. The SDK turns this on by itself only for
    127.0.0.1, localhost and ::1; a web page could otherwise reach 127.0.0.2 (or any other
    loopback address) through a DNS name of its own and act as this agent."""
    bound = f"[{host}]" if ":" in host else host
    names = sorted({bound, "127.0.0.1", "localhost", "[::1]"})
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in names],
        allowed_origins=[f"http://{name}:*" for name in names],
    )


class BearerToken:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` gets 401
    (the token compared in constant time; the scheme's name in any case, as HTTP has it:
    ``bearer <token>`` passes); lifespan events pass through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = token.encode("utf-8")

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            given = b""
            for name, value in scope.get("headers", ()):
                if name.lower() == b"authorization":
                    given = value
            scheme, _, credentials = given.partition(b" ")
            valid = hmac.compare_digest(credentials, self._expected)  # always compared
            if not (valid and scheme.lower() == b"bearer"):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b'{"error":"unauthorized: send Authorization: Bearer <the server token>"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode("ascii")),
                            (b"www-authenticate", b'Bearer realm="attune"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self._app(scope, receive, send)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
