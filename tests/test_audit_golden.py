"""The audit log's format is fixed: a log written by an earlier attune still verifies, and
is extended, line for line as that version would have extended it.

``data/audit_golden.jsonl`` was written by :func:`write_golden_events` with the single-module
``audit.py`` (commit 6bd8963, before it became a package); ``data/audit_golden_outbox.json``
holds the outbox payload of that run's ``begin`` (the log's path replaced). Neither file
may be regenerated: they are what logs and outbox rows on disk look like.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
from pathlib import Path

from attune.memory.security import audit as audit_package
from attune.memory.security.audit import GENESIS, AuditEvent, AuditLogger, replay_outbox

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "audit_golden.jsonl"
GOLDEN_OUTBOX = DATA / "audit_golden_outbox.json"
#: The lines ``begin`` wrote through the outbox (the last ones of the golden log).
OUTBOX_LINES = 2

_LINE = re.compile(rb'\{"ts":"([^"]+)","seq":(\d+),(.*),"prev":"([0-9a-f]{64})"\}')


def _parts(line: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(ts, seq, body, prev) of a line in the audit line format."""
    match = _LINE.fullmatch(line)
    assert match is not None, line
    ts, seq, body, prev = match.groups()
    return ts, seq, body, prev


def write_golden_events(logger: AuditLogger) -> str:
    """The events of the golden log, by every way of writing one; returns the payload of
    the outbox write (its last two lines)."""
    logger.log(
        AuditEvent(
            "pattern.store",
            user_id="alice",
            tier="CONTRIBUTOR",
            target_id="pat_1",
            classification="INTERNAL",
            details={
                "pii_count": 2,
                "kinds": ["email", "phone"],
                "encrypted": True,
                "ratio": 1.5,
                "nested": {"b": None, "a": [1, {"x": "y"}]},
                "bad key!": "x",
                "free": "text with spaces",
                "inf": float("inf"),
            },
        )
    )
    logger.submit(AuditEvent("pattern.retrieve", "bob", "OBSERVER", "pat_\u00fc\u2603", None))
    logger.submit(AuditEvent("pattern.retrieve", "bob", "OBSERVER", 'pat_"q\\', "PUBLIC"))
    logger.submit(
        AuditEvent(
            "access.check",
            user_id="bob",
            tier="OBSERVER",
            outcome="denied",
            details={"reason": "tier"},
        )
    )
    logger.flush()
    logger.log(
        AuditEvent(
            "pattern.delete",
            user_id='ca"r\\ol\u00e9',
            tier="STEWARD",
            target_id="p\x00q\x07",
            outcome="success",
        )
    )
    logger.submit(
        AuditEvent(
            "classification.decision",
            user_id="alice",
            tier="CONTRIBUTOR",
            target_id="pat_2",
            classification="SENSITIVE",
            details={"auto": True, "rule": "health"},
        )
    )
    stored = AuditEvent(
        "pattern.store",
        user_id="alice",
        tier="CONTRIBUTOR",
        target_id="pat_2",
        classification="SENSITIVE",
        details={"encrypted": True, "pii_count": 0},
    )
    write = logger.begin([stored])
    write.finish(committed=True)
    logger.flush()
    assert write.durable()
    return write.payload


def _golden_payload(log: Path) -> str:
    """The golden outbox payload, naming ``log``."""
    golden = json.loads(GOLDEN_OUTBOX.read_text())
    head, rest = golden["payload"].split("\n", 1)
    assert json.loads(head) == golden["log"]
    return json.dumps(str(log)) + "\n" + rest


def test_a_log_written_before_the_split_verifies_and_is_extended(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    shutil.copy(GOLDEN, log)
    golden = GOLDEN.read_bytes().splitlines()
    logger = AuditLogger(log)
    try:
        result = logger.verify()
        assert result.ok and result.lines_checked == len(golden) == 7
        assert result.head == hashlib.sha256(golden[-1]).hexdigest()
        logger.log(
            AuditEvent("pattern.retrieve", user_id="bob", tier="OBSERVER", target_id="pat_1")
        )
    finally:
        logger.close()
    lines = log.read_bytes().splitlines()
    assert lines[:-1] == golden  # untouched
    record = json.loads(lines[-1])
    assert record["seq"] == len(golden) + 1 and record["prev"] == result.head
    assert AuditLogger(log).verify().lines_checked == len(golden) + 1


def test_the_same_events_are_written_as_the_golden_lines(tmp_path: Path) -> None:
    """Written again, every line is the golden one but for its time (and so its prev)."""
    # The writer leaves the queued decision for begin() to take, however slow the machine.
    log = tmp_path / "audit.jsonl"
    logger = AuditLogger(log, linger_s=60.0)
    try:
        payload = write_golden_events(logger)
    finally:
        logger.close()
    golden = GOLDEN.read_bytes().splitlines()
    lines = log.read_bytes().splitlines()
    assert len(lines) == len(golden)
    prev = GENESIS
    for line, expected in zip(lines, golden, strict=True):
        _ts, seq, body, _prev = _parts(line)
        golden_ts, _seq, _body, golden_prev = _parts(expected)
        assert golden_prev == prev.encode()
        rebuilt = b'{"ts":"%s","seq":%s,%s,"prev":"%s"}' % (golden_ts, seq, body, golden_prev)
        assert rebuilt == expected
        prev = hashlib.sha256(expected).hexdigest()
    # The outbox payload: the same entries, stamped with this run's times.
    head, *entries = payload.split("\n")
    golden_head, *golden_entries = _golden_payload(log).split("\n")
    assert head == golden_head
    assert [e.split(" ", 1)[1] for e in entries] == [e.split(" ", 1)[1] for e in golden_entries]
    assert [e.split(" ", 1)[0].encode() for e in entries] == [
        _parts(line)[0] for line in lines[-OUTBOX_LINES:]
    ]


def test_a_golden_outbox_row_is_replayed_into_the_golden_lines(tmp_path: Path) -> None:
    """An outbox row stored by the earlier version appends exactly the lines it would have:
    the log it left behind, minus the row's lines, becomes the golden log again."""
    log = tmp_path / "audit.jsonl"
    golden = GOLDEN.read_bytes()
    kept = golden.splitlines(keepends=True)[:-OUTBOX_LINES]
    log.write_bytes(b"".join(kept))
    payload = _golden_payload(log)
    replay_outbox([payload])
    assert log.read_bytes() == golden
    replay_outbox([payload])  # found: not repeated
    assert log.read_bytes() == golden


def test_only_the_codec_knows_the_format() -> None:
    """Lines and outbox rows are encoded, hashed and parsed in ``codec`` alone: no other
    module of the package imports ``json`` or ``hashlib``."""
    package = Path(audit_package.__file__).parent
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        if module.name != "codec.py":
            assert not imported & {"json", "hashlib"}, module.name
