"""What the ``attune`` command refuses, and what its messages never repeat: a key or id
typed (it may hold personal data or a pasted secret), a storage directory that is not
there for a command that only reads (a typo must not look like an empty store), an audit
log file that is not there, arguments a non-UTF-8 terminal garbled; and what it says
after a key rotation with ``ATTUNE_MASTER_KEY`` set."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from attune.cli import main
from attune.memory import MemoryConfig, UnifiedMemory
from attune.memory.keys import KeySpace
from attune.memory.security import keyfile
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.keyring import KeyRing, generate_master_key, key_id

#: A key as a user might type one: an address, and a pasted token.
SECRET_KEY = "jane.roe@example.org"
SECRET_AGENT = "sk-live-4f9a7c2e"
OWN_ID = "stg_" + "0" * 32


@pytest.fixture
def redis_cli(
    redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Global options for a run on the real Redis (this test's key prefix), on an
    existing, empty storage directory."""
    monkeypatch.setenv("ATTUNE_KEY_PREFIX", key_prefix)
    store = tmp_path / "store"
    store.mkdir()
    return ["--storage-dir", str(store), "--redis-url", redis_url]


# -- keys and ids typed are never repeated ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["get", SECRET_KEY],
        ["get", SECRET_KEY, "--json"],
        ["get", "k", "--agent", SECRET_AGENT],
        ["forget", SECRET_KEY],
        ["forget", "k", "--user", SECRET_AGENT],
        ["--user", SECRET_AGENT, "forget", SECRET_KEY, "--json"],
    ],
)
def test_a_key_or_agent_typed_is_not_repeated_in_the_error(
    argv: list[str], redis_cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``attune get KEY`` with nothing there said "no working data under 'KEY'": the key
    (or the agent id) typed, repeated on stderr."""
    assert main([*argv, *redis_cli]) == 1
    err = capsys.readouterr().err
    assert "no working data under the key given" in err
    assert SECRET_KEY not in err and SECRET_AGENT not in err


def test_a_library_message_naming_the_key_typed_does_not_repeat_it(
    redis_cli: list[str], redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value stashed under the key that is not JSON (written past attune): the library's
    CorruptRecordError names the record, here the key; the command shows it hidden."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(KeySpace(key_prefix).stash("attune-cli", SECRET_KEY), b"not json {")
    finally:
        client.close()
    assert main(["get", SECRET_KEY, *redis_cli]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "record (the key given, not shown) is corrupt" in captured.err
    assert SECRET_KEY not in captured.err


def test_an_id_attune_made_is_still_named(
    redis_cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["staged", "show", OWN_ID, *redis_cli]) == 1
    assert f"no staged pattern '{OWN_ID}' here" in capsys.readouterr().err


# -- a storage directory that is not there, for a command that only reads ---------------------

READS: list[list[str]] = [
    ["get", "plan"],
    ["staged", "list"],
    ["staged", "show", OWN_ID],
    ["patterns", "list"],
    ["patterns", "search", "retry"],
    ["patterns", "show", "pat_" + "0" * 32],
    ["list"],
    ["search", "retry"],
    ["show", "pat_" + "0" * 32],
    ["patterns", "export", "--out", "backup.jsonl"],
    ["export", "--out", "backup.jsonl"],
    ["audit", "query"],
    ["audit", "tail"],
    ["audit", "verify"],
    ["audit", "checkpoint"],
    # Removals too: on an empty new store they reported nothing removed, exit 0, as if
    # the data (a person's, for erase-user) were gone.
    ["forget", "plan"],
    ["patterns", "delete", "pat_" + "0" * 32],
    ["patterns", "purge"],
    ["purge"],
    ["erase-user", "alice", "--yes"],
]


def _refused(code: int, captured: Any, missing: Path, named: str) -> None:
    assert code == 2, captured.err
    assert captured.out == ""
    assert f"the storage directory {missing} ({named}) does not exist" in captured.err
    assert "nothing to read or remove" in captured.err
    assert f"check {named} for a typo" in captured.err
    assert not missing.exists()  # nothing created


@pytest.mark.parametrize("argv", READS, ids=" ".join)
def test_a_read_of_a_storage_directory_that_is_not_there_is_refused(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--storage-dir`` mistyped: reads created an empty store there and answered from
    it ("No patterns match.", "Exported 0 record(s)", exit 0; get: nothing stashed)."""
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "stroe"
    code = main([*argv, "--storage-dir", str(missing)])
    _refused(code, capsys.readouterr(), missing, "--storage-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no export file either


def test_the_variable_is_named_when_it_chose_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "stroe"
    monkeypatch.setenv("ATTUNE_STORAGE_DIR", str(missing))
    for argv in (["patterns", "list", "--json"], ["audit", "query", "--user", "alice"]):
        _refused(main(argv), capsys.readouterr(), missing, "ATTUNE_STORAGE_DIR")


def test_audit_reads_of_the_store_refuse_it_whatever_the_log_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``audit query --user`` reads the store's audit pseudonyms, ``--checkpoint`` its key:
    a log file elsewhere does not make the store's directory optional."""
    log = tmp_path / "mirror.jsonl"
    log.write_text("")
    missing = tmp_path / "stroe"
    for argv in (
        ["audit", "query", "--user", "alice", "--log-file", str(log)],
        ["audit", "verify", "--checkpoint", str(log), "--log-file", str(log)],
    ):
        code = main([*argv, "--storage-dir", str(missing)])
        _refused(code, capsys.readouterr(), missing, "--storage-dir")


def test_writes_still_start_a_new_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new"
    assert main(["stash", "plan", "v", "--storage-dir", str(new)]) == 0
    assert new.is_dir()
    capsys.readouterr()
    assert main(["patterns", "list", "--json", "--storage-dir", str(new)]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == []
    # The per-user default, never chosen, is simply new on a first run.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert main(["patterns", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == []
    assert (tmp_path / "data" / "attune").is_dir()


def test_postgresql_reads_need_no_storage_directory(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With ATTUNE_DATABASE_URL the store is the database: a storage directory not made
    yet (a key file at most goes there) does not stop a read."""
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    storage = ["--storage-dir", str(tmp_path / "not-yet")]
    assert main(["patterns", "list", "--json", *storage]) == 0
    assert json.loads(capsys.readouterr().out)["results"] == []
    assert main(["audit", "query", "--json", *storage]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


# -- an audit log file that is not there ------------------------------------------------------


@pytest.mark.parametrize("action", ["query", "tail"])
def test_audit_query_or_tail_of_a_log_file_that_is_not_there_is_refused(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``audit query --log-file`` mistyped printed "No audit events match." (tail:
    nothing), exit 0, as for a log without events; verify already refused it."""
    missing = tmp_path / "audit.jsnol"
    assert main(["audit", action, "--log-file", str(missing), "--storage-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"there is no audit log at {missing}" in captured.err
    assert "check --log-file" in captured.err
    assert not missing.exists()


# -- arguments a terminal of another encoding garbled -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["patterns", "search", "caf\udce9"], "argument query:"),
        (["get", "caf\udce9"], "argument key:"),
        (["audit", "query", "--event", "caf\udce9"], "argument --event:"),
        (["staged", "add", "caf\udce9", "--type", "t"], "argument content:"),
        (["--user", "zo\udceb", "patterns", "list"], "argument --user:"),
    ],
)
def test_an_argument_the_locale_cannot_decode_is_refused_by_name(
    argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``café`` typed on a Latin-1 terminal under a UTF-8 locale reaches Python as
    undecodable bytes: search answered "No patterns match." (exit 0), other commands a
    programmer's message about "a lone surrogate" and ``errors='replace'``."""
    assert main([*argv, "--storage-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{named} not text in this system's encoding" in captured.err
    assert "LANG or LC_ALL" in captured.err
    assert "surrogate" not in captured.err


def test_a_file_name_the_locale_cannot_decode_is_still_a_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = tmp_path / "caf\udce9"
    assert main(["stash", "k", "v", "--storage-dir", str(storage)]) == 0
    assert (tmp_path / "caf\udce9").is_dir()
    assert main(["patterns", "list", "--storage-dir", str(storage)]) == 0


# -- key rotation with ATTUNE_MASTER_KEY set --------------------------------------------------


def test_a_rotation_says_to_update_the_master_key_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ATTUNE_MASTER_KEY set, ``keys rotate`` said "New master key K active" and
    nothing else; but the variable decides the active key at every start, so the next
    run went back to the previous key. It now says what to do, on stderr."""
    storage = tmp_path / "store"
    old = generate_master_key()
    monkeypatch.setenv("ATTUNE_MASTER_KEY", old)
    with UnifiedMemory("author", MemoryConfig(storage_dir=storage)) as memory:
        memory.persist_pattern("otter plan", "t", classification="SENSITIVE")
    security_pipeline.close_shared()

    assert main(["keys", "rotate", "--json", "--storage-dir", str(storage)]) == 0
    captured = capsys.readouterr()
    new = json.loads(captured.out)["key_id"]  # stdout: the one document, still
    assert "ATTUNE_MASTER_KEY still names the previous master key" in captured.err
    assert f"set ATTUNE_MASTER_KEY to the new key {new}" in captured.err
    assert str(storage / "master.key") in captured.err
    assert old not in captured.err  # the key itself is never printed
    security_pipeline.close_shared()
    # What it says is so: a new start with the variable unchanged has the old key active.
    ring = KeyRing.load(storage_dir=storage, environment="development", key_file=None)
    assert ring.active_key_id == key_id(base64.b64decode(old)) != new
    # Following it: the variable set to the new key, from the key file.
    material = keyfile.read(storage / "master.key").keys[new]
    monkeypatch.setenv("ATTUNE_MASTER_KEY", base64.b64encode(material).decode())
    assert main(["patterns", "search", "otter", "--json", "--storage-dir", str(storage)]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["content"] == "otter plan"
    security_pipeline.close_shared()

    monkeypatch.delenv("ATTUNE_MASTER_KEY")  # the key file alone: nothing to update
    assert main(["keys", "rotate", "--storage-dir", str(storage)]) == 0
    captured = capsys.readouterr()
    assert "New master key" in captured.out and captured.err == ""


def test_migrate_to_a_url_that_is_not_postgresql_names_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library's message spoke of "argument 'database_url'" and advised leaving it
    unset: right for ATTUNE_DATABASE_URL, not for ``migrate --to``."""
    with UnifiedMemory("author", MemoryConfig(storage_dir=tmp_path)) as memory:
        memory.persist_pattern("Retry with backoff", "practice")
    security_pipeline.close_shared()
    argv = ["migrate", "--to", "sqlite:///pw-Zk93@backup.db", "--storage-dir", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--to must name the PostgreSQL database to copy into" in captured.err
    assert "database_url" not in captured.err and "pw-Zk93" not in captured.err
    assert not (tmp_path / "migrate").exists()
