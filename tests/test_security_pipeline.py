"""The security pipeline as the core runs it, on every write path, against real stores.

Each test goes through the public API (persist, stage, promote, recall, rotate,
purge) and then looks at what actually landed: the SQLite file, the Redis
keyspace and the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis

from attune import AccessTier, AsyncEmpathyOS
from attune.errors import (
    AccessDeniedError,
    ConfigurationError,
    SecretsDetectedError,
    SecurityPipelineError,
    ValidationError,
)
from attune.memory import AsyncUnifiedMemory, Classification, Environment, MemoryConfig, clock
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.audit import AuditLogger

# Synthetic credentials and personal data: every one must be blocked or scrubbed, and none may
# appear anywhere on disk or in Redis afterwards.
OPENAI_KEY = "sk-proj-" + "Qx7fT2mZ9kLp4RwV8nYb3HcJ6dGs1AeU"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
DB_URL = "postgres://app:Zr8!vQ2#pLm9xW@db.internal:5432/app"
EMAIL = "jane.roe@example.org"
SSN = "123-45-6789"
CARD = "4111 1111 1111 1111"
RAW_VALUES = (OPENAI_KEY, GITHUB_TOKEN, "Zr8!vQ2#pLm9xW", EMAIL, SSN, CARD)


def memory(config: MemoryConfig, tier: AccessTier = AccessTier.CONTRIBUTOR) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory("agent-1", config, access_tier=tier)


def audit_events(config: MemoryConfig) -> list[dict[str, Any]]:
    security_pipeline.close_shared()  # flush
    path = config.storage_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def everything_on_disk(config: MemoryConfig) -> bytes:
    """Every byte attune wrote under the storage dir (database, WAL, audit log, key file)."""
    security_pipeline.close_shared()
    blobs = []
    for root, _dirs, files in os.walk(config.storage_dir):
        for name in files:
            blobs.append((Path(root) / name).read_bytes())
    return b"\n".join(blobs)


def redis_dump(url: str, prefix: str) -> bytes:
    client = redis.Redis.from_url(url)
    try:
        return b"\n".join(
            (k + b"=" + (client.dump(k) or b"")) for k in client.scan_iter(match=f"{prefix}:*")
        )
    finally:
        client.close()


# -- secrets: blocked on every write path, never echoed -----------------------------------------


async def test_persist_with_secret_returns_blocked_and_stores_nothing(config: MemoryConfig) -> None:
    async with memory(config) as mem:
        result = await mem.persist_pattern(f"Use this key: {OPENAI_KEY}", "api_integration")
        assert result["error"] == "secrets_detected"
        assert result["blocked"] is True
        assert result["secret_kinds"] == {"openai_api_key": 1}
        assert "pattern_id" not in result
        assert OPENAI_KEY not in json.dumps(result)
        assert await mem.long_term.count() == 0  # type: ignore[attr-defined]
    events = audit_events(config)
    violation = [e for e in events if e["event"] == "security.violation"]
    assert violation and violation[0]["outcome"] == "blocked"
    assert violation[0]["details"]["kinds"] == {"openai_api_key": 1}


async def test_secret_in_metadata_is_blocked(config: MemoryConfig) -> None:
    async with memory(config) as mem:
        result = await mem.persist_pattern(
            "Rotate CI tokens monthly", "security", metadata={"example": {"ci": GITHUB_TOKEN}}
        )
        assert result["blocked"] is True and result["secret_kinds"] == {"github_token": 1}
        assert await mem.long_term.count() == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["content", "code", "source", "context"])
async def test_stage_with_secret_in_any_field_raises(config: MemoryConfig, field: str) -> None:
    data = {"content": "Connect with pooled clients", field: f"dsn = {DB_URL}"}
    async with memory(config) as mem:
        with pytest.raises(SecretsDetectedError) as info:
            await mem.stage_pattern(data, "optimization")
        assert "connection_string_password" in info.value.kinds
        assert "Zr8!vQ2#pLm9xW" not in str(info.value)
        assert await mem.get_staged_patterns() == []


async def test_sync_facade_returns_the_documented_blocked_shape(mock_config: MemoryConfig) -> None:
    async with AsyncEmpathyOS(user_id="a", config=mock_config) as agent:
        result = await agent.persist_pattern("API key: sk-proj-abc123...", "api_integration")
    assert {"error": "secrets_detected", "blocked": True}.items() <= result.items()


# -- PII: scrubbed before anything is stored, counted by kind -----------------------------------


async def test_pii_scrubbed_in_content_and_metadata_with_counts(config: MemoryConfig) -> None:
    async with memory(config) as mem:
        result = await mem.persist_pattern(
            f"Escalate to {EMAIL} when card {CARD} is declined",
            "support_pattern",
            metadata={"reporter": EMAIL, "notes": [f"SSN {SSN} on file"]},
        )
        assert result["pii_scrubbed"] == {"email": 2, "credit_card": 1, "ssn": 1}
        stored = await mem.recall_pattern(result["pattern_id"])
    assert stored is not None
    assert stored["content"] == "Escalate to [EMAIL] when card [CC] is declined"
    assert stored["metadata"] == {"reporter": "[EMAIL]", "notes": ["SSN [SSN] on file"]}


async def test_staging_scrubs_every_string_before_redis(
    redis_config: MemoryConfig, redis_url: str
) -> None:
    async with memory(redis_config) as mem:
        staged_id = await mem.stage_pattern(
            {
                "content": f"Ask {EMAIL} for access",
                "code": f"notify('{EMAIL}')",
                "source": f"ticket from {EMAIL}",
                "confidence": 0.9,
            },
            "workflow",
        )
        raw = redis_dump(redis_url, redis_config.key_prefix)
        assert EMAIL.encode() not in raw
        [staged] = await mem.get_staged_patterns()
    assert staged["pattern_id"] == staged_id
    assert staged["content"] == "Ask [EMAIL] for access"
    assert staged["code"] == "notify('[EMAIL]')"
    assert staged["confidence"] == 0.9


# -- classification and encryption at rest ------------------------------------------------------


async def test_encryption_follows_classification(config: MemoryConfig, tmp_path: Path) -> None:
    plain = config.model_copy(update={"encryption_enabled": False})
    async with memory(config) as mem, memory(plain) as mem_plain:
        public = await mem.persist_pattern("Prefer pure functions", "style")
        internal = await mem.persist_pattern("Internal release checklist", "process")
        sensitive = await mem.persist_pattern("Patient handoff protocol", "clinical")
        internal_plain = await mem_plain.persist_pattern("Internal release checklist", "process")
        forced = await mem_plain.persist_pattern(
            "Patient handoff protocol", "clinical", classification=Classification.SENSITIVE
        )
    assert (public["classification"], public["encrypted"]) == ("PUBLIC", False)
    assert (internal["classification"], internal["encrypted"]) == ("INTERNAL", True)
    assert (sensitive["classification"], sensitive["encrypted"]) == ("SENSITIVE", True)
    assert (internal_plain["classification"], internal_plain["encrypted"]) == ("INTERNAL", False)
    assert forced["encrypted"] is True  # SENSITIVE is encrypted even with encryption off


async def test_encrypted_record_keeps_content_and_metadata_unreadable(
    mock_config: MemoryConfig,
) -> None:
    async with memory(mock_config) as mem:
        result = await mem.persist_pattern(
            "Patient handoff protocol for ward seven",
            "clinical",
            metadata={"owner": "ward-seven-team"},
        )
        recalled = await mem.recall_pattern(result["pattern_id"])
    assert recalled is not None and recalled["metadata"] == {"owner": "ward-seven-team"}
    disk = everything_on_disk(mock_config)
    assert b"ward seven" not in disk and b"ward-seven-team" not in disk


async def test_promoted_sensitive_pattern_copies_nothing_in_clear(
    redis_config: MemoryConfig, redis_url: str
) -> None:
    async with memory(redis_config) as contributor, memory(redis_config, AccessTier.VALIDATOR) as v:
        staged_id = await contributor.stage_pattern(
            {
                "content": "Clinical diagnosis codes go through the triage queue",
                "code": "route(triage_queue)",
                "source": "ward audit",
            },
            "clinical",
        )
        raw = redis_dump(redis_url, redis_config.key_prefix)
        assert b"triage" not in raw and b"ward audit" not in raw  # held encrypted in Redis
        [listed] = await v.get_staged_patterns()
        assert listed["code"] == "route(triage_queue)"
        assert listed["staged_by"] == "agent-1"
        result = await v.promote_pattern(staged_id)
        recalled = await v.recall_pattern(result["pattern_id"])
    assert result["classification"] == "SENSITIVE" and result["encrypted"] is True
    assert recalled is not None and recalled["metadata"]["source"] == "ward audit"
    disk = everything_on_disk(redis_config)
    assert b"triage" not in disk and b"ward audit" not in disk


async def test_production_without_master_key_refuses_encrypted_writes(
    redis_url: str, key_prefix: str, storage_dir: Path
) -> None:
    config = MemoryConfig(
        environment=Environment.PRODUCTION,
        redis_url=redis_url,
        storage_dir=storage_dir,
        key_prefix=key_prefix,
    )
    async with memory(config) as mem:
        public = await mem.persist_pattern("Prefer pure functions", "style")
        assert public["encrypted"] is False
        with pytest.raises(ConfigurationError, match="ATTUNE_MASTER_KEY"):
            await mem.persist_pattern("Patient handoff protocol", "clinical")
        assert await mem.long_term.count() == 1  # type: ignore[attr-defined]
    assert not (storage_dir / "master.key").exists()  # never invents a key in production


async def test_master_key_from_environment_and_wrong_key(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTUNE_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
    async with memory(mock_config) as mem:
        result = await mem.persist_pattern("Patient handoff protocol", "clinical")
    security_pipeline.close_shared()
    marker = (mock_config.storage_dir / "attune-store.json").read_bytes()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", base64.b64encode(b"x" * 32).decode())
    # A key never used with this store is refused on first use, loudly, and leaves no
    # trace (before, its id went into the store's marker and a read raised DecryptionError).
    async with memory(mock_config) as mem:
        with pytest.raises(ConfigurationError, match=r"is not one .* was used with"):
            await mem.recall_pattern(result["pattern_id"])
        with pytest.raises(ConfigurationError, match=r"is not one .* was used with"):
            await mem.persist_pattern(
                "Escalation path for on-call", "ops", classification="INTERNAL"
            )
    assert (mock_config.storage_dir / "attune-store.json").read_bytes() == marker


# -- fail closed --------------------------------------------------------------------------------


async def test_a_failing_step_refuses_the_write(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memory(mock_config) as mem:

        def broken(value: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(mem.pipeline.scrubber, "scrub_value", broken)
        with pytest.raises(SecurityPipelineError, match="PII scrubber"):
            await mem.persist_pattern(f"mail {EMAIL}", "support")
        with pytest.raises(SecurityPipelineError):
            await mem.stage_pattern({"content": f"mail {EMAIL}"}, "support")
        monkeypatch.setattr(mem.pipeline.scrubber, "scrub_value", lambda v: ("garbage", {}))
        with pytest.raises(SecurityPipelineError, match="unusable"):
            await mem.persist_pattern(f"mail {EMAIL}", "support")
        assert await mem.long_term.count() == 0  # type: ignore[attr-defined]
        assert await mem.get_staged_patterns() == []


# -- key rotation and retention -----------------------------------------------------------------


async def test_rotate_keys_rewraps_and_keeps_everything_readable(mock_config: MemoryConfig) -> None:
    async with memory(mock_config) as writer, memory(mock_config, AccessTier.STEWARD) as steward:
        ids = [
            (await writer.persist_pattern(f"Patient protocol {i}", "clinical"))["pattern_id"]
            for i in range(5)
        ]
        public = await writer.persist_pattern("Prefer pure functions", "style")
        old_kid = writer.pipeline.cipher.ring.active_key_id
        with pytest.raises(AccessDeniedError):
            await writer.rotate_keys()
        rotated = await steward.rotate_keys(batch_size=2)
        assert rotated["rewrapped"] == 5 and rotated["key_id"] != old_kid
        keys = await steward.long_term.wrapped_keys("", 100)
        assert {k.key_id for k in keys} == {rotated["key_id"]}
        for i, pattern_id in enumerate(ids):
            recalled = await writer.recall_pattern(pattern_id)
            assert recalled is not None and recalled["content"] == f"Patient protocol {i}"
        assert (await writer.recall_pattern(public["pattern_id"])) is not None
        again = await steward.rotate_keys()
        assert again["rewrapped"] == 5
    events = [e for e in audit_events(mock_config) if e["event"] == "keys.rotate"]
    assert [e["details"]["rewrapped"] for e in events] == [5, 5]


async def test_expired_patterns_are_hidden_then_purged(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with memory(mock_config) as writer, memory(mock_config, AccessTier.STEWARD) as steward:
        public = await writer.persist_pattern("Prefer pure functions", "style")
        sensitive = await writer.persist_pattern("Patient handoff protocol", "clinical")
        real_now = clock.now_ms
        day = 86_400_000
        monkeypatch.setattr(clock, "now_ms", lambda: real_now() + 91 * day)
        assert await writer.recall_pattern(sensitive["pattern_id"]) is None  # 90 days
        assert await writer.recall_pattern(public["pattern_id"]) is not None  # 365 days
        # Every read sees the same clock: a search does not return it either.
        found = await writer.search_patterns("handoff", namespace=None)
        assert sensitive["pattern_id"] not in [r["pattern_id"] for r in found]
        assert await writer.count_patterns() == 1
        with pytest.raises(AccessDeniedError):
            await writer.purge_expired()
        assert await steward.purge_expired() == 1
        assert await steward.long_term.count() == 1  # type: ignore[attr-defined]
    purge = [e for e in audit_events(mock_config) if e["event"] == "pattern.purge"]
    assert purge and purge[-1]["details"] == {"purged": 1}


# -- audit: every decision, never the data ------------------------------------------------------


async def test_audit_records_decisions_without_data(mock_config: MemoryConfig) -> None:
    async with memory(mock_config) as mem, memory(mock_config, AccessTier.OBSERVER) as observer:
        stored = await mem.persist_pattern(f"Mail {EMAIL} about HIPAA audits", "compliance")
        await mem.recall_pattern(stored["pattern_id"])
        await mem.persist_pattern(f"token={GITHUB_TOKEN}", "ci")
        with pytest.raises(AccessDeniedError):
            await observer.persist_pattern("Prefer pure functions", "style")
    events = audit_events(mock_config)
    kinds = [e["event"] for e in events]
    for expected in (
        "classification.decision",
        "pattern.store",
        "pattern.retrieve",
        "security.violation",
        "access.check",
    ):
        assert expected in kinds
    decision = next(e for e in events if e["event"] == "classification.decision")
    assert decision["classification"] == "SENSITIVE"
    assert decision["details"]["rule"] == "health" and decision["details"]["term"] == "hipaa"
    store = next(e for e in events if e["event"] == "pattern.store")
    assert store["details"]["pii"] == {"email": 1}
    denied = next(e for e in events if e["event"] == "access.check" and e["outcome"] != "allowed")
    assert denied["outcome"] == "denied" and denied["tier"] == "OBSERVER"
    text = (mock_config.storage_dir / "audit.jsonl").read_text()
    assert EMAIL not in text and GITHUB_TOKEN not in text and "HIPAA audits" not in text
    assert AuditLogger(log_file=mock_config.storage_dir / "audit.jsonl").verify().ok


async def test_no_raw_secret_or_pii_anywhere_after_all_write_paths(
    redis_config: MemoryConfig, redis_url: str
) -> None:
    """The acceptance search: SQLite file, Redis keyspace and audit log hold none of the values."""
    async with memory(redis_config) as mem, memory(redis_config, AccessTier.VALIDATOR) as v:
        for text in (f"key {OPENAI_KEY}", f"token: {GITHUB_TOKEN}", f"dsn {DB_URL}"):
            assert (await mem.persist_pattern(text, "ops"))["blocked"] is True
            with pytest.raises(SecretsDetectedError):
                await mem.stage_pattern({"content": "ops note", "code": text}, "ops")
        pii = f"Reach {EMAIL}, SSN {SSN}, card {CARD}"
        await mem.persist_pattern(pii, "support", metadata={"who": EMAIL})
        await mem.persist_pattern(pii, "clinical", classification="SENSITIVE")
        public_id = await mem.stage_pattern({"content": pii, "code": pii}, "support")
        sensitive_id = await mem.stage_pattern({"content": pii + " patient"}, "clinical")
        await v.promote_pattern(public_id)
        kept = {p["pattern_id"] for p in await v.get_staged_patterns()}
        assert kept == {sensitive_id}
        raw_redis = redis_dump(redis_url, redis_config.key_prefix)
    disk = everything_on_disk(redis_config)
    for value in RAW_VALUES:
        assert value.encode() not in disk, value
        assert value.encode() not in raw_redis, value


async def test_sensitive_staged_entry_shows_only_id_type_times_and_namespace(
    redis_config: MemoryConfig, redis_url: str
) -> None:
    async with memory(redis_config) as mem:
        staged_id = await mem.stage_pattern(
            {"content": "Patient intake checklist", "owner": "nurse-lead"}, "clinical"
        )
        client = redis.Redis.from_url(redis_url)
        try:
            raw = client.get(f"{redis_config.key_prefix}:{{staging}}:pattern:{staged_id}")
        finally:
            client.close()
        assert raw is not None
        stored = json.loads(raw)
        assert set(stored) == {
            "v",
            "namespace",
            "pattern_id",
            "pattern_type",
            "staged_at",
            "expires_at",
            "sealed",
        }
        [listed] = await mem.get_staged_patterns()
    assert listed["classification"] == "SENSITIVE" and listed["owner"] == "nurse-lead"


async def test_allowed_and_denied_access_checks_are_audited(mock_config: MemoryConfig) -> None:
    async with memory(mock_config) as contributor:
        staged_id = await contributor.stage_pattern({"content": "Prefer pure functions"}, "style")
        await contributor.stash("working", {"n": 1})  # working data: not audited when allowed
        with pytest.raises(AccessDeniedError):
            await contributor.promote_pattern(staged_id)
    checks = [e for e in audit_events(mock_config) if e["event"] == "access.check"]
    assert [(e["details"]["action"], e["outcome"]) for e in checks] == [
        ("stage_pattern", "allowed"),
        ("promote_pattern", "denied"),
    ]
    assert checks[1]["details"]["required"] == "VALIDATOR" and checks[1]["target_id"] == staged_id


async def test_reads_are_audited_by_their_own_events(mock_config: MemoryConfig) -> None:
    async with memory(mock_config) as writer, memory(mock_config, AccessTier.OBSERVER) as reader:
        stored = await writer.persist_pattern("Prefer pure functions", "style")
        await writer.stage_pattern({"content": "Prefer small modules"}, "style")
        assert await reader.recall_pattern(stored["pattern_id"]) is not None
        assert len(await reader.get_staged_patterns()) == 1
    events = [e for e in audit_events(mock_config) if e["tier"] == "OBSERVER"]
    assert [(e["event"], e["outcome"]) for e in events] == [
        ("pattern.retrieve", "success"),
        ("staging.list", "success"),
    ]
    assert events[0]["target_id"] == stored["pattern_id"]
    assert events[1]["details"] == {"patterns": 1}


@pytest.mark.parametrize(
    "metadata",
    [
        {"api_key": "Zr8vQ2pLm9xW4tK7"},
        {"db": {"password": "Zr8!vQ2#pLm9xW"}},
        {"client_secret": "c9Xw2Lp9Rt5Zq81mNc4Vb7"},
        {"api_keys": ["Zr8vQ2pLm9xW4tK7"]},  # each string of a list under the name
        {"env": {"DB_PASSWORD_PROD": "Zr8vQ2pLm9xW4tK7"}},
    ],
)
async def test_a_credential_is_found_by_its_field_name(
    mock_config: MemoryConfig, metadata: dict[str, Any]
) -> None:
    """A value that only looks like a credential next to its key is still blocked."""
    async with memory(mock_config) as mem:
        result = await mem.persist_pattern("Connect with pooled clients", "ops", metadata=metadata)
        assert result["blocked"] is True and result["secret_kinds"] == {"generic_secret": 1}
        with pytest.raises(SecretsDetectedError):
            await mem.stage_pattern({"content": "Connect with pooled clients", **metadata}, "ops")
        assert await mem.long_term.count() == 0  # type: ignore[attr-defined]


async def test_ordinary_metadata_is_not_a_secret(mock_config: MemoryConfig) -> None:
    async with memory(mock_config) as mem:
        result = await mem.persist_pattern(
            "Rotate tokens every 90 days",
            "security",
            metadata={
                "token_ttl_days": 90,
                "owner": "platform-team",
                "password_policy": "NIST",
                "tags": ["retry", "backoff", "build-2024x7"],
            },
        )
    assert "error" not in result and result["classification"] == "INTERNAL"


async def test_pattern_type_verdicts_are_cached_only_when_clean(mock_config: MemoryConfig) -> None:
    """Clean pattern types are remembered (a hot-path saving); a type holding personal data
    is refused every time, and is never kept in the cache."""
    bad_type = "type_for_" + EMAIL
    async with memory(mock_config) as mem:
        for _ in range(2):
            with pytest.raises(ValidationError, match="pattern_type"):
                await mem.persist_pattern("Retry with backoff", bad_type)
            with pytest.raises(ValidationError, match="pattern_type"):
                await mem.stage_pattern({"content": "Retry with backoff"}, bad_type)
            stored = await mem.persist_pattern("Retry with backoff", "best_practice")
            assert "pattern_id" in stored
        # The cache is the subject and internal (pipeline.py: no public size/contents).
        assert mem.pipeline._clean_types == {"best_practice"}
        # Bounded: many distinct types never grow the cache past its limit.
        for n in range(security_pipeline._TYPE_CACHE_SIZE + 10):
            await mem.persist_pattern("Retry with backoff", f"kind_{n}")
        assert len(mem.pipeline._clean_types) <= security_pipeline._TYPE_CACHE_SIZE
        assert bad_type not in mem.pipeline._clean_types


async def test_a_cached_audit_logger_is_replaced_after_close_shared(
    mock_config: MemoryConfig,
) -> None:
    async with memory(mock_config) as mem:
        first = mem.pipeline.audit_logger
        assert mem.pipeline.audit_logger is first  # cached
        security_pipeline.close_shared()
        second = mem.pipeline.audit_logger
        assert second is not first
        await mem.persist_pattern("Retry with backoff", "best_practice")
    events = audit_events(mock_config)
    assert events[-1]["event"] == "pattern.store"


async def test_a_persist_returns_with_its_events_on_disk_in_order(
    mock_config: MemoryConfig,
) -> None:
    """When persist returns, its events are on disk, in order, behind the operation's
    queued decisions: in the outbox row committed with the record (the writer thread is
    told to linger for a minute, so it has not appended them yet). A reader that locks
    the log, like query(), sees them there at once: the writer appends them first."""
    path = mock_config.storage_dir / "audit.jsonl"
    async with memory(mock_config) as mem:
        logger = mem.pipeline.audit_logger
        logger.linger_s = 60.0  # the shared logger's writer, before anything is persisted
        for round_ in range(2):
            stored = await mem.persist_pattern(f"Round {round_}: prefer small commits", "style")
            kept = _outbox_events(mock_config)  # a fresh connection: what a crash leaves
            mine = [e for e in kept if e.get("target_id") == stored["pattern_id"]]
            assert [e["event"] for e in mine] == ["classification.decision", "pattern.store"]
            assert kept[-1]["event"] == "pattern.store"
            logged = logger.query(event_type="pattern.store")
            assert logged[-1]["target_id"] == stored["pattern_id"]
            assert _read_events(path)[-1]["event"] == "pattern.store"
        results = await asyncio.gather(
            *(mem.persist_pattern(f"Concurrent {i}", "style") for i in range(32))
        )
        kept_ids = {e["target_id"] for e in _outbox_events(mock_config)}
        assert {r["pattern_id"] for r in results} <= kept_ids
        stored_ids = {e["target_id"] for e in logger.query(event_type="pattern.store")}
        assert {r["pattern_id"] for r in results} <= stored_ids
    assert AuditLogger(log_file=path).verify().ok


def _outbox_events(config: MemoryConfig) -> list[dict[str, Any]]:
    """The events kept in the store's outbox rows, oldest first."""
    with closing(sqlite3.connect(config.storage_dir / "patterns.db")) as db:
        payloads = [row[0] for row in db.execute("SELECT payload FROM audit_outbox")]
    entries = [line.split(" ", 1) for p in payloads for line in p.split("\n")[1:]]
    entries.sort(key=lambda entry: entry[0])  # by timestamp (rows are in id order)
    return [json.loads("{" + body + "}") for _ts, body in entries]


