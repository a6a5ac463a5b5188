"""The scan engines compared: the pipeline's steps 1-3 with each, against a Redis round trip.

    REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python benchmarks/scan_engine.py
    .venv/bin/python benchmarks/scan_engine.py --quick      # a few iterations (CI smoke)

For every engine installed (``re`` always; ``hyperscan`` with ``attune[fast-scan]``), the
median time per call of steps 1-3 of a persist (secrets, PII scrub, classify: what
``SecurityPipeline.prepare_pattern`` runs) and of each step, for a 200-byte and a 10 KB text
(``bench_pipeline.text_of``), as a ratio to one ``GET`` round trip through
``redis.asyncio`` measured in the same run; the engines' batches are interleaved so that a
busy machine slows both alike. Issue 17's targets: 10 KB <= 1.5x, 200 B <= 0.5x.

Then the generated detection corpus (``tests/detection_corpus.py``) through the detector,
the scrubber and the classifier with each engine, and the candidates for a literal set
(the classifier's words, caseless, in the 10 KB text): one ``re`` alternation, a
``str.find`` per literal, ``google-re2``'s ``re2.Set`` (if installed: it says which
patterns match, not where) and hyperscan. Results also go to
``benchmarks/results/scan_engine.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import bench_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import detection_corpus as dc

from attune.memory import MemoryConfig
from attune.memory.security import scan_engine
from attune.memory.security.classifier import _VOCABULARY, classify
from attune.memory.security.pipeline import SecurityPipeline

SIZES = (200, 10_240)
TARGETS = {200: 0.5, 10_240: 1.5}  # steps 1-3 / Redis round trip (issue 17)
META = {"source": "bench", "tags": ["a", "b"]}


def _steps(pipe: SecurityPipeline, text: str) -> dict[str, Callable[[], Any]]:
    engine = pipe.scan_engine
    return {
        "secrets": partial(pipe.secrets.kinds, text),
        "pii": partial(pipe.scrubber.scrub_value, {"content": text, "metadata": META}),
        "classify": partial(classify, text, "best_practice", META, engine=engine),
        "steps 1-3": partial(bench_pipeline._prepared, pipe, text, META),
    }


def _interleaved(fns: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """Median us per call of each function, their batches taken in turn."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number * 1e6)
    return {name: statistics.median(s) for name, s in samples.items()}


def measure(
    url: str, number: int, repeat: int, rtt_key: str = "attune-bench:scan-engine-rtt"
) -> tuple[float, list[dict[str, Any]]]:
    """The Redis round trip (us) and one row per engine, text size and step."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = MemoryConfig(redis_mock=True, storage_dir=Path(tmp), audit_sync=False)
        pipes = {e: SecurityPipeline(config, scan_engine=e) for e in scan_engine.available()}
        rtt = asyncio.run(bench_pipeline.redis_round_trip_us(url, number, repeat, rtt_key))
        for size in SIZES:
            text = bench_pipeline.text_of(size)
            fns = {
                (engine, step): fn
                for engine, pipe in pipes.items()
                for step, fn in _steps(pipe, text).items()
            }
            timed = _interleaved({f"{e}|{s}": fn for (e, s), fn in fns.items()}, number, repeat)
            for key, us in timed.items():
                engine, step = key.split("|")
                rows.append(
                    {
                        "engine": engine,
                        "size": size,
                        "step": step,
                        "us": round(us, 1),
                        "x_redis_rtt": round(us / rtt, 3),
                    }
                )
    return rtt, rows


def corpus_rows(seed: int, per_cell: int) -> list[dict[str, Any]]:
    """The generated corpus through steps 1-3's detectors, per engine: total ms."""
    texts = [case.text for case in dc.generate(seed, per_cell)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = MemoryConfig(redis_mock=True, storage_dir=Path(tmp), audit_sync=False)
        for engine in scan_engine.available():
            pipe = SecurityPipeline(config, scan_engine=engine)
            start = time.perf_counter()
            for text in texts:
                pipe.secrets.detect(text)
                pipe.scrubber.scrub(text)
                classify(text, engine=engine)
            ms = (time.perf_counter() - start) * 1e3
            rows.append({"engine": engine, "texts": len(texts), "ms": round(ms, 1)})
    return rows


def candidate_rows(number: int, repeat: int) -> list[dict[str, Any]]:
    """A caseless literal set (the classifier's words) in the 10 KB text, per candidate."""
    text = bench_pipeline.text_of(10_240)
    words = list(_VOCABULARY)
    alternation = re.compile("|".join(map(re.escape, words)), re.IGNORECASE)
    low = text.lower()
    fns: dict[str, Callable[[], Any]] = {
        "re: one alternation, IGNORECASE": partial(alternation.findall, text),
        "str.find per literal (lower-cased)": lambda: [w for w in words if w in low],
        "scan_engine.Literals (re)": partial(
            scan_engine.Literals(words, caseless=True, engine="re").find, text
        ),
    }
    try:
        import re2  # type: ignore[import-not-found]  # google-re2: evaluated, not used
    except ImportError:
        pass
    else:
        options = re2.Options()
        options.case_sensitive = False
        matcher = re2.Set.SearchSet(options)
        for w in words:
            matcher.Add(re.escape(w))
        matcher.Compile()
        fns["google-re2: re2.Set (which, not where)"] = partial(matcher.Match, text)
    if "hyperscan" in scan_engine.available():
        fns["scan_engine.Literals (hyperscan)"] = partial(
            scan_engine.Literals(words, caseless=True, engine="hyperscan").find, text
        )
    timed = _interleaved(fns, number, repeat)
    return [{"candidate": name, "us": round(us, 1)} for name, us in timed.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: check it runs")
    parser.add_argument("--seed", type=int, default=17, help="the corpus seed")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "scan_engine.json",
        help="where the JSON goes",
    )
    args = parser.parse_args(argv)
    number, repeat = (10, 3) if args.quick else (200, 9)
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")

    rtt, rows = measure(url, number, repeat)
    print(f"Redis GET round trip (redis.asyncio, {url.rsplit('@', 1)[-1]}): {rtt:.1f} us")
    print(f"engines installed: {', '.join(scan_engine.available())}\n")
    print(f"{'engine':<10}{'text':>8}  {'step':<12}{'us':>9}{'x RTT':>8}  target")
    for row in rows:
        target = TARGETS[row["size"]] if row["step"] == "steps 1-3" else None
        judged = (
            ""
            if target is None
            else f"<= {target}x " + ("PASS" if row["x_redis_rtt"] <= target else "MISS")
        )
        print(
            f"{row['engine']:<10}{row['size']:>7}B  {row['step']:<12}{row['us']:>9.1f}"
            f"{row['x_redis_rtt']:>8.2f}  {judged}"
        )
    corpus = corpus_rows(args.seed, 1 if args.quick else 3)
    print(f"\ngenerated corpus (seed {args.seed}): detect + scrub + classify every text")
    for row in corpus:
        print(f"{row['engine']:<10}{row['texts']:>6} texts {row['ms']:>9.1f} ms")
    candidates = candidate_rows(number, repeat)
    print(f"\nliteral set candidates: {len(_VOCABULARY)} caseless words in a 10 KB text")
    for row in candidates:
        print(f"  {row['candidate']:<42}{row['us']:>9.1f} us")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "redis_rtt_us": round(rtt, 1),
        "rows": rows,
        "corpus": corpus,
        "candidates": candidates,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
