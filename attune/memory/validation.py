"""Checks on what callers pass in, run before anything is written.

Each check raises a typed :class:`~attune.errors.AttuneError` subclass that is
also the natural builtin (``ValueError``/``TypeError``); messages describe the
problem without echoing the value.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, TypeGuard

from attune.errors import (
    ConfigurationError,
    PatternNotFoundError,
    SerializationError,
    ValidationError,
    ValueTooLargeError,
)
from attune.memory.compact_json import compact_encoder

_AGENT_ID = re.compile(r"^[^\s{}\x00-\x1f\x7f\ud800-\udfff]{1,128}$")
#: Control characters (C0, DEL and C1: U+0080-U+009F, such as NEL), refused in keys.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: A lone UTF-16 half: valid in a Python str, but no UTF-8 encoder (Redis key names,
#: SQLite, the JSON sent to Redis) accepts it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _surrogate_error(what: str) -> ValidationError:
    return ValidationError(
        f"{what} contains a lone surrogate (half of a UTF-16 pair, e.g. from a bad decode), "
        "which cannot be stored as UTF-8; decode the source text with errors='replace' "
        "or remove it"
    )


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (ASCII text, the common case, is one check)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def check_text(value: object, what: str, *, allow_empty: bool = False) -> str:
    """A string that UTF-8 can encode (ids, reasons), non-empty unless ``allow_empty``."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(f"{what} must not be empty")
    if has_surrogate(value):
        raise _surrogate_error(what)
    return value


#: The longest id the audit log records (``audit.MAX_ID_LENGTH``).
MAX_PATTERN_ID = 256


def is_recordable_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` can name a record in the audit log: a string of 1-256 printable
    characters that UTF-8 can encode."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_PATTERN_ID
        and value.isprintable()
        and not has_surrogate(value)
    )


#: The ids attune makes: 'pat_' (long-term) or 'stg_' (staged) and 32 hex digits.
_OWN_ID = re.compile(r"(?:pat|stg)_[0-9a-f]{32}")


def is_own_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` has the shape of an id attune makes. Only such ids are written to
    the audit log or repeated in an error: an id a caller made up (an email, a key pasted
    in the wrong place) is neither, as no value is."""
    return isinstance(value, str) and _OWN_ID.fullmatch(value) is not None


def shown_id(value: object) -> str:
    """An id as an error message names it: quoted if attune made it, else not repeated."""
    return repr(value) if is_own_id(value) else "(the id given, not shown)"


def check_pattern_id(value: object) -> str:
    """A long-term pattern id: a non-empty string of at most 256 printable characters
    (attune's own are 'pat_' + 32 hex digits); longer or unprintable ones cannot exist."""
    text = check_text(value, "pattern_id")
    if not is_recordable_id(text):
        raise ValidationError(
            f"pattern_id must be 1-{MAX_PATTERN_ID} printable characters "
            "(ids look like 'pat_' followed by 32 hex digits)"
        )
    return text


def check_staged_id(value: object, prefix: str) -> None:
    """A staged id is a string (else no such pattern exists) that UTF-8 can encode: ``prefix``
    and 32 hex digits, as stage_pattern makes them. Anything else cannot name a staged
    pattern (:class:`PatternNotFoundError`, without echoing the value), and is never
    written to the audit log."""
    if not isinstance(value, str):
        raise PatternNotFoundError(
            f"no such staged pattern: staged ids are strings like '{prefix}...', "
            f"not {type(value).__name__}"
        )
    if has_surrogate(value):
        raise _surrogate_error("staged_pattern_id")
    if not value.startswith(prefix) or not is_own_id(value):
        raise PatternNotFoundError(
            f"no such staged pattern: staged ids look like '{prefix}' followed by 32 hex "
            "digits (as stage_pattern returns them)"
        )


def check_count(value: object, what: str, maximum: int) -> int:
    """A whole number from 1 to ``maximum`` (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(f"{what} must be a whole number from 1 to {maximum}")
    return value


def check_instance(value: object, cls: type, what: str) -> None:
    """A constructor argument is None or a ``cls`` (else it fails late, as a builtin)."""
    if value is not None and not isinstance(value, cls):
        raise ConfigurationError(
            f"{what} must be a {cls.__name__} or None, not {type(value).__name__}"
        )


def check_agent_id(value: object, what: str = "user_id") -> str:
    """Agent ids name a Redis hash tag, so braces, whitespace and control characters are out."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, not {type(value).__name__}")
    if not _AGENT_ID.match(value):
        if has_surrogate(value):
            raise _surrogate_error(what)
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
    if not key.isascii() and _SURROGATE.search(key):
        raise _surrogate_error("key")
    return key


