"""The ``attune`` command grouped by tier: every subcommand with ``--json`` (one document
on stdout), working data and staged patterns end to end on a real Redis, the global
options before and after the command, the access tiers, and bad input refused with exit 2
before anything is written."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from attune.cli import main, parser
from attune.memory import MemoryConfig, UnifiedMemory
from attune.memory.security import pipeline as security_pipeline
from attune.memory.security.crypto import generate_master_key, key_id

#: Run by the PostgreSQL tests below (test_migrate_..., test_keys_reroot_...).
POSTGRES_PATHS = {("keys", "reroot"), ("migrate",)}
#: Not run with --json: its stdout is the MCP protocol's (tests/test_mcp_server.py drives it
#: through a real MCP client).
EXEMPT = {("mcp",)}


def command_paths() -> set[tuple[str, ...]]:
    """Every runnable command of the parser, as the words that name it (aliases too)."""

    def walk(p: argparse.ArgumentParser, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix}
        return {
            path for name, child in subs[0].choices.items() for path in walk(child, (*prefix, name))
        }

    return walk(parser.build(), ())


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def redis_cli(
    redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Global options for a run on the real Redis (this test's key prefix) and a temporary
    storage directory; with a throwaway CLAUDE.md hierarchy (no caller's files read)."""
    monkeypatch.setenv("ATTUNE_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    policy = tmp_path / "policy.md"
    policy.write_text("")
    monkeypatch.setenv("ATTUNE_CLAUDE_POLICY_FILE", str(policy))
    project = tmp_path / "project"
    project.mkdir()
    (project / "CLAUDE.md").write_text("Run the tests before committing.\n")
    monkeypatch.chdir(project)
    store = tmp_path / "store"
    store.mkdir()  # a read on a storage directory that does not exist is refused (exit 2)
    return ["--storage-dir", str(store), "--redis-url", redis_url]


def test_every_subcommand_prints_one_json_document(
    redis_cli: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: set[tuple[str, ...]] = set()

    def run(path: tuple[str, ...], *rest: str, code: int = 0) -> Any:
        ran.add(path)
        assert main([*path, *rest, "--json", *redis_cli]) == code, path
        captured = capsys.readouterr()
        return json.loads(captured.out)  # the whole of stdout is one document

    assert set(run(("demo",))) == {"staged", "promoted", "health"}
    assert run(("health",))["short_term"]["backend"] == "redis"
    # working data
    assert run(("stash",), "plan", '{"steps": [1, 2]}')["stored"] is True
    assert run(("get",), "plan")["value"] == {"steps": [1, 2]}
    assert run(("forget",), "plan") == {"forgotten": True, "key": "plan", "agent_id": "attune-cli"}
    # staged patterns
    staged_id = run(("staged", "add"), "Batch writes cut latency", "--type", "perf")[
        "staged_pattern_id"
    ]
    assert staged_id in [s["pattern_id"] for s in run(("staged", "list"))["staged"]]
    assert run(("staged", "show"), staged_id)["content"] == "Batch writes cut latency"
    promoted = run(("staged", "promote"), staged_id)
    other = run(("staged", "add"), "Another idea", "--type", "perf")["staged_pattern_id"]
    assert run(("staged", "reject"), other) == {"rejected": True, "staged_pattern_id": other}
    # long-term, under patterns and under the old top-level names
    pattern_id = promoted["pattern_id"]
    for prefix in (("patterns",), ()):
        assert pattern_id in [p["pattern_id"] for p in run((*prefix, "list"))["results"]]
        assert run((*prefix, "search"), "latency")["results"][0]["pattern_id"] == pattern_id
        assert run((*prefix, "show"), pattern_id)["content"] == "Batch writes cut latency"
        assert run((*prefix, "purge")) == {"purged": 0}
        out = tmp_path / f"export{len(prefix)}.jsonl"
        assert run((*prefix, "export"), "--out", str(out))["file"] == str(out)
        assert set(run((*prefix, "import"), str(out))) == {"imported", "skipped", "expired"}
    assert run(("patterns", "delete"), pattern_id) == {"deleted": True, "pattern_id": pattern_id}
    # administration
    assert set(run(("keys", "generate"))) == {"master_key"}
    assert set(run(("keys", "rotate"))) == {"key_id", "rewrapped", "corrupt"}
    assert run(("db", "upgrade"))["backend"] == "sqlite"
    assert run(("audit", "verify"))["ok"] is True
    assert isinstance(run(("audit", "query"), "--limit", "3"), list)
    assert len(run(("audit", "tail"), "-n", "2")) == 2
    assert {"seq", "hash", "key_id"} <= set(run(("audit", "checkpoint")))
    memory = run(("claude-memory", "show"))
    assert "Run the tests before committing." in memory["text"]
    assert run(("erase-user",), "nobody", "--yes")["user_id"] == "nobody"

    assert ran | POSTGRES_PATHS | EXEMPT == command_paths()


def test_migrate_prints_one_json_document(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with UnifiedMemory("author", MemoryConfig(storage_dir=tmp_path)) as memory:
        memory.persist_pattern("Retry with backoff", "practice")
    security_pipeline.close_shared()
    assert main(["migrate", "--to", postgres_url, "--json", "--storage-dir", str(tmp_path)]) == 0
    report = _json(capsys)
    assert (report["imported"], report["verified"]) == (1, 1)


def test_keys_reroot_prints_one_json_document(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A store in PostgreSQL, its key ring there under a first root key, moved under a
    second."""
    monkeypatch.setenv("ATTUNE_MASTER_KEY", generate_master_key())
    monkeypatch.setenv("ATTUNE_DATABASE_URL", postgres_url)
    storage = ["--storage-dir", str(tmp_path)]
    assert main(["keys", "rotate", "--json", *storage]) == 0
    assert set(_json(capsys)) == {"key_id", "rewrapped", "corrupt"}
    security_pipeline.close_shared()
    new_root = generate_master_key()
    monkeypatch.setenv("ATTUNE_NEW_MASTER_KEY", new_root)
    assert main(["keys", "reroot", "--json", *storage]) == 0
    rerooted = _json(capsys)
    assert rerooted["root_key_id"] == key_id(base64.b64decode(new_root))
    assert rerooted["keys"] >= 1


def test_working_data_and_a_staged_pattern_end_to_end(
    redis_cli: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """stash, get, forget; a staged pattern listed, shown, promoted, then found with
    ``patterns show``: each a separate run of the command, as from a shell."""
    assert main(["stash", "answer", "42", *redis_cli]) == 0
    assert "Stashed JSON (int) under 'answer' for attune-cli" in capsys.readouterr().out
    assert main(["stash", "quoted", '"42"', *redis_cli]) == 0  # a JSON string: the text 42
    assert main(["stash", "word", "hello world", *redis_cli]) == 0  # not JSON: the text
    assert main(["stash", "raw", "[1, 2]", "--string", *redis_cli]) == 0
    capsys.readouterr()
    expected = {"answer": 42, "quoted": "42", "word": "hello world", "raw": "[1, 2]"}
    for key, value in expected.items():
        assert main(["get", key, "--json", *redis_cli]) == 0
        assert _json(capsys)["value"] == value, key
    assert main(["get", "word", *redis_cli]) == 0
    assert capsys.readouterr().out == "hello world\n"  # a string, printed as it is
    assert main(["stash", "nothing", "null", *redis_cli]) == 0
    capsys.readouterr()
    assert main(["get", "nothing", "--json", *redis_cli]) == 0  # stored null is found
    assert _json(capsys)["found"] is True
    assert main(["forget", "answer", *redis_cli]) == 0
    assert main(["get", "answer", *redis_cli]) == 1
    captured = capsys.readouterr()
    assert "no working data under the key given for agent attune-cli" in captured.err
    assert "answer" not in captured.err  # the key typed is not repeated
    assert main(["forget", "answer", "--json", *redis_cli]) == 1
    assert _json(capsys)["forgotten"] is False
    # VALUE "-": read from stdin (JSON too).
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}\n'))
    assert main(["stash", "piped", "-", *redis_cli]) == 0
    assert main(["get", "piped", "--json", *redis_cli]) == 0
    assert capsys.readouterr().out.endswith('"value": {\n    "from": "stdin"\n  }\n}\n')
    # Another agent's working data: read with --agent.
    assert main(["--user", "alice", "stash", "note", "from alice", *redis_cli]) == 0
    assert main(["get", "note", "--agent", "alice", *redis_cli]) == 0
    assert capsys.readouterr().out.endswith("from alice\n")

    assert main(["staged", "add", "Index the audit table by ts", "--type", "db", *redis_cli]) == 0
    line = capsys.readouterr().out
    staged_id = line.split()[1]
    assert staged_id.startswith("stg_")
    assert main(["staged", "list", *redis_cli]) == 0
    assert staged_id in capsys.readouterr().out
    assert main(["staged", "show", staged_id, *redis_cli]) == 0
    assert "Index the audit table by ts" in capsys.readouterr().out
    assert main(["staged", "promote", staged_id, "--classification", "internal", *redis_cli]) == 0
    promoted = capsys.readouterr().out
    assert promoted.startswith(f"Promoted {staged_id} to long-term pattern pat_")
    pattern_id = promoted.split("long-term pattern ")[1].split()[0]
    assert main(["patterns", "show", pattern_id, "--json", *redis_cli]) == 0
    shown = _json(capsys)
    assert shown["content"] == "Index the audit table by ts"
    assert shown["classification"] == "INTERNAL"
    assert main(["staged", "show", staged_id, *redis_cli]) == 1  # gone from staging
    assert "no staged pattern" in capsys.readouterr().err


def test_the_old_top_level_commands_print_what_patterns_prints(
    redis_cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *redis_cli]) == 0
    capsys.readouterr()
    for words in (["list"], ["search", "SQL"], ["list", "--type", "security"]):
        for extra in ([], ["--json"]):
            assert main([*words, *extra, *redis_cli]) == 0
            old = capsys.readouterr().out
            assert main(["patterns", *words, *extra, *redis_cli]) == 0
            assert capsys.readouterr().out == old, words
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("\noptions:")[0]
    assert "patterns list" in listed and "\n  search " not in listed


def test_global_options_before_or_after_the_command(
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ATTUNE_KEY_PREFIX", key_prefix)
    options = [
        "--storage-dir",
        str(tmp_path),
        "--redis-url",
        redis_url,
        "--env",
        "staging",
        "--user",
        "alice",
        "--tier",
        "validator",
    ]
    for argv in (
        [*options, "--json", "health"],
        ["health", *options, "--json"],
        [*options[:4], "health", *options[4:], "--json"],
    ):
        assert main(argv) == 0, argv
        report = _json(capsys)
        assert report["environment"] == "staging", argv
        assert (report["user_id"], report["access_tier"]) == ("alice", "VALIDATOR"), argv
        assert report["short_term"]["backend"] == "redis", argv
        assert report["long_term"]["path"] == str(tmp_path / "patterns.db"), argv
    # For this run only: nothing is left in the environment.
    assert "REDIS_URL" not in os.environ and "ATTUNE_ENV" not in os.environ
    assert "ATTUNE_STORAGE_DIR" not in os.environ
    # Nested: between the command's words too.
    assert main(["staged", "--user", "bob", "add", "x y", "--type", "t", *options[:4]]) == 0
    capsys.readouterr()
    assert main(["staged", "list", "--json", *options[:4]]) == 0
    assert [s["staged_by"] for s in _json(capsys)["staged"]] == ["bob"]
    # Without --redis-url, staging refuses the in-process stand-in.
    assert main(["--env", "staging", "health", "--storage-dir", str(tmp_path)]) == 2
    assert "REDIS_URL is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needed"),
    [
        (["--tier", "OBSERVER", "stash", "token", "value-7f3a9c"], "CONTRIBUTOR"),
        (["stash", "token", "value-7f3a9c", "--tier", "observer"], "CONTRIBUTOR"),
        (["--tier", "CONTRIBUTOR", "patterns", "purge"], "STEWARD"),
        (["patterns", "export", "--tier", "VALIDATOR"], "STEWARD"),
        (["--tier", "VALIDATOR", "erase-user", "attune-cli", "--yes"], "STEWARD"),
        (["--tier", "OBSERVER", "list", "--namespace", "*"], "STEWARD"),
        (["--tier", "CONTRIBUTOR", "keys", "rotate"], "STEWARD"),
        # Administration acting as no agent: an explicit lower tier is refused all the same.
        (["--tier", "VALIDATOR", "db", "upgrade"], "STEWARD"),
        (["keys", "reroot", "--tier", "OBSERVER"], "STEWARD"),
        (["--tier", "OBSERVER", "migrate", "--to", "postgresql://nobody@127.0.0.1:1/x"], "STEWARD"),
    ],
)
def test_a_tier_too_low_is_refused_with_exit_2_and_nothing_written(
    argv: list[str],
    needed: str,
    redis_cli: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["stash", "token", "before", *redis_cli]) == 0
    assert main(["demo", *redis_cli]) == 0
    capsys.readouterr()
    assert main([*argv, *redis_cli]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "access denied" in captured.err and needed in captured.err
    assert "value-7f3a9c" not in captured.err  # the value is never echoed
    assert main(["get", "token", "--json", *redis_cli]) == 0
    assert _json(capsys)["value"] == "before"
    assert main(["list", "--json", *redis_cli]) == 0
    assert len(_json(capsys)["results"]) == 4
    assert not list(Path.cwd().glob("attune-export-*"))


#: JSON nested past the parser's recursion limit (once a RecursionError traceback, exit 1).
DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000

BAD_INPUT: list[tuple[list[str], str]] = [
    (["patterns", "list", "--metadata", DEEP_OBJECT], "argument --metadata: not a JSON object"),
    (["staged", "add", "x", "--type", "t", "--data", DEEP_OBJECT], "argument --data: not a JSON"),
    (["stash", "k", DEEP_ARRAY], "value is JSON nested too deeply to parse; pass --string"),
    (["patterns", "search", "x", "--metadata", "{bad"], "argument --metadata: not a JSON object"),
    (["list", "--metadata", "[1, 2]"], "argument --metadata: not a JSON object"),
    (["staged", "add", "x", "--type", "t", "--data", '"text"'], "argument --data: not a JSON"),
    (["--tier", "WIZARD", "health"], "argument --tier: invalid access tier: use one of OBSERVER"),
    (
        ["health", "--env", "prod"],
        "invalid choice for --env (choose from development, staging, production)",
    ),
    (["--user", "has space", "stash", "k", "v"], "argument --user: invalid user_id"),
    (["stash", "k", "v", "--ttl", "soon"], "argument --ttl: must be a number"),
    (["staged", "promote", "stg_x", "--classification", "SECRET"], "invalid classification"),
    (["stash", "k", "v", "--ttl", "-5"], "ttl_seconds must be a positive number"),
    (["stash", "", "v"], "key must not be empty"),
    (["staged", "add", "x", "--type", "t", "--ttl-hours", "0"], "ttl_hours"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT)
def test_bad_input_is_exit_2_with_a_clear_message_and_nothing_written(
    argv: list[str], message: str, redis_cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, *redis_cli]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert main(["get", "k", "--json", *redis_cli]) == 1
    assert _json(capsys)["found"] is False
    assert main(["staged", "list", "--json", *redis_cli]) == 0
    assert _json(capsys)["staged"] == []


def test_get_prints_a_string_exactly_as_stashed(
    redis_cli: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``get KEY`` prints a string "as it is": rendered by rich, carriage returns, form
    feeds and bells were dropped and tabs expanded, so ``attune get k > file`` was not
    what was stashed."""
    value = "line 1\r\nline 2\tcolumn\fpage\x07  trailing  \n\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(value))
    assert main(["stash", "k", "-", "--string", *redis_cli]) == 0
    capsys.readouterr()
    assert main(["get", "k", *redis_cli]) == 0
    assert capsys.readouterr().out == value + "\n"
    assert main(["get", "k", "--json", *redis_cli]) == 0
    assert _json(capsys)["value"] == value


def test_stdin_that_is_not_text_is_exit_2_not_a_traceback(
    redis_cli: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stash KEY -`` of bytes that are not text in the locale's encoding (a UTF-8 locale
    decodes stdin strictly) was a UnicodeDecodeError traceback, exit 1."""
    stdin = io.TextIOWrapper(io.BytesIO(b"token \xff\xfe tail"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["stash", "k", "-", *redis_cli]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "standard input is not utf-8 text" in captured.err
    assert "token" not in captured.err and "tail" not in captured.err
    assert main(["get", "k", "--json", *redis_cli]) == 1
    assert _json(capsys)["found"] is False


@pytest.mark.parametrize("as_json", [False, True])
def test_stdout_closed_early_is_exit_141_not_a_negative_answer(
    as_json: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``attune health | head -1``: the reader goes before the output is written. Rich
    exited with status 1 ("a tier is down"), --json with a BrokenPipeError traceback;
    both are 141, as a shell reports a command ended by SIGPIPE, with nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = open(write_end, "w")  # noqa: SIM115 - closed below
    monkeypatch.setattr("sys.stdout", closed)
    errors = io.StringIO()
    monkeypatch.setattr("sys.stderr", errors)
    try:
        argv = ["health", "--storage-dir", str(tmp_path), *(["--json"] if as_json else [])]
        assert main(argv) == 141
    finally:
        monkeypatch.undo()
        closed.close()  # stdout was pointed at the null device: nothing fails here
    assert errors.getvalue() == ""


def test_the_stand_in_says_its_working_data_ends_with_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stash", "k", "v", "--storage-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "Stashed" in captured.out
    assert "in-process stand-in" in captured.err and "--redis-url" in captured.err


def test_every_command_is_listed_in_the_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    """The grouped command list is written by hand: it names every command but the
    old top-level aliases."""
    from attune.cli.parser_tiers import ALIASES

    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("\noptions:")[0]
    for path in command_paths():
        if len(path) == 1 and path[0] in ALIASES:
            continue
        assert all(word in listed for word in path), path


def test_text_an_ascii_terminal_cannot_show_is_replaced_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal whose encoding cannot hold a pattern's characters (ASCII, cp1252),
    the table printed a UnicodeEncodeError traceback and exited 1 ("a negative answer");
    the characters are shown as ``?``, and ``--json`` keeps every one as an escape."""
    store = UnifiedMemory("cli-test", MemoryConfig(storage_dir=tmp_path, environment="development"))
    stored = store.persist_pattern("Café au lait ☕ tip", "tip", classification="PUBLIC")
    store.close()
    for argv, expected in (
        (["patterns", "list"], "Caf? au lait ? tip"),
        (["patterns", "search", "cafe", "--json"], "Caf\\u00e9 au lait \\u2615 tip"),
    ):
        out, err = io.BytesIO(), io.BytesIO()
        terminal = io.TextIOWrapper(out, encoding="ascii")
        messages = io.TextIOWrapper(err, encoding="ascii")
        monkeypatch.setattr("sys.stdout", terminal)
        monkeypatch.setattr("sys.stderr", messages)
        try:
            code = main([*argv, "--storage-dir", str(tmp_path)])
        finally:
            monkeypatch.undo()
        terminal.flush()
        messages.flush()
        assert code == 0, err.getvalue()
        assert expected in out.getvalue().decode("ascii"), out.getvalue()
        assert err.getvalue() == b""
    assert stored["pattern_id"].startswith("pat_")
