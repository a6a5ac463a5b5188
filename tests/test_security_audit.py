"""The audit log: hash chain, tamper detection, rotation, sanitisation, durability, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from waiting import WriteRecorder, wait_until

from attune.errors import AttuneError, SecurityPipelineError, ValidationError
from attune.memory.security.audit import (
    FIELDS,
    GENESIS,
    REDACTED,
    AuditEvent,
    AuditLogger,
    VerifyResult,
    sanitize_details,
)
from attune.memory.security.audit import codec as audit_codec
from attune.memory.timestamps import iso_us_z

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


@pytest.fixture
def logger(log_path: Path) -> Any:
    audit = AuditLogger(log_path)
    yield audit
    audit.close()


def fill(audit: AuditLogger, count: int, **overrides: Any) -> None:
    for i in range(count):
        fields: dict[str, Any] = {
            "user_id": "agent-1",
            "tier": "CONTRIBUTOR",
            "target_id": f"pat_{i}",
            "classification": "INTERNAL",
            "details": {"n": i},
        }
        fields.update(overrides)
        audit.log(AuditEvent("pattern.store", **fields))


# -- format and chain ------------------------------------------------------------------------------


def test_every_field_present_and_chain_valid(logger: AuditLogger, log_path: Path) -> None:
    logger.log(
        AuditEvent(
            "pattern.store",
            user_id="agent-1",
            tier="CONTRIBUTOR",
            target_id="pat_1",
            classification="SENSITIVE",
            details={"rule": "credentials", "pii": {"email": 2}},
        )
    )
    logger.log(AuditEvent("access.check", user_id="agent-2", tier="OBSERVER", outcome="denied"))
    lines = raw_lines(log_path)
    records = [json.loads(line) for line in lines]
    assert [list(r) for r in records] == [list(FIELDS)] * 2
    first, second = records
    assert TS.fullmatch(first["ts"]) and first["ts"] <= second["ts"]
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev"] == GENESIS and second["prev"] == sha(lines[0])
    assert first["details"] == {"pii": {"email": 2}, "rule": "credentials"}
    assert first["classification"] == "SENSITIVE" and first["target_id"] == "pat_1"
    assert second["outcome"] == "denied" and second["target_id"] is None
    assert second["classification"] is None and second["details"] == {}
    assert b" " not in lines[0]  # compact
    result = logger.verify()
    assert result and result.lines_checked == 2 and result.files == 1
    assert result.head == sha(lines[1])
    assert str(result) == "audit log intact: 2 events in 1 file"


def test_str_enum_values_are_logged_as_their_value(logger: AuditLogger, log_path: Path) -> None:
    from attune.memory.types import Classification

    logger.log(
        AuditEvent("pattern.store", user_id="a", tier="T", classification=Classification.PUBLIC)
    )
    assert json.loads(raw_lines(log_path)[0])["classification"] == "PUBLIC"


def test_doc_style_construction_writes_nothing(tmp_path: Path) -> None:
    audit = AuditLogger(log_file=tmp_path / "log" / "audit.jsonl")
    result = audit.verify()
    assert result.ok and result.lines_checked == 0 and result.files == 0
    assert audit.query() == []
    assert not (tmp_path / "log").exists()
    audit.close()
    audit.close()


def test_default_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_AUDIT_LOG", str(tmp_path / "env" / "a.jsonl"))
    assert AuditLogger().log_file == tmp_path / "env" / "a.jsonl"
    monkeypatch.delenv("ATTUNE_AUDIT_LOG")
    monkeypatch.setenv("ATTUNE_STORAGE_DIR", str(tmp_path / "store"))
    assert AuditLogger().log_file == tmp_path / "store" / "audit.jsonl"


@pytest.mark.parametrize("linger", [0, -1.0, True, "0.02", float("nan")])
def test_bad_linger_is_a_configuration_error(tmp_path: Path, linger: Any) -> None:
    with pytest.raises(AttuneError, match="linger_s"):
        AuditLogger(tmp_path / "a.jsonl", linger_s=linger)
    audit = AuditLogger(tmp_path / "a.jsonl")
    with pytest.raises(AttuneError, match="linger_s"):
        audit.linger_s = linger
    assert audit.linger_s == 0.02


def test_a_running_loggers_linger_can_be_changed(tmp_path: Path) -> None:
    """Set on a running logger, a new linger applies at once: a writer told to wait a
    minute writes the events queued while it waits as soon as the linger is short again."""
    written = WriteRecorder()
    audit = AuditLogger(tmp_path / "a.jsonl", on_write=written)
    try:
        audit.log(AuditEvent("e", user_id="u", tier="T"))  # starts the writer
        audit.linger_s = 60.0
        assert audit.linger_s == 60.0
        audit.submit(AuditEvent("queued", user_id="u", tier="T"))
        assert not written.reached(2, timeout=0.3)  # lingering: not written on its own
        audit.linger_s = 0.01
        written.wait_for(2)
        assert written.threads[-1] == "attune-audit-writer"  # not a flush's
        assert [e["event"] for e in audit.query()] == ["e", "queued"]
    finally:
        audit.close()


def test_on_write_is_told_each_batch_and_what_it_raises_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def hook(count: int) -> None:
        calls.append(count)
        raise RuntimeError("a broken metrics hook")

    audit = AuditLogger(tmp_path / "a.jsonl", on_write=hook)
    assert audit.on_write is hook
    try:
        audit.log(AuditEvent("e", user_id="u", tier="T"))  # written all the same
        tickets = [audit.submit(AuditEvent("q", user_id="u", tier="T")) for _ in range(3)]
        audit.wait(tickets[-1])
        assert calls == [1, 3]
        assert "on_write hook" in caplog.text and "a broken metrics hook" in caplog.text
        assert audit.verify().lines_checked == 4
    finally:
        audit.close()
    with pytest.raises(AttuneError, match="on_write"):
        AuditLogger(tmp_path / "a.jsonl", on_write=42)  # type: ignore[arg-type]


def test_failure_pending_says_a_failure_waits_for_the_next_call(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    audit = AuditLogger(blocker / "audit.jsonl", sync=False)
    assert not audit.failure_pending
    audit.log(AuditEvent("e", user_id="u", tier="T"))  # queued; its write will fail
    wait_until(lambda: audit.failure_pending, "the writer's failure")
    assert audit.failure_pending  # reading it reports nothing
    with pytest.raises(SecurityPipelineError, match="could not be written"):
        audit.report_failures()
    assert not audit.failure_pending
    audit.report_failures()  # told once
    audit.close()


def test_only_an_audit_event_is_logged(logger: AuditLogger) -> None:
    with pytest.raises(ValidationError):
        logger.log({"event": "e", "user_id": "u", "tier": "T"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        logger.begin([("e", "u", "T")])  # type: ignore[list-item]
    assert logger.query() == []


def test_bad_max_bytes_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(AttuneError, match="max_bytes"):
        AuditLogger(tmp_path / "a.jsonl", max_bytes=0)


def test_permissions_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "audit.jsonl"
    audit = AuditLogger(path)
    audit.log(AuditEvent("x", user_id="u", tier="T"))
    audit.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700


def test_missing_log_verifies_ok() -> None:
    result = VerifyResult(True)
    assert result and str(result) == "audit log intact: 0 events in 0 files"


# -- tamper detection ------------------------------------------------------------------------------


def _alter(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b'"outcome":"success"', b'"outcome":"denied"')
    return lines


def _remove(lines: list[bytes]) -> list[bytes]:
    del lines[2]
    return lines


def _insert_copy(lines: list[bytes]) -> list[bytes]:
    lines.insert(2, lines[0])
    return lines


def _insert_forged(lines: list[bytes]) -> list[bytes]:
    forged = json.loads(lines[2])
    forged["event"] = "pattern.delete"
    forged["prev"] = "f" * 64
    lines.insert(2, json.dumps(forged, separators=(",", ":")).encode())
    return lines


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[2], lines[3] = lines[3], lines[2]
    return lines


def _reseq_removal(lines: list[bytes]) -> list[bytes]:
    """Remove line 3 and renumber the rest (the seq check alone would not see it)."""
    del lines[2]
    out = []
    for i, line in enumerate(lines, 1):
        out.append(re.sub(rb'"seq":\d+', b'"seq":%d' % i, line))
    return out


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (_alter, 3, "altered"),
        (_remove, 3, "sequence broken"),
        (_insert_copy, 3, "sequence broken"),
        (_insert_forged, 3, "inserted"),
        (_swap, 3, "sequence broken"),
        (_reseq_removal, 3, "hash chain broken"),
        (lambda lines: lines[1:], 1, "does not start here"),
        (lambda lines: [*lines[:2], b"", *lines[2:]], 3, "not a valid audit event"),
        (lambda lines: [*lines[:2], b"{not json", *lines[2:]], 3, "not a valid audit event"),
    ],
    ids=[
        "altered",
        "removed",
        "inserted",
        "forged",
        "swapped",
        "renumbered",
        "first",
        "blank",
        "garbled",
    ],
)
def test_verify_reports_first_bad_line(
    logger: AuditLogger, log_path: Path, tamper: Any, line: int, reason: str
) -> None:
    fill(logger, 6)
    assert logger.verify()
    write_lines(log_path, tamper(raw_lines(log_path)))
    result = logger.verify()
    assert not result
    assert result.file == log_path and result.line == line
    assert result.reason is not None and reason in result.reason
    assert str(result).startswith(f"audit log TAMPERED at audit.jsonl line {line}: ")


def test_verify_reports_truncated_last_line(logger: AuditLogger, log_path: Path) -> None:
    fill(logger, 4)
    data = log_path.read_bytes()
    log_path.write_bytes(data[:-20])
    result = logger.verify()
    assert not result and result.line == 4 and result.lines_checked == 3
    assert result.reason is not None and "incomplete line" in result.reason


def test_torn_tail_is_dropped_before_the_next_write(logger: AuditLogger, log_path: Path) -> None:
    fill(logger, 3)
    logger.close()
    with log_path.open("ab") as f:
        f.write(b'{"ts":"2025-01-01T00:00:00.000000Z","seq":4,"ev')  # a crashed write
    fill(logger, 1)
    assert logger.verify().lines_checked == 4
    assert [r["seq"] for r in logger.query()] == [1, 2, 3, 4]


def test_corrupt_tail_refuses_new_events(logger: AuditLogger, log_path: Path) -> None:
    fill(logger, 2)
    logger.close()
    with log_path.open("ab") as f:
        f.write(b"this is not an event\n")
    with pytest.raises(SecurityPipelineError, match="verify"):
        fill(logger, 1)
    assert len(raw_lines(log_path)) == 3


# -- rotation --------------------------------------------------------------------------------------


def test_rotation_keeps_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLogger(path, max_bytes=800)
    fill(audit, 20)
    audit.close()
    files = audit.files()
    assert len(files) > 3
    assert [f.name for f in files[-2:]] == ["audit.jsonl.1", "audit.jsonl"]
    assert all(f.stat().st_size <= 800 for f in files)
    for older, newer in itertools.pairwise(files):
        assert json.loads(raw_lines(newer)[0])["prev"] == sha(raw_lines(older)[-1])
    result = audit.verify()
    assert result and result.lines_checked == 20 and result.files == len(files)
    assert [r["seq"] for r in audit.query()] == list(range(1, 21))
    assert [r["target_id"] for r in audit.query(limit=2)] == ["pat_18", "pat_19"]


def test_tamper_in_a_rotated_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLogger(path, max_bytes=1200)
    fill(audit, 20)
    rotated = path.with_name("audit.jsonl.2")
    lines = raw_lines(rotated)
    write_lines(rotated, _alter(lines))
    result = audit.verify()
    assert not result and result.file == rotated and result.line == 3
    assert str(result).startswith("audit log TAMPERED at audit.jsonl.2 line 3: hash chain broken")
    audit.close()


def test_pruned_oldest_file_is_a_break_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLogger(path, max_bytes=800)
    fill(audit, 20)
    oldest = audit.files()[0]
    oldest.unlink()
    result = audit.verify()
    assert not result and result.file == audit.files()[0] and result.line == 1
    pruned = audit.verify(allow_pruned=True)
    assert pruned and pruned.lines_checked < 20
    audit.close()


def test_a_missing_current_file_beside_rotated_ones_is_tampering(tmp_path: Path) -> None:
    """Rotated files without the current one: its (newest) events were deleted. verify
    used to drop the missing file silently and pass the older ones as the whole log."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLogger(path, max_bytes=800)
    fill(audit, 20)
    audit.close()
    path.unlink()
    for result in (audit.verify(), audit.verify(allow_pruned=True)):
        assert not result and result.file == path and result.line is None
        assert result.files == len(audit.files()) and result.lines_checked < 20
        assert str(result) == (
            "audit log TAMPERED at audit.jsonl: the current file is missing while rotated "
            "files remain: the newest events were deleted, or the file was moved"
        )


