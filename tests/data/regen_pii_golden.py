"""The PII golden corpus (tests/data/pii_golden.jsonl): its format, and its regeneration.

Each line of the golden file is one case, a JSON object with these keys, in this order:

* ``why``: what the case is there for;
* ``input``: the text given to ``PIIScrubber.scrub``;
* ``expected``: for each configuration of ``CONFIGS`` below, by name, ``{"text": ..., "counts":
  ...}``: the scrubbed text the scrubber so configured must give back, and the counts per kind
  it must report (kinds in sorted order).

All values are synthetic. Characters that are not printable are written as ``\\uXXXX``
escapes, so every case is one visible line. ``tests/test_security_pii.py`` checks the current
scrubber against every case.

When a change of scrubbing behaviour is intended, regenerate the expectations from the
current scrubber, from the repository root::

    python tests/data/regen_pii_golden.py           # rewrite expected/counts in place
    python tests/data/regen_pii_golden.py --check   # only report what would change

then review the result as a diff (``git diff tests/data/pii_golden.jsonl``) before
committing: every changed line is a change of output for that input, and each must be one
you meant. The inputs and whys are never changed by a regeneration. To add a case, append a
line with ``why`` and ``input`` only and regenerate; to add a configuration, add it to
``CONFIGS`` and regenerate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent / "pii_golden.jsonl"

# The configurations every input is recorded under, by name: the default one; one with two
# kinds disabled and custom patterns, which rank after the built-in kinds in this order; and
# one with two other kinds disabled.
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_ip_phone+custom": {
        "disabled": ("ip", "phone"),
        "custom_patterns": {"ticket": r"T-\d{4}", "shout": r"\b[A-Z]{4,}\b"},
    },
    "no_card_ssn": {"disabled": ("credit_card", "ssn")},
}

Expected = dict[str, tuple[str, dict[str, int]]]  # config name -> (text, counts)


@dataclass(frozen=True)
class Case:
    why: str
    input: str
    expected: Expected | None  # None: a new case, not generated yet


def _visible(dumped: str) -> str:
    out = []
    for char in dumped:
        if char.isprintable():
            out.append(char)
            continue
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def dump(case: Case) -> str:
    """The canonical line for a case (no trailing newline)."""
    obj: dict[str, Any] = {"why": case.why, "input": case.input}
    if case.expected is not None:
        obj["expected"] = {
            name: {"text": text, "counts": dict(sorted(counts.items()))}
            for name, (text, counts) in case.expected.items()
        }
    return _visible(json.dumps(obj, ensure_ascii=False))


def parse(line: str) -> Case:
    obj = json.loads(line)
    expected = obj.get("expected")
    if expected is not None:
        expected = {name: (e["text"], e["counts"]) for name, e in expected.items()}
    return Case(obj["why"], obj["input"], expected)


def load(path: Path = GOLDEN) -> list[tuple[int, Case]]:
    """(line number, case) for every line of the golden file."""
    with path.open(encoding="utf-8", newline="\n") as f:
        return [(n, parse(line)) for n, line in enumerate(f, start=1)]


def write(path: Path, cases: Iterable[Case]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for case in cases:
            f.write(dump(case) + "\n")


def scrubbers(factory: Any) -> dict[str, Any]:
    """One scrubber per configuration, made by ``factory`` (a ``PIIScrubber`` class)."""
    return {name: factory(**config) for name, config in CONFIGS.items()}


def expected_of(scrubbers_: dict[str, Any], text: str) -> Expected:
    out: Expected = {}
    for name, scrubber in scrubbers_.items():
        result = scrubber.scrub(text)
        out[name] = (result.text, dict(result.counts))
    return out


def regenerate(cases: Sequence[Case]) -> list[Case]:
    """The same cases with ``expected`` taken from the current scrubber."""
    from attune.memory.security.pii import PIIScrubber

    current = scrubbers(PIIScrubber)
    return [Case(c.why, c.input, expected_of(current, c.input)) for c in cases]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="report changes, write nothing")
    args = parser.parse_args(argv)
    old = [case for _, case in load()]
    new = regenerate(old)
    changed = [n for n, (a, b) in enumerate(zip(old, new, strict=True), start=1) if a != b]
    for n in changed[:20]:
        print(f"line {n}: {old[n - 1].why}")
    if len(changed) > 20:
        print(f"... and {len(changed) - 20} more")
    print(f"{len(changed)} of {len(new)} cases differ from the current scrubber")
    if args.check:
        return 1 if changed else 0
    if changed:
        write(GOLDEN, new)
        print(f"rewrote {GOLDEN}; review it as a diff: git diff -- {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
