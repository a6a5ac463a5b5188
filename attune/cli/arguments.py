"""Command-line errors that never repeat what was typed.

A value typed in the wrong place may be a secret (an API key pasted after ``--limit``, a
password where a command name was expected), and argparse's own messages quote it:
``argument --limit: invalid int value: 'sk-...'``, ``unrecognized arguments: ...``. The
terminal's scrollback, a CI log or a shared screen would keep it. :class:`ArgumentParser`
(every ``attune`` parser and, through ``parser_class``, its subparsers) says instead what
is wrong: which argument, and what it expects.

- Numbers are converted by :func:`whole_number` and :func:`number`, whose messages name
  no value ("argument --limit: must be a whole number").
- :meth:`ArgumentParser.error`, the one place argparse reports a usage error through,
  rewrites the messages that quote a value: an invalid choice ("invalid choice for --env
  (choose from development, staging, production)"), a value given to an option that
  takes none, an ambiguous abbreviation; unrecognized arguments are counted, not shown.
- A text argument (a key, an id, a query; not a file name) holding bytes the locale's
  encoding could not decode (a Latin-1 terminal's ``café`` under a UTF-8 locale) is
  refused by name (:func:`undecodable_message`), rather than searched for as garbled
  text or stored as such.
- As a last guard, a message that would still contain something typed (a message of a
  newer Python, say) is replaced by one that names no value. The option names and
  choices a parser declares are its own words, never counted as typed.

The exit status stays 2, with nothing on stdout.
"""

from __future__ import annotations

import argparse
import contextvars
import re
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

#: The arguments of the parse under way (subparsers report errors through their own
#: :meth:`ArgumentParser.error`; the guard there checks every argument of the command).
_GIVEN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "attune_cli_arguments", default=()
)
#: Typed arguments at least this long may not appear in a message; shorter ones (``-n``,
#: ``5``, ``x``) would match the message's own words and say nothing secret.
_SHOWN_MIN = 6
#: What undecodable bytes of an argument become in Python (``surrogateescape``).
_SURROGATE = re.compile("[\udc80-\udcff]")
_TYPE_ERROR = re.compile(r"invalid \S+ value: ")
#: Arguments that name files: bytes the locale cannot decode are part of a file's name
#: (Python keeps them and gives them back to the file system), not a mistake.
_PATHS = frozenset({"storage_dir", "log_file", "out", "file", "checkpoint"})


def whole_number(value: str) -> int:
    """``type=`` for a whole number (``--limit``, ``-n``)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None


def number(value: str) -> float:
    """``type=`` for a number, with or without decimals (``--ttl``, ``--ttl-hours``)."""
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number") from None


def undecodable_message() -> str:
    """What is wrong with an argument holding bytes the locale's encoding cannot decode."""
    return (
        f"not text in this system's encoding ({sys.getfilesystemencoding()}): the terminal "
        "sent bytes of another encoding; set the terminal and the locale (LANG or LC_ALL) "
        "to the same encoding, e.g. UTF-8"
    )


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose error messages name the argument at fault
    and what it expects, never a value typed on the command line (see the module)."""

    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        given = tuple(sys.argv[1:] if args is None else args)
        token = _GIVEN.set(given)
        try:
            parsed, extras = self.parse_known_args(list(given), namespace)
            if extras:
                self.error(_unrecognized(len(extras)))
            garbled = _undecodable(self, parsed)
            if garbled is not None:
                owner, name = garbled  # its own parser: its usage, its option names
                owner.error(f"argument {name}: {undecodable_message()}")
            return parsed
        finally:
            _GIVEN.reset(token)

    def error(self, message: str) -> NoReturn:
        message = _rewritten(message)
        if self._repeats_typed(message):
            name = message.removeprefix("argument ").partition(": ")[0]
            if message.startswith("argument ") and not self._repeats_typed(name):
                message = f"argument {name}: not a valid value (not shown)"
            else:
                message = (
                    "invalid arguments (the message would repeat a value typed, so it is not "
                    f"shown); see '{self.prog} -h'"
                )
        super().error(message)

    def _repeats_typed(self, message: str) -> bool:
        """Whether ``message`` contains an argument of this parse (or a part of one around
        an ``=``) other than inside this parser's own option names and choices (``--env
        develop`` is typed, and "development" in the list of choices is not a repeat)."""
        own = set(self._option_string_actions)
        for action in self._actions:
            if action.choices is not None:
                own.update(str(choice) for choice in action.choices)
        return any(
            _shown(message, typed, own)
            for argument in _GIVEN.get()
            for typed in (argument, *argument.split("="))
            if len(typed) >= _SHOWN_MIN
        )


def _undecodable(
    parser: argparse.ArgumentParser, parsed: Any
) -> tuple[argparse.ArgumentParser, str] | None:
    """The parser and the name of a text argument of ``parsed`` that holds undecodable
    bytes (the surrogates Python decodes them to), or None."""
    garbled = sorted(
        dest
        for dest, value in vars(parsed).items()
        if dest not in _PATHS and isinstance(value, str) and _SURROGATE.search(value)
    )
    if not garbled:
        return None
    # The parser of the command run that declares it (the deepest, as argparse's own).
    found: tuple[argparse.ArgumentParser, str] | None = None
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest or "", None) or "")
                parsers.extend([chosen] if chosen is not None else [])
            elif action.dest == garbled[0]:
                longest = max(action.option_strings, key=len, default=None)
                found = (current, longest or str(action.metavar or action.dest))
    return found or (parser, garbled[0])


def _rewritten(message: str) -> str:
    """argparse's ``message`` without the value it quotes (those it is known to quote)."""
    if message.startswith("unrecognized arguments: "):
        return _unrecognized(None)
    if message.startswith("ambiguous option: "):
        matches = message.rpartition(" could match ")[2]
        return f"ambiguous option: an abbreviation that could mean {matches}"
    if not message.startswith("argument ") or ": " not in message:
        return message
    # "argument NAME: PROBLEM": NAME is the option's or the positional's own name.
    name, _, problem = message.removeprefix("argument ").partition(": ")
    if problem.startswith("invalid choice: "):
        choices = problem.rpartition("(choose from ")[2].removesuffix(")")
        return f"invalid choice for {name} (choose from {choices.replace(chr(39), '')})"
    if problem.startswith("ignored explicit argument "):
        return f"argument {name}: takes no value"
    if _TYPE_ERROR.match(problem):
        return f"argument {name}: not a valid value"
    return message


def _unrecognized(count: int | None) -> str:
    what = "arguments" if count is None or count > 1 else "argument"
    counted = "" if count is None else f"{count} "
    return (
        f"{counted}unrecognized {what} (not shown, in case one is a secret typed in the "
        "wrong place); see -h for what the command takes"
    )


def _shown(message: str, typed: str, own: set[str]) -> bool:
    """Whether ``typed`` occurs in ``message`` other than within one of the ``own`` words."""
    start = message.find(typed)
    while start >= 0:
        end = start + len(typed)
        if not any(_within(message, word, start, end) for word in own if len(word) >= len(typed)):
            return True
        start = message.find(typed, start + 1)
    return False


def _within(message: str, word: str, start: int, end: int) -> bool:
    """Whether an occurrence of ``word`` in ``message`` spans ``message[start:end]``."""
    found = message.find(word, max(0, end - len(word)))
    return 0 <= found <= start