def test_verify_waits_out_a_rotation_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer rotating renames the current file to .1, then creates the fresh one: a
    verify that looks in between finds the fresh one when it looks again."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLogger(path, max_bytes=800)
    fill(audit, 20)
    audit.close()
    every = AuditLogger.files
    looks: list[int] = []

    def mid_rotation(self: AuditLogger) -> list[Path]:
        looks.append(1)
        files = every(self)
        return files[:-1] if len(looks) == 1 else files  # the first look: no current file

    monkeypatch.setattr(AuditLogger, "files", mid_rotation)
    result = audit.verify()
    assert result and result.lines_checked == 20 and len(looks) == 2


def test_a_failure_with_no_line_names_no_line() -> None:
    """A chain cut short of a checkpoint in an empty log has no line to name: the message
    said "TAMPERED at ? line None"."""
    reason = "the chain ends before the checkpoint (seq 5)"
    assert str(VerifyResult(False, reason=reason)) == f"audit log TAMPERED: {reason}"
    in_file = VerifyResult(False, file=Path("/x/audit.jsonl"), reason=reason)
    assert str(in_file) == f"audit log TAMPERED at audit.jsonl: {reason}"
    in_table = VerifyResult(False, reason=reason, table="audit_events")
    assert str(in_table) == f"audit log TAMPERED at table audit_events: {reason}"
    assert str(VerifyResult(False, line=3, reason=reason, table="t")).startswith(
        "audit log TAMPERED at table t seq 3: "
    )


