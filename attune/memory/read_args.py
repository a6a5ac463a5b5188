"""What a long-term read accepts: its filters, checked, and the cursors of its pages.

Every check raises :class:`~attune.errors.ValidationError` with a message that says what
is wrong and never echoes the value (it may carry personal data). A cursor is ``"c1."`` and
base64url JSON of the last result's sort key, its id and a fingerprint of the query it
belongs to (see :mod:`attune.memory.reads`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from attune.errors import ValidationError
from attune.memory import validation

#: Largest page a read returns.
MAX_LIMIT = 1_000
#: Most metadata equality filters one read may carry.
MAX_METADATA_FILTERS = 16


@dataclass(frozen=True, slots=True)
class Filters:
    """A read's filters as the caller passed them (checked by ``_query``)."""

    pattern_type: Any
    classification: Any
    created_by: Any
    since: Any
    until: Any
    metadata: Any


def make_cursor(key: float, pattern_id: str, fingerprint: str) -> str:
    # UTF-8, not \u escapes: an id of 256 characters of any kind stays within MAX_CURSOR.
    raw = json.dumps([key, pattern_id, fingerprint], separators=(",", ":"), ensure_ascii=False)
    return "c1." + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_cursor(cursor: Any, fingerprint: str) -> tuple[float, str]:
    bad = ValidationError(
        "cursor is not one this query returned (pass a page's next_cursor back unchanged, "
        "with the same query and filters)"
    )
    if not isinstance(cursor, str) or not cursor.startswith("c1.") or len(cursor) > MAX_CURSOR:
        raise bad
    body = cursor[3:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        key, pattern_id, mark = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise bad from None
    if (
        mark != fingerprint
        or not validation.is_recordable_id(pattern_id)  # no NUL, no lone surrogate
        or isinstance(key, bool)
        or not isinstance(key, int | float)
        # a creation time in ms or a score: finite and well inside what a store compares
        or not (isinstance(key, int) or math.isfinite(key))
        or abs(key) > _MAX_CURSOR_KEY
    ):
        raise bad
    return float(key), pattern_id


#: The largest cursor key (a time in ms, or a score): every integer up to it is exact as a
#: float, and far beyond any creation time (the year 9999 is 2.5e14 ms).
_MAX_CURSOR_KEY = 2**53
#: The longest cursor read: one of an id of 256 four-byte characters (or of quotes, each
#: escaped) is about 1,450 characters; an ASCII id of 256 took up to ~420 (the old cap, 512,
#: refused the cursor of a page ending on a long non-ASCII id).
MAX_CURSOR = 2048


def time_ms(value: Any, name: str) -> int:
    """A datetime (naive means UTC) or an ISO 8601 string, as epoch milliseconds."""
    if isinstance(value, str):
        if len(value) > 64:
            raise ValidationError(f"{name} must be a datetime or an ISO 8601 string")
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"{name} must be a datetime or an ISO 8601 string") from None
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime or an ISO 8601 string")
    if value.utcoffset() is None:  # naive (a tzinfo without an offset is naive too)
        value = value.replace(tzinfo=UTC)
    # Exact, in whole microseconds (``timestamp() * 1000`` in floats put 1 in 200 whole
    # milliseconds one below), rounded up: creation times are whole milliseconds, so
    # ``created >= since`` and ``created < until`` hold for the time itself, sub-ms or not.
    micros: int = (value - _EPOCH) // timedelta(microseconds=1)
    return -(-micros // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a dict of top-level keys and values to match")
    if len(metadata) > MAX_METADATA_FILTERS:
        raise ValidationError(f"metadata may hold at most {MAX_METADATA_FILTERS} filters")
    filters = dict(metadata)
    if not all(isinstance(key, str) and key for key in filters):
        raise ValidationError("metadata filter keys must be non-empty strings")
    validation.check_json(filters, "metadata", 64 * 1024)
    return filters


def check_creator(created_by: Any) -> str:
    return validation.check_agent_id(created_by, "created_by")
