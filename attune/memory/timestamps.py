"""UTC instants as ISO 8601 text, for results and audit lines.

Formatting a datetime is most of the cost of a small result or an audit line, and one
process's instants fall in few distinct seconds (now, now plus a retention period). So
the text of each whole second is kept (bounded) and only the fraction is formatted.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

#: The latest instant a result can show (9999-12-31T23:59:59.999Z: ``datetime``'s last
#: year), in ms since the epoch; instants from outside admit none earlier than the epoch.
LATEST_MS = 253_402_300_799_999

_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 4096


def is_readable_ms(value: object) -> bool:
    """Whether ``value`` is a time every read can show: whole ms from 1970 to the year 9999
    (what attune writes; a stored value outside it was damaged, an imported one refused)."""
    return type(value) is int and 0 <= value <= LATEST_MS


def second_text(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a whole UTC second since the epoch."""
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        text = _SECONDS[second] = datetime.fromtimestamp(second, UTC).isoformat()[:-6]
    return text


def iso_ms(ms: int) -> str:
    """``datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")``."""
    second, milli = divmod(ms, 1000)
    return f"{second_text(second)}.{milli:03d}+00:00"


def iso_us_z(ts: float) -> str:
    """``datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` (``ts`` >= 0),
    rounded to the microsecond as datetime rounds it (half to even on the fraction)."""
    fraction, whole = math.modf(ts)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{second_text(second)}.{micro:06d}Z"