def test_a_checkpoint_beyond_an_empty_log_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    audit = AuditLogger(path)
    result = audit.verify(anchor=(5, "0" * 64))
    assert not result and result.file == path and result.line is None
    assert str(result) == (
        "audit log TAMPERED at audit.jsonl: the chain ends before the checkpoint (seq 5): "
        "events up to the checkpoint were removed from the end"
    )
    missing = AuditLogger(tmp_path / "none.jsonl").verify(anchor=(5, "0" * 64))
    assert not missing and "None" not in str(missing) and "?" not in str(missing)


# -- query -----------------------------------------------------------------------------------------


def test_query_filters(logger: AuditLogger) -> None:
    logger.log(AuditEvent("pattern.store", user_id="alice", tier="T", target_id="p1"))
    logger.log(AuditEvent("pattern.retrieve", user_id="bob", tier="T", target_id="p1"))
    logger.log(
        AuditEvent("access.check", user_id="bob", tier="T", target_id="p2", outcome="denied")
    )
    logger.log(AuditEvent("pattern.store", user_id="alice", tier="T", target_id="p3"))
    every = logger.query()
    assert [r["seq"] for r in every] == [1, 2, 3, 4]

    assert [r["seq"] for r in logger.query(event_type="pattern.store")] == [1, 4]
    assert [r["seq"] for r in logger.query(user_id="bob")] == [2, 3]
    assert [r["seq"] for r in logger.query(outcome="denied")] == [3]
    assert [r["seq"] for r in logger.query(target_id="p1")] == [1, 2]
    assert [r["seq"] for r in logger.query(user_id="alice", target_id="p3")] == [4]
    assert [r["seq"] for r in logger.query(limit=2)] == [3, 4]
    assert logger.query(limit=0) == []

    third = every[2]["ts"]
    assert [r["seq"] for r in logger.query(since=third)] == [3, 4]
    as_datetime = datetime.fromisoformat(third)
    assert [r["seq"] for r in logger.query(since=as_datetime)] == [3, 4]
    naive = as_datetime.astimezone(UTC).replace(tzinfo=None)
    assert [r["seq"] for r in logger.query(since=naive)] == [3, 4]
    assert logger.query(since="2999-01-01") == []
    with pytest.raises(ValidationError):
        logger.query(since="yesterday")
    with pytest.raises(ValidationError):
        logger.query(limit=-1)


