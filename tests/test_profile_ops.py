"""``benchmarks/profile_ops.py`` reads py-spy's output right.

py-spy itself needs ptrace rights, so CI does not run it; the summary is checked on a
speedscope file written here: only the ticks of the measured run count, each thread is
named by its thread name, and shares are per leaf line with that line's source.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from attune.memory.long_term import SQLiteLongTermStore

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "profile_ops.py"


def _module() -> ModuleType:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("profile_ops", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def _speedscope(tmp_path: Path) -> Path:
    source = tmp_path / "store.py"
    source.write_text('wait_for_work()\ndb.execute("COMMIT")\nos.fsync(fd)\n')
    frames = [
        {"name": "_child", "file": str(source), "line": 1},  # 0: waiting for the profiler
        {"name": "_measured_run", "file": str(source), "line": 1},  # 1
        {"name": "EpollSelector.select", "file": str(source), "line": 1},  # 2
        {"name": "_connection_worker_thread", "file": str(source), "line": 1},  # 3: idle
        {"name": "SQLiteLongTermStore._run_batch", "file": str(source), "line": 2},  # 4
        {"name": "_Sink._append_some", "file": str(source), "line": 3},  # 5
        {"name": "_prepare.<locals>.persist", "file": str(source), "line": 1},  # 6: a task
    ]
    main = [[0]] * 5 + [[1, 2], [2], [6, 2], [2], [1]] + [[0]] * 3
    store = [[3]] * 5 + [[3, 4], [3, 4], [3, 5], [3], [3]] + [[3]] * 3
    data = {
        "shared": {"frames": frames},
        "profiles": [
            {"name": 'Thread 1 "MainThread"', "samples": main},
            {"name": 'Thread 2 "Thread-1 (_connection_worker_thread)"', "samples": store},
            {"name": 'Thread 3 "redis-helper"', "samples": [[3]] * 13},  # not one of ours
        ],
    }
    path = tmp_path / "run.speedscope.json"
    path.write_text(json.dumps(data))
    return path


def test_summary_counts_only_the_measured_ticks(tmp_path: Path) -> None:
    text = _module().summarise(_speedscope(tmp_path))
    lines = text.splitlines()
    # main: ticks 5..9 (the first and last that show the workload), store: the same ticks.
    assert "event loop: 5 samples" in lines
    assert "SQLite thread (aiosqlite): 5 samples" in lines
    assert not any("redis-helper" in line for line in lines)
    commit = next(line for line in lines if "_run_batch" in line)
    assert commit.split("%")[0].strip() == "40.0"
    assert commit.rstrip().endswith('db.execute("COMMIT")')
    fsync = next(line for line in lines if "_append_some" in line)
    assert fsync.split("%")[0].strip() == "20.0"
    assert fsync.rstrip().endswith("os.fsync(fd)")
    select = next(line for line in lines if "EpollSelector.select" in line)
    assert select.split("%")[0].strip() == "80.0"


def test_summary_says_when_no_tick_fell_in_the_run(tmp_path: Path) -> None:
    path = _speedscope(tmp_path)
    data = json.loads(path.read_text())
    data["profiles"][0]["samples"] = [[0]] * 13
    path.write_text(json.dumps(data))
    assert "no sample fell inside the measured run" in _module().summarise(path)


def test_unknown_workload_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "persist-everything"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown workload persist-everything" in done.stderr


def test_hop_latencies_gives_one_median_per_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    medians = asyncio.run(_module().hop_latencies(connections=3, ops=40, tmp_dir=tmp_path))
    assert len(medians) == 3
    assert all(0 < m < 1_000_000 for m in medians)  # µs: one select, not a hang
    assert list(tmp_path.iterdir()) == []  # its scratch store is gone


def test_hop_latencies_on_one_cpu_restore_the_affinity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    real_get = SQLiteLongTermStore.get

    async def spying_get(self: Any, pattern_id: str, now_ms: int) -> Any:
        seen.append(set(os.sched_getaffinity(0)))
        return await real_get(self, pattern_id, now_ms)

    monkeypatch.setattr(SQLiteLongTermStore, "get", spying_get)
    medians = asyncio.run(
        _module().hop_latencies(connections=2, ops=20, tmp_dir=tmp_path, one_cpu=True)
    )
    assert len(medians) == 2
    assert seen and all(mask == {min(before)} for mask in seen)  # measured on one CPU
    assert os.sched_getaffinity(0) == before  # and given back
