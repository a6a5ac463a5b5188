"""Enums shared by the whole library: data classification and agent access tiers."""

from __future__ import annotations

import enum
from typing import TypeVar

from attune.errors import ValidationError

#: How a long-term record (and a staged pattern's ``"v"``) is laid out and sealed.
#: 1: before the version was stored; an encrypted record's content is authenticated together
#: with its id and classification. 2: the format and the encrypted flag are authenticated
#: too, so neither can be changed without the record failing to open.
RECORD_FORMAT = 2
#: Every format this version reads.
RECORD_FORMATS = frozenset((1, 2))

E = TypeVar("E", bound=enum.Enum)


class Classification(enum.StrEnum):
    """How sensitive a long-term pattern is; decides encryption and retention."""

    PUBLIC = "PUBLIC"
    INTERNAL = "INTERNAL"
    SENSITIVE = "SENSITIVE"

    @classmethod
    def parse(cls, value: Classification | str) -> Classification:
        """Accept the enum or its name in any case; anything else is a ValidationError."""
        return _parse(cls, value, "classification", "a Classification or its name")


class AccessTier(enum.IntEnum):
    """What an agent may do. Each tier includes the rights of the tiers below it.

    - OBSERVER: read only (retrieve, recall, list staged patterns).
    - CONTRIBUTOR: + stash, forget, stage and persist patterns.
    - VALIDATOR: + promote and reject staged patterns.
    - STEWARD: + delete long-term records and administrative actions.
    """

    OBSERVER = 1
    CONTRIBUTOR = 2
    VALIDATOR = 3
    STEWARD = 4

    @classmethod
    def parse(cls, value: AccessTier | str | int) -> AccessTier:
        """Accept the enum, its name in any case or its number; else a ValidationError."""
        return _parse(
            cls, value, "access tier", "an AccessTier, its name or its number", numbered=True
        )

    def __str__(self) -> str:
        return self.name


def _parse(cls: type[E], value: object, what: str, forms: str, *, numbered: bool = False) -> E:
    """The member of ``cls`` that ``value`` is, or names in any case (or numbers, if
    ``numbered``); anything else is a ValidationError saying which ``forms`` are accepted."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.strip().upper()]
        except KeyError:
            pass
    elif numbered and isinstance(value, int) and not isinstance(value, bool):
        try:
            return cls(value)
        except ValueError:
            pass
    # The value is not echoed: it may be huge, deep, or hold what a log cannot encode.
    names = ", ".join(member.name for member in cls)
    raise ValidationError(f"invalid {what} ({_kind(value)}): expected one of {names}, as {forms}")


def _kind(value: object) -> str:
    """What was passed, without its content: 'an unknown name' or its type."""
    if isinstance(value, str):
        return "an unknown name"
    if isinstance(value, int) and not isinstance(value, bool):
        return "an unknown number"
    return f"a value of type {type(value).__name__}"
