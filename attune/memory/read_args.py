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
from datetime import UTC, datetime
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
    raw = json.dumps([key, pattern_id, fingerprint], separators=(",", ":")).encode()
    return "c1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: Any, fingerprint: str) -> tuple[float, str]:
    bad = ValidationError(
        "cursor is not one this query returned (pass a page's next_cursor back unchanged, "
        "with the same query and filters)"
    )
    if not isinstance(cursor, str) or not cursor.startswith("c1.") or len(cursor) > 512:
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
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


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
