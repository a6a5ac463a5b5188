"""What an :class:`~attune.errors.AuditLogError` says: what went wrong with the log, what
to do about it, and what became of the operation (never "refused" for something done).

A :data:`Failure` is a (reason, advice) pair, built where the log failed and told to
whoever hears of it, with the outcome known there: :data:`REFUSED` by ``begin``,
:data:`CALL_REFUSED` by ``check`` and by a call that hears of an earlier failure,
:data:`NOT_LOGGED` to those who waited for an event, :data:`HELD` after a store's
``COMMIT``, :data:`NOT_REPLAYED` by :func:`~.outbox.replay_outbox`.
"""

from __future__ import annotations

from pathlib import Path

from attune.errors import AuditLogError
from attune.memory.security.audit.codec import _CorruptTailError

#: What went wrong with the log, and what to do about it (an :class:`AuditLogError`'s
#: ``reason`` and ``advice``); what became of the operation is said where it is known.
Failure = tuple[str, str]

#: Outcomes, as an :class:`AuditLogError` tells them. Each says what happened to the
#: operation: never "refused" for something that was done.
REFUSED = "the write was refused and nothing was stored"
CALL_REFUSED = "this call was refused: nothing was stored, changed or read"
NOT_LOGGED = "the event was not logged"
STORED_UNLOGGED = (
    "the write WAS stored, but its audit event could not be written (it is not in the "
    "log). Do not retry the write"
)
HELD = (
    "the write WAS stored, and its audit events are held in the store's outbox: they are "
    "appended to the log once it can be written again (at the latest when the store next "
    "opens). Do not retry the write"
)
NOT_REPLAYED = (
    "the audit events a store kept in its outbox could not be appended, so the store was "
    "not opened (the events stay in the outbox)"
)


def _describe(path: Path, exc: BaseException) -> Failure:
    """Why the log ``path`` could not be extended (``exc``), and what to do; no data."""
    if isinstance(exc, _CorruptTailError):
        return (
            f"the last line of the audit log {path} is not an audit event (a garbled line "
            "or a foreign writer), so its hash chain cannot be extended",
            "Run AuditLogger.verify() to find the line, then restore the file from a backup "
            "or move it aside (a fresh file starts a new chain), and retry.",
        )
    if isinstance(exc, OSError):
        why = exc.strerror or type(exc).__name__
        return (
            f"the audit log {path} could not be written ({why})",
            "Check the free space and permissions of its directory, then retry.",
        )
    return (f"the audit writer failed ({type(exc).__name__})", "")


def _pending_lost(failure: Failure) -> Failure:
    """A failure to append lines whose outbox rows keep them."""
    return (
        f"{failure[0]}, so events already committed with their records wait in the store's "
        "outbox until it can be",
        failure[1],
    )


def _lost_events(count: int, failure: Failure) -> Failure:
    """A failure to write ``count`` events nobody waited for (they are gone)."""
    return (f"{count} audit event(s) were lost: {failure[0]}", failure[1])


def _unreadable(path: Path, exc: OSError, outcome: str) -> AuditLogError:
    """The log ``path`` could not be read (``exc``) by ``verify`` or ``query``."""
    why = exc.strerror or type(exc).__name__
    return AuditLogError(
        f"the audit log {path} could not be read ({why})",
        outcome,
        "Check that it is a file and the permissions of it and its directory.",
    )
