"""The ``attune`` command's argument errors never repeat a value typed: a secret pasted in
the wrong place must not reach stderr (a terminal's scrollback, a CI log). Each message
names the argument at fault and what it expects; the exit status is 2, nothing on stdout.
argparse's own messages quoted the value (``argument --limit: invalid int value:
'sk-proj-...'``, ``unrecognized arguments: ...``, ``invalid choice: '...'``)."""

from __future__ import annotations

import argparse

import pytest

from attune.cli import arguments, main, parser

SECRET = "sk-proj-AbCdEf0123456789secret"
#: Pieces of it that would show a value cut or quoted differently.
PIECES = (SECRET, "AbCdEf0123456789", "0123456789secret")

REJECTED: list[tuple[list[str], str]] = [
    # numbers
    (["patterns", "search", "x", "--limit", SECRET], "argument --limit: must be a whole number"),
    (["search", "x", f"--limit={SECRET}"], "argument --limit: must be a whole number"),
    (["list", "--limit", SECRET], "argument --limit: must be a whole number"),
    (["audit", "query", "--limit", SECRET], "argument --limit: must be a whole number"),
    (["audit", "tail", "-n", SECRET], "argument -n/--lines: must be a whole number"),
    (["audit", "tail", f"--lines={SECRET}"], "argument -n/--lines: must be a whole number"),
    (["stash", "k", "v", "--ttl", SECRET], "argument --ttl: must be a number"),
    (
        ["staged", "add", "x", "--type", "t", "--ttl-hours", SECRET],
        "argument --ttl-hours: must be a number",
    ),
    # choices, and command names
    (
        ["--env", SECRET, "health"],
        "invalid choice for --env (choose from development, staging, production)",
    ),
    (
        ["health", f"--env={SECRET}"],
        "invalid choice for --env (choose from development, staging, production)",
    ),
    ([SECRET], "invalid choice for COMMAND (choose from stash, get, forget, staged, patterns,"),
    (["patterns", SECRET], "invalid choice for ACTION (choose from search, list, show,"),
    (["staged", SECRET], "invalid choice for ACTION (choose from list, show, add,"),
    (["audit", SECRET], "(choose from verify, checkpoint, query, tail)"),
    (["keys", SECRET], "(choose from generate, rotate, reroot)"),
    (["db", SECRET], "(choose from upgrade)"),
    (["claude-memory", SECRET], "(choose from show)"),
    # arguments nobody takes
    (["health", SECRET], "1 unrecognized argument (not shown"),
    (["patterns", "list", SECRET, SECRET], "2 unrecognized arguments (not shown"),
    (["health", f"--bogus={SECRET}"], "1 unrecognized argument (not shown"),
    (["health", f"--json={SECRET}"], "argument --json: takes no value"),
    (["erase-user", "u", f"--yes={SECRET}"], "argument --yes: takes no value"),
    (["audit", "tail", f"--follow={SECRET}"], "argument --follow: takes no value"),
    (["stash", "k", "v", f"--t={SECRET}"], "ambiguous option: an abbreviation that could mean"),
    # the CLI's own converters (which never quoted the value)
    (["--tier", SECRET, "health"], "argument --tier: invalid access tier"),
    (["--user", SECRET + "{", "health"], "argument --user: invalid user_id"),
    (["audit", "query", "--user", SECRET + " x"], "argument --user: invalid user_id"),
    (["get", "k", "--agent", SECRET + "{"], "argument --agent: invalid user_id"),
    (["list", "--metadata", SECRET], "argument --metadata: not a JSON object"),
    (["staged", "add", "x", "--type", "t", "--data", SECRET], "argument --data: not a JSON"),
    (
        ["staged", "promote", "stg_x", "--classification", SECRET],
        "argument --classification: invalid classification",
    ),
]


@pytest.mark.parametrize(("argv", "message"), REJECTED)
def test_a_rejected_value_is_never_repeated(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert message in said.err
    assert not any(piece in said.err for piece in PIECES), said.err


def _commands() -> list[list[str]]:
    """Every runnable command of the parser, as the words that name it (aliases too)."""

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        return [
            path for name, child in subs[0].choices.items() for path in walk(child, [*prefix, name])
        ]

    return walk(parser.build(), [])


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
@pytest.mark.parametrize("typed", [f"--{SECRET}", f"--json={SECRET}", f"--env={SECRET}"])
def test_no_command_repeats_what_it_rejects(
    command: list[str], typed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command, given an option it does not take or a value an option refuses, exits
    2 before it runs, and says so without the value."""
    assert main([*command, typed]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert "error: " in said.err
    assert not any(piece in said.err for piece in PIECES), said.err


def test_a_typo_of_a_choice_is_told_precisely(capsys: pytest.CaptureFixture[str]) -> None:
    """The guard against repeats does not take a choice's name for a typed value
    ("develop" is part of "development")."""
    assert main(["--env", "develop", "health"]) == 2
    assert capsys.readouterr().err.endswith(
        "error: invalid choice for --env (choose from development, staging, production)\n"
    )


def test_a_message_that_would_repeat_a_value_is_replaced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The last guard: a converter (or a newer argparse) whose message quotes the value
    typed still shows no value, and names the argument."""

    def careless(value: str) -> str:
        raise argparse.ArgumentTypeError(f"{value!r} is not a key")

    checked = arguments.ArgumentParser(prog="tool")
    checked.add_argument("--key", type=careless)
    checked.add_argument("name", choices=["alpha", "gamma-ray"])
    with pytest.raises(SystemExit) as stopped:
        checked.parse_args(["alpha", "--key", SECRET])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith("tool: error: argument --key: not a valid value (not shown)\n")
    assert not any(piece in err for piece in PIECES)
    # Typed text found only within the parser's own words is no repeat: the message stays.
    with pytest.raises(SystemExit):
        checked.parse_args(["gamma-"])
    assert "error: invalid choice for name (choose from alpha, gamma-ray)" in (
        capsys.readouterr().err
    )


def test_numbers_still_parse() -> None:
    assert arguments.whole_number(" 12 ") == 12
    assert arguments.whole_number("-1") == -1
    assert arguments.number("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be a whole number$"):
        arguments.whole_number("2.5")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be a number$"):
        arguments.number(SECRET)
