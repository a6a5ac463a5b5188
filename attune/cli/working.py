"""``attune stash / get / forget``: an agent's working data (the short-term tier).

``stash KEY VALUE`` stores VALUE parsed as JSON when it is valid JSON (``42``, ``true``,
``null``, ``{"a": 1}``, ``"quoted text"``), else as the text itself; ``--string`` stores
the text as it is even when it reads as JSON, and a VALUE of ``-`` is read from stdin.
``get KEY`` prints a string as it is and any other value as JSON (exit 1 when there is
none); ``forget KEY`` removes it (exit 1 when there was none). Their messages never repeat
the key or an agent id typed (a key may hold personal data: :mod:`.guards`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from attune.cli import identity
from attune.cli.output import NO, OK, Output
from attune.errors import ValidationError
from attune.memory.types import AccessTier


def stash_value(text: str, *, as_string: bool) -> Any:
    """What ``stash`` stores for VALUE: JSON if it parses (unless ``as_string``), else the
    text."""
    if as_string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise ValidationError(
            "value is JSON nested too deeply to parse; pass --string to store it as text"
        ) from None


def _stdin_text() -> str:
    """VALUE ``-``: standard input, which must be text in the locale's encoding."""
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"value: standard input is not {exc.encoding} text (byte {exc.start} cannot be "
            "decoded); convert it, or set the locale's encoding (PYTHONIOENCODING) to match"
        ) from None


def standin_warning(memory: Any, out: Output) -> None:
    """Working data and staged patterns of the in-process stand-in end with the command:
    say so, on stderr, where it would surprise (a write, or a read that found nothing)."""
    if memory.config.short_term_backend == "mock":
        out.warning(
            "no REDIS_URL: short-term memory is the in-process stand-in, emptied when this "
            "command exits; pass --redis-url (or set REDIS_URL) to keep it between commands"
        )


def stash(args: argparse.Namespace, out: Output) -> int:
    text = _stdin_text() if args.value == "-" else args.value
    value = stash_value(text, as_string=args.string)
    with identity.memory(args, AccessTier.CONTRIBUTOR) as memory:
        memory.stash(args.key, value, args.ttl)
        ttl = memory.ttl(args.key)
        agent = memory.user_id
        standin_warning(memory, out)
    if out.as_json:
        out.document({"stored": True, "key": args.key, "agent_id": agent, "ttl_seconds": ttl})
    else:
        kind = "a string" if isinstance(value, str) else f"JSON ({type(value).__name__})"
        left = "" if ttl is None else f", expiring in {ttl:.0f} s"
        out.line(f"Stashed {kind} under {args.key!r} for {agent}{left}.")
    return OK


def get(args: argparse.Namespace, out: Output) -> int:
    with identity.memory(args, AccessTier.OBSERVER) as memory:
        value = memory.retrieve(args.key, args.agent)
        agent = args.agent or memory.user_id
        # A stashed JSON null reads as None too: the key's TTL tells them apart.
        found = value is not None or memory.ttl(args.key, args.agent) is not None
        if not found:
            standin_warning(memory, out)
    if out.as_json:
        out.document({"key": args.key, "agent_id": agent, "found": found, "value": value})
    elif isinstance(value, str):  # as it is: rich would drop \r, \f, \a and expand tabs
        sys.stdout.write(value + "\n")
        sys.stdout.flush()
    elif found:
        out.line(json.dumps(value, indent=2, ensure_ascii=False))
    if not found:
        out.error(
            f"no working data under the key given for {_whose(args)} (the key is not "
            "repeated: it may hold personal data); check its spelling, or whether it expired"
        )
        return NO
    return OK


def forget(args: argparse.Namespace, out: Output) -> int:
    with identity.memory(args, AccessTier.CONTRIBUTOR) as memory:
        existed = memory.forget(args.key)
        agent = memory.user_id
    if out.as_json:
        out.document({"forgotten": existed, "key": args.key, "agent_id": agent})
    elif existed:
        out.line(f"Forgot {args.key!r} of {agent}.")
    if not existed:
        out.error(
            f"no working data under the key given for {_whose(args)}: nothing forgotten "
            "(the key is not repeated: it may hold personal data)"
        )
        return NO
    return OK


def _whose(args: argparse.Namespace) -> str:
    """The agent whose working data a message speaks of, without repeating an id typed
    (``--agent``, ``--user``: an agent id may be a person's name or address)."""
    if getattr(args, "agent", None):
        return "the agent of --agent"
    if getattr(args, "user", None):
        return "the agent of --user"
    return f"agent {identity.DEFAULT_USER}"
