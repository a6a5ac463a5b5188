"""The audit event model: what one event may hold, validated and sanitised.

An event holds ids, counts and kinds only. Its identifiers (event, tier, outcome,
classification) must match ``[A-Za-z0-9_.:-]{1,64}``; its user and target ids lose their
control characters (so no id can break a line) and are at most :data:`MAX_ID_LENGTH`
characters; its ``details`` are reduced by :func:`sanitize_details` to what cannot be
content, whatever the caller passes. Validation runs on the caller's thread, so a bad
event fails its caller before the operation it records has happened; encoding is
:mod:`.codec`'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attune.errors import ValidationError

if TYPE_CHECKING:
    from attune.memory.security.audit.writer import _Batch

REDACTED = "[redacted]"
MAX_ID_LENGTH = 256
MAX_DETAIL_DEPTH = 3

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{0,64}")

#: Identifiers seen valid already (events, tiers, outcomes are a small set): the hot
#: path skips the regex. Bounded, so arbitrary callers cannot grow it without limit.
_VALID_IDENTIFIERS: set[str] = set()


def _is_identifier(text: str) -> bool:
    """Whether ``text`` (a plain str) is an identifier; remembers the ones seen."""
    if text in _VALID_IDENTIFIERS:
        return True
    if _IDENTIFIER.fullmatch(text) is None:
        return False
    if len(_VALID_IDENTIFIERS) < 4096:
        _VALID_IDENTIFIERS.add(text)
    return True


def _identifier(value: object, name: str, *, required: bool = True) -> str | None:
    """A short identifier string (event, tier, outcome, classification)."""
    if type(value) is str and value and value in _VALID_IDENTIFIERS:
        return value
    if value is None and not required:
        return None
    if isinstance(value, str):
        text = str.__str__(value)  # a str enum member gives its value
        if text and _is_identifier(text):
            return text
    raise ValidationError(
        f"audit {name} must be an identifier of 1-64 characters from A-Z a-z 0-9 _ . : -"
    )


def _id(value: object, name: str, *, required: bool) -> str | None:
    """A user or target id without control characters, so it cannot break a line."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"audit {name} must be a string")
    text = str.__str__(value)
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > MAX_ID_LENGTH or (required and not text):
        raise ValidationError(f"audit {name} must be 1-{MAX_ID_LENGTH} printable characters")
    return text


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` reduced to counts and kinds; anything else becomes ``"[redacted]"``."""
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise ValidationError("audit details must be a mapping of counts and kinds")
    return _clean_mapping(details, 0)


def _clean(value: object, depth: int) -> object:
    kind = type(value)
    # Exact built-in types first: the common case, without ABC instance checks.
    if kind is str:
        assert isinstance(value, str)
        return value if _is_identifier(value) else REDACTED
    if kind is int or kind is bool or value is None:
        return value
    if kind is dict and depth <= MAX_DETAIL_DEPTH:
        assert isinstance(value, dict)
        return _clean_mapping(value, depth)
    return _clean_other(value, depth)


def _clean_other(value: object, depth: int) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else REDACTED
    if isinstance(value, str):
        text = str.__str__(value)
        return text if _is_identifier(text) else REDACTED
    if depth > MAX_DETAIL_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return _clean_mapping(value, depth)
    if isinstance(value, list | tuple):
        return [_clean(item, depth + 1) for item in value]
    return REDACTED


def _clean_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, item in value.items():
        if isinstance(key, str) and _is_identifier(text := str.__str__(key)):
            out[text] = _clean(item, depth + 1)
        else:  # the key itself may be content: drop both, leave a marker
            out[REDACTED] = REDACTED
    return dict(sorted(out.items()))


def _event_fields(
    event: object,
    user_id: object,
    tier: object,
    target_id: object,
    classification: object,
    outcome: object,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The validated middle of a line, from ``event`` to ``details`` (checked by the caller's
    thread, so a bad event fails its caller; encoded by the writer)."""
    return {
        "event": _identifier(event, "event"),
        "user_id": _id(user_id, "user_id", required=True),
        "tier": _identifier(tier, "tier"),
        "target_id": _id(target_id, "target_id", required=False),
        "classification": _identifier(classification, "classification", required=False),
        "outcome": _identifier(outcome, "outcome"),
        "details": sanitize_details(details),
    }


# Not frozen (built per write: a frozen constructor costs 4x); treat as immutable.
@dataclass(slots=True)
class AuditEvent:
    """An event validated by :meth:`AuditLogger.prepare`, not yet queued."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditTicket:
    """A staged event's place in the queue; :meth:`AuditLogger.commit` makes it durable."""

    batch: _Batch