def test_query_skips_garbled_lines(logger: AuditLogger, log_path: Path) -> None:
    fill(logger, 2)
    with log_path.open("ab") as f:
        f.write(b"garbage\n")
    assert [r["seq"] for r in logger.query()] == [1, 2]


# -- never content ---------------------------------------------------------------------------------


def test_details_keep_counts_and_kinds_only() -> None:
    details = {
        "kinds": {"aws_access_key": 1, "github_token": 2},
        "rule": "credentials",
        "encrypted": True,
        "ratio": 0.5,
        "none": None,
        "free_text": "the launch code is 1234",
        "email": "alice@example.com",
        "long": "x" * 65,
        "nan": float("nan"),
        "blob": b"bytes",
        "list": ["email", "has space", 3],
        "deep": {"a": {"b": {"c": {"d": 1}}}},
        "bad key!": "fine_value",
        7: "non-string key",
    }
    assert sanitize_details(details) == {
        REDACTED: REDACTED,
        "blob": REDACTED,
        "deep": {"a": {"b": {"c": REDACTED}}},
        "email": REDACTED,
        "encrypted": True,
        "free_text": REDACTED,
        "kinds": {"aws_access_key": 1, "github_token": 2},
        "list": ["email", REDACTED, 3],
        "long": REDACTED,
        "nan": REDACTED,
        "none": None,
        "ratio": 0.5,
        "rule": "credentials",
    }
    assert sanitize_details(None) == {}
    with pytest.raises(ValidationError):
        sanitize_details(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_free_text_never_reaches_the_file(logger: AuditLogger, log_path: Path) -> None:
    logger.log(
        AuditEvent(
            "pattern.store",
            user_id="u",
            tier="T",
            details={"note": "alice@example.com called 555-0100", "long": "a" * 100, "count": 3},
        )
    )
    data = log_path.read_bytes()
    # (Not just b"555": the line's own timestamp may hold those digits, as 1 run in ~200 did.)
    assert b"alice" not in data and b"555-0100" not in data and b"a" * 65 not in data
    assert json.loads(data)["details"] == {"count": 3, "long": REDACTED, "note": REDACTED}


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
json_like = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=70), inner, max_size=4)
    ),
    max_leaves=20,
)


def _leaves_allowed(value: Any, depth: int) -> bool:
    if isinstance(value, dict):
        return depth <= 3 and all(
            (k == REDACTED or re.fullmatch(r"[A-Za-z0-9_.:\-]{0,64}", k))
            and _leaves_allowed(v, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return depth <= 3 and all(_leaves_allowed(v, depth + 1) for v in value)
    if isinstance(value, str):
        return value == REDACTED or re.fullmatch(r"[A-Za-z0-9_.:\-]{0,64}", value) is not None
    return value is None or isinstance(value, bool | int | float)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=70), json_like, max_size=5))
def test_sanitised_details_hold_only_identifiers_and_numbers(details: dict[str, Any]) -> None:
    cleaned = sanitize_details(details)
    assert _leaves_allowed(cleaned, 0)
    json.dumps(cleaned, allow_nan=False)  # always writable


def test_newline_in_ids_cannot_forge_a_line(logger: AuditLogger, log_path: Path) -> None:
    forged = '{"ts":"2025-01-01T00:00:00.000000Z","seq":2,"event":"pattern.delete"}'
    logger.log(
        AuditEvent(
            "access.check",
            user_id=f"mallory\n{forged}",
            tier="T",
            target_id="p\r\n1\u2028\u202e\x00",
        )
    )
    lines = raw_lines(log_path)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert "\n" not in record["user_id"] and record["user_id"].startswith("mallory{")
    assert record["target_id"] == "p1"
    assert logger.verify().lines_checked == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "pattern store"},
        {"event": ""},
        {"tier": "tier\n"},
        {"outcome": "ok; rm -rf"},
        {"classification": "x" * 65},
        {"user_id": ""},
        {"user_id": "u" * 257},
        {"user_id": 42},
        {"target_id": 42},
        {"details": "free text"},
    ],
)
def test_invalid_fields_are_rejected(
    logger: AuditLogger, log_path: Path, kwargs: dict[str, Any]
) -> None:
    fields: dict[str, Any] = {"event": "e", "user_id": "u", "tier": "T", **kwargs}
    with pytest.raises(ValidationError) as info:
        logger.log(AuditEvent(fields.pop("event"), **fields))
    assert "rm -rf" not in str(info.value) and "free text" not in str(info.value)
    assert not log_path.exists()


# -- durability and errors -------------------------------------------------------------------------


