"""A/B of the SQLite store's per-call constructions, interleaved in one run (issue 14).

    .venv/bin/python benchmarks/sqlite_micro_ab.py

Each was once chosen for speed without a measurement; this measures the choice against
the plain form, round by round in the same run (median of 9 rounds of 200,000 calls; the
ratio is each variant over the first). Beside a ~30-60 µs hand-off to the connection's
thread per recall and a millisecond fsync per write, a difference of a few hundred
nanoseconds does not matter: the store uses the plain forms (``PatternRecord._make``,
frozen dataclasses).
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from attune.memory.long_term.protocol import PatternRecord

ROW = (
    "pat_0123456789abcdef",
    "best_practice",
    "INTERNAL",
    "agent-a",
    1_700_000_000_000,
    None,
    '{"source":"x"}',
    b"c" * 200,
    1,
    "k1",
    b"w" * 60,
    b"n" * 12,
    2,
)
_new = tuple.__new__


def via_tuple_new(row: tuple[Any, ...]) -> Any:
    fields = list(row)
    fields[8] = fields[8] == 1
    return _new(PatternRecord, fields)


def via_make(row: tuple[Any, ...]) -> PatternRecord:
    fields = list(row)
    fields[8] = fields[8] == 1
    return PatternRecord._make(fields)


def via_constructor(row: tuple[Any, ...]) -> PatternRecord:
    fields = list(row)
    fields[8] = fields[8] == 1
    return PatternRecord(*fields)


@dataclass(slots=True)
class PlainPair:
    record: Any
    audit: Any = None


@dataclass(frozen=True, slots=True)
class FrozenPair:
    record: Any
    audit: Any = None


class TuplePair(NamedTuple):
    record: Any
    audit: Any = None


@dataclass(slots=True)
class PlainAudited:
    journal: Any
    event: Any


@dataclass(frozen=True, slots=True)
class FrozenAudited:
    journal: Any
    event: Any


def main(number: int = 200_000, rounds: int = 9) -> None:
    record = via_constructor(ROW)
    assert via_tuple_new(ROW) == via_make(ROW) == record

    def hook() -> None:
        return None

    cases: dict[str, dict[str, Callable[[], Any]]] = {
        "_to_record (per recall)": {
            "tuple.__new__": lambda: via_tuple_new(ROW),
            "_make": lambda: via_make(ROW),
            "constructor": lambda: via_constructor(ROW),
        },
        "InsertOp (per write)": {
            "dataclass": lambda: PlainPair(record, hook),
            "frozen": lambda: FrozenPair(record, hook),
            "NamedTuple": lambda: TuplePair(record, hook),
        },
        "Audited (per persist)": {
            "dataclass": lambda: PlainAudited(1, 2),
            "frozen": lambda: FrozenAudited(1, 2),
        },
    }
    for name, variants in cases.items():
        samples: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(rounds):  # interleaved: drift hits every variant alike
            for label, fn in variants.items():
                samples[label].append(timeit.timeit(fn, number=number) / number * 1e9)
        first = samples[next(iter(variants))]
        cells = []
        for label, values in samples.items():
            ratio = statistics.median(a / b for a, b in zip(values, first, strict=True))
            cells.append(f"{label} {statistics.median(values):.0f} ns (x{ratio:.2f})")
        print(f"{name:<26} " + "   ".join(cells))


if __name__ == "__main__":
    main()
