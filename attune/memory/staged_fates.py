"""A staged pattern's fate: the marker that records it, and what a caller is told of it.

Once a staged pattern is decided, its claim key keeps the fate for the entry's remaining
lifetime (:mod:`attune.memory.staging` writes it): ``promoted:<pattern_id>``,
``rejected`` or ``erased``, followed by ``@<namespace>`` when the entry named its
namespace (markers written before namespaces did not). While undecided, the key holds the
claimer's token, ``<action>:<subject>:<uuid>``.

A caller that finds the fate decided, or the entry claimed by someone else, gets a
:class:`~attune.errors.PatternNotFoundError` saying which; an agent of another namespace
is told only that the entry is not in its namespace, never its fate.
"""

from __future__ import annotations

from dataclasses import dataclass

from attune.errors import PatternNotFoundError

STAGED_PREFIX, PATTERN_PREFIX = "stg_", "pat_"


def promoted_id(staged_id: str) -> str:
    """The long-term id a staged pattern gets when promoted (one per staged id)."""
    return PATTERN_PREFIX + staged_id.removeprefix(STAGED_PREFIX)


def marker(fate: str, namespace: object) -> str:
    """The marker of ``fate`` (``promoted:<id>``, ``rejected``, ``erased``) for an entry of
    ``namespace`` (the entry's own field; anything but a non-empty string is left out).
    Namespaces hold no ``@``, so the marker parses back unambiguously."""
    return f"{fate}@{namespace}" if isinstance(namespace, str) and namespace else fate


@dataclass(frozen=True, slots=True)
class Holder:
    """What a claim key held, parsed: a decided fate, or another caller's claim."""

    #: ``promoted``, ``rejected`` or ``erased``; None while the entry is claimed.
    fate: str | None
    #: The namespace a fate marker names (None: it names none).
    namespace: str | None
    #: The claimer's action (``promote``, ``reject``, ``erase``) while undecided.
    action: str

    @classmethod
    def parse(cls, raw: bytes | None) -> Holder:
        text = (raw or b"").decode("utf-8", "replace")
        head, at, space = text.partition("@")
        kind, colon, _rest = head.partition(":")
        if (kind == "promoted" and colon) or head in ("rejected", "erased"):
            return cls(kind, space if at else None, "")
        return cls(None, None, kind)


def not_in_namespace(staged_id: str, namespace: str | None) -> PatternNotFoundError:
    return PatternNotFoundError(
        f"staged pattern {staged_id!r} not found in namespace {namespace!r}"
    )


def decided(staged_id: str, fate: str, pattern_id: str) -> PatternNotFoundError:
    """The error for an entry whose fate ``fate`` is decided already."""
    if fate == "promoted":
        return PatternNotFoundError(
            f"staged pattern {staged_id!r} not found: it was already promoted "
            f"(as {pattern_id}); recall it by that id"
        )
    if fate == "rejected":
        return PatternNotFoundError(
            f"staged pattern {staged_id!r} not found: it was already rejected"
        )
    return PatternNotFoundError(
        f"staged pattern {staged_id!r} not found: it was erased with the data of the "
        "agent that staged it (erase_user)"
    )


def busy(staged_id: str, action: str) -> PatternNotFoundError:
    """The error for an entry another caller holds the claim on (for ``action``)."""
    doing = {"reject": "rejecting", "erase": "erasing"}.get(action, "promoting")
    return PatternNotFoundError(
        f"staged pattern {staged_id!r} not found for this call: another agent is "
        f"{doing} it right now; list the staged patterns again to see what is left"
    )


def gone(staged_id: str) -> PatternNotFoundError:
    """The error for an entry that is not there (and whose record does not exist)."""
    return PatternNotFoundError(
        f"staged pattern {staged_id!r} not found: it expired, or was already promoted or rejected"
    )


def claim_ran_out(staged_id: str, done: str, lease_ms: int) -> PatternNotFoundError:
    """The error for a caller whose claim expired before it decided (``done``:
    "promoted" or "rejected"), so another agent may have taken over."""
    return PatternNotFoundError(
        f"staged pattern {staged_id!r} was not {done}: this call's claim on it ran out "
        f"({lease_ms // 1000} s) and another agent took over"
    )
