"""The core's clock: now in epoch milliseconds, and a time as the results show it.

Every part of the core asks :func:`now_ms` through this module (``clock.now_ms()``), so
retention, purge, staging leases and every read see one clock, and a test may move it
(``monkeypatch.setattr(clock, "now_ms", ...)``) without reaching into the core."""

from __future__ import annotations

import time

from attune.memory.timestamps import iso_ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)
