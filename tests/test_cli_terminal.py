"""``attune`` on a terminal: a long export draws a rich progress bar (bar characters, a
percentage, the count) on a pseudo-terminal, and nothing of it reaches a pipe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attune.cli.output import PROGRESS_THRESHOLD
from attune.memory import AsyncUnifiedMemory, MemoryConfig

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ATTUNE = str(Path(sys.executable).parent / "attune")
#: Past the threshold, so the export draws its bar.
RECORDS = PROGRESS_THRESHOLD + 200


async def _fill(storage: Path) -> None:
    config = MemoryConfig(storage_dir=storage, redis_mock=True)
    async with AsyncUnifiedMemory("writer", config, access_tier="STEWARD") as memory:
        await asyncio.gather(
            *(
                memory.persist_pattern(f"note {i} on retries", "practice", "PUBLIC")
                for i in range(RECORDS)
            )
        )


def _environment(storage: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ATTUNE_")
        and k not in ("REDIS_URL", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")
    }
    return {**env, "ATTUNE_STORAGE_DIR": str(storage), "TERM": "xterm-256color"}


def test_a_long_export_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    try:
        import pexpect
    except ImportError:
        if CI:
            pytest.fail("pexpect is not installed (CI=true makes this a failure)")
        pytest.skip("pexpect is not installed: pip install -e '.[dev]'")
    storage = tmp_path / "store"
    asyncio.run(_fill(storage))
    out = tmp_path / "all.jsonl"
    child = pexpect.spawn(
        ATTUNE,
        ["patterns", "export", "--out", str(out)],
        env=_environment(storage),
        cwd=str(tmp_path),
        dimensions=(24, 120),
        encoding="utf-8",
        timeout=120,
    )
    child.expect(pexpect.EOF)
    screen = child.before
    child.close()
    assert child.exitstatus == 0, screen
    assert "Exporting" in screen
    assert "━" in screen  # the bar
    assert "%" in screen  # its percentage
    assert f"/{RECORDS}" in screen  # done/total
    assert f"Exported {RECORDS} record(s)" in screen
    assert len(out.read_text().splitlines()) == RECORDS

    # The same export into a pipe: the summary only, no bar, no escape sequences.
    piped = subprocess.run(
        [ATTUNE, "patterns", "export", "--out", str(tmp_path / "again.jsonl")],
        env=_environment(storage),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith(f"Exported {RECORDS} record(s)")
    assert "━" not in piped.stderr + piped.stdout and "\x1b" not in piped.stderr + piped.stdout