def test_sync_log_is_on_disk_when_it_returns(logger: AuditLogger, log_path: Path) -> None:
    for i in range(3):
        logger.log(AuditEvent("e", user_id="u", tier="T", target_id=f"t{i}"))
        with open(log_path, "rb") as f:  # a fresh descriptor: what any reader sees
            assert json.loads(f.read().splitlines()[-1])["target_id"] == f"t{i}"


async def test_unsynced_logger_flushes_on_demand(log_path: Path) -> None:
    audit = AuditLogger(log_path, sync=False)
    await audit.alog(AuditEvent("e", user_id="u", tier="T"))
    audit.log(AuditEvent("e", user_id="u", tier="T"))
    audit.flush()
    assert len(raw_lines(log_path)) == 2
    audit.log(AuditEvent("e", user_id="u", tier="T"))
    audit.close()
    assert audit.verify().lines_checked == 3


def test_close_is_idempotent_and_logging_afterwards_reopens(logger: AuditLogger) -> None:
    fill(logger, 1)
    logger.close()
    logger.close()
    fill(logger, 1)
    logger.flush()
    assert logger.verify().lines_checked == 2


async def test_writer_error_surfaces_as_attune_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    audit = AuditLogger(blocker / "audit.jsonl")
    with pytest.raises(SecurityPipelineError, match="could not be written") as info:
        audit.log(AuditEvent("e", user_id="secret-user", tier="T"))
    assert isinstance(info.value, AttuneError) and "secret-user" not in str(info.value)
    with pytest.raises(SecurityPipelineError):
        await audit.alog(AuditEvent("e", user_id="u", tier="T"))
    audit.close()


