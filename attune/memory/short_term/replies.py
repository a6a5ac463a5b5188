"""What the Redis stores make of replies and errors: bytes, staged ids, one-line causes.

Shared by the single-node store (:mod:`.redis_store`) and the cluster store
(:mod:`.cluster`); nothing here talks to Redis.
"""

from __future__ import annotations

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


def first_line(exc: BaseException) -> str:
    """The first line of the message ("" if there is none: never the class name again)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def describe(exc: BaseException) -> str:
    """``Class: first line``, or just ``Class`` when there is no message."""
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
