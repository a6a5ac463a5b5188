"""The audit log's formats: the one place that knows what a line and an outbox row hold.

A line is compact ASCII JSON, keys in :data:`FIELDS` order::

    {"ts":"<UTC, microseconds, Z>","seq":<n>,<body>,"prev":"<SHA-256 hex of the line before>"}

where the *body* is the event's fields from ``event`` to ``details`` (see :mod:`.events`)
and ``prev`` of the first line is :data:`GENESIS`. An outbox row (what a store's
transaction keeps, see :mod:`.outbox`) is the log's path as a JSON string, then one
``<ts> <body>`` per line. Everything here is pure: encoding bodies and lines, the chain
hash, parsing a line back, and the timestamps lines carry. The writer, the outbox replay
and :meth:`~.logger.AuditLogger.verify` all go through these functions.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attune.errors import SecurityPipelineError, ValidationError
from attune.memory.compact_json import compact_encoder
from attune.memory.security.audit.events import AuditEvent
from attune.memory.timestamps import iso_us_z

GENESIS = "0" * 64
FIELDS = (
    "ts",
    "seq",
    "event",
    "user_id",
    "tier",
    "target_id",
    "classification",
    "outcome",
    "details",
    "prev",
)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


# -- bodies --------------------------------------------------------------------------------------


def _unencodable(value: object) -> object:
    raise TypeError(f"an audit event cannot hold {type(value).__name__}")


#: One encoder for every line and outbox payload.
_compact_ascii_json = compact_encoder(ensure_ascii=True, default=_unencodable)


#: A str as a JSON string literal, ASCII only (what the encoder gives every string).
_json_text = json.encoder.encode_basestring_ascii


def _encode_body(event: AuditEvent) -> str:
    """An event's fields as compact ASCII JSON, minus the braces (the line adds its own):
    what ``_compact_ascii_json(event.fields())[1:-1]`` gives (a test checks it), written
    out field by field, without building the dict, as the writer does for every event.
    Its details are a freshly sanitised dict: no cycle check is needed."""
    text, target, label, details = _json_text, event.target_id, event.classification, event.details
    return (
        f'"event":{text(event.name)},"user_id":{text(event.user_id)},"tier":{text(event.tier)},'
        f'"target_id":{"null" if target is None else text(target)},'
        f'"classification":{"null" if label is None else text(label)},'
        f'"outcome":{text(event.outcome)},'
        f'"details":{"{}" if details is None else _compact_ascii_json(details)}'
    )


def _encode(entries: list[tuple[float, AuditEvent]]) -> list[tuple[str, str]]:
    """Queued events as (timestamp text, compact JSON body) for the sink; the writer
    thread runs it, off the callers' path."""
    return [(iso_us_z(ts), _encode_body(event)) for ts, event in entries]


# -- lines ---------------------------------------------------------------------------------------


def _line(ts: str, seq: int, body: str, prev: str) -> bytes:
    """One line of the log, without its newline."""
    return f'{{"ts":"{ts}","seq":{seq},{body},"prev":"{prev}"}}'.encode("ascii")


#: The chain's hash function: a line's ``prev`` is its hex digest of the line before.
_chain_hash = hashlib.sha256


def _digest(line: bytes) -> str:
    """The chain hash of a line (without its newline): the next line's ``prev``."""
    return _chain_hash(line).hexdigest()


def _parse(line: bytes) -> tuple[int, str] | None:
    """(seq, prev) of a well-formed audit line, else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.keys() != set(FIELDS):
        return None
    seq, prev = record["seq"], record["prev"]
    if type(seq) is not int or not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        return None
    return seq, prev


class _CorruptTailError(Exception):
    """The last line of the log is not an audit event: its chain cannot be extended."""


def _head_of(line: bytes) -> tuple[int, str]:
    """(seq, hash) of the log's last line, the head its next line chains onto."""
    parsed = _parse(line)
    if parsed is None:
        raise _CorruptTailError
    return parsed[0], _digest(line)


def _record(raw: bytes) -> dict[str, Any] | None:
    """A raw line (newline kept) as a dict, if it is a complete, well-formed audit line."""
    if not raw.endswith(b"\n") or _parse(raw[:-1]) is None:
        return None
    record: dict[str, Any] = json.loads(raw)
    return record


def _entry_of(raw: bytes, oldest: str) -> tuple[str, str] | None:
    """(timestamp text, body) of a log line stamped at or after ``oldest``, else None."""
    if not raw.startswith(b'{"ts":"'):
        return None
    line = raw.rstrip(b"\n").decode("ascii", "replace")
    end = line.find('"', 7)
    ts = line[7:end]
    if ts < oldest or not line.startswith(',"seq":', end + 1):
        return None
    start = line.find(",", end + 8) + 1
    stop = line.rfind(',"prev":"')
    if start <= 0 or stop < start:
        return None
    return ts, line[start:stop]


def _signed_text(fields: dict[str, Any]) -> bytes:
    """What a checkpoint's MAC covers (:mod:`.checkpoint`): its fields as compact ASCII
    JSON, keys sorted."""
    return _compact_ascii_json(dict(sorted(fields.items()))).encode("ascii")


# -- timestamps ----------------------------------------------------------------------------------


def _utc_text(when: datetime | str) -> str:
    """``when`` in the log's timestamp format (a naive datetime is taken as UTC)."""
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise ValidationError("since must be an ISO-8601 date or datetime") from None
    if not isinstance(when, datetime):
        raise ValidationError("since must be a datetime or an ISO-8601 string")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC).strftime(_TS_FORMAT)
    except OverflowError:  # its UTC time falls before the year 1 or after 9999
        raise ValidationError(
            "since is out of range: its UTC time must be in years 1-9999"
        ) from None


def _seconds(ts: str) -> float:
    """A line's timestamp text as a POSIX time."""
    return datetime.strptime(ts, _TS_FORMAT).replace(tzinfo=UTC).timestamp()


# -- outbox rows ---------------------------------------------------------------------------------


def _outbox_payload(log_file: Path, entries: list[tuple[str, str]]) -> str:
    """An outbox row: the log's path as a JSON string, then one ``<ts> <body>`` per line
    (a body is one line of ASCII JSON; a timestamp has no space)."""
    lines = [f"{ts} {body}" for ts, body in entries]
    return "\n".join([_compact_ascii_json(str(log_file)), *lines])


def _outbox_entries(payload: str) -> tuple[str, list[tuple[str, str]]]:
    """The log's path and the (timestamp, body) entries of an outbox row."""
    try:
        head, *lines = payload.split("\n")
        log = json.loads(head)
        entries = [(ts, body) for ts, body in (line.split(" ", 1) for line in lines)]
        datetime.strptime(min(ts for ts, _ in entries), _TS_FORMAT)
    except (ValueError, TypeError):
        raise SecurityPipelineError(
            "an audit outbox row of the long-term store is not readable, so its audit "
            "events cannot be replayed; restore patterns.db from a backup"
        ) from None
    if not isinstance(log, str) or not Path(log).is_absolute():
        raise SecurityPipelineError("an audit outbox row names no absolute audit log path")
    return log, entries
