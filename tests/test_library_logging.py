"""The library's own log records: named ``attune.*`` loggers under a ``NullHandler`` (silent
unless the application configures logging), and one record per blocked secret, denied call
and short-term failure, never holding the secret, the password or the agent's id in clear."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from faults import free_port

from attune.errors import AccessDeniedError, AttuneError
from attune.memory import AsyncUnifiedMemory, MemoryConfig

SECRET = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9o"


def _records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def test_the_attune_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("attune").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


async def test_a_blocked_secret_is_one_warning_without_the_value(
    mock_config: MemoryConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="attune")
    async with AsyncUnifiedMemory("agent@company.com", mock_config) as mem:
        result = await mem.persist_pattern(f"Use the key {SECRET} for the API", "note")
        assert result["blocked"] is True
        subject = await mem.audit_pseudonym()
    [record] = _records(caplog, "attune.security")
    message = record.getMessage()
    assert record.levelno == logging.WARNING and "openai_api_key" in message
    assert SECRET not in message and SECRET[:12] not in message
    assert subject is not None and subject in message and "agent@company.com" not in message


async def test_a_denied_call_is_one_warning_naming_the_action_and_tier(
    mock_config: MemoryConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="attune")
    async with AsyncUnifiedMemory("reader@company.com", mock_config, access_tier="OBSERVER") as mem:
        with pytest.raises(AccessDeniedError):
            await mem.persist_pattern("A note", "note")
    [record] = _records(caplog, "attune.access")
    message = record.getMessage()
    assert "persist_pattern" in message and "OBSERVER" in message and "CONTRIBUTOR" in message
    assert "reader@company.com" not in message


async def test_a_short_term_failure_is_one_warning_without_the_password(
    caplog: pytest.LogCaptureFixture, key_prefix: str, storage_dir: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="attune")
    url = f"redis://agent:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    config = MemoryConfig(
        redis_url=url, storage_dir=storage_dir, key_prefix=key_prefix, redis_connect_timeout=0.5
    )
    async with AsyncUnifiedMemory("agent", config) as mem:
        with pytest.raises(AttuneError):
            await mem.stash("k", 1)
    [record] = _records(caplog, "attune.short_term")
    message = record.getMessage()
    assert "unavailable" in message and "hunter2" not in message
