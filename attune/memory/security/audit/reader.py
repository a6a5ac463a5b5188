"""Reading the log back: :meth:`~.logger.AuditLogger.verify` and ``query``.

Verification recomputes the hash chain over every file, oldest first, and reports the
first altered, removed, inserted, reordered or torn line (:class:`VerifyResult`). Lines
are parsed by :mod:`.codec`. An edit shows as a ``prev`` that does not match the line
before it: if the line after still links to the line whose ``prev`` fails, that line is
genuine and the one before it was altered; else it was itself inserted or altered.

Limit: the chain is keyless, so it exposes edits, not a writer that rewrites every later
line too, and an edit of the very last line goes unnoticed until a next event is chained
to it. Record :attr:`VerifyResult.head` elsewhere to anchor a checkpoint.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from attune.errors import ValidationError
from attune.memory.security.audit.codec import GENESIS, _digest, _parse, _record, _utc_text

_TRUNCATED = "incomplete line (truncated or torn write)"
_GARBLED = "not a valid audit event (garbled line or foreign writer)"
_ALTERED = "hash chain broken (line altered: the next line's prev does not match it)"
_FORGED = "hash chain broken (line inserted or altered: its prev does not match the line before)"
_NO_GENESIS = "the chain does not start here (the first prev is not the genesis hash)"
_NOT_ANCHORED = (
    "the line at the checkpoint (seq {seq}) is not the one the checkpoint signed: history "
    "up to the checkpoint was rewritten"
)
_SHORT_OF_ANCHOR = (
    "the chain ends before the checkpoint (seq {seq}): events up to the checkpoint were "
    "removed from the end"
)
_NO_CURRENT = (
    "the current file is missing while rotated files remain: the newest events were "
    "deleted, or the file was moved"
)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :meth:`AuditLogger.verify`; true when the chain is intact."""

    ok: bool
    lines_checked: int = 0
    #: The file and 1-based line of the first problem, and what it is.
    file: Path | None = None
    line: int | None = None
    reason: str | None = None
    files: int = 0
    #: SHA-256 of the last line checked: record it elsewhere to anchor a checkpoint.
    head: str | None = None
    #: The database table checked instead of files (``line`` is then its row's ``seq``).
    table: str | None = None
    #: The seq of the last line checked (with :attr:`head`: what a checkpoint signs).
    head_seq: int | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            if self.table is not None:
                return f"audit log intact: {self.lines_checked} events in table {self.table}"
            files = "file" if self.files == 1 else "files"
            return f"audit log intact: {self.lines_checked} events in {self.files} {files}"
        # The place, as far as it is known (a chain cut short of a checkpoint in an
        # empty log has no line).
        if self.table is not None:
            where = f" at table {self.table}" + ("" if self.line is None else f" seq {self.line}")
        else:
            where = "" if self.file is None else f" at {self.file.name}"
            where += "" if self.line is None else f" line {self.line}"
        return f"audit log TAMPERED{where}: {self.reason}"


