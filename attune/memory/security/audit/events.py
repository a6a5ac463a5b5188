"""The audit event model: what one event may hold, validated and sanitised.

An event holds ids, counts and kinds only. Its identifiers (event, tier, outcome,
classification) must match ``[A-Za-z0-9_.:-]{1,64}``; its user and target ids lose their
control characters (so no id can break a line) and are at most :data:`MAX_ID_LENGTH`
characters; its ``details`` are reduced by :func:`sanitize_details` to what cannot be
content, whatever the caller passes. An :class:`AuditEvent` validates itself when it is
made, on the caller's thread, so a bad event fails its caller before the operation it
records has happened; encoding is :mod:`.codec`'s, on the writer's thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

from attune.errors import ValidationError

if TYPE_CHECKING:
    from attune.memory.security.audit.batch import _Batch

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


class Durability(Enum):
    """How long :meth:`~attune.memory.security.pipeline.SecurityPipeline.audit` waits."""

    #: Queued, nobody waits: a read's event, or a decision a durable event of the same
    #: operation follows (the writer keeps order, so that one's durability covers it).
    QUEUED = "queued"
    #: Awaited until written (and fsynced, with ``audit_sync=True``).
    DURABLE = "durable"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event, validated and sanitised when it is made: a bad event fails its
    caller before the operation it records has happened.

    ``name`` is the line's ``event`` field. Identifiers (``name``, ``tier``, ``outcome``,
    ``classification``; a str enum gives its value) must match ``[A-Za-z0-9_.:-]{1,64}``;
    ``user_id`` and ``target_id`` lose their control characters and are at most
    :data:`MAX_ID_LENGTH` characters; ``details`` is reduced by :func:`sanitize_details`
    (and kept as that new dict, never the caller's).
    """

    name: str
    user_id: str
    tier: str
    target_id: str | None = None
    classification: str | None = None
    outcome: str = "success"
    details: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # The common case (plain str fields seen valid before, plain ids) checks without a
        # call per field: every audited read makes one of these.
        valid = _VALID_IDENTIFIERS
        name, tier, outcome, label = self.name, self.tier, self.outcome, self.classification
        user, target = self.user_id, self.target_id
        if not (
            type(name) is str
            and type(tier) is str
            and type(outcome) is str
            and type(user) is str
            and name in valid
            and tier in valid
            and outcome in valid
            and name
            and tier
            and outcome
            and (label is None or (type(label) is str and label and label in valid))
            and 0 < len(user) <= MAX_ID_LENGTH
            and user.isprintable()
            and (
                target is None
                or (type(target) is str and len(target) <= MAX_ID_LENGTH and target.isprintable())
            )
        ):
            self._normalise()
        if self.details is not None:  # kept as a new, sanitised dict (never the caller's)
            object.__setattr__(self, "details", sanitize_details(self.details) or None)

    def _normalise(self) -> None:
        """Validate every identifier and id field, reassigning those validation changed
        (while the instance is being made: the frozen dataclass idiom)."""
        checked = {
            "name": _identifier(self.name, "event"),
            "user_id": _id(self.user_id, "user_id", required=True),
            "tier": _identifier(self.tier, "tier"),
            "target_id": _id(self.target_id, "target_id", required=False),
            "classification": _identifier(self.classification, "classification", required=False),
            "outcome": _identifier(self.outcome, "outcome"),
        }
        for name, value in checked.items():
            if value is not getattr(self, name):
                object.__setattr__(self, name, value)

    def fields(self) -> dict[str, Any]:
        """The line's fields from ``event`` to ``details``, in line order."""
        return {
            "event": self.name,
            "user_id": self.user_id,
            "tier": self.tier,
            "target_id": self.target_id,
            "classification": self.classification,
            "outcome": self.outcome,
            "details": {} if self.details is None else self.details,
        }


class AuditTicket(NamedTuple):
    """A submitted event's place in the queue; :meth:`AuditLogger.wait` makes it durable.
    Immutable (a named tuple: every audited read gets one)."""

    batch: _Batch