async def test_a_failed_audit_append_loses_nothing_and_is_reported(
    mock_config: MemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log cannot be appended to after a persist returned (disk full): its events
    stay in the outbox, the failure reaches the logger's next call, and the next open of
    the store appends the events: the log ends up complete, with a valid chain."""
    from attune.memory.security.audit import logfile as audit_logfile

    async with memory(mock_config) as mem:
        await mem.persist_pattern("Warm up", "style")
        logger = mem.pipeline.audit_logger
        logger.flush()

        def disk_full(fd: int, data: bytes) -> None:
            # Over the private logfile._write_all: an OS error inside the file sink's
            # write is a fault no public seam should be able to inject.
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(audit_logfile, "_write_all", disk_full)
            kept = await mem.persist_pattern("Kept in the outbox", "style")
            with pytest.raises(SecurityPipelineError, match="could not be written"):
                logger.flush()  # the writer's append fails; the next call hears of it
        assert await mem.long_term.count() == 2
        assert kept["pattern_id"] in {e["target_id"] for e in _outbox_events(mock_config)}
    security_pipeline.close_shared()
    path = mock_config.storage_dir / "audit.jsonl"
    stored_before = {e["target_id"] for e in _read_events(path) if e["event"] == "pattern.store"}
    assert kept["pattern_id"] not in stored_before
    async with memory(mock_config) as mem:  # opening the store replays the outbox
        assert await mem.long_term.count() == 2
    events = audit_events(mock_config)
    stored = [e["target_id"] for e in events if e["event"] == "pattern.store"]
    assert len(stored) == len(set(stored)) == 2
    assert kept["pattern_id"] in stored
    assert AuditLogger(log_file=path).verify().ok


def _read_events(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


async def test_with_audit_sync_off_a_persist_only_queues_its_event(
    key_prefix: str, storage_dir: Path
) -> None:
    """audit_sync=False: the final event is queued behind the commit, not written by it;
    a flush (here close_shared) writes it."""
    config = MemoryConfig(
        redis_mock=True, storage_dir=storage_dir, key_prefix=key_prefix, audit_sync=False
    )
    path = storage_dir / "audit.jsonl"
    async with memory(config) as mem:
        mem.pipeline.audit_logger.linger_s = 60.0  # the writer leaves queued events alone
        stored = await mem.persist_pattern("Prefer small commits", "style")
        assert not path.exists() or stored["pattern_id"] not in path.read_text()
    events = audit_events(config)
    assert any(
        e["event"] == "pattern.store" and e["target_id"] == stored["pattern_id"] for e in events
    )
