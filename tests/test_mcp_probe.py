"""``attune mcp`` probed as a careless or hostile client (or operator) would: over HTTP, a
web page reaching a loopback server through a DNS name of its own (DNS rebinding), the
bearer scheme in another case, an address already in use; and a store the library
refuses, which the server met only once its transport was running (a traceback, exit 1
or uvicorn's 3). Skipped when the ``mcp`` SDK is not installed -- except under
``CI=true``, where that fails.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CI, free_port

try:
    import mcp  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if CI:
        raise
    pytest.skip("the mcp SDK is not installed (pip install 'attune[mcp]')", allow_module_level=True)

from mcp_serving import server_env, serving, status

from attune.cli import main
from attune.mcp_server import BearerToken

REPO = Path(__file__).resolve().parents[1]
TOKEN = "t0ken-" + "Q" * 26


@pytest.mark.timeout(60)
def test_a_loopback_server_without_a_token_refuses_other_hosts_and_origins(
    tmp_path: Path,
) -> None:
    """On 127.0.0.2 (loopback, so served without a token) the SDK guarded nothing: a page
    of evil.example resolving its name to 127.0.0.2 acted as the agent."""
    with serving(tmp_path, "127.0.0.2") as port:
        assert status("127.0.0.2", port, {}) == 200
        assert status("127.0.0.2", port, {"Host": f"localhost:{port}"}) == 200
        assert status("127.0.0.2", port, {"Host": f"evil.example:{port}"}) == 421
        assert status("127.0.0.2", port, {"Origin": "http://evil.example"}) == 403
        assert status("127.0.0.2", port, {"Origin": f"http://127.0.0.2:{port}"}) == 200


async def test_the_bearer_scheme_is_matched_in_any_case_the_token_exactly() -> None:
    """HTTP auth schemes are case-insensitive: ``bearer <token>`` was refused with 401."""
    passed: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope["headers"][0][1].decode())

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> dict[str, Any]:
        return {}

    app = BearerToken(inner, TOKEN)
    accepted = [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}"]
    refused = [f"Bearer {TOKEN.lower()}", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN]
    for header in accepted + refused:
        await app({"type": "http", "headers": [(b"authorization", header.encode())]}, receive, send)
    assert passed == accepted
    assert statuses == [401] * len(refused)


@pytest.mark.parametrize("http", [None, "127.0.0.1:0"])
def test_a_store_the_library_refuses_is_an_error_beforeserving(
    http: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A storage directory that is a file: the library's message and exit 2, before
    anything is served (it was a traceback from inside the transport, exit 1 over stdio
    and 3 over HTTP)."""
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    args = ["--storage-dir", str(not_a_directory), "mcp"]
    if http is not None:
        args += ["--http", http.replace(":0", f":{free_port()}")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot create the storage directory" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.timeout(60)
def test_an_address_already_in_use_is_an_error_with_exit_status_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "attune.cli", "mcp", "--http", f"127.0.0.1:{port}"],
            env=server_env(tmp_path, TOKEN),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "could not serve MCP over HTTP" in done.stderr
    assert TOKEN not in done.stderr