def test_unsynced_writer_error_is_reported_by_flush_close_or_next_call(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    audit = AuditLogger(blocker / "audit.jsonl", sync=False)
    audit.log(AuditEvent("e", user_id="u", tier="T"))  # only queued: returns
    with pytest.raises(SecurityPipelineError, match="could not be written"):
        audit.flush()
    audit.log(AuditEvent("e", user_id="u", tier="T"))
    with pytest.raises(SecurityPipelineError, match="could not be written"):
        audit.close()
    audit.log(AuditEvent("e", user_id="u", tier="T"))
    wait_until(lambda: audit.failure_pending, "the writer's failure")
    with pytest.raises(SecurityPipelineError, match="could not be written"):
        audit.log(AuditEvent("e", user_id="u", tier="T"))  # the next call reports it
    with contextlib.suppress(SecurityPipelineError):
        audit.close()


async def test_cancelled_alog_still_logs(logger: AuditLogger) -> None:
    task = asyncio.create_task(logger.alog(AuditEvent("e", user_id="u", tier="T")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    logger.flush()
    assert logger.verify().lines_checked == 1


# -- concurrency -----------------------------------------------------------------------------------


def _assert_complete(audit: AuditLogger, count: int) -> None:
    records = audit.query()
    assert [r["seq"] for r in records] == list(range(1, count + 1))
    result = audit.verify()
    assert result and result.lines_checked == count


def test_many_threads(logger: AuditLogger) -> None:
    def work(n: int) -> None:
        for i in range(25):
            logger.log(AuditEvent("e", user_id=f"thread-{n}", tier="T", target_id=f"{n}-{i}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_complete(logger, 200)
    assert {r["target_id"] for r in logger.query()} == {
        f"{n}-{i}" for n in range(8) for i in range(25)
    }


async def test_gather_of_200_alogs(logger: AuditLogger) -> None:
    await asyncio.gather(
        *(logger.alog(AuditEvent("e", user_id="u", tier="T", target_id=str(i))) for i in range(200))
    )
    _assert_complete(logger, 200)
    assert {r["target_id"] for r in logger.query()} == {str(i) for i in range(200)}


def test_several_event_loops_in_threads(logger: AuditLogger) -> None:
    async def burst(n: int) -> None:
        await asyncio.gather(
            *(logger.alog(AuditEvent("e", user_id=f"l{n}", tier="T")) for _ in range(40))
        )

    threads = [threading.Thread(target=asyncio.run, args=(burst(n),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_complete(logger, 160)


@pytest.mark.parametrize("max_bytes", [10 * 1024 * 1024, 2000])
def test_two_loggers_on_one_file(log_path: Path, max_bytes: int) -> None:
    one = AuditLogger(log_path, max_bytes=max_bytes)
    two = AuditLogger(log_path, max_bytes=max_bytes)

    def work(audit: AuditLogger, name: str) -> None:
        for i in range(40):
            audit.log(AuditEvent("e", user_id=name, tier="T", target_id=str(i)))

    threads = [threading.Thread(target=work, args=pair) for pair in ((one, "one"), (two, "two"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one.close()
    two.close()
    _assert_complete(one, 80)
    users = [r["user_id"] for r in one.query()]
    assert users.count("one") == users.count("two") == 40


def test_another_process_appends_to_the_same_chain(log_path: Path) -> None:
    script = (
        "import sys\n"
        "from attune.memory.security.audit import AuditEvent, AuditLogger\n"
        "a = AuditLogger(sys.argv[1], max_bytes=3000)\n"
        "for i in range(30): a.log(AuditEvent('e', user_id='child', tier='T'))\n"
        "a.close()\n"
    )
    audit = AuditLogger(log_path, max_bytes=3000)
    audit.log(AuditEvent("e", user_id="parent", tier="T"))  # creates the directory
    child = subprocess.Popen([sys.executable, "-c", script, str(log_path)])
    for _ in range(30):
        audit.log(AuditEvent("e", user_id="parent", tier="T"))
    assert child.wait(timeout=60) == 0
    audit.close()
    _assert_complete(audit, 61)
    assert os.path.exists(log_path)


def test_queued_events_are_flushed_at_exit(log_path: Path) -> None:
    script = (
        "import sys\n"
        "from attune.memory.security.audit import AuditEvent, AuditLogger\n"
        "a = AuditLogger(sys.argv[1], sync=False)\n"
        "for i in range(50): a.log(AuditEvent('e', user_id='u', tier='T'))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(log_path)], check=True, timeout=60)
    assert AuditLogger(log_path).verify().lines_checked == 50


async def test_unawaited_event_is_durable_once_a_later_one_returns(tmp_path: Path) -> None:
    """``wait=False`` queues a decision; the operation's final, awaited event covers it."""
    path = tmp_path / "audit.jsonl"
    logger = AuditLogger(log_file=path)
    try:
        logger.submit(AuditEvent("classification.decision", user_id="u", tier="CONTRIBUTOR"))
        await logger.alog(AuditEvent("pattern.store", user_id="u", tier="CONTRIBUTOR"))
        events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
        assert events == ["classification.decision", "pattern.store"]
    finally:
        logger.close()


async def test_events_nobody_waits_for_are_written_soon_after(tmp_path: Path) -> None:
    """Queued events share one write after a short linger, without any flush or close."""
    path = tmp_path / "audit.jsonl"
    written = WriteRecorder()
    logger = AuditLogger(log_file=path, on_write=written)
    try:
        for i in range(5):
            logger.submit(AuditEvent("pattern.retrieve", user_id=f"u{i}", tier="OBSERVER"))
        await written.await_for(5)  # the writer thread's own write, a linger (20 ms) later
        assert set(written.threads) == {"attune-audit-writer"}  # no flush wrote them
        assert [json.loads(x)["user_id"] for x in path.read_text().splitlines()] == [
            f"u{i}" for i in range(5)
        ]
        assert logger.verify().ok
    finally:
        logger.close()


async def test_reads_of_the_log_see_queued_events(tmp_path: Path) -> None:
    logger = AuditLogger(log_file=tmp_path / "audit.jsonl")
    try:
        logger.submit(AuditEvent("pattern.retrieve", user_id="u", tier="OBSERVER"))
        assert [e["event"] for e in logger.query()] == ["pattern.retrieve"]
        logger.submit(AuditEvent("staging.list", user_id="u", tier="OBSERVER"))
        result = logger.verify()
        assert result.ok and result.lines_checked == 2
    finally:
        logger.close()


# -- caller-runs commits (prepare / stage / commit) ---------------------------------------------


@pytest.fixture
def writes() -> WriteRecorder:
    return WriteRecorder()


@pytest.fixture
def lingering(log_path: Path, writes: WriteRecorder) -> Any:
    """A logger whose writer thread leaves queued events alone for a minute (it would
    take them after 20 ms, which a slow CI machine can exceed between two lines), and
    tells ``writes`` each batch written."""
    audit = AuditLogger(log_path, linger_s=60.0, on_write=writes)
    yield audit
    audit.close()


def test_commit_writes_the_queued_batch_in_order_from_the_calling_thread(
    lingering: AuditLogger, log_path: Path, writes: WriteRecorder
) -> None:
    """A staged event goes out behind the events queued before it, written by the thread
    that commits it (no writer hand-off), and is on disk when commit returns."""
    logger = lingering
    logger.submit(AuditEvent("first", user_id="u", tier="T"))  # queued, lingering
    prepared = AuditEvent("final", user_id="u", tier="T", target_id="t1")
    assert not log_path.exists() or b"final" not in log_path.read_bytes()  # not queued yet
    ticket = logger.submit(prepared)
    worker = threading.Thread(target=logger.wait, args=(ticket,), name="store-thread")
    worker.start()
    worker.join()
    with open(log_path, "rb") as f:
        events = [json.loads(line)["event"] for line in f.read().splitlines()]
    assert events == ["first", "final"]
    assert writes.threads == ["store-thread"] and writes.batches == [2]
    logger.wait(ticket)  # committing again is a no-op once durable
    assert len(raw_lines(log_path)) == 2 and logger.verify()


def test_tickets_of_one_batch_share_one_write(
    lingering: AuditLogger, writes: WriteRecorder
) -> None:
    logger = lingering
    tickets = [
        logger.submit(AuditEvent("e", user_id="u", tier="T", target_id=f"t{i}")) for i in range(5)
    ]
    for ticket in tickets:
        logger.wait(ticket)
    assert writes.batches == [5]
    assert [r["target_id"] for r in logger.query()] == [f"t{i}" for i in range(5)]


def test_prepare_rejects_a_bad_event_before_anything_is_queued(
    logger: AuditLogger, log_path: Path
) -> None:
    with pytest.raises(ValidationError):
        AuditEvent("not an identifier!", user_id="u", tier="T")
    logger.flush()
    assert not log_path.exists()


def test_commits_racing_the_writer_thread_keep_one_chain(logger: AuditLogger) -> None:
    """Threads committing their own batches while async callers wake the writer thread:
    every event lands once, in one valid chain."""

    def committer(n: int) -> None:
        for _ in range(40):
            logger.wait(logger.submit(AuditEvent("c", user_id=f"c{n}", tier="T")))

    async def waiters() -> None:
        await asyncio.gather(
            *(logger.alog(AuditEvent("a", user_id="w", tier="T")) for _ in range(80))
        )

    threads = [threading.Thread(target=committer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    asyncio.run(waiters())
    for t in threads:
        t.join()
    _assert_complete(logger, 4 * 40 + 80)


def test_commit_reports_a_failed_write(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    audit = AuditLogger(blocker / "audit.jsonl")
    ticket = audit.submit(AuditEvent("e", user_id="secret-user", tier="T"))
    with pytest.raises(SecurityPipelineError, match="could not be written") as info:
        audit.wait(ticket)
    assert "secret-user" not in str(info.value)
    with pytest.raises(SecurityPipelineError):  # the ticket keeps its outcome
        audit.wait(ticket)
    audit.close()


@settings(max_examples=500, deadline=None)
@given(
    ts=st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False, allow_infinity=False),
    nearby=st.floats(min_value=-2, max_value=2, allow_nan=False),
)
def test_timestamp_text_matches_strftime(ts: float, nearby: float) -> None:
    """The cached-second formatting gives strftime's text exactly, also right after
    another second (or date) was cached."""
    for when in (ts, max(0.0, ts + nearby), ts):
        expected = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert iso_us_z(when) == expected


def test_a_busy_writer_polls_and_an_idle_one_is_woken(tmp_path: Path) -> None:
    """Queued events are written without any flush whether the writer thread was asleep
    (woken by the first event) or polling (no wake-up per event while events keep coming)."""
    path = tmp_path / "audit.jsonl"
    written = WriteRecorder()
    logger = AuditLogger(log_file=path, linger_s=0.4, on_write=written)
    notified = 0
    # Counts the writer's wake-ups: an internal cost that no public API reports (and one
    # that a public counter on the hot path of every event is not worth).
    real_notify = logger._cond.notify_all

    def counting_notify() -> None:
        nonlocal notified
        notified += 1
        real_notify()

    logger._cond.notify_all = counting_notify  # type: ignore[method-assign]

    try:
        logger.submit(AuditEvent("e", user_id="u", tier="T"))  # starts the writer
        written.wait_for(1)
        # Busy: an event every 20 ms, several batches; the polling writer needs no wake-up.
        notified = 0
        for _ in range(30):
            logger.submit(AuditEvent("e", user_id="u", tier="T"))
            time.sleep(0.02)  # the pace of the events: the subject, not a wait
        written.wait_for(31)
        assert notified == 0
        assert set(written.threads) == {"attune-audit-writer"}  # no flush wrote them
        # Quiet for longer than a linger: the writer sleeps; the next event wakes it. The
        # quiet period is the subject (time must pass; the writer announces no idling).
        time.sleep(1.2)
        logger.submit(AuditEvent("e", user_id="u", tier="T"))
        written.wait_for(32)
        assert notified == 1
        assert len(path.read_text().splitlines()) == 32
        assert logger.verify().ok
    finally:
        logger.close()


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), _json_values, max_size=8))
def test_the_body_encoder_matches_the_generic_json_encoder(fields: dict[str, Any]) -> None:
    """Lines are encoded by a C encoder built once; its text must be what the generic
    compact ASCII encoder gives (the line format is what verify() and readers parse)."""
    generic = json.dumps(fields, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    # The internal encoder itself (no public API returns a body without writing a file).
    assert audit_codec._compact_ascii_json(fields) == generic


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_the_body_encoder_refuses_what_json_cannot_hold(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        audit_codec._compact_ascii_json({"x": bad})


def test_queue_validates_at_once_and_writes_with_the_next_flush(logger: AuditLogger) -> None:
    with pytest.raises(ValidationError):
        logger.submit(AuditEvent("not an identifier!", user_id="u", tier="T"))
    logger.submit(AuditEvent("pattern.retrieve", user_id="u", tier="T", target_id="pat_1"))
    logger.flush()
    events = [json.loads(line) for line in logger.log_file.read_bytes().splitlines()]
    assert [(e["event"], e["target_id"]) for e in events] == [("pattern.retrieve", "pat_1")]


_ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
_names = st.from_regex(r"[A-Za-z0-9_.:\-]{1,12}", fullmatch=True)


def _body_text(event: AuditEvent) -> str:
    """An event's JSON, as the writer encodes it (the internal encoder: no public API
    returns a line's body without writing it to a file)."""
    return str(audit_codec._encode([(0.0, event)])[0][1])


_detail_values = st.none() | st.booleans() | st.integers(-2, 2) | _names | _ids | st.floats()


@settings(max_examples=400, deadline=None)
@given(
    event=_names,
    user_id=_ids,
    tier=_names,
    target_id=st.none() | _ids,
    classification=st.none() | _names,
    outcome=_names,
    details=st.none() | st.dictionaries(_names | _ids, _detail_values, max_size=4),
)
def test_an_event_is_encoded_as_the_generic_encoder_encodes_its_fields(
    event: str,
    user_id: str,
    tier: str,
    target_id: str | None,
    classification: str | None,
    outcome: str,
    details: dict[str, Any] | None,
) -> None:
    """An event validates itself when made (or refuses to be made); the writer encodes
    its sanitised fields, in line order, exactly as the generic compact ASCII encoder does."""
    try:
        made = AuditEvent(event, user_id, tier, target_id, classification, outcome, details)
    except ValidationError:
        return
    fields = made.fields()
    assert list(fields) == list(FIELDS[2:-1])
    generic = json.dumps(fields, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    assert _body_text(made) == generic[1:-1]
    assert fields["details"] == sanitize_details(details)


def test_an_event_never_confuses_true_with_one() -> None:
    events = [AuditEvent("e", "u", "T", None, None, "ok", {"auto": v}) for v in (True, 1, 1.0)]
    texts = [_body_text(e) for e in events]
    assert [json.loads("{" + t + "}")["details"]["auto"] for t in texts] == [True, 1, 1.0]
    assert '"auto":true' in texts[0] and '"auto":1}' in texts[1]


def test_an_event_is_frozen() -> None:
    event = AuditEvent("e", "u", "T")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "f"  # type: ignore[misc]


def test_queue_keeps_the_event_text_whichever_path_it_takes(logger: AuditLogger) -> None:
    logger.submit(AuditEvent("pattern.retrieve", user_id='a"b', tier="T", target_id="pat_\u00e9"))
    logger.submit(
        AuditEvent("pattern.retrieve", user_id='a"b', tier="T", target_id="pat_2", details={"n": 1})
    )
    logger.submit(AuditEvent("pattern.retrieve", 'a"b', "T", 'pat_"\u00e9\\', "PUBLIC"))
    logger.submit(AuditEvent("pattern.retrieve", 'a"b', "T", "pat_\x07bell", "PUBLIC"))
    logger.flush()
    events = [json.loads(line) for line in logger.log_file.read_bytes().splitlines()]
    assert [(e["user_id"], e["target_id"], e["details"]) for e in events] == [
        ('a"b', "pat_\u00e9", {}),
        ('a"b', "pat_2", {"n": 1}),
        ('a"b', 'pat_"\u00e9\\', {}),
        ('a"b', "pat_bell", {}),  # control characters dropped, as for any event
    ]
    line = logger.log_file.read_bytes().splitlines()[2]  # the bytes the writer writes
    assert line.split(b'"seq":3,')[1].split(b',"prev"')[0] == (
        b'"event":"pattern.retrieve","user_id":"a\\"b","tier":"T",'
        b'"target_id":"pat_\\"\\u00e9\\\\","classification":"PUBLIC","outcome":"success",'
        b'"details":{}'
    )


@pytest.mark.parametrize("target", ["", "x" * 257, 7, None])
def test_a_read_event_with_an_odd_target_is_validated_at_once(
    logger: AuditLogger, target: Any
) -> None:
    """A read's target is validated when its event is made: an odd one is refused then
    (empty or None are kept, as for any event)."""
    if target in ("", None):
        logger.submit(AuditEvent("pattern.retrieve", "u", "T", target, None))
        logger.flush()
        assert [e["target_id"] for e in logger.query()] == [target]
    else:
        with pytest.raises(ValidationError):
            logger.submit(AuditEvent("pattern.retrieve", "u", "T", target, None))
        logger.flush()
        assert logger.query() == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_logs_with_a_writer_of_its_own(logger: AuditLogger) -> None:
    """The child gets no writer thread from fork: its events must still be written, by a
    new writer, and the events the parent had queued are written once (by the parent)."""
    logger.log(AuditEvent("parent.before", user_id="u", tier="T"))
    logger.submit(
        AuditEvent("parent.queued", user_id="u", tier="T")
    )  # a batch open, not written yet
    pid = os.fork()
    if pid == 0:  # the child: log one event the durable way, then leave at once
        code = 1
        try:
            logger.submit(AuditEvent("child.queued", user_id="u", tier="T"))
            logger.log(AuditEvent("child.logged", user_id="u", tier="T"))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.flush()
    events = [e["event"] for e in logger.query()]
    assert sorted(events) == sorted(
        ["parent.before", "parent.queued", "child.queued", "child.logged"]
    )
    assert logger.verify()


class _WriterBug(BaseException):
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_that_died_is_replaced(
    logger: AuditLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer thread ended by a bug must not leave later events queued for nobody: the
    next event starts a new writer (the hot path joins an open batch without checking)."""
    logger.log(AuditEvent("first", user_id="u", tier="T"))
    # Private on purpose: the fault is a bug inside the writer thread, and its thread is
    # internal; no public seam should let a caller kill the writer.
    worker = logger._worker
    assert worker is not None and worker.thread is not None

    def broken(_batch: object) -> None:
        raise _WriterBug

    monkeypatch.setattr(logger, "_write", broken)
    logger.submit(AuditEvent("lost", user_id="u", tier="T"))  # its batch is the one the bug drops
    worker.thread.join(5)
    assert not worker.thread.is_alive() and logger._worker is None
    monkeypatch.undo()
    logger.submit(AuditEvent("after", user_id="u", tier="T"))
    logger.flush()
    assert [e["event"] for e in logger.query()] == ["first", "after"]


def test_the_package_exports_its_public_names() -> None:
    """Every name the audit log's users import comes from the package itself, whichever
    module of it defines the name."""
    import attune.memory.security.audit as audit

    assert set(audit.__all__) == {
        "AuditEvent",
        "AuditLogger",
        "AuditTicket",
        "Durability",
        "FIELDS",
        "GENESIS",
        "MAX_DETAIL_DEPTH",
        "MAX_ID_LENGTH",
        "OutboxWrite",
        "REDACTED",
        "StoreJournal",
        "VerifyResult",
        "replay_outbox",
        "sanitize_details",
    }
    for name in audit.__all__:
        assert getattr(audit, name) is not None
