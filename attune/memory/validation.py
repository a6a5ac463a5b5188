"""Checks on what callers pass in, run before anything is written.

Each check raises a typed :class:`~attune.errors.AttuneError` subclass that is
also the natural builtin (``ValueError``/``TypeError``); messages describe the
problem without echoing the value.
"""

from __future__ import annotations

import math
import re
from typing import Any

from attune.errors import SerializationError, ValidationError, ValueTooLargeError
from attune.memory.compact_json import compact_encoder

_AGENT_ID = re.compile(r"^[^\s{}\x00-\x1f\x7f]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_agent_id(value: object, what: str = "user_id") -> str:
    """Agent ids name a Redis hash tag, so braces, whitespace and control characters are out."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, not {type(value).__name__}")
    if not _AGENT_ID.match(value):
        raise ValidationError(
            f"invalid {what}: use 1-128 characters without whitespace, braces "
            "or control characters (for example 'analyst@company.com')"
        )
    return value


def check_key(key: object, max_length: int) -> str:
    if not isinstance(key, str):
        raise ValidationError(f"key must be a string, not {type(key).__name__}")
    if not key:
        raise ValidationError("key must not be empty")
    if len(key) > max_length:
        raise ValidationError(
            f"key is {len(key)} characters long; the limit is {max_length} (max_key_length)"
        )
    if _CONTROL.search(key):
        raise ValidationError("key must not contain control characters")
    return key


def ttl_to_ms(
    ttl: object, max_seconds: int, what: str = "ttl_seconds", unit_seconds: int = 1
) -> int:
    """Validate a time-to-live given in units of ``unit_seconds`` and return milliseconds."""
    unit = "hours" if unit_seconds == 3600 else "seconds"
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValidationError(f"{what} must be a number of {unit}, not {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValidationError(f"{what} must be a positive number of {unit}")
    seconds = ttl * unit_seconds
    if seconds > max_seconds:
        raise ValidationError(
            f"{what}={ttl:g} exceeds the limit of {max_seconds} seconds (max_ttl_seconds); "
            "long-lived data belongs in long-term memory (persist_pattern)"
        )
    return max(1, round(seconds * 1000))


_compact_json = compact_encoder(ensure_ascii=False)


def encode_json(value: Any, max_bytes: int, what: str = "value") -> bytes:
    """Encode as compact UTF-8 JSON, refusing what JSON cannot represent or what is too large."""
    try:
        text = _compact_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(
            f"{what} is not JSON-serialisable ({_reason(exc)}); store dicts, lists, "
            "strings, numbers, booleans and None"
        ) from None
    data = text.encode("utf-8")
    if len(data) > max_bytes:
        raise ValueTooLargeError(
            f"{what} is {len(data)} bytes as JSON; the limit is {max_bytes} (max_value_bytes)"
        )
    return data


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply or circular"
    msg = str(exc)
    if "Circular reference" in msg:
        return "circular reference"
    if "Out of range float" in msg:
        return "NaN or infinity"
    match = re.search(r"Object of type (\w+)", msg)
    if match:
        return f"contains a {match.group(1)}"
    if "keys must be" in msg:
        return "dict keys must be str, int, float, bool or None"
    return type(exc).__name__
