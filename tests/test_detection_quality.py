"""Detection quality on a freshly generated corpus (``detection_corpus.py``), every run.

The seed is new each run (``DETECTION_SEED=<n>`` replays one) and is printed in every failure
message; ``benchmarks/detection_quality.py --seed <n>`` prints the per kind x container table.
The goals are issue 17's: secrets recall >= 0.98 overall and >= 0.95 for every kind at a
false-positive rate <= 0.02; PII leaked <= 0.01 overall and <= 0.02 for every kind, with
false scrubs <= 0.02.
"""

from __future__ import annotations

import os
import random
import time

import detection_corpus as dc
import pytest

from attune.memory.security.pii import PIIScrubber
from attune.memory.security.secrets import SecretsDetector

PER_CELL = 6
SEED = int(os.environ.get("DETECTION_SEED") or random.SystemRandom().randrange(2**32))

#: (figure, bound) -- recall figures are lower bounds, the others upper bounds.
GOALS = {
    "secrets recall overall": 0.98,
    "secrets recall, worst kind": 0.95,
    "secrets false-positive rate": 0.02,
    "PII leaked overall": 0.01,
    "PII leaked, worst kind": 0.02,
    "PII false scrubs": 0.02,
}


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    began = time.perf_counter()
    detector, scrubber = SecretsDetector(), PIIScrubber()
    score = dc.score(
        dc.generate(SEED, PER_CELL),
        lambda text: [(f.start, f.end) for f in detector.detect(text)],
        lambda text: scrubber.scrub(text).text,
    )
    assert time.perf_counter() - began < 15, f"seed {SEED}: the corpus took too long"
    recall = dc.Score.by(score.recall, 0)
    leaked = dc.Score.by(score.leaked, 0)
    return {
        "secrets recall overall": dc.Score.overall(score.recall).rate,
        "secrets recall, worst kind": min(t.rate for t in recall.values()),
        "secrets false-positive rate": dc.Score.overall(score.flagged).rate,
        "PII leaked overall": dc.Score.overall(score.leaked).rate,
        "PII leaked, worst kind": max(t.rate for t in leaked.values()),
        "PII false scrubs": dc.Score.overall(score.scrubbed).rate,
    }


def _misses(figures: dict[str, float], bounds: dict[str, float]) -> list[str]:
    return [
        f"{name}: {figures[name]:.4f} (bound {bound})"
        for name, bound in bounds.items()
        if (figures[name] < bound if "recall" in name else figures[name] > bound)
    ]


def test_corpus_covers_every_kind_and_container() -> None:
    cases = dc.generate(SEED, 1)
    cells = {(c.family, c.kind, c.container) for c in cases}
    kinds = len(dc.SECRET_KINDS) + len(dc.PII_KINDS) + len(dc.NEGATIVE_SHAPES)
    assert len(cells) == kinds * len(dc.CONTAINERS)
    assert all(c.value and c.value in c.text for c in cases)


def test_corpus_is_reproducible_from_its_seed() -> None:
    assert dc.generate(SEED, 1) == dc.generate(SEED, 1)


def test_detector_meets_the_issue_goals(figures: dict[str, float]) -> None:
    misses = _misses(figures, GOALS)
    assert not misses, f"seed {SEED} (replay: DETECTION_SEED={SEED}): {misses}"