def query_filters(
    event_type: str | None,
    user_id: str | None,
    since: datetime | str | None,
    outcome: str | None,
    target_id: str | None,
    limit: int | None,
) -> tuple[dict[str, str], str | None]:
    """A query's arguments, checked: the fields an event must equal, and the earliest
    timestamp text (None: any). Shared by the file's and the table's ``query``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise ValidationError("limit must be a non-negative integer")
    if limit is not None and limit < 0:
        raise ValidationError("limit must be a non-negative integer")
    wanted = {"event": event_type, "user_id": user_id, "outcome": outcome, "target_id": target_id}
    return (
        {k: v for k, v in wanted.items() if v is not None},
        None if since is None else _utc_text(since),
    )


def _matching(
    files: list[Path], wanted: Mapping[str, object], after: str | None, limit: int | None
) -> list[dict[str, Any]]:
    """The events of ``files`` whose fields hold every ``wanted`` value, stamped at or
    after ``after`` (a timestamp text), oldest first; the last ``limit`` of them. Lines
    that are not valid events are skipped."""
    found: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
    for _path, _number, raw in _lines(files):
        record = _record(raw)
        if record is None or any(record.get(k) != v for k, v in wanted.items()):
            continue
        if after is None or str(record.get("ts", "")) >= after:
            found.append(record)
    return list(found)


def _lines(files: list[Path]) -> Iterator[tuple[Path, int, bytes]]:
    """Every raw line (newline kept, if any) of ``files`` in order, with its 1-based number."""
    for path in files:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            for number, raw in enumerate(handle, 1):
                yield path, number, raw


def _verify(
    files: list[Path],
    allow_pruned: bool,
    anchor: tuple[int, str] | None = None,
    current: Path | None = None,
) -> VerifyResult:
    """The chain over ``files`` (oldest first) checked line by line: the first problem.

    ``current``: the log's current file, which must be the last of ``files`` when there
    are any (rotated files without it: the newest events were deleted)."""
    result = _verify_lines(_lines(files), allow_pruned, len(files), anchor=anchor)
    if result.ok and current is not None and files and files[-1] != current:
        return VerifyResult(False, result.lines_checked, current, None, _NO_CURRENT, len(files))
    if not result.ok and result.file is None and files:  # no line to name: the newest file
        return replace(result, file=files[-1])
    return result


def _verify_lines(
    lines: Iterator[tuple[Path | None, int, bytes]],
    allow_pruned: bool,
    files: int,
    table: str | None = None,
    anchor: tuple[int, str] | None = None,
) -> VerifyResult:
    """The chain over ``lines`` (raw lines, newline kept, oldest first, each with where
    it is: a file and its line number, or None and a table row's number): the first
    problem. The one check of a chain, for files and for a database table alike.

    ``anchor``: (seq, hash) of a checkpoint: the line at that seq must hash to it, and
    the chain must reach it (:mod:`.checkpoint`)."""
    checked = 0
    expected_seq: int | None = None if allow_pruned else 1
    expected_prev: str | None = None if allow_pruned else GENESIS
    previous: tuple[Path | None, int] | None = None
    current = next(lines, None)
    while current is not None:
        path, number, raw = current
        upcoming = next(lines, None)
        where, reason = (path, number), None
        parsed = _parse(raw[:-1]) if raw.endswith(b"\n") else None
        if parsed is None:
            reason = _GARBLED if raw.endswith(b"\n") else _TRUNCATED
        elif expected_seq is not None and parsed[0] != expected_seq:
            reason = _seq_reason(expected_seq, parsed[0], first=previous is None)
        elif expected_prev is not None and parsed[1] != expected_prev:
            if previous is None:
                reason = _NO_GENESIS
            elif _chains_from(raw[:-1], parsed[0], upcoming):
                where, reason, checked = previous, _ALTERED, checked - 1
            else:
                reason = _FORGED
        if (
            reason is None
            and parsed is not None
            and anchor is not None
            and parsed[0] == anchor[0]
            and _digest(raw[:-1]) != anchor[1]
        ):
            reason = _NOT_ANCHORED.format(seq=anchor[0])
        if reason is not None or parsed is None:
            return VerifyResult(False, checked, where[0], where[1], reason, files, table=table)
        checked += 1
        expected_seq, expected_prev = parsed[0] + 1, _digest(raw[:-1])
        previous = where
        current = upcoming
    last = None if expected_seq is None else expected_seq - 1
    if anchor is not None and (last is None or last < anchor[0]):
        reason = _SHORT_OF_ANCHOR.format(seq=anchor[0])
        where_last = previous if previous is not None else (None, None)
        return VerifyResult(
            False, checked, where_last[0], where_last[1], reason, files, table=table
        )
    return VerifyResult(True, checked, files=files, head=expected_prev, table=table, head_seq=last)


def _seq_reason(expected: int, found: int, *, first: bool) -> str:
    if first:
        return (
            f"the chain does not start here (seq {found}, not 1): older files were deleted "
            "or lines removed; verify(allow_pruned=True) accepts a pruned log"
        )
    return (
        f"sequence broken (expected seq {expected}, found {found}): "
        "a line was removed, inserted or reordered"
    )


def _chains_from(line: bytes, seq: int, upcoming: tuple[Path | None, int, bytes] | None) -> bool:
    """Whether the next line links to ``line``: then ``line`` is genuine and the one
    before it was altered. A last line gets the benefit of the doubt likewise."""
    if upcoming is None:
        return True
    after = _parse(upcoming[2][:-1]) if upcoming[2].endswith(b"\n") else None
    return after is not None and after == (seq + 1, _digest(line))
