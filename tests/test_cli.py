"""The console entry point: ``attune demo`` and ``attune health``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attune.cli import main


def test_demo_runs_the_documented_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--storage-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Security pattern staged" in out
    assert "Performance pattern staged" in out
    assert "Patterns awaiting review: 2" in out
    assert out.count("PROMOTED -> Long-term ID: pat_") == 2
    assert "Short-term: True (fakeredis)" in out
    assert "Environment: development" in out
    assert "A credential in the content: secrets_detected, blocked=True" in out
    assert (
        "Personal data is scrubbed: 'Escalate slow exports to [EMAIL] (SSN [SSN] on file)'" in out
    )
    assert "Auto-classified SENSITIVE, encrypted=True" in out
    assert "Audit log: audit log intact" in out
    assert "jane.roe@example.org" not in (tmp_path / "patterns.db").read_bytes().decode("latin-1")


def test_health_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", "--storage-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["short_term"]["available"] is True


def test_bad_configuration_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("ATTUNE_ENV", "prod-ish")
    assert main(["health", "--storage-dir", str(tmp_path)]) == 2
    assert "ATTUNE_ENV" in capsys.readouterr().err


def test_console_script_installed(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("attune")
    assert exe.exists(), "pip install -e . provides the 'attune' command"
    env = {**os.environ, "ATTUNE_STORAGE_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    out = subprocess.run([str(exe), "demo"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "PROMOTED" in out.stdout


def test_audit_verify_command_detects_tampering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--storage-dir", str(tmp_path)]) == 0
    from attune.memory.security import pipeline

    pipeline.close_shared()
    capsys.readouterr()
    assert main(["audit", "verify", "--storage-dir", str(tmp_path)]) == 0
    assert "intact" in capsys.readouterr().out
    log = tmp_path / "audit.jsonl"
    lines = log.read_text().splitlines()
    assert '"user_id":"' in lines[2]
    lines[2] = lines[2].replace('"user_id":"', '"user_id":"x', 1)
    log.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify", "--log-file", str(log)]) == 1
    assert "line 3" in capsys.readouterr().out


def test_keys_generate_and_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    assert main(["keys", "generate"]) == 0
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 32
    assert main(["demo", "--storage-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["keys", "rotate", "--storage-dir", str(tmp_path)]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["key_id"].startswith("k_") and rotated["rewrapped"] >= 1
    assert main(["purge", "--storage-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 0}


def test_export_and_import_between_two_storage_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    assert main(["demo", "--storage-dir", str(source)]) == 0
    capsys.readouterr()
    out = tmp_path / "backup.jsonl"
    assert main(["export", "--storage-dir", str(source), "--out", str(out)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["file"] == str(out) and manifest["namespace"] == "*"
    assert manifest["records"] >= 2 and manifest["by_classification"]["SENSITIVE"] >= 1
    assert (tmp_path / "backup.jsonl.manifest.json").exists()
    monkeypatch.setenv("ATTUNE_KEY_FILE", str(source / "master.key"))  # the same master key
    assert main(["import", str(out), "--storage-dir", str(target)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"imported": manifest["records"], "skipped": 0, "expired": 0}
    assert main(["import", str(out), "--storage-dir", str(target)]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == manifest["records"]
    out.write_bytes(out.read_bytes().replace(b"pat_", b"pbt_", 1))
    assert main(["import", str(out), "--storage-dir", str(target)]) == 2
    assert "sha256" in capsys.readouterr().err


def test_export_defaults_to_a_timestamped_file_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--storage-dir", str(tmp_path / "store"), "--namespace", "default"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["file"].startswith("attune-export-") and manifest["records"] == 0
    assert (tmp_path / manifest["file"]).read_bytes() == b""


def test_search_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    assert main(["list", "--limit", "1", *storage]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[-1]["next_cursor"]  # one result, then the cursor
    first = lines[0]
    assert main(["list", "--limit", "1", "--cursor", lines[-1]["next_cursor"], *storage]) == 0
    second = json.loads(capsys.readouterr().out.splitlines()[0])
    assert second["pattern_id"] != first["pattern_id"]
    word = first["content"].split()[-1].strip(".,;")
    assert main(["search", word, *storage]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()[:-1]]
    assert first["pattern_id"] in [r["pattern_id"] for r in found]
    assert all("score" in r for r in found)
    assert main(["show", first["pattern_id"], *storage]) == 0
    assert json.loads(capsys.readouterr().out)["content"] == first["content"]
    assert main(["show", "pat_missing", *storage]) == 1
    assert "no pattern" in capsys.readouterr().err
    assert main(["search", "the and", *storage]) == 2  # no searchable word: a clear error
    assert "no words" in capsys.readouterr().err
    assert main(["list", "--namespace", "other", *storage]) == 0  # another namespace: empty
    assert capsys.readouterr().out.splitlines() == ['{"next_cursor": null}']
    assert main(["list", "--namespace", "*", "--limit", "1", *storage]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_audit_query_by_user_and_erase_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    assert main(["list", "--namespace", "*", "--limit", "100", *storage]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()[:-1]]
    author = listed[0]["created_by"]
    theirs = [r["pattern_id"] for r in listed if r["created_by"] == author]
    assert main(["audit", "query", "--user", author, *storage]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = {"pattern.store", "pattern.promote"}
    assert {e["target_id"] for e in events if e["event"] in written} >= set(theirs)
    assert all(e["user_id"].startswith("u_") and author not in e["user_id"] for e in events)
    assert main(["audit", "query", "--user", author, "--limit", "1", *storage]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1

    assert main(["erase-user", author, *storage]) == 2  # not confirmed: nothing erased
    assert "--yes" in capsys.readouterr().err
    assert main(["show", theirs[0], "--namespace", "*", *storage]) == 0
    capsys.readouterr()
    assert main(["erase-user", author, "--yes", *storage]) == 0
    erased = json.loads(capsys.readouterr().out)
    # (and any pattern another agent promoted from one they staged)
    assert erased["patterns"] >= len(theirs) and erased["pseudonym_erased"] is True
    assert main(["show", theirs[0], "--namespace", "*", *storage]) == 1
    capsys.readouterr()
    assert main(["audit", "query", "--user", author, *storage]) == 0
    assert capsys.readouterr().out == ""  # nothing links the log to them any more
    assert main(["erase-user", "bad id", "--yes", *storage]) == 2
    assert "invalid user_id" in capsys.readouterr().err