def ttl_to_ms(
    ttl: object, max_seconds: int, what: str = "ttl_seconds", unit_seconds: int = 1
) -> int:
    """Validate a time-to-live given in units of ``unit_seconds`` and return milliseconds."""
    unit = "hours" if unit_seconds == 3600 else "seconds"
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValidationError(f"{what} must be a number of {unit}, not {type(ttl).__name__}")
    # An int is compared as an int: a float conversion (math.isfinite) overflows on 10**400.
    if (isinstance(ttl, float) and not math.isfinite(ttl)) or ttl <= 0:
        raise ValidationError(f"{what} must be a positive number of {unit}")
    seconds = ttl * unit_seconds
    if seconds > max_seconds:
        raise ValidationError(
            f"{what} exceeds the limit of {max_seconds} seconds (max_ttl_seconds); "
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
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a string or a dict key, at any depth
        raise _surrogate_error(what) from None
    if len(data) > max_bytes:
        raise ValueTooLargeError(
            f"{what} is {len(data)} bytes as JSON; the limit is {max_bytes} (max_value_bytes)"
        )
    return data


#: Deepest nesting of pattern data and metadata: the security pipeline walks them
#: recursively, so a deeper value would fail there (or on the caller's stack) instead.
MAX_NESTING = 100


def check_json(value: Any, what: str, max_bytes: int, *, sized: bool = True) -> None:
    """Refuse what cannot be stored before the security pipeline walks ``value``: nesting
    deeper than :data:`MAX_NESTING` (or circular), more elements than ``max_bytes`` (each
    is at least a byte of JSON), what JSON or UTF-8 cannot hold at any depth, and, if
    ``sized``, JSON longer than ``max_bytes`` (unsized: the pipeline may still shrink it).
    """
    # Walked before it is encoded: a cycle ends at the nesting limit, and a sub-object
    # shared many times (the JSON repeats it each time) ends at the element budget,
    # where the encoder would build all of it first.
    budget = max_bytes
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ValidationError(
                f"{what} is nested more than {MAX_NESTING} levels deep (or is circular); flatten it"
            )
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item) and _keys_collide(item):
                # JSON spells 1 as "1": {1: "a", "1": "b"} would keep one of the two values.
                raise SerializationError(
                    f"{what} has two dict keys that JSON spells the same (such as 1 and "
                    "'1', or None and 'null'); only one would be kept: rename one"
                )
            children = item.values()
        else:
            children = item
        budget -= len(children)
        if budget < 0:
            raise ValueTooLargeError(
                f"{what} has too many elements to fit in {max_bytes} bytes as JSON "
                "(max_value_bytes)"
            )
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list | tuple))
    encode_json(value, max_bytes if sized else sys.maxsize, what)


def json_key(key: Any) -> str:
    """A dict key as JSON spells it (``None`` -> ``"null"``, ``True`` -> ``"true"``,
    ``1.5`` -> ``"1.5"``): how a stored record's metadata shows it."""
    if isinstance(key, str):
        return key
    (spelled,) = json.loads(json.dumps({key: None}))
    return str(spelled)


def _keys_collide(item: dict[Any, Any]) -> bool:
    """Whether two keys of ``item`` are the same once JSON spells them."""
    try:
        return len({json_key(key) for key in item}) < len(item)
    except (TypeError, ValueError):
        return False  # a key JSON cannot hold: the encoder says so, with its reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply or circular"
    msg = str(exc)
    if "Circular reference" in msg:
        return "circular reference"
    if "Out of range float" in msg:
        return "NaN or infinity"
    if "integer string conversion" in msg:
        return "an integer with too many digits"
    match = re.search(r"Object of type (\w+)", msg)
    if match:
        return f"contains a {match.group(1)}"
    if "keys must be" in msg:
        return "dict keys must be str, int, float, bool or None"
    return type(exc).__name__


_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_namespace(value: object, what: str = "namespace") -> str:
    """A namespace: 1-64 letters, digits, '_', '.' or '-'."""
    if not isinstance(value, str) or _NAMESPACE.fullmatch(value) is None:
        raise ValidationError(
            f"{what} must be 1-64 letters, digits, '_', '.' or '-' (for example 'team-a')"
        )
    return value


def check_pattern_type(pattern_type: Any) -> str:
    """A pattern type: 1-64 letters, digits, '_' or '-'."""
    if not isinstance(pattern_type, str) or not pattern_type.strip():
        raise ValidationError("pattern_type must be a non-empty string")
    if len(pattern_type) > 64 or not pattern_type.replace("_", "").replace("-", "").isalnum():
        raise ValidationError(
            "pattern_type must be 1-64 letters, digits, '_' or '-' (for example 'best_practice')"
        )
    return pattern_type
