"""What the Redis stores make of replies and errors: bytes, staged ids, one-line causes.

Shared by the single-node store (:mod:`.redis_store`) and the cluster store
(:mod:`.cluster`); nothing here talks to Redis.
"""

from __future__ import annotations

import re

__all__ = ["describe", "first_line", "raw", "staged_ids"]


def raw(value: bytes | str | None) -> bytes | None:
    """Values as bytes: clients here never decode responses, but the typing allows str."""
    return value.encode("utf-8") if isinstance(value, str) else value


def staged_ids(members: list[tuple[bytes | str, float]]) -> list[tuple[str, int]]:
    """Index members as (id, expiry); one that is not UTF-8 text cannot name an entry
    attune wrote (its ids are ASCII), so it is left out rather than break the listing."""
    ids: list[tuple[str, int]] = []
    for member, score in members:
        try:
            text = member if isinstance(member, str) else member.decode("utf-8")
        except UnicodeDecodeError:
            continue
        ids.append((text, int(score)))
    return ids


#: redis-py's note on an error inside a pipeline or transaction: "Command # N (<the
#: command and its arguments, up to 100 characters>) of pipeline caused error: <error>"
#: (the asyncio client gives the error's args tuple). The arguments can be stored data.
_PIPELINE_NOTE = re.compile(r"\ACommand # (\d+) \(.*\) of pipeline caused error: (.*)\Z", re.S)
_ARGS_TUPLE = re.compile(r"""\A\((['"])(.*)\1,\)\Z""", re.S)


def first_line(exc: BaseException) -> str:
    """The first line of the message ("" if there is none: never the class name again),
    without the command's arguments redis-py quotes for an error inside a pipeline (a
    value being written, a staged entry): an error never repeats stored data."""
    text = str(exc).strip()
    note = _PIPELINE_NOTE.match(text)
    if note is not None:
        error = note.group(2).strip()
        args = _ARGS_TUPLE.match(error)
        text = f"command {note.group(1)} of a pipeline: {args.group(2) if args else error}"
    lines = text.splitlines()
    return lines[0][:200] if lines else ""


def describe(exc: BaseException) -> str:
    """``Class: first line``, or just ``Class`` when there is no message."""
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
