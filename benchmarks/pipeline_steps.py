"""The security pipeline's cost per write, as figures of a run (``bench_pipeline.py``).

Figures ``pipeline_<size>_<step>`` (informational, no target): the median time per call of
each step of the pipeline (secrets, PII, classify, encrypt) and of the whole pipeline of a
PUBLIC and of a SENSITIVE persist, for a 200-byte and a 10 KB text, against one Redis
``GET`` round trip through ``redis.asyncio`` measured in the same run. The measurement is
:func:`bench_pipeline.measure`; this module only turns its rows into figures
(``bench_pipeline.py`` stays a standalone script the tests load on its own).
"""

from __future__ import annotations

import re

import bench_pipeline
from harness import Bench
from report import Figure


def step_figures(b: Bench) -> list[Figure]:
    """:func:`bench_pipeline.measure` at ``b``'s sizes: one figure per text size and step."""
    s = b.sizes
    rtt, rows = bench_pipeline.measure(
        b.url, s.pipeline_number, s.pipeline_repeat, rtt_key=f"{b.prefix}:rtt"
    )
    return [
        Figure(
            id=f"pipeline_{row['size']}_{re.sub(r'[^a-z]+', '_', row['step'].lower()).strip('_')}",
            title=f"pipeline step {row['step']}, {row['size']:,} B text",
            unit="us",
            ours=row["us"],
            baseline=rtt,
            baseline_name="one Redis GET round trip (redis.asyncio)",
            ratio=row["us"] / rtt,
            ratio_kind="cost per write / one Redis round trip",
            notes="from benchmarks/bench_pipeline.py (median of timed batches)",
        )
        for row in rows
    ]
