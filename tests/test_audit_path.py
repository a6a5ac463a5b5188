"""One place decides the default audit log: :attr:`MemoryConfig.audit_log_path`.

The security pipeline writes there, ``attune audit verify`` checks it and the demo
verifies it -- also when ``ATTUNE_AUDIT_LOG`` moves it out of the storage directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attune.cli import main
from attune.memory import MemoryConfig
from attune.memory.security import pipeline
from attune.memory.security.pipeline import SecurityPipeline


def test_default_is_next_to_the_store_and_creates_nothing(tmp_path: Path) -> None:
    config = MemoryConfig(storage_dir=tmp_path / "store")
    assert config.audit_log_path == tmp_path / "store" / "audit.jsonl"
    assert not (tmp_path / "store").exists()


def test_audit_log_file_wins_from_argument_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "logs" / "a.jsonl"
    assert MemoryConfig(storage_dir=tmp_path, audit_log_file=log).audit_log_path == log
    monkeypatch.setenv("ATTUNE_AUDIT_LOG", str(log))
    assert MemoryConfig(storage_dir=tmp_path).audit_log_path == log


def test_relative_and_home_paths_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTUNE_AUDIT_LOG", "logs/a.jsonl")
    assert MemoryConfig().audit_log_path == tmp_path / "logs" / "a.jsonl"
    monkeypatch.delenv("ATTUNE_AUDIT_LOG")
    assert MemoryConfig(storage_dir=Path("~/store")).audit_log_path == (
        tmp_path / "home" / "store" / "audit.jsonl"
    )
    assert MemoryConfig(storage_dir=Path("store")).audit_log_path == (
        tmp_path / "store" / "audit.jsonl"
    )


@pytest.mark.parametrize("moved", [False, True])
def test_the_pipeline_writes_where_the_config_says(tmp_path: Path, moved: bool) -> None:
    log = tmp_path / "elsewhere" / "a.jsonl" if moved else None
    config = MemoryConfig(storage_dir=tmp_path / "store", audit_log_file=log)
    assert SecurityPipeline(config).audit_logger.log_file == config.audit_log_path
    # The storage directory is created when the log lives in it (a clear error otherwise).
    assert (tmp_path / "store").exists() is not moved


def test_demo_and_cli_follow_a_moved_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "elsewhere" / "a.jsonl"
    monkeypatch.setenv("ATTUNE_AUDIT_LOG", str(log))
    assert main(["demo", "--storage-dir", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    events = len(log.read_text().splitlines())
    # The demo verifies the log its agents wrote, not <storage>/audit.jsonl.
    assert f"Audit log: audit log intact: {events} events in 1 file" in out
    assert not (tmp_path / "store" / "audit.jsonl").exists()

    pipeline.close_shared()
    assert main(["audit", "verify", "--storage-dir", str(tmp_path / "store")]) == 0
    assert f"intact: {events} events" in capsys.readouterr().out
    lines = log.read_text().splitlines()
    lines[2] = lines[2].replace('"user_id":"', '"user_id":"x', 1)
    log.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify"]) == 1
    assert "TAMPERED at a.jsonl line 3" in capsys.readouterr().out
