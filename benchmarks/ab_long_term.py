"""A/B: the persist / recall figures of ``benchmarks/run.py`` for two (or more) source
trees, in one run, passes interleaved.

Why it exists: a change to the persist or recall path is kept only with a measured A/B
figure, and on these shared 2-CPU VMs two separate ``run.py`` runs differ by more than
most changes do. Each pass is a child process on one tree running exactly one pass of
``long_term.persist_recall`` (:func:`long_term.one_pass`: every persist / recall figure,
each against its raw aiosqlite baseline, on files and connections of its own); the trees
alternate pass by pass (order flips each round), so machine noise hits them alike. A
figure's ratio is the median of its passes' ratios, as ``run.py`` reports it, and the
last column is each tree's median over the first's. A tree is any directory holding the
``attune`` package (e.g. ``git archive <commit> attune | tar -x -C DIR``).

    python benchmarks/ab_long_term.py --tree old=/tmp/old --tree new=. [--passes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from report import tree_medians

_HERE = Path(__file__).resolve().parent
#: The figures shown per pass (all are summarised at the end).
_SHOWN = {
    "persist_public_sequential": "p_pub",
    "persist_sensitive_sequential": "p_sens",
    "persist_sensitive_concurrent": "p_sens_64",
    "recall_public_sequential": "r_pub",
    "persist_floor_sequential": "p_floor",
    "recall_floor_sequential": "r_floor",
}


def _child(redis_url: str, quick: bool) -> dict[str, list[float]]:
    """One pass on the tree this process imports: figure id -> [ratio, ours, baseline]."""
    import long_term
    from harness import FULL, QUICK, bench_environment

    from attune.memory.security.pipeline import close_shared

    with bench_environment(redis_url, None, QUICK if quick else FULL) as bench:
        figures = asyncio.run(long_term.one_pass(bench, "ab"))
        close_shared()
    return {f.id: [f.ratio, f.ours, f.baseline] for f in figures}


def _run_pass(tree: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=f"{tree}{os.pathsep}{_HERE}")
    command = [sys.executable, __file__, "--child", "--redis-url", args.redis_url]
    command += ["--quick"] if args.quick else []
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result: dict[str, list[float]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--passes", type=int, default=5, help="passes per tree")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("ATTUNE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.redis_url, args.quick)))
        return
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(_HERE.parent)}
    names = list(trees)
    passes: dict[str, list[dict[str, list[float]]]] = {name: [] for name in names}
    for r in range(args.passes):
        for name in names if r % 2 == 0 else names[::-1]:
            result = _run_pass(Path(trees[name]).resolve(), args)
            passes[name].append(result)
            shown = "  ".join(f"{short} {result[fid][0]:.3f}" for fid, short in _SHOWN.items())
            print(f"pass {r + 1} {name:8s} {shown}", flush=True)
    print()
    for fid in passes[names[0]][0]:
        values = {n: [p[fid][0] for p in passes[n]] for n in names}
        print(tree_medians(fid, values, "x", 44))


if __name__ == "__main__":
    main()
