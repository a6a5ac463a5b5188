"""Detection quality on the generated corpus (``tests/detection_corpus.py``): secrets recall
and PII leaks per kind x container, false positives and false scrubs per negative shape.

Usage: ``python benchmarks/detection_quality.py [--seed N] [--per-cell N] [--failures N]``.
Each cell is ``hits/total`` (recall: detected positives; PII: leaked values; negatives:
flagged by the secrets detector / altered by the scrubber). Same seed, same corpus, so two
trees can be compared cell for cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import detection_corpus as dc

from attune.memory.security.pii import PIIScrubber
from attune.memory.security.secrets import SecretsDetector

Cells = dict[tuple[str, str], dc.Tally]


def measure(seed: int, per_cell: int) -> dc.Score:
    """Score the built-in detector and scrubber on the corpus of ``seed``."""
    detector, scrubber = SecretsDetector(), PIIScrubber()
    return dc.score(
        dc.generate(seed, per_cell),
        lambda text: [(f.start, f.end) for f in detector.detect(text)],
        lambda text: scrubber.scrub(text).text,
    )


def table(title: str, cells: Cells, rows: tuple[str, ...]) -> str:
    """One row per kind, one column per container, then the kind's total; a last total row."""
    short = [c[:6] for c in dc.CONTAINERS]
    lines = [title, f"{'':28}" + "".join(f"{c:>7}" for c in short) + f"{'all':>10}"]
    by_kind = dc.Score.by(cells, 0)
    for kind in rows:
        line = f"{kind:28}"
        for container in dc.CONTAINERS:
            t = cells.get((kind, container), dc.Tally())
            line += f"{t.hits:>4}/{t.total:<2}" if t.total else f"{'-':>7}"
        k = by_kind.get(kind, dc.Tally())
        lines.append(line + f"{k.rate:>10.3f}")
    by_container = dc.Score.by(cells, 1)
    line = f"{'all':28}"
    for container in dc.CONTAINERS:
        line += f"{by_container.get(container, dc.Tally()).rate:>7.3f}"
    overall = dc.Score.overall(cells)
    lines.append(line + f"{overall.rate:>10.3f}")
    return "\n".join(lines)


def report(score: dc.Score) -> str:
    return "\n\n".join(
        [
            table("secrets: detected / positives", score.recall, dc.SECRET_KINDS),
            table("PII: leaked / values", score.leaked, dc.PII_KINDS),
            table("negatives flagged as secrets", score.flagged, dc.NEGATIVE_SHAPES),
            table("negatives altered by the PII scrubber", score.scrubbed, dc.NEGATIVE_SHAPES),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--per-cell", type=int, default=4)
    parser.add_argument("--failures", type=int, default=0, help="print this many failures")
    args = parser.parse_args()
    began = time.perf_counter()
    score = measure(args.seed, args.per_cell)
    elapsed = time.perf_counter() - began
    print(f"seed {args.seed}, {args.per_cell} per cell, scored in {elapsed:.2f} s\n")
    print(report(score))
    for label, case in score.failures[: args.failures]:
        print(f"\n-- {label}: {case.kind} in {case.container}\n{case.text[:400]}")


if __name__ == "__main__":
    main()
