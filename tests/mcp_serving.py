"""An ``attune mcp --http`` server of a test's own, in a subprocess, and the HTTP status
of an MCP ``initialize`` request to it (tests/test_mcp_server.py, tests/test_mcp_probe.py)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "attune-probe", "version": "1"},
    },
}


def server_env(storage: Path, token: str | None = None) -> dict[str, str]:
    env = dict(os.environ, ATTUNE_STORAGE_DIR=str(storage), PYTHONPATH=str(REPO))
    env.pop("REDIS_URL", None)
    env.pop("ATTUNE_DATABASE_URL", None)
    env.pop("ATTUNE_MCP_TOKEN", None)
    if token is not None:
        env["ATTUNE_MCP_TOKEN"] = token
    return env


@contextmanager
def serving(storage: Path, host: str, token: str | None = None) -> Iterator[int]:
    """``attune mcp --http HOST:PORT`` (with ``ATTUNE_MCP_TOKEN`` = ``token``, if given)
    until the block ends; yields PORT."""
    port = free_port()
    log = storage / "server-stderr.log"
    with open(log, "w") as errlog:
        server = subprocess.Popen(
            [sys.executable, "-m", "attune.cli", "mcp", "--http", f"{host}:{port}"],
            env=server_env(storage, token),
            cwd=storage,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            with socket.socket() as probe:
                if probe.connect_ex((host, port)) == 0:
                    break
            assert time.monotonic() < deadline, "the HTTP server did not start"
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def status(host: str, port: int, headers: dict[str, str]) -> int:
    """The HTTP status of an initialize request with these headers (``Host`` included)."""
    body = json.dumps(INITIALIZE).encode()
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.putrequest("POST", "/mcp", skip_host=True)
        sent = {
            "Host": f"{host}:{port}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Content-Length": str(len(body)),
            **headers,
        }
        for name, value in sent.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        response.read()
        return int(response.status)
    finally:
        connection.close()
