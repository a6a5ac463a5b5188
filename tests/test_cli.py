"""The ``attune`` command: readable tables by default, one JSON document with ``--json``,
global options before or after the subcommand, exit codes, and the progress callbacks of
the core that its progress bars draw from."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from attune.cli import main
from attune.errors import ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.long_term.sqlite_schema import COLUMNS
from attune.memory.long_term.sqlite_store import DB_FILENAME

#: The start of every ANSI escape sequence (colour, cursor movement).
ESC = "\x1b"


@pytest.fixture(autouse=True)
def _plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the caller's shell forces colour or a width on the captured output."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _rows(config: MemoryConfig) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(config.storage_dir / DB_FILENAME)) as db:
        return list(db.execute(f"SELECT {COLUMNS} FROM patterns ORDER BY pattern_id"))


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
    assert main(["health", "--json", "--storage-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["short_term"]["available"] is True
    assert main(["health", "--storage-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "short-term" in out and "long-term" in out and "fakeredis" in out
    assert "healthy" in out and ESC not in out


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
    piped = subprocess.run(
        [str(exe), "--json", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    assert len(json.loads(piped.stdout)["results"]) == 4  # a pipe gets the bare document


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
    assert main(["keys", "rotate", "--json", "--storage-dir", str(tmp_path)]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["key_id"].startswith("k_") and rotated["rewrapped"] >= 1
    assert main(["keys", "rotate", "--storage-dir", str(tmp_path)]) == 0
    line = capsys.readouterr().out
    assert line.startswith("New master key k_") and f"re-wrapped {rotated['rewrapped']}" in line
    assert main(["--json", "purge", "--storage-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 0}
    assert main(["purge", "--storage-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "Purged 0 expired pattern(s).\n"
    assert main(["keys", "generate", "--json"]) == 0
    assert len(base64.b64decode(json.loads(capsys.readouterr().out)["master_key"])) == 32


def test_export_and_import_between_two_storage_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    assert main(["demo", "--storage-dir", str(source)]) == 0
    capsys.readouterr()
    out = tmp_path / "backup.jsonl"
    assert main(["--json", "export", "--storage-dir", str(source), "--out", str(out)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["file"] == str(out) and manifest["namespace"] == "*"
    assert manifest["records"] >= 2 and manifest["by_classification"]["SENSITIVE"] >= 1
    assert (tmp_path / "backup.jsonl.manifest.json").exists()
    monkeypatch.setenv("ATTUNE_KEY_FILE", str(source / "master.key"))  # the same master key
    assert main(["import", str(out), "--storage-dir", str(target), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"imported": manifest["records"], "skipped": 0, "expired": 0}
    assert main(["import", str(out), "--storage-dir", str(target)]) == 0
    assert capsys.readouterr().out == (
        f"Imported 0 record(s); skipped {manifest['records']} already stored, "
        "0 past their retention.\n"
    )
    out.write_bytes(out.read_bytes().replace(b"pat_", b"pbt_", 1))
    assert main(["import", str(out), "--storage-dir", str(target), "--json"]) == 2
    failed = capsys.readouterr()
    assert "sha256" in failed.err and failed.out == ""  # an error: nothing on stdout


def test_export_defaults_to_a_timestamped_file_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").mkdir()  # an empty store (one not there is refused, exit 2)
    store = ["--storage-dir", str(tmp_path / "store")]
    assert main(["export", *store, "--namespace", "default", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["file"].startswith("attune-export-") and manifest["records"] == 0
    assert (tmp_path / manifest["file"]).read_bytes() == b""


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    """The one JSON document a ``--json`` command printed (json.loads refuses any more)."""
    captured = capsys.readouterr()
    assert ESC not in captured.out
    return json.loads(captured.out)


def test_search_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    assert main(["list", "--limit", "1", "--json", *storage]) == 0
    page = _json(capsys)
    assert set(page) == {"results", "next_cursor"}
    assert len(page["results"]) == 1 and page["next_cursor"]
    first = page["results"][0]
    assert main(["list", "--limit", "1", "--cursor", page["next_cursor"], "--json", *storage]) == 0
    second = _json(capsys)["results"][0]
    assert second["pattern_id"] != first["pattern_id"]
    word = first["content"].split()[-1].strip(".,;")
    assert main(["--json", "search", word, *storage]) == 0
    found = _json(capsys)["results"]
    assert first["pattern_id"] in [r["pattern_id"] for r in found]
    assert all("score" in r for r in found)
    assert main(["show", first["pattern_id"], "--json", *storage]) == 0
    assert _json(capsys)["content"] == first["content"]
    assert main(["show", "pat_missing", "--json", *storage]) == 1
    missing = capsys.readouterr()
    assert json.loads(missing.out) is None and "no pattern" in missing.err
    assert main(["show", "pat_missing", *storage]) == 1
    missing = capsys.readouterr()
    assert missing.out == "" and "no pattern" in missing.err
    assert main(["search", "the and", *storage]) == 2  # no searchable word: a clear error
    assert "no words" in capsys.readouterr().err
    assert main(["list", "--namespace", "other", "--json", *storage]) == 0  # empty
    assert _json(capsys) == {"results": [], "next_cursor": None}
    assert main(["list", "--namespace", "*", "--limit", "1", "--json", *storage]) == 0
    assert len(_json(capsys)["results"]) == 1


def test_tables_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json: tables with the ids and values, a line for the next page, no
    colour codes when the output is not a terminal."""
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    assert main(["list", "--limit", "100", "--json", *storage]) == 0
    patterns = _json(capsys)["results"]
    assert main(["list", "--limit", "100", *storage]) == 0
    table = capsys.readouterr().out
    assert ESC not in table
    header = table.splitlines()[0].split()
    assert header[:4] == ["id", "type", "classification", "namespace"]
    assert "creator" in header and "content" in header
    for pattern in patterns:
        row = next(line for line in table.splitlines() if pattern["pattern_id"] in line)
        for field in ("pattern_type", "classification", "namespace", "created_by"):
            assert pattern[field] in row
        assert pattern["created_at"][:10] in row
        assert pattern["content"][:30] in row
    assert "--cursor" not in table  # one page holds them all

    assert main(["list", "--limit", "1", *storage]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("More: run it again with --cursor c1.")
    cursor = lines[-1].rsplit(" ", 1)[-1]
    assert main(["list", "--limit", "1", "--cursor", cursor, *storage]) == 0
    assert patterns[1]["pattern_id"] in capsys.readouterr().out

    word = patterns[0]["content"].split()[-1].strip(".,;")
    assert main(["search", word, *storage]) == 0
    table = capsys.readouterr().out
    assert ESC not in table and "score" in table.splitlines()[0]
    assert patterns[0]["pattern_id"] in table

    assert main(["show", patterns[0]["pattern_id"], *storage]) == 0
    panel = capsys.readouterr().out
    assert ESC not in panel
    for field in ("pattern_id", "content", "classification", "created_by", "metadata"):
        assert field in panel
    assert patterns[0]["content"] in panel

    assert main(["audit", "query", "--limit", "3", *storage]) == 0
    table = capsys.readouterr().out
    assert ESC not in table
    assert table.splitlines()[0].split() == [
        "ts", "(UTC)", "seq", "event", "user", "tier", "target", "outcome",
    ]  # fmt: skip
    assert len([line for line in table.splitlines() if line.startswith("20")]) == 3
    assert main(["audit", "query", "--event", "no.such.event", *storage]) == 0
    assert "No audit events match." in capsys.readouterr().out


def test_narrow_terminal_tables_keep_every_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list", "--json", *storage]) == 0
    ids = [r["pattern_id"] for r in _json(capsys)["results"]]
    assert main(["list", *storage]) == 0
    table = capsys.readouterr().out
    assert all(len(line) <= 80 for line in table.splitlines())
    assert all(pattern_id in table for pattern_id in ids)
    assert main(["audit", "query", "--limit", "2", *storage]) == 0
    assert all(len(line) <= 80 for line in capsys.readouterr().out.splitlines())


def test_every_command_prints_one_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: exactly one document on stdout, of the documented shape, for every command."""
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", "--json", *storage]) == 0
    demo = capsys.readouterr()
    assert set(json.loads(demo.out)) == {"staged", "promoted", "health"}
    assert "PROMOTED" in demo.err  # its story goes to stderr
    assert main(["health", "--json", *storage]) == 0
    assert {"short_term", "long_term", "audit", "access_tier"} <= set(_json(capsys))
    assert main(["list", "--json", *storage]) == 0
    listed = _json(capsys)
    assert set(listed) == {"results", "next_cursor"}
    assert main(["search", "SQL", "--json", *storage]) == 0
    assert set(_json(capsys)) == {"results", "next_cursor"}
    assert main(["show", listed["results"][0]["pattern_id"], "--json", *storage]) == 0
    assert _json(capsys)["pattern_id"] == listed["results"][0]["pattern_id"]
    assert main(["audit", "verify", "--json", *storage]) == 0
    verified = _json(capsys)
    assert verified["ok"] is True and verified["lines_checked"] > 0
    assert main(["audit", "query", "--json", *storage]) == 0
    events = _json(capsys)
    assert isinstance(events, list) and events and "event" in events[0]
    out = tmp_path / "e.jsonl"
    assert main(["export", "--out", str(out), "--json", *storage]) == 0
    assert _json(capsys)["file"] == str(out)
    assert main(["import", str(out), "--json", *storage]) == 0
    assert set(_json(capsys)) == {"imported", "skipped", "expired"}
    assert main(["purge", "--json", *storage]) == 0
    assert _json(capsys) == {"purged": 0}
    assert main(["keys", "rotate", "--json", *storage]) == 0
    assert set(_json(capsys)) == {"key_id", "rewrapped", "corrupt"}
    assert main(["keys", "generate", "--json"]) == 0
    assert set(_json(capsys)) == {"master_key"}
    assert main(["erase-user", "nobody", "--yes", "--json", *storage]) == 0
    assert _json(capsys)["user_id"] == "nobody"


def test_global_options_go_before_or_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = str(tmp_path)
    assert main(["--storage-dir", storage, "demo"]) == 0
    capsys.readouterr()
    forms = [
        ["--storage-dir", storage, "--json", "health"],
        ["--json", "health", "--storage-dir", storage],
        ["health", "--json", "--storage-dir", storage],
        ["--storage-dir", storage, "health", "--json"],
    ]
    for argv in forms:
        assert main(argv) == 0, argv
        assert _json(capsys)["long_term"]["path"] == str(tmp_path / "patterns.db"), argv
    for argv in (
        ["--json", "--storage-dir", storage, "audit", "verify"],
        ["audit", "--json", "verify", "--storage-dir", storage],
        ["audit", "verify", "--json", "--storage-dir", storage],
    ):
        assert main(argv) == 0, argv
        assert _json(capsys)["ok"] is True, argv


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    import attune

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"attune {attune.__version__}"
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "exit status" in text and "--json" in text
    assert main(["no-such-command"]) == 2  # a usage error
    assert "invalid choice" in capsys.readouterr().err


def test_audit_query_by_user_and_erase_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = ["--storage-dir", str(tmp_path), "--json"]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    assert main(["list", "--namespace", "*", "--limit", "100", *storage]) == 0
    listed = _json(capsys)["results"]
    author = listed[0]["created_by"]
    theirs = [r["pattern_id"] for r in listed if r["created_by"] == author]
    assert main(["audit", "query", "--user", author, *storage]) == 0
    events = _json(capsys)
    written = {"pattern.store", "pattern.promote"}
    assert {e["target_id"] for e in events if e["event"] in written} >= set(theirs)
    assert all(e["user_id"].startswith("u_") and author not in e["user_id"] for e in events)
    assert main(["audit", "query", "--user", author, "--limit", "1", *storage]) == 0
    assert len(_json(capsys)) == 1

    assert main(["erase-user", author, *storage]) == 2  # not confirmed: nothing erased
    refused = capsys.readouterr()
    assert "--yes" in refused.err and refused.out == ""
    assert main(["show", theirs[0], "--namespace", "*", *storage]) == 0
    capsys.readouterr()
    assert main(["erase-user", author, "--yes", *storage]) == 0
    erased = _json(capsys)
    # (and any pattern another agent promoted from one they staged)
    assert erased["patterns"] >= len(theirs) and erased["pseudonym_erased"] is True
    assert main(["show", theirs[0], "--namespace", "*", *storage]) == 1
    capsys.readouterr()
    assert main(["audit", "query", "--user", author, *storage]) == 0
    assert _json(capsys) == []  # nothing links the log to them any more
    assert main(["erase-user", "bad id", "--yes", *storage]) == 2
    assert "invalid user_id" in capsys.readouterr().err
    assert main(["erase-user", "someone", "--yes", "--storage-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("Erased user someone: 0 pattern(s)")


# -- progress: the core's callbacks that the command's progress bars draw from -------------

RECORDS = 600


async def _seeded(config: MemoryConfig) -> None:
    async with AsyncUnifiedMemory("writer", config) as memory:
        for start in range(0, RECORDS, 100):
            await asyncio.gather(
                *(
                    memory.persist_pattern(f"Record number {n}", "note", "SENSITIVE")
                    for n in range(start, start + 100)
                )
            )


def _rising(calls: list[tuple[int, int | None]], total: int | None) -> None:
    dones = [done for done, _ in calls]
    assert dones[0] == 0 and dones[-1] == RECORDS
    assert all(a < b for a, b in itertools.pairwise(dones)), dones
    assert len(calls) >= 3  # more than one page or batch
    assert {reported for _, reported in calls} == {total}


async def test_progress_is_reported_with_rising_counts(
    mock_config: MemoryConfig, tmp_path: Path
) -> None:
    await _seeded(mock_config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        calls: list[tuple[int, int | None]] = []
        manifest = await admin.export_patterns(out, progress=lambda d, t: calls.append((d, t)))
        assert manifest["records"] == RECORDS
        _rising(calls, RECORDS)
        calls.clear()
        rotated = await admin.rotate_keys(progress=lambda d, t: calls.append((d, t)))
        assert rotated["rewrapped"] == RECORDS
        _rising(calls, None)  # the total is not counted beforehand
    other = MemoryConfig(
        redis_mock=True,
        storage_dir=tmp_path / "other",
        key_prefix=mock_config.key_prefix + "other",
        master_key_file=mock_config.storage_dir / "master.key",
    )
    async with AsyncUnifiedMemory("admin", other, access_tier="STEWARD") as admin:
        calls.clear()
        result = await admin.import_patterns(out, progress=lambda d, t: calls.append((d, t)))
        assert result["imported"] == RECORDS
        _rising(calls, RECORDS)


def test_the_blocking_facade_reports_progress(mock_config: MemoryConfig, tmp_path: Path) -> None:
    asyncio.run(_seeded(mock_config))
    with UnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        calls: list[tuple[int, int | None]] = []
        admin.export_patterns(tmp_path / "e.jsonl", progress=lambda d, t: calls.append((d, t)))
        _rising(calls, RECORDS)


@pytest.mark.parametrize("bad", ["print", 3, object(), ["a"]])
async def test_a_bad_progress_is_refused_before_anything_is_written(
    mock_config: MemoryConfig, tmp_path: Path, bad: Any
) -> None:
    await _seeded(mock_config)
    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        await admin.export_patterns(out)
        keys = (mock_config.storage_dir / "master.key").read_bytes()
        rows = _rows(mock_config)
        with pytest.raises(ValidationError, match="progress"):
            await admin.export_patterns(tmp_path / "again.jsonl", progress=bad)
        with pytest.raises(ValidationError, match="progress"):
            await admin.rotate_keys(progress=bad)
        with pytest.raises(ValidationError, match="progress"):
            await admin.import_patterns(out, progress=bad)
        assert _listing(tmp_path) == [
            "export.jsonl",
            "export.jsonl.manifest.json",
            mock_config.storage_dir.name,
        ]
        assert (mock_config.storage_dir / "master.key").read_bytes() == keys  # no new key
        assert _rows(mock_config) == rows


async def test_a_progress_callback_that_raises_is_logged_and_ignored(
    mock_config: MemoryConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The operation completes (and is audited) as if there were no callback; the callback
    is not called again after it raised."""
    await _seeded(mock_config)
    calls: list[int] = []

    def failing(done: int, total: int | None) -> None:
        calls.append(done)
        if done:
            raise RuntimeError("the screen went away")

    out = tmp_path / "export.jsonl"
    async with AsyncUnifiedMemory("admin", mock_config, access_tier="STEWARD") as admin:
        with caplog.at_level("WARNING", logger="attune.memory.progress"):
            assert (await admin.export_patterns(out, progress=failing))["records"] == RECORDS
        assert calls == [0, 500] and "RuntimeError" in caplog.text
        assert len(out.read_bytes().splitlines()) == RECORDS
        calls.clear()
        assert (await admin.rotate_keys(progress=failing))["rewrapped"] == RECORDS
        assert calls == [0, 500]
        assert (await admin.import_patterns(out, progress=failing))["skipped"] == RECORDS
    log = (mock_config.storage_dir / "audit.jsonl").read_text()
    assert '"pattern.export"' in log and '"keys.rotate"' in log and '"pattern.import"' in log


def test_progress_bar_draws_on_a_terminal_past_the_threshold() -> None:
    """The command's bar starts only past a few hundred records, and draws on stderr."""
    import io

    from rich.console import Console

    from attune.cli.output import PROGRESS_THRESHOLD, ProgressBar

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    small = ProgressBar(console, "Exporting")
    small(0, 10)
    small(10, 10)
    small.stop()
    assert not small.started and screen.getvalue() == ""
    bar = ProgressBar(console, "Exporting")
    bar(0, PROGRESS_THRESHOLD + 100)
    bar(PROGRESS_THRESHOLD + 100, PROGRESS_THRESHOLD + 100)
    bar.stop()
    assert bar.started and "Exporting" in screen.getvalue()


def test_stored_text_is_shown_as_text_not_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = MemoryConfig(redis_mock=True, storage_dir=tmp_path)
    with UnifiedMemory("writer", config) as memory:
        stored = memory.persist_pattern("Wrap [bold]names[/bold] in [brackets]", "note")
    assert main(["list", "--storage-dir", str(tmp_path)]) == 0
    assert "Wrap [bold]names[/bold] in [brackets]" in capsys.readouterr().out
    assert main(["show", stored["pattern_id"], "--storage-dir", str(tmp_path)]) == 0
    assert "Wrap [bold]names[/bold] in [brackets]" in capsys.readouterr().out


def test_db_upgrade_migrates_an_older_store_and_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``attune db upgrade`` on a store left at schema version 5: migrated to this
    version, told in a sentence or, with --json, one document."""
    import sqlite3
    from contextlib import closing

    from attune.memory.long_term.sqlite_schema import SCHEMA_VERSION

    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    with closing(sqlite3.connect(tmp_path / "patterns.db")) as db, db:
        db.execute("UPDATE schema_version SET version = 5")  # version 6 only adds a column
        db.execute("DROP TRIGGER patterns_unindex")
        db.execute("ALTER TABLE pattern_search RENAME TO old_search")
        db.execute(
            "CREATE VIRTUAL TABLE pattern_search USING fts5(words, tokens, facets, "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )
        db.execute(
            "INSERT INTO pattern_search (rowid, words, tokens, facets) SELECT rowid, words, "
            "trim(tokens || ' ' || sensitive_tokens), facets FROM old_search"
        )
        db.execute("DROP TABLE old_search")
        db.execute(
            "CREATE TRIGGER patterns_unindex AFTER DELETE ON patterns "
            "WHEN old.search_rowid IS NOT NULL BEGIN "
            "DELETE FROM pattern_search WHERE rowid = old.search_rowid; END"
        )
    assert main(["db", "upgrade", "--json", *storage]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "sqlite" and report["schema_version"] == SCHEMA_VERSION
    assert report["patterns"] == 4 and report["where"].endswith("patterns.db")
    with closing(sqlite3.connect(tmp_path / "patterns.db")) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert main(["db", "upgrade", *storage]) == 0  # again: nothing to do, said in a sentence
    assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out


def test_db_upgrade_of_a_newer_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3
    from contextlib import closing

    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    with closing(sqlite3.connect(tmp_path / "patterns.db")) as db, db:
        db.execute("UPDATE schema_version SET version = 999")
    assert main(["db", "upgrade", *storage]) == 2
    assert "upgrade attune" in capsys.readouterr().err


def test_db_upgrade_on_postgresql(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_session_url: str,
) -> None:
    from attune.memory.long_term.postgres_schema import SCHEMA_VERSION

    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_session_url)
    assert main(["db", "upgrade", "--json", "--storage-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "postgres" and report["schema_version"] == SCHEMA_VERSION
    assert report["where"].startswith("postgresql://")


def test_the_demo_leaves_nothing_in_the_users_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --storage-dir (or ATTUNE_STORAGE_DIR) the demo runs in a temporary
    directory and removes it: trying attune writes no pattern or key into the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("PROMOTED -> Long-term ID: pat_") == 2
    assert "temporary directory" in out
    assert [p for p in home.rglob("*") if p.is_file()] == []
    scratch = out.split("Long-term: True (sqlite: ")[1].split(")")[0]
    assert not Path(scratch).exists()
    assert "ATTUNE_STORAGE_DIR" not in os.environ


def test_audit_tail_prints_the_last_events_and_follows_new_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    from attune.memory.security import pipeline

    pipeline.close_shared()
    capsys.readouterr()
    assert main(["audit", "tail", "-n", "3", "--json", *storage]) == 0
    last = json.loads(capsys.readouterr().out)
    assert main(["audit", "query", "--json", *storage]) == 0
    every = json.loads(capsys.readouterr().out)
    assert [e["seq"] for e in last] == [e["seq"] for e in every[-3:]]
    assert main(["audit", "tail", "-n", "-1", *storage]) == 2
    capsys.readouterr()

    env = {**os.environ, "ATTUNE_STORAGE_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    follower = subprocess.Popen(
        [sys.executable, "-m", "attune.cli", "audit", "tail", "-n", "0", "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        from attune.memory import MemoryConfig, UnifiedMemory

        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(x) for x in follower.stdout or ()], daemon=True
        )
        reader.start()
        # The follower prints what is written after its first look, whenever it starts
        # (a loaded machine may take seconds): write until it shows a new pattern's event.
        stored: list[str] = []
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60  # (a deadline, never a hang)
        while not seen or seen[-1]["event"] != "pattern.store":
            if not seen:
                with UnifiedMemory("writer", MemoryConfig(storage_dir=tmp_path)) as mem:
                    stored.append(mem.persist_pattern("Followed by tail", "note")["pattern_id"])
                pipeline.close_shared()
            try:
                seen.append(json.loads(lines.get(timeout=2)))
            except queue.Empty:
                assert time.monotonic() < deadline, "the follower printed no new event"
        assert seen[-1]["target_id"] in stored
        assert all(e["seq"] > every[-1]["seq"] for e in seen)
    finally:
        follower.terminate()
        follower.wait(timeout=10)


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "checkpoint", "--out", "/nonexistent-attune-dir/cp.json"],
        ["audit", "checkpoint", "--out", "."],  # a directory
        ["audit", "query", "--since", "0001-01-01T00:00:00+01:00"],
        ["audit", "query", "--since", "9999-12-31T23:59:59-01:00"],
    ],
)
def test_audit_commands_answer_bad_arguments_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    capsys.readouterr()
    assert main([*argv, *storage]) == 2
    said = capsys.readouterr()
    assert said.err.strip() and "Traceback" not in said.err


def _log_events(path: Path, count: int, *, max_bytes: int = 10 * 1024 * 1024) -> None:
    from attune.memory.security.audit import AuditEvent, AuditLogger

    log = AuditLogger(path, max_bytes=max_bytes)
    try:
        for i in range(count):
            log.log(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id=f"pat_{i}"))
    finally:
        log.close()


def test_audit_verify_refuses_a_log_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --log-file, or a store that has logged nothing yet: a usage error (exit 2)
    naming the path, never "audit log intact: 0 events in 0 files" (exit 0)."""
    storage = ["--storage-dir", str(tmp_path)]
    typo = tmp_path / "audit.jsonI"
    for argv in (
        ["audit", "verify"],
        ["audit", "verify", "--json"],
        ["audit", "checkpoint"],
        ["audit", "verify", "--log-file", str(typo)],
        ["audit", "verify", "--log-file", str(typo), "--json"],
    ):
        assert main([*argv, *storage]) == 2, argv
        said = capsys.readouterr()
        assert said.out == "", argv
        assert "there is no audit log at" in said.err and "intact" not in said.err, argv
    assert main(["audit", "verify", "--log-file", str(typo), *storage]) == 2
    assert str(typo) in capsys.readouterr().err
    assert not (tmp_path / "audit.jsonl").exists()

    # An empty file that nothing says held events is intact (a log created, not written).
    (tmp_path / "audit.jsonl").touch()
    assert main(["audit", "verify", *storage]) == 0
    assert "audit log intact: 0 events in 1 file" in capsys.readouterr().out


def test_audit_verify_fails_when_the_stores_log_was_deleted_or_emptied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's own log missing (or emptied) while its records say events were logged:
    the events were deleted, a negative answer (exit 1) like a tampered log."""
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["demo", *storage]) == 0
    from attune.memory.security import pipeline

    pipeline.close_shared()
    capsys.readouterr()
    log = tmp_path / "audit.jsonl"
    # A mistyped path stays a usage error, whatever the store holds.
    assert main(["audit", "verify", "--log-file", str(tmp_path / "audit.jsonI"), *storage]) == 2
    assert capsys.readouterr().out == ""

    log.unlink()
    assert main(["audit", "verify", *storage]) == 1
    out = capsys.readouterr().out
    assert out.startswith("audit log TAMPERED at audit.jsonl: ")
    assert f"{log} is missing, but the long-term store" in out and "pattern(s)" in out
    assert main(["audit", "verify", "--json", "--log-file", str(log), *storage]) == 1
    verified = _json(capsys)
    assert verified["ok"] is False and verified["file"] == str(log)
    assert verified["line"] is None and "is missing" in verified["reason"]
    assert main(["audit", "checkpoint", *storage]) == 1
    assert "no checkpoint: audit log TAMPERED" in capsys.readouterr().err

    log.touch()  # emptied
    assert main(["audit", "verify", *storage]) == 1
    assert f"{log} is empty, but the long-term store" in capsys.readouterr().out


def test_audit_verify_fails_when_events_a_checkpoint_signed_or_rotated_files_remain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = ["--storage-dir", str(tmp_path)]
    log = tmp_path / "audit.jsonl"
    _log_events(log, 30, max_bytes=2000)
    assert len(list(tmp_path.glob("audit.jsonl.*"))) >= 2
    point = tmp_path / "checkpoint.json"
    assert main(["audit", "checkpoint", "--out", str(point), *storage]) == 0
    capsys.readouterr()

    # The current file deleted, its rotated predecessors left.
    log.unlink()
    assert main(["audit", "verify", *storage]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED at audit.jsonl: the current file is missing while rotated files" in out

    # Every file deleted: a checkpoint signed with this store's key says there were events.
    for rotated in tmp_path.glob("audit.jsonl.*"):
        rotated.unlink()
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 1
    out = capsys.readouterr().out
    assert f"{log} is missing, but the checkpoint {point}" in out and "seq 30" in out
    assert main(["audit", "verify", *storage]) == 2  # without it nothing says so
    capsys.readouterr()

    # An empty log and a checkpoint: the place named is the file, with no "line None".
    log.touch()
    assert main(["audit", "verify", "--checkpoint", str(point), *storage]) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "audit log TAMPERED at audit.jsonl: the chain ends before the checkpoint (seq 30)"
    )
    assert "None" not in out and "?" not in out


def test_audit_tail_follow_prints_every_event_of_a_burst_once_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More events between two looks than a page holds (and than the 1000 the follower
    used to read: it showed only the newest 1000 and skipped the rest): every one is
    printed once, in seq order, a page at a time, across the files the burst rotates
    through. The follower's wait is where the bursts are written: no timing involved."""
    from attune.cli import audit
    from attune.memory.security.audit import AuditEvent, AuditLogger
    from attune.memory.security.audit import follow as audit_follow

    path = tmp_path / "audit.jsonl"
    writer = AuditLogger(path, sync=False, max_bytes=64 * 1024)

    def burst(count: int) -> None:
        for i in range(count):
            writer.submit(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id=f"p{i}"))
        writer.flush()

    bursts = [2500, 1, 0, 130]

    def idle() -> None:  # the follower has caught up: the next burst, or Ctrl-C
        if not bursts:
            raise KeyboardInterrupt
        burst(bursts.pop(0))

    pages: list[int] = []
    shown = audit._print_events

    def print_page(events: list[dict[str, Any]], out: Any) -> None:
        pages.append(len(events))
        shown(events, out)

    monkeypatch.setattr(audit_follow, "PAGE", 100)
    monkeypatch.setattr(audit_follow, "_idle", idle)
    monkeypatch.setattr(audit, "_print_events", print_page)
    burst(3)  # there before: -n 1 shows the last of them, then follows
    try:
        argv = ["audit", "tail", "-n", "1", "--follow", "--json", "--log-file", str(path)]
        assert main(argv) == 0
    finally:
        writer.close()
    seqs = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert seqs == list(range(3, 3 + 2500 + 1 + 130 + 1))
    assert max(pages) == 100  # never more than a page held
    assert len(writer.files()) > 5  # the burst was spread over rotated files


def test_audit_tail_follow_reads_every_event_of_the_database_table(
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same with PostgreSQL: the table is read on by seq, a page at a time."""
    pytest.importorskip("asyncpg")
    from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger
    from attune.memory.security.audit import AuditEvent
    from attune.memory.security.audit import follow as audit_follow

    writer = DatabaseAuditLogger(postgres_url, sync=False)

    def burst(count: int) -> None:
        for i in range(count):
            writer.submit(AuditEvent("pattern.store", "agent", "CONTRIBUTOR", target_id=f"p{i}"))
        writer.flush()

    bursts = [1200, 7]

    def idle() -> None:
        if not bursts:
            raise KeyboardInterrupt
        burst(bursts.pop(0))

    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    monkeypatch.setattr(audit_follow, "PAGE", 50)
    monkeypatch.setattr(audit_follow, "_idle", idle)
    try:
        burst(2)
        first = writer.query(limit=1)[0]["seq"]
        argv = ["audit", "tail", "-n", "0", "--follow", "--json", "--storage-dir", str(tmp_path)]
        assert main(argv) == 0
    finally:
        writer.close()
    seqs = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert seqs == list(range(first + 1, first + 1 + 1200 + 7))
