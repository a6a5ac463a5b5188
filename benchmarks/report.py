"""What a benchmark run reports: figures, their targets, the table and the JSON.

A :class:`Figure` is one number of ours next to its baseline's, their ratio and, where the
project sets one, a :class:`Target` on the ratio (or on our own p50) that makes it PASS or
MISS; a figure without one is INFO. :func:`throughput` and :func:`latency` build figures
from a :class:`workloads.Comparison` or from paired latency samples. :func:`print_report`
prints the table and the notes under it; :func:`write_json` writes the machine
(:func:`machine_info`), the settings and every figure with all its samples. Nothing here is
measured.
"""

from __future__ import annotations

import json
import operator
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from workloads import Comparison, percentile

from attune.memory.config import redact_url

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    """A bound on a figure's ratio (``on="ratio"``) or on its own value (``on="ours"``)."""

    op: str
    value: float
    on: str = "ratio"
    unit: str = "x"

    def met(self, ratio: float, ours: float) -> bool:
        return _COMPARE[self.op](ratio if self.on == "ratio" else ours, self.value)

    def __str__(self) -> str:
        if self.on == "ratio":
            return f"{self.op} {self.value:g}x"
        return f"p50 {self.op} {self.value:g} {self.unit}"


@dataclass
class Figure:
    id: str
    title: str
    unit: str
    ours: float
    baseline: float
    baseline_name: str
    ratio: float
    ratio_kind: str
    target: Target | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.target is None:
            return "INFO"
        return "PASS" if self.target.met(self.ratio, self.ours) else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "unit": self.unit,
            "ours": self.ours,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "ratio_kind": self.ratio_kind,
            "target": None if self.target is None else str(self.target),
            "status": self.status,
            "samples": self.samples,
            "notes": self.notes,
            **self.extra,
        }


def throughput(
    fid: str, title: str, comp: Comparison, baseline_name: str, target: Target | None
) -> Figure:
    return Figure(
        id=fid,
        title=title,
        unit="ops/s",
        ours=comp.ours_median,
        baseline=comp.baseline_median,
        baseline_name=baseline_name,
        ratio=comp.ours_median / comp.baseline_median,
        ratio_kind="throughput ours / baseline (higher is better)",
        target=target,
        samples={"ours_ops_per_s": comp.ours, "baseline_ops_per_s": comp.baseline},
    )


def latency(
    fid: str,
    title: str,
    ours_ms: list[float],
    baseline_ms: list[float],
    baseline_name: str,
    target: Target,
    notes: str,
    extra: dict[str, Any],
    sides: tuple[str, str] = ("ours", "baseline"),
) -> Figure:
    """A p50 latency figure; ``sides`` names the two sides in the ratio kind and the JSON
    keys (``<side>_ms`` samples, ``<side>_p95_ms``), ahead of ``extra``."""
    ours, base = percentile(ours_ms, 50), percentile(baseline_ms, 50)
    a, b = sides
    return Figure(
        id=fid,
        title=title,
        unit="ms",
        ours=ours,
        baseline=base,
        baseline_name=baseline_name,
        ratio=ours / base,
        ratio_kind=f"latency p50 {a} / {b} (lower is better)",
        target=target,
        samples={f"{a}_ms": ours_ms, f"{b}_ms": baseline_ms},
        notes=notes,
        extra={
            f"{a}_p95_ms": percentile(ours_ms, 95),
            f"{b}_p95_ms": percentile(baseline_ms, 95),
            **extra,
        },
    )


def machine_info(url: str) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    client = redis.Redis.from_url(url)
    try:
        server = client.info("server")
    finally:
        client.close()
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "redis_server": server.get("redis_version"),
        "redis_url": redact_url(url),
    }


def fmt(value: float, unit: str) -> str:
    if unit == "ops/s":
        return f"{value:,.0f} ops/s"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:,.1f} {unit}"


def table(figures: list[Figure]) -> str:
    head = ("figure", "ours", "baseline", "ratio", "target", "result")
    rows = [
        (
            f.title,
            fmt(f.ours, f.unit),
            fmt(f.baseline, f.unit),
            f"{f.ratio:.2f}x",
            str(f.target) if f.target else "-",
            f.status,
        )
        for f in figures
    ]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    lines = [" | ".join(_cells(r, widths)) for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _cells(row: tuple[str, ...], widths: list[int]) -> list[str]:
    """The first column left-aligned, the numbers right-aligned."""
    return [
        cell.ljust(w) if c == 0 else cell.rjust(w)
        for c, (cell, w) in enumerate(zip(row, widths, strict=True))
    ]


def print_report(figures: list[Figure], quick: bool) -> None:
    """The table, then each figure's notes (the pipeline steps' are all alike: left out)."""
    print(f"\n{table(figures)}\n")
    for f in figures:
        if f.notes and not f.id.startswith("pipeline_"):
            print(f"- {f.title}: {f.notes}")
    if quick:
        print("\nQUICK run: tiny sizes, the ratios and PASS/MISS are not meaningful.")


def write_json(
    output: Path,
    *,
    started: float,
    quick: bool,
    elapsed: float,
    machine: dict[str, Any],
    settings: dict[str, Any],
    figures: list[Figure],
) -> None:
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": quick,
        "elapsed_s": round(elapsed, 1),
        "machine": machine,
        "settings": settings,
        "figures": [f.as_json() for f in figures],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))


def tree_medians(figure: str, values: dict[str, list[float]], unit: str, width: int) -> str:
    """One line of a source-tree A/B: each tree's median of ``values`` (tree -> per-pass
    values, in the order given) and, with two trees or more, each one's quotient by the
    first (``benchmarks/ab_*.py``)."""
    medians = {name: statistics.median(v) for name, v in values.items()}
    names = list(medians)
    line = "  ".join(f"{n} {m:.3f}{unit}" for n, m in medians.items())
    if len(names) >= 2:
        line += "  |  " + "  ".join(
            f"{n}/{names[0]} {medians[n] / medians[names[0]]:.3f}" for n in names[1:]
        )
    return f"{figure:{width}s} {line}"
