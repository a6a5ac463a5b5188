"""Every attune benchmark in one run, each figure measured side by side with its baseline.

    .venv/bin/python benchmarks/run.py [--quick]
    nox -s benchmarks [-- --quick]

Prints a table (figure, ours, baseline, ratio, target, PASS/MISS) and writes JSON with
the machine, the settings and every round of every figure to
``benchmarks/results/latest.json`` (``--output`` to change). ``--quick`` runs tiny sizes
in well under a minute: it checks that the harness works (CI), its ratios mean nothing.

Method. A ratio is throughput(attune) / throughput(baseline), or a latency / memory
ratio where the figure says so. Baseline and attune run alternately, round after round,
after a warm-up of each, and the median of each side is reported: these machines are
shared and noisy, and interleaving makes noise hit both sides. Baselines use the same
Redis and the same disk: raw ``redis.asyncio`` and raw sync ``redis`` (compact JSON
encode + ``SET PX`` / ``GET`` + decode) and raw ``aiosqlite`` (WAL, ``synchronous=FULL``,
``BEGIN``/``INSERT``/``COMMIT`` per row; select by primary key, from a table grown to as
many rows as attune's before the recall comparisons). "64 concurrent" is 64
asyncio tasks each running its share in order. The persist / recall comparisons run in
five independent passes (own event loop, files and connections) and report the median of
the passes' ratios: one hand-off to an aiosqlite connection's thread costs about 60 or about
95 µs on these VMs, a draw kept for the connection's life (``profile_ops.py --hops``).

Isolation. Redis is ``--redis-url`` (default ``$ATTUNE_BENCH_REDIS_URL``, else
``redis://127.0.0.1:6379/13``); every key goes under a fresh prefix
``attune-bench-<random>`` and is deleted at the end with SCAN + UNLINK (never a flush).
Files go to a fresh temporary directory (under ``--tmp-dir``), removed at the end.

Layout. This file is the command line: options, the environment line, the sections in
order, the report. Each section is a function of the run's :class:`harness.Bench` that
returns its figures:

- ``short_term.py``: stash / retrieve (async, 64 tasks, sync facade), the staged listing
  among 1M keys, RSS (through the child process ``rss_probe.py``);
- ``long_term.py``: persist / recall and their floors, 64 callers, ``audit_sync=False``;
- ``long_term_scaling.py``: recall latency at 1M vs 10k stored patterns;
- ``pipeline_steps.py``: the security pipeline's steps against a Redis round trip (the
  measurement is ``bench_pipeline.py``'s);
- ``harness.py``: sizes, the run's prefix and scratch directory, their cleanup;
- ``workloads.py``: the timing machinery and the raw baselines;
- ``report.py``: figures, targets, the table and the JSON.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import long_term
import long_term_scaling
import pipeline_steps
import short_term
from harness import FULL, QUICK, TASKS, Bench, bench_environment
from report import Figure, machine_info, print_report, write_json

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "latest.json"


#: The sections in the order they run (the order is part of the method: keep it).
SECTIONS: list[tuple[str, Callable[[Bench], list[Figure]]]] = [
    ("stash / retrieve (async)", short_term.stash_retrieve_async),
    ("stash / retrieve (sync facade)", short_term.stash_retrieve_sync),
    ("persist / recall", long_term.persist_recall),
    ("get_staged_patterns", short_term.staged_listing),
    ("recall latency scaling", long_term_scaling.recall_scaling),
    ("RSS", short_term.rss),
    ("security pipeline steps", pipeline_steps.step_figures),
]


def run_all(bench: Bench) -> list[Figure]:
    figures: list[Figure] = []
    for name, section in SECTIONS:
        start = time.perf_counter()
        figures += section(bench)
        print(f"  {name}: {time.perf_counter() - start:.1f} s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ATTUNE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tmp-dir", type=Path, default=None, help="parent of the scratch dir")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still clean up when killed
    sizes = QUICK if args.quick else FULL
    machine = machine_info(args.redis_url)
    started = time.time()
    with bench_environment(args.redis_url, args.tmp_dir, sizes) as bench:
        audit_sync = bench.config("probe").audit_sync
        print(
            f"attune benchmarks{' (QUICK: ratios not meaningful)' if args.quick else ''}\n"
            f"{machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}, "
            f"Redis {machine['redis_server']} at {machine['redis_url']}\n"
            f"MemoryConfig defaults (audit_sync={audit_sync}); scratch dir {bench.tmp}\n",
            flush=True,
        )
        figures = run_all(bench)
    elapsed = time.time() - started
    print_report(figures, args.quick)
    write_json(
        args.output,
        started=started,
        quick=args.quick,
        elapsed=elapsed,
        machine=machine,
        settings={
            "audit_sync": audit_sync,
            "tasks": TASKS,
            "key_prefix": bench.prefix,
            "scratch_dir": str(bench.tmp),
            **asdict(sizes),
        },
        figures=figures,
    )
    print(f"\nJSON: {args.output} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
