"""Tamper-evident audit log: JSON Lines, one event per line, chained by SHA-256.

Every line carries ``seq`` (+1 per event) and ``prev`` (the SHA-256 of the previous
line's exact bytes; ``"0" * 64`` for the first), so :meth:`AuditLogger.verify` finds
the first altered, removed, inserted, reordered or torn line. Events hold ids, counts
and kinds only: ``details`` is sanitised here, whatever the caller passes.

Writing never serialises callers on the disk. Each logger has one daemon writer
thread; callers append to an open *batch* and (``sync=True``) wait until the writer
has written the whole batch with one ``write()`` and one ``fsync`` (group commit).
Blocking callers wait on the batch's event, ``alog`` callers on a future of their
own loop, woken with ``call_soon_threadsafe``. Under an exclusive ``flock`` the writer
reads the real chain head from the file's tail, so several processes (or several
loggers) appending to one file keep one valid chain. When a file would exceed
``max_bytes`` it is renamed to ``.1`` (older ones shift to ``.2``...) and the chain
continues in a fresh file. Rotated files are never deleted: deleting the oldest ones
is an operator action, accepted by ``verify(allow_pruned=True)``.

A long-term write's events take a shorter path (:meth:`AuditLogger.begin`): the store
keeps them in an *outbox* row of the record's own transaction, so one fsync makes both
durable. The lines are chained under the file's lock, taken before that ``COMMIT``, and
the lock stays held until the writer appends them a linger later, together with the
lines of the writes committed meanwhile, and fsyncs them; then the row is deleted. So a
reader that locks the file (``query``, ``verify``) sees every confirmed write's events,
and one that does not sees them a linger late. A store that finds rows left over (a
writer died, or the log lost its unsynced tail) hands them to :func:`replay_outbox`,
which appends the lines the log lacks.

Failures (:class:`~attune.errors.AuditLogError`; its message says what became of the
operation, never "refused" for something that was done). A log that cannot be extended
(a garbled last line, a file that cannot be opened) fails :meth:`AuditLogger.begin`
before the store's COMMIT: the store takes the records out again, nothing is stored. An
append that fails after the COMMIT (a full disk) leaves the lines in the outbox row, and
this logger keeps them too: its next ``begin`` (or :meth:`AuditLogger.check`) appends
them first, or refuses the write, so writes are refused until the log has caught up,
and the store's next open finds the lines instead of repeating them. Events nobody
waits for (reads'; with ``sync=False``, all) that cannot be written are reported, and
the call that hears of it refused, by the logger's next call.

Limit: the chain is keyless, so it exposes edits, not a writer that rewrites every
later line too, and an edit of the very last line goes unnoticed until a next event
is chained to it. Record ``VerifyResult.head`` elsewhere to anchor a checkpoint.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attune.errors import (
    AuditLogError,
    ConfigurationError,
    SecurityPipelineError,
    ValidationError,
)
from attune.memory.compact_json import compact_encoder
from attune.memory.config import MemoryConfig
from attune.memory.timestamps import iso_us_z

GENESIS = "0" * 64
REDACTED = "[redacted]"
FIELDS = (
    "ts",
    "seq",
    "event",
    "user_id",
    "tier",
    "target_id",
    "classification",
    "outcome",
    "details",
    "prev",
)
MAX_ID_LENGTH = 256
MAX_DETAIL_DEPTH = 3

_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{0,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_TAIL_CHUNK = 4096
#: Events nobody waits for (reads, queued decisions, sync=False) are written together
#: after at most this long, or once this many are queued: one write and fsync for many.
_LINGER_S = 0.02
_LINGER_EVENTS = 256
#: Once another writer's lines are seen in the log, outbox lines are appended at once
#: (not held pending, see :class:`_Sink`) until it has been quiet this long.
_SHARED_S = 1.0

_TRUNCATED = "incomplete line (truncated or torn write)"
_GARBLED = "not a valid audit event (garbled line or foreign writer)"
_ALTERED = "hash chain broken (line altered: the next line's prev does not match it)"
_FORGED = "hash chain broken (line inserted or altered: its prev does not match the line before)"
_NO_GENESIS = "the chain does not start here (the first prev is not the genesis hash)"


# -- validation of one event --------------------------------------------------------------------


#: Identifiers seen valid already (events, tiers, outcomes are a small set): the hot
#: path skips the regex. Bounded, so arbitrary callers cannot grow it without limit.
_VALID_IDENTIFIERS: set[str] = set()


def _is_identifier(text: str) -> bool:
    """Whether ``text`` (a plain str) is an identifier; remembers the ones seen."""
    if text in _VALID_IDENTIFIERS:
        return True
    if _IDENTIFIER.fullmatch(text) is None:
        return False
    if len(_VALID_IDENTIFIERS) < 4096:
        _VALID_IDENTIFIERS.add(text)
    return True


def _identifier(value: object, name: str, *, required: bool = True) -> str | None:
    """A short identifier string (event, tier, outcome, classification)."""
    if type(value) is str and value and value in _VALID_IDENTIFIERS:
        return value
    if value is None and not required:
        return None
    if isinstance(value, str):
        text = str.__str__(value)  # a str enum member gives its value
        if text and _is_identifier(text):
            return text
    raise ValidationError(
        f"audit {name} must be an identifier of 1-64 characters from A-Z a-z 0-9 _ . : -"
    )


def _id(value: object, name: str, *, required: bool) -> str | None:
    """A user or target id without control characters, so it cannot break a line."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"audit {name} must be a string")
    text = str.__str__(value)
    if not text.isprintable():
        text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > MAX_ID_LENGTH or (required and not text):
        raise ValidationError(f"audit {name} must be 1-{MAX_ID_LENGTH} printable characters")
    return text


def sanitize_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` reduced to counts and kinds; anything else becomes ``"[redacted]"``."""
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise ValidationError("audit details must be a mapping of counts and kinds")
    return _clean_mapping(details, 0)


def _clean(value: object, depth: int) -> object:
    kind = type(value)
    # Exact built-in types first: the common case, without ABC instance checks.
    if kind is str:
        assert isinstance(value, str)
        return value if _is_identifier(value) else REDACTED
    if kind is int or kind is bool or value is None:
        return value
    if kind is dict and depth <= MAX_DETAIL_DEPTH:
        assert isinstance(value, dict)
        return _clean_mapping(value, depth)
    return _clean_other(value, depth)


def _clean_other(value: object, depth: int) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else REDACTED
    if isinstance(value, str):
        text = str.__str__(value)
        return text if _is_identifier(text) else REDACTED
    if depth > MAX_DETAIL_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return _clean_mapping(value, depth)
    if isinstance(value, list | tuple):
        return [_clean(item, depth + 1) for item in value]
    return REDACTED


def _clean_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, item in value.items():
        if isinstance(key, str) and _is_identifier(text := str.__str__(key)):
            out[text] = _clean(item, depth + 1)
        else:  # the key itself may be content: drop both, leave a marker
            out[REDACTED] = REDACTED
    return dict(sorted(out.items()))


def _event_fields(
    event: object,
    user_id: object,
    tier: object,
    target_id: object,
    classification: object,
    outcome: object,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The validated middle of a line, from ``event`` to ``details`` (checked by the caller's
    thread, so a bad event fails its caller; encoded by the writer)."""
    return {
        "event": _identifier(event, "event"),
        "user_id": _id(user_id, "user_id", required=True),
        "tier": _identifier(tier, "tier"),
        "target_id": _id(target_id, "target_id", required=False),
        "classification": _identifier(classification, "classification", required=False),
        "outcome": _identifier(outcome, "outcome"),
        "details": sanitize_details(details),
    }


#: A str as a JSON string literal, ASCII only (what the encoders use for every string).
_json_text = json.encoder.encode_basestring_ascii


def _unencodable(value: object) -> object:
    raise TypeError(f"an audit event cannot hold {type(value).__name__}")


#: One encoder for every line and outbox payload.
_compact_ascii_json = compact_encoder(ensure_ascii=True, default=_unencodable)


def _encode_body(fields: dict[str, Any]) -> str:
    """An event's fields as compact ASCII JSON, minus the braces (the line adds its own).
    The fields are freshly sanitised dicts: no cycle check is needed."""
    return _compact_ascii_json(fields)[1:-1]


#: An event's middle as queued: its fields, their JSON already, or a read's JSON in three
#: parts (head, target id validated but not yet escaped, tail; see ``_ReadTemplates``)
#: for the writer to join, off the reader's path.
Body = dict[str, Any] | str | tuple[str, str, str]


def _encode(entries: list[tuple[float, Body]]) -> list[tuple[str, str]]:
    """Queued events as (timestamp text, compact JSON body) for the sink (one loop, no
    call per event but the formatting: the writer runs it for every audited read)."""
    encoded = []
    for ts, body in entries:
        if type(body) is tuple:
            text = body[0] + _json_text(body[1]) + body[2]
        elif type(body) is str:
            text = body
        else:
            assert isinstance(body, dict)
            text = _encode_body(body)
        encoded.append((iso_us_z(ts), text))
    return encoded


#: Flat details as a template key: (name, value) pairs, values str, bool or None only.
FlatDetails = tuple[tuple[str, str | bool | None], ...]


def _flat(details: Mapping[str, Any]) -> FlatDetails | None:
    """``details`` as a hashable key if it is a plain dict of plain str keys whose values
    are plain str, bool or None; else None. Never an int: ``1 == True`` would share a key."""
    if type(details) is not dict:
        return None
    for name, value in details.items():
        if type(name) is not str or (
            type(value) is not str and type(value) is not bool and value is not None
        ):
            return None
    return tuple(details.items())


class _ReadTemplates:
    """The JSON of events, all but their target id (bounded cache).

    An audited read queues one such event per call, and its fields differ from the last
    one's in the target only: validating and encoding the rest once per (event, user,
    tier, classification, outcome, flat details) leaves the target to escape and two
    strings to join. Decisions with a few identifier details (an allowed access check, a
    classification decision) repeat the same way.
    """

    _KEPT = 1024
    _TARGET = '"target_id":null'

    def __init__(self) -> None:
        self._texts: dict[
            tuple[str, str, str, str | None, str, FlatDetails | None], tuple[str, str]
        ] = {}

    def parts(
        self,
        event: str,
        user_id: str,
        tier: str,
        classification: str | None,
        outcome: str,
        details: FlatDetails | None = None,
    ) -> tuple[str, str]:
        """The JSON before and after the target id's value; validates the fields once."""
        key = (event, user_id, tier, classification, outcome, details)
        parts = self._texts.get(key)
        if parts is None:
            fields = _event_fields(
                event,
                user_id,
                tier,
                None,
                classification,
                outcome,
                None if details is None else dict(details),
            )
            head, found, tail = _encode_body(fields).partition(self._TARGET)
            assert found  # keys are ours and values are escaped: it occurs exactly once
            if len(self._texts) >= self._KEPT:
                self._texts.clear()
            parts = self._texts[key] = (head + '"target_id":', tail)
        return parts

    def body(
        self,
        event: object,
        user_id: object,
        tier: object,
        target_id: object,
        classification: object,
        outcome: object,
        details: Mapping[str, Any] | None,
    ) -> Body:
        """The event's body: from a template when its fields are plain strings and its
        details none or flat, else validated and left for the writer to encode. A plain
        target id (one :func:`_id` keeps as it is) is left for the writer to escape and
        splice in, off the caller's path."""
        flat = None if details is None else _flat(details)
        if (
            (details is None or flat is not None)
            and type(event) is str
            and type(user_id) is str
            and type(tier) is str
            and type(outcome) is str
            and (classification is None or type(classification) is str)
        ):
            head, tail = self.parts(event, user_id, tier, classification, outcome, flat)
            if (
                type(target_id) is str
                and len(target_id) <= MAX_ID_LENGTH
                and target_id.isprintable()
            ):
                return (head, target_id, tail)
            target = _id(target_id, "target_id", required=False)
            return head + ("null" if target is None else _json_text(target)) + tail
        return _event_fields(event, user_id, tier, target_id, classification, outcome, details)


def _line(ts: str, seq: int, body: str, prev: str) -> bytes:
    return f'{{"ts":"{ts}","seq":{seq},{body},"prev":"{prev}"}}'.encode("ascii")


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _parse(line: bytes) -> tuple[int, str] | None:
    """(seq, prev) of a well-formed audit line, else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.keys() != set(FIELDS):
        return None
    seq, prev = record["seq"], record["prev"]
    if type(seq) is not int or not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        return None
    return seq, prev


def _utc_text(when: datetime | str) -> str:
    """``when`` in the log's timestamp format (a naive datetime is taken as UTC)."""
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise ValidationError("since must be an ISO-8601 date or datetime") from None
    if not isinstance(when, datetime):
        raise ValidationError("since must be a datetime or an ISO-8601 string")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime(_TS_FORMAT)


# -- files ---------------------------------------------------------------------------------------


def _rotated(path: Path) -> list[Path]:
    """Rotated files of ``path``, newest (``.1``) first."""
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    numbers = sorted(
        int(name[len(prefix) :])
        for name in names
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    )
    return [path.with_name(f"{prefix}{n}") for n in numbers]


def _rfind_newline(fd: int, end: int) -> int:
    """Offset of the last ``\\n`` before ``end``, or -1."""
    chunk = _TAIL_CHUNK
    while end > 0:
        start = max(0, end - chunk)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            return start + found
        end, chunk = start, chunk * 2
    return -1


def _last_line(fd: int, size: int) -> bytes:
    """The last line (without newline) of a file of ``size`` bytes that ends with one."""
    start = _rfind_newline(fd, size - 1) + 1
    return os.pread(fd, size - 1 - start, start)


def _head_of(line: bytes) -> tuple[int, str]:
    parsed = _parse(line)
    if parsed is None:
        raise _CorruptTailError
    return parsed[0], _digest(line)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents, owner-only."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)


class _CorruptTailError(Exception):
    """The last line of the log is not an audit event: its chain cannot be extended."""


@dataclass(slots=True)
class _SyncMarks:
    """Counts of a logger's appends made without fsync (see :class:`OutboxWrite`)."""

    appended: int = 0  # the latest such append
    synced: int = 0  # every append up to this one has been fsynced since
    lost: int = 0  # appends up to this one may never be fsynced (their file was dropped)


@dataclass(slots=True)
class _Reserved:
    """Lines built under the file's lock, to be written once a store's COMMIT succeeded."""

    fd: int
    size: int
    data: bytes
    cache: tuple[tuple[int, int, int], int, str]
    #: The (timestamp, body) entries of ``data``: kept by the logger if they cannot be
    #: written, to append them once the log can be written again.
    entries: list[tuple[str, str]]


class _Sink:
    """Appends chained lines to the log; used by one thread at a time (``_sink_lock``).

    While this logger is the log's only writer, lines an outbox write committed are
    *pending*: chained onto the file's tail but not yet written, and the file's lock stays
    held, so nobody else can append or rotate in between and the chain stays true. The
    next append, :meth:`sync` (the writer thread, a linger later) or :meth:`drain` writes
    them, all in one ``write``, then lets the lock go. Appending each persist's lines right
    after its commit made the next ``COMMIT`` about 36 µs slower (176 -> 140 µs measured
    without it): the store's fsync then has the log's fresh data to flush as well.

    Another writer (another process) would have to wait for that lock, and a store of its
    holds the database's write lock meanwhile, which this process's next transaction then
    waits for: a stall until the writer thread appends. So once :meth:`_acquire` finds lines
    it did not write, outbox lines are appended right after their commit, and the lock let
    go, until no foreign line has been seen for ``_SHARED_S``.
    """

    def __init__(self, path: Path, max_bytes: int, marks: _SyncMarks | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.marks = marks if marks is not None else _SyncMarks()
        self._fd: int | None = None
        self._dirty = False  # written but not fsynced
        # (st_dev, st_ino, size) of the file after our last append, and its chain head.
        self._cache: tuple[tuple[int, int, int], int, str] | None = None
        self._reserved: _Reserved | None = None
        self._locked: os.stat_result | None = None  # fstat of the file as _acquire locked it
        #: Committed outbox lines not written yet (the lock is held while there are any).
        self._pending: list[bytes] = []
        self._pending_entries: list[tuple[str, str]] = []  # theirs, unchained
        self._pending_from = 0  # the file's size before them
        #: Until then (``time.monotonic()``) another writer counts as active: no pending.
        self._shared_until = 0.0

    def close(self) -> None:
        """Close the file (dropping its lock); pending lines are left to the outbox rows:
        call :meth:`drain` first to write them."""
        if self._pending:
            self.marks.lost = self.marks.appended
            self._pending.clear()
            self._pending_entries.clear()
            self._cache = None
        self._locked = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def reset(self) -> list[tuple[str, str]]:
        """Forget the open file and the cached head (after an error); returns the entries
        of the pending lines dropped (committed outbox lines not written)."""
        dropped = list(self._pending_entries)
        if self._dirty:  # unsynced appends may now never be fsynced by this logger
            self.marks.lost = self.marks.appended
        self._reserved = None
        with contextlib.suppress(OSError):
            self.close()
        self._dirty = False
        self._cache = None
        return dropped

    def sync(self) -> None:
        """Write pending lines (letting the lock go), then fsync what was written."""
        self.drain()
        if self._dirty and self._fd is not None:
            self._fsync(self._fd)
        self._dirty = False

    @property
    def holding(self) -> bool:
        """Whether committed outbox lines wait to be written (the lock is held for them)."""
        return bool(self._pending)

    def drain(self) -> None:
        """Write pending lines, if any, and let the file's lock go."""
        if self._pending:
            assert self._fd is not None  # pending lines keep the file open and locked
            try:
                self._write_pending(self._fd)
            finally:
                self.release()

    def _write_pending(self, fd: int) -> None:
        """Write the pending lines to the locked file ``fd`` (keeping the lock)."""
        if not self._pending:
            return
        try:
            _write_all(fd, b"".join(self._pending))
        except OSError:
            with contextlib.suppress(OSError):  # leave no partial batch behind
                os.ftruncate(fd, self._pending_from)
            raise
        self._pending.clear()
        self._pending_entries.clear()
        self._dirty = True
        self._locked = os.fstat(fd)  # the file as it now ends, for _tail

    def _fsync(self, fd: int) -> None:
        """fsync the file every earlier append went to (older files were synced when left)."""
        appended = self.marks.appended
        os.fsync(fd)
        self._dirty = False
        self.marks.synced = appended

    # -- lines a store's transaction makes durable (see OutboxWrite) ------------------------

    def reserve(self, entries: list[tuple[str, str]]) -> None:
        """Lock the file and chain ``entries`` onto it, without writing them yet.

        They go to one file, rotated first if they would not fit (a batch larger than
        ``max_bytes`` gets a fresh file to itself). The lock stays held until
        :meth:`release` (and after it while lines are pending).
        """
        while True:
            fd = self._acquire()
            try:
                (dev, ino, size), seq, prev = self._tail(fd)
                lines = []
                for ts, body in entries:
                    line = _line(ts, seq + 1, body, prev)
                    lines.append(line)
                    seq, prev = seq + 1, _digest(line)
                lines.append(b"")
                data = b"\n".join(lines)
                if size > 0 and size + len(data) > self.max_bytes:
                    self._rotate(fd)  # unlocks and closes it
                    continue
            except BaseException:
                self.release()
                raise
            key = (dev, ino, size + len(data))
            self._reserved = _Reserved(fd, size, data, (key, seq, prev), entries)
            return

    def write_reserved(self) -> int:
        """Make the reserved lines pending, with the lock held until they are written, or
        append them now if another writer is active (see the class); returns their mark
        for ``marks.synced``. Never fsyncs."""
        reserved, self._reserved = self._reserved, None
        assert reserved is not None
        if not self._pending:
            self._pending_from = reserved.size
        self._pending.append(reserved.data)
        self._pending_entries.extend(reserved.entries)
        self._cache = reserved.cache
        self.marks.appended += 1
        if time.monotonic() < self._shared_until:  # another writer is active
            self._write_pending(reserved.fd)  # (nothing older pends: see _acquire)
        return self.marks.appended

    def release(self) -> None:
        """Drop a reservation (if any), and the file's lock unless lines are pending."""
        self._reserved = None
        if self._pending:
            return
        self._locked = None
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def commit(self, entries: list[tuple[str, str]], fsync: bool) -> None:
        """Chain and append ``entries`` (timestamp, body) after any pending lines,
        rotating as needed."""
        if entries:
            fd = self._acquire()
            try:
                self._write_pending(fd)
                self.append_locked(fd, entries, fsync)
            finally:
                self.release()
        if fsync:
            self.sync()

    def append_locked(self, fd: int, entries: list[tuple[str, str]], fsync: bool) -> int:
        """Append ``entries`` to the file ``fd`` locked by :meth:`_acquire`, rotating to a
        fresh file (and locking it) whenever one is full; returns the file locked last."""
        done = self._append_some(fd, entries, 0, fsync)
        while done < len(entries):
            self._rotate(fd)
            fd = self._acquire()
            done = self._append_some(fd, entries, done, fsync)
        return fd

    def _open(self) -> int:
        _make_dirs(self.path.parent)
        existed = self.path.exists()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        if not existed:
            _fsync_dir(self.path.parent)
        return fd

    def _acquire(self) -> int:
        """The current file, exclusively locked (reopened if another writer rotated it).
        While lines are pending it is still locked: nobody else has appended or rotated."""
        if self._pending:
            assert self._fd is not None
            return self._fd
        while True:
            if self._fd is None:
                self._fd = self._open()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            mine = os.fstat(self._fd)
            try:
                named = os.stat(self.path)
            except FileNotFoundError:
                named = None
            if named is not None and (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino):
                self._locked = mine
                cache = self._cache
                if cache is not None and cache[0] != (mine.st_dev, mine.st_ino, mine.st_size):
                    self._shared_until = time.monotonic() + _SHARED_S  # not our lines
                return self._fd
            self.sync()  # what we wrote there is still ours to make durable
            self.close()
            self._cache = None

    def _append_some(self, fd: int, entries: list[tuple[str, str]], done: int, fsync: bool) -> int:
        """Append as many entries as fit in the locked file; return how many are done."""
        (dev, ino, size), seq, prev = self._tail(fd)
        lines: list[bytes] = []
        used, limit, sha256 = size, self.max_bytes, hashlib.sha256
        for ts, body in entries[done:]:
            line = _line(ts, seq + 1, body, prev)
            if used > 0 and used + len(line) + 1 > limit:
                break
            lines.append(line)
            used += len(line) + 1
            seq, prev = seq + 1, sha256(line).hexdigest()  # _digest, inline: every event
        if lines:
            data = b"\n".join(lines) + b"\n"
            try:
                _write_all(fd, data)
                if fsync or done + len(lines) < len(entries):
                    self._fsync(fd)
                else:
                    self._dirty = True
            except OSError:
                with contextlib.suppress(OSError):  # leave no partial batch behind
                    os.ftruncate(fd, size)
                raise
            self._cache = ((dev, ino, used), seq, prev)
        return done + len(lines)

    def _tail(self, fd: int) -> tuple[tuple[int, int, int], int, str]:
        """((st_dev, st_ino, size), seq, hash) of the file ``_acquire`` locked: where it
        ends once a torn last line is dropped (and pending lines written), and the head of
        its chain."""
        if self._pending:
            assert self._cache is not None  # set with them, and the lock kept it true
            return self._cache
        assert self._locked is not None  # _acquire's fstat: the lock keeps it true
        key = (self._locked.st_dev, self._locked.st_ino, self._repair(fd, self._locked))
        return (key, *self._head(fd, key))

    def _repair(self, fd: int, stat: os.stat_result) -> int:
        """Drop a torn last line (a write that crashed; never acknowledged); return the size."""
        size = stat.st_size
        if self._cache is not None and self._cache[0] == (stat.st_dev, stat.st_ino, size):
            return size  # it ends where our own last append ended, with its newline
        if size and os.pread(fd, 1, size - 1) != b"\n":
            size = _rfind_newline(fd, size) + 1
            os.ftruncate(fd, size)
            self._fsync(fd)
            self._cache = None
        return size

    def _head(self, fd: int, key: tuple[int, int, int]) -> tuple[int, str]:
        """(seq, hash) of the last event in the chain."""
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        size = key[2]
        if size:
            return _head_of(_last_line(fd, size))
        for older in _rotated(self.path):  # a fresh file continues the newest rotated one
            with older.open("rb") as f:
                older_size = os.fstat(f.fileno()).st_size
                if older_size:
                    return _head_of(_last_line(f.fileno(), older_size))
        return 0, GENESIS

    def _rotate(self, fd: int) -> None:
        """Shift ``.N`` to ``.N+1`` and the current file to ``.1`` (under its lock)."""
        self._write_pending(fd)  # chained onto this file, and sized to fit it
        self.sync()
        for older in _rotated(self.path)[::-1]:
            number = int(older.name.rsplit(".", 1)[1])
            os.rename(older, older.with_name(f"{self.path.name}.{number + 1}"))
        os.rename(self.path, self.path.with_name(f"{self.path.name}.1"))
        _fsync_dir(self.path.parent)
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.close()
        self._cache = None  # the fresh file continues the chain from .1 (see _head)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- the writer thread ---------------------------------------------------------------------------


class _Latch:
    """A gate opened once, then passed by any number of waiters: what a batch's waiters
    need of ``threading.Event`` at a fifth of its cost (every persist opens a batch)."""

    __slots__ = ("_gate", "is_open")

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self.is_open = False

    def open(self) -> None:
        if not self.is_open:
            self.is_open = True
            self._gate.release()

    def wait(self) -> None:
        if not self.is_open:
            with self._gate:  # released by open(); each waiter passes it on
                pass


@dataclass(eq=False, slots=True)
class _Batch:
    """Events committed together; everyone waiting on it is woken once."""

    entries: list[tuple[float, Body]] = field(default_factory=list)
    futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )
    fsync: bool = False
    #: Someone waits for this batch (or it is full): write it without lingering.
    urgent: bool = False
    #: When its first event was queued: it is written by this + _LINGER_S at the latest.
    created: float = field(default_factory=time.monotonic)
    #: Why the batch could not be written: (reason, advice), see :func:`_describe`.
    error: Failure | None = None
    done: _Latch = field(default_factory=_Latch)

    def finish(self, error: Failure | None) -> None:
        self.error = error
        self.done.open()
        for loop, future in self.futures:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future[None], error: Failure | None) -> None:
    if future.done():  # the caller was cancelled; the event is still logged
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(AuditLogError(error[0], NOT_LOGGED, error[1]))


# Not frozen (built per write: a frozen constructor costs 4x); treat as immutable.
@dataclass(slots=True)
class AuditEvent:
    """An event validated by :meth:`AuditLogger.prepare`, not yet queued."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditTicket:
    """A staged event's place in the queue; :meth:`AuditLogger.commit` makes it durable."""

    batch: _Batch


@dataclass(eq=False, slots=True)
class OutboxWrite:
    """Audit lines a store's transaction keeps in its outbox (:meth:`AuditLogger.begin`).

    The store inserts :attr:`payload` in the transaction, commits, then calls
    :meth:`finish`. The outbox row keeps the lines durable until the logger's writer has
    appended and fsynced them (a linger later), after which :meth:`durable` is true and
    the store may delete the row.
    """

    logger: AuditLogger
    batch: _Batch | None
    payload: str
    mark: int | None = None  # set once the lines are committed (pending in the sink)

    def finish(self, committed: bool) -> None:
        """After the transaction: leave the lines to the writer if it committed (the
        file's lock stays held for them; with another writer of the file active, they are
        appended now), else write only the events queued before this write (this write's
        own events never happened). Releases the logger's lock. Raises
        :class:`~attune.errors.AuditLogError` with ``committed`` true if lines appended now
        could not be: the write is stored, the committed outbox row keeps the lines for
        :func:`replay_outbox`, and the logger keeps them for its next :meth:`begin`."""
        self.logger._finish_outbox(self, committed)

    def durable(self) -> bool:
        """Whether the log has fsynced the lines, so the outbox row is no longer needed."""
        marks = self.logger._marks
        return self.mark is not None and marks.lost < self.mark <= marks.synced

    def sync(self) -> None:
        """Make the lines durable now (a store closing)."""
        self.logger.flush()


@dataclass(eq=False, slots=True)
class _Worker:
    """One writer thread and the batch it will commit next."""

    thread: threading.Thread | None = None
    batch: _Batch | None = None
    #: close() asked it to write what is queued and end.
    stopping: bool = False
    #: Asleep until notified (no events for a linger period); else it polls.
    idle: bool = False
    #: Lines were appended without fsync (an outbox write): fsync them after a linger.
    unsynced: bool = False
    #: ``time.monotonic()`` when ``unsynced`` last became true.
    unsynced_at: float = 0.0

    def open_batch(self) -> _Batch:
        if self.batch is None:
            self.batch = _Batch()
        return self.batch

    def mark_unsynced(self) -> None:
        if not self.unsynced:
            self.unsynced = True
            self.unsynced_at = time.monotonic()


#: What went wrong with the log, and what to do about it (an :class:`AuditLogError`'s
#: ``reason`` and ``advice``); what became of the operation is said where it is known.
Failure = tuple[str, str]

#: Outcomes, as an :class:`AuditLogError` tells them. Each says what happened to the
#: operation: never "refused" for something that was done.
REFUSED = "the write was refused and nothing was stored"
CALL_REFUSED = "this call was refused: nothing was stored, changed or read"
NOT_LOGGED = "the event was not logged"
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


# -- the logger ----------------------------------------------------------------------------------

_live: weakref.WeakSet[AuditLogger] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Flush every open logger when the interpreter exits."""
    errors = []
    for logger in list(_live):
        try:
            logger.close()
        except SecurityPipelineError as exc:
            errors.append(exc)
    if errors:
        raise ExceptionGroup("audit events could not be written at exit", errors)


def _reset_in_child() -> None:
    """After ``fork``: the parent's writer thread does not exist here, and its locks may
    have been held by a thread that does not either. Events queued in the parent but not
    yet written are the parent's to write; the child starts with none, a new writer, new
    locks and its own file description (``flock`` locks belong to one)."""
    for logger in list(_live):
        logger._lock = threading.RLock()
        logger._cond = threading.Condition(logger._lock)
        logger._sink_lock = threading.Lock()
        logger._worker = None
        logger._unwritten = []  # the parent's to append (twice would duplicate events)
        sink, logger._sink = logger._sink, None
        if sink is not None:
            with contextlib.suppress(OSError):
                sink.close()


os.register_at_fork(after_in_child=_reset_in_child)


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

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            files = "file" if self.files == 1 else "files"
            return f"audit log intact: {self.lines_checked} events in {self.files} {files}"
        where = self.file.name if self.file is not None else "?"
        return f"audit log TAMPERED at {where} line {self.line}: {self.reason}"


class AuditLogger:
    """Append-only, hash-chained audit log of security decisions.

    ``log_file`` defaults to ``$ATTUNE_AUDIT_LOG``, else ``<storage_dir>/audit.jsonl``.
    Nothing is opened until the first event, so constructing does not touch the file.
    With ``sync=True`` (default) :meth:`log` / :meth:`alog` return once the event is
    fsynced; with ``sync=False`` they only queue it, and :meth:`flush` / :meth:`close`
    make it durable. A failed write raises :class:`~attune.errors.AuditLogError` (a
    :class:`SecurityPipelineError`) to its caller (``sync=False``: to the next call).
    After :meth:`close`, logging again starts a new writer, so a closed logger stays
    usable.
    """

    def __init__(
        self,
        log_file: str | Path | None = None,
        *,
        sync: bool = True,
        max_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ConfigurationError("max_bytes of the audit log must be a positive integer")
        self.log_file = _default_path() if log_file is None else Path(log_file)
        self.log_file = self.log_file.expanduser().absolute()
        self.sync = bool(sync)
        self.max_bytes = max_bytes
        # The condition's own lock, taken directly (a C context manager) by the hot path.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._worker: _Worker | None = None
        # The open file, shared by the writer thread and callers that commit in their own
        # thread; whoever holds the lock takes the queued batch and writes it, so batches
        # reach the file in the order they were queued.
        self._sink_lock = threading.Lock()
        self._sink: _Sink | None = None
        self._marks = _SyncMarks()
        self._templates = _ReadTemplates()
        #: Events nobody waited for (reads; with sync=False, all) whose write failed, not
        #: yet reported, and why they failed: the next call raises it.
        self._lost = 0
        self._lost_failure: Failure = ("", "")
        #: Pending outbox lines that could not be written (their rows keep them), not yet
        #: reported: the next call raises it.
        self._failure: Failure | None = None
        #: Entries of committed outbox lines that could not be appended (their rows keep
        #: them too): the next :meth:`begin` appends them first, or refuses its write.
        self._unwritten: list[tuple[str, str]] = []
        self._last_ts = 0.0
        _live.add(self)

    # -- writing ----------------------------------------------------------------------------

    def log(
        self,
        event: str,
        *,
        user_id: str,
        tier: str,
        target_id: str | None = None,
        classification: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one event (blocks until durable when ``sync=True``).

        The calling thread writes the queued batch itself when no writer is busy with it:
        no hand-off to the writer thread and back.
        """
        body = self._templates.body(
            event, user_id, tier, target_id, classification, outcome, details
        )
        ticket = AuditTicket(self._enqueue(body))
        if self.sync:
            self.commit(ticket)

    def prepare(
        self,
        event: str,
        *,
        user_id: str,
        tier: str,
        target_id: str | None = None,
        classification: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Validate an event now, to :meth:`stage` later: a bad event fails its caller
        before the operation it records has happened."""
        return AuditEvent(
            _event_fields(event, user_id, tier, target_id, classification, outcome, details)
        )

    def queue(
        self,
        event: str,
        *,
        user_id: str,
        tier: str,
        target_id: str | None = None,
        classification: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Validate and queue one event without waiting for it: a read's, or a decision a
        later durable event of the same operation covers (the writer keeps order). Plain
        call, no ticket: every audited read pays for this."""
        body = self._templates.body(
            event, user_id, tier, target_id, classification, outcome, details
        )
        self._enqueue(body)

    def queue_read(
        self,
        event: str,
        user_id: str,
        tier: str,
        target_id: str,
        classification: str | None,
    ) -> None:
        """:meth:`queue` for a successful read's event (outcome ``success``, no details),
        with positional arguments: every audited read pays for this call."""
        self._enqueue(
            self._templates.body(event, user_id, tier, target_id, classification, "success", None)
        )

    def stage(self, event: AuditEvent, *, report: bool = True) -> AuditTicket:
        """Queue a prepared event behind everything queued so far; :meth:`commit` the
        ticket to make it durable. Thread-safe. ``report=False`` leaves an earlier failure
        (see :meth:`report_failures`) for a later call: for an event whose operation is
        done already, which must not be told it was refused."""
        return AuditTicket(self._enqueue(event.fields, report=report))

    def commit(self, ticket: AuditTicket) -> None:
        """Block until the ticket's events are written (and fsynced when ``sync=True``).

        If no writer has taken them yet, this thread writes the whole queued batch itself;
        tickets of one batch share that write and fsync. For threads that may block, never
        an event loop's. Raises :class:`SecurityPipelineError` if the write failed.
        """
        batch = ticket.batch
        if not batch.done.is_open:
            with self._sink_lock:
                with self._cond:
                    worker = self._worker
                    mine = worker is not None and worker.batch is batch
                    if mine:
                        assert worker is not None
                        worker.batch = None
                    elif not batch.done.is_open:  # a stopping writer still owns it
                        batch.urgent = True
                        self._cond.notify_all()
                if mine:
                    batch.fsync = batch.fsync or self.sync
                    batch.urgent = True  # waited for: a failure is told here (see _write)
                    self._write(batch)
        self._finish_wait(batch)

    async def alog(
        self,
        event: str,
        *,
        user_id: str,
        tier: str,
        target_id: str | None = None,
        classification: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
        wait: bool = True,
    ) -> None:
        """Like :meth:`log`, awaiting durability without blocking the event loop.

        ``wait=False`` only queues the event: for a decision that a later event of the
        same operation follows, whose durability then covers it (the writer keeps order).
        """
        body = self._templates.body(
            event, user_id, tier, target_id, classification, outcome, details
        )
        if not (self.sync and wait):
            self._enqueue(body)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._submit(body, (loop, future), urgent=True)
        await future

    def flush(self) -> None:
        """Wait until everything queued so far is written and fsynced."""
        with self._cond:
            worker = self._worker
            batch = None
            if worker is not None:
                batch = worker.open_batch()
                batch.fsync = batch.urgent = True
                self._cond.notify_all()
        if batch is not None:
            self._finish_wait(batch)

    def close(self) -> None:
        """Flush, then stop the writer thread. Idempotent; a later event starts a new one."""
        with self._cond:
            worker, self._worker = self._worker, None
            batch = None
            if worker is not None:
                batch = worker.open_batch()
                batch.fsync = batch.urgent = worker.stopping = True
                self._cond.notify_all()
        if worker is not None and worker.thread is not None:
            worker.thread.join()
        with self._sink_lock:
            if self._sink is not None:
                self._sync_sink()  # outbox lines pending since the writer's last write
                self._sink.close()
                self._sink = None
        if batch is not None:
            self._finish_wait(batch)

    def _finish_wait(self, batch: _Batch) -> None:
        batch.done.wait()
        with self._cond:
            lost, self._lost = self._lost, 0
            failure, self._failure = self._failure, None
        if batch.error is not None:
            raise AuditLogError(batch.error[0], NOT_LOGGED, batch.error[1])
        if lost:  # this call's own events were written
            failure = _lost_events(lost, self._lost_failure)
        if failure is not None:
            raise AuditLogError(failure[0], "this call's own events were logged", failure[1])

    def report_failures(self) -> None:
        """Raise, once, a failure to write events that nobody waited for (reads, and with
        ``sync=False`` every event), or to append committed outbox lines: the call it
        interrupts is refused (:class:`~attune.errors.AuditLogError`). Nothing to do, and
        no lock taken, when there is none."""
        if self._lost or self._failure is not None:
            with self._cond:
                self._raise_unreported()

    def _raise_unreported(self) -> None:
        """(``_cond`` held) Raise, once, a failure not yet reported."""
        if self._lost:
            lost, self._lost = self._lost, 0
            failure = _lost_events(lost, self._lost_failure)
            raise AuditLogError(failure[0], CALL_REFUSED, failure[1])
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise AuditLogError(failure[0], CALL_REFUSED, failure[1])

    def _submit(
        self,
        body: Body,
        future: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None,
        *,
        urgent: bool,
        report: bool = True,
    ) -> _Batch:
        """Queue one event. ``urgent``: someone waits for it, write the batch now; else the
        writer lingers up to ``_LINGER_S`` (or ``_LINGER_EVENTS``) to share one write.
        Events nobody waits for go through :meth:`_enqueue`, which falls back to this."""
        with self._cond:
            if report:
                self._raise_unreported()
            worker = self._running_worker()
            fresh = worker.batch is None
            batch = worker.open_batch()
            # Taken under the lock, so timestamps never go backwards within a logger.
            ts = max(time.time(), self._last_ts)
            self._last_ts = ts
            batch.entries.append((ts, body))
            if future is not None:
                batch.futures.append(future)
            batch.fsync = batch.fsync or self.sync
            batch.urgent = batch.urgent or urgent or len(batch.entries) >= _LINGER_EVENTS
            # Wake the writer if someone waits, or if it sleeps without a timeout (after a
            # quiet period); a polling writer finds the batch by its deadline on its own.
            if batch.urgent or (fresh and worker.idle):
                self._cond.notify_all()
            return batch

    def _enqueue(self, body: Body, *, report: bool = True) -> _Batch:
        """Queue one event nobody waits for. Every audited read comes here: while the
        writer has a batch open (it polls for one), joining it takes the lock for an
        append and nothing more; else :meth:`_submit` opens one (and starts the writer)."""
        with self._lock:
            worker = self._worker
            batch = None if worker is None else worker.batch
            if batch is not None and not self._lost and self._failure is None:
                ts = time.time()
                if ts < self._last_ts:  # taken under the lock: never going backwards
                    ts = self._last_ts
                self._last_ts = ts
                entries = batch.entries
                entries.append((ts, body))
                if self.sync:
                    batch.fsync = True
                if len(entries) >= _LINGER_EVENTS and not batch.urgent:
                    batch.urgent = True
                    self._cond.notify_all()
                return batch
        return self._submit(body, None, urgent=False, report=report)

    def _running_worker(self) -> _Worker:
        """The writer thread, started on first use (called with ``_cond`` held). A writer
        that ends, even by a bug, detaches itself (:meth:`_run`), and a forked child
        starts afresh (:func:`_reset_in_child`): a set ``_worker`` is a live one."""
        worker = self._worker
        if worker is None:
            worker = _Worker()
            worker.thread = threading.Thread(
                target=self._run, args=(worker,), name="attune-audit-writer", daemon=True
            )
            worker.thread.start()
            self._worker = worker
        return worker

    def _run(self, worker: _Worker) -> None:
        try:
            self._serve(worker)
        finally:
            with self._cond:  # ended by a bug: let the next event start a new writer
                if self._worker is worker:
                    self._worker = None

    def _serve(self, worker: _Worker) -> None:
        while True:
            with self._cond:
                while not worker.stopping:
                    batch = worker.batch
                    if batch is None and not worker.unsynced:
                        # Poll for one linger period (events tend to keep coming, and then
                        # submitters need not wake this thread); after a quiet one, sleep.
                        quiet = not self._cond.wait(timeout=_LINGER_S)
                        if quiet and worker.batch is None and not worker.unsynced:
                            worker.idle = True
                            self._cond.wait()
                            worker.idle = False
                        continue
                    if batch is not None and batch.urgent:
                        break  # someone waits for it, or it is full: write it now
                    # Due a linger after the batch's first event or after the oldest
                    # outbox line left to this thread (pending, or appended without fsync:
                    # its row and the file's lock wait for it), even while events keep
                    # coming.
                    due = min(
                        batch.created if batch is not None else math.inf,
                        worker.unsynced_at if worker.unsynced else math.inf,
                    )
                    remaining = due + _LINGER_S - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(timeout=remaining)
            with self._sink_lock:
                with self._cond:
                    batch, worker.batch = worker.batch, None
                    stopping = worker.stopping
                    unsynced, worker.unsynced = worker.unsynced, False
                if batch is not None:  # else a caller's commit() took it meanwhile
                    self._write(batch)
                if unsynced:
                    self._sync_sink()
            if stopping:
                return

    def _sync_sink(self) -> None:
        """Write pending outbox lines and fsync them (``_sink_lock`` held); a failure
        leaves their outbox rows for the next store to replay, and is reported to the
        logger's next call."""
        if self._sink is None:
            return
        try:
            self._sink.sync()
        except OSError as exc:
            self._reset_sink(exc)

    def _reset_sink(self, exc: Exception, *, report: bool = True) -> None:
        """Forget the sink's file after ``exc`` (``_sink_lock`` held). Pending outbox lines
        it could not write are left to their rows, kept for the next :meth:`begin` to
        append (until then it refuses writes), and (``report``) the next call is told."""
        assert self._sink is not None
        dropped = self._sink.reset()
        if dropped:
            self._unwritten.extend(dropped)
            if report:
                with self._cond:
                    self._failure = _pending_lost(_describe(self.log_file, exc))

    # -- lines kept in a store's outbox ------------------------------------------------------

    def begin(self, events: list[AuditEvent]) -> OutboxWrite:
        """Start writing ``events`` (and everything queued before them) for a store whose
        transaction will keep them, as :attr:`OutboxWrite.payload`, in an outbox table.

        Holds this logger and the file's lock until :meth:`OutboxWrite.finish`: call it
        right after the transaction's ``COMMIT`` (or its failure), from the same thread.
        Anyone who takes the file's lock therefore finds each committed outbox row's
        lines in the log, or its writer dead; :func:`replay_outbox` relies on that.

        This is where the log's health is checked before the store's ``COMMIT``: the lock
        is taken and the tail read (a garbled last line or a file that cannot be opened
        fails here), and lines of earlier writes that could not be appended after their
        commit (a full disk) are appended first, with an fsync. If any of that fails it
        raises :class:`~attune.errors.AuditLogError` saying the write was refused and
        nothing stored: the store must then not commit the records these events describe.
        """
        self._sink_lock.acquire()
        batch = None
        try:
            with self._cond:
                worker = self._running_worker()
                batch, worker.batch = worker.batch, None
                entries = list(batch.entries) if batch is not None else []
                for event in events:
                    ts = max(time.time(), self._last_ts)
                    self._last_ts = ts
                    entries.append((ts, event.fields))
            if self._sink is None:
                self._sink = _Sink(self.log_file, self.max_bytes, self._marks)
            encoded = _encode(entries)
            try:
                if self._unwritten:  # the log failed after earlier commits: catch up first
                    self._append_unwritten()
                self._sink.reserve(encoded)
            except Exception as exc:
                self._reset_sink(exc)
                with self._cond:  # the caller hears of the failure: nothing is left unreported
                    self._lost = 0
                reason, advice = _describe(self.log_file, exc)
                raise AuditLogError(reason, REFUSED, advice) from None
        except BaseException:
            try:
                if batch is not None:  # the events queued before: written as if never taken
                    batch.urgent = True  # (the caller hears of a failure: not "lost" too)
                    self._write(batch)
            finally:
                self._sink_lock.release()
            raise
        return OutboxWrite(self, batch, _outbox_payload(self.log_file, encoded))

    @property
    def held_events(self) -> int:
        """Events of committed writes that could not be appended yet (their store's outbox
        keeps them; the next write, :meth:`check` or a reopened store appends them)."""
        return len(self._unwritten)

    def check(self) -> None:
        """Raise :class:`~attune.errors.AuditLogError` (the call refused) unless the log can
        be extended now: for an operation whose event can only be written after it ran
        (a delete), to be refused before it runs. Locks the file and reads its tail (a
        garbled last line, a file that cannot be opened fail here) and appends lines
        kept from a failed append first (see :meth:`begin`); a full disk is found only by
        writing, so it can still fail the event afterwards. Blocks on the disk."""
        with self._sink_lock:
            if self._sink is None:
                self._sink = _Sink(self.log_file, self.max_bytes, self._marks)
            try:
                if self._unwritten:
                    self._append_unwritten()
                fd = self._sink._acquire()
                try:
                    self._sink._tail(fd)
                finally:
                    self._sink.release()
            except Exception as exc:
                self._reset_sink(exc)
                reason, advice = _describe(self.log_file, exc)
                raise AuditLogError(reason, CALL_REFUSED, advice) from None

    def _append_unwritten(self) -> None:
        """Append and fsync the lines of committed outbox writes that could not be
        appended (``_sink_lock`` held). Until this succeeds :meth:`begin` refuses writes,
        so a log that failed (a full disk) stores nothing new until it has caught up. Their
        outbox rows stay until the store next opens, whose replay finds these lines."""
        sink = self._sink
        assert sink is not None
        fd = sink._acquire()
        try:
            sink._write_pending(fd)
            sink.append_locked(fd, self._unwritten, True)
        finally:
            sink.release()
        self._unwritten.clear()

    def _finish_outbox(self, write: OutboxWrite, committed: bool) -> None:
        """See :meth:`OutboxWrite.finish` (``_sink_lock`` held, released here)."""
        sink, batch, error = self._sink, write.batch, None
        assert sink is not None  # begin() made it, and the lock kept it
        try:
            if committed:
                # Pending (or, with another writer active, appended now): the writer
                # appends them a linger later with the lines of the writes committed
                # meanwhile, and fsyncs them (see _Sink).
                try:
                    write.mark = sink.write_reserved()
                except OSError as exc:
                    # Committed: the outbox row holds the lines, and so does this logger,
                    # whose next begin() appends them (or refuses its write). The caller
                    # is told the write was stored, never that it was refused.
                    self._reset_sink(exc, report=False)
                    error = _describe(self.log_file, exc)
                else:
                    sink.release()
                    with self._cond:
                        worker = self._running_worker()
                        worker.mark_unsynced()
                        if worker.idle:
                            self._cond.notify_all()
                if batch is not None:  # committed with the outbox row: durable
                    batch.finish(error)
            else:
                sink.release()
                if batch is not None:  # the others' events: written as if never taken
                    batch.fsync = batch.fsync or self.sync
                    self._write(batch)
        finally:
            self._sink_lock.release()
        if error is not None:
            raise AuditLogError(error[0], HELD, error[1], committed=True)

    def _write(self, batch: _Batch) -> None:
        """Append a taken batch and wake everyone waiting on it (``_sink_lock`` held)."""
        if self._sink is None:
            self._sink = _Sink(self.log_file, self.max_bytes, self._marks)
        error = None
        try:
            self._sink.commit(_encode(batch.entries), batch.fsync)
        except Exception as exc:
            error = _describe(self.log_file, exc)
            self._reset_sink(exc)
            if not self.sync or not batch.urgent:
                # Nobody waits for these events (reads'; with sync=False, every one): the
                # next call is told, and refused (an audited read is never served unlogged
                # without someone hearing of it).
                with self._cond:
                    self._lost += len(batch.entries)
                    self._lost_failure = error
        batch.finish(error)

    def _replay(self, entries: list[tuple[str, str]]) -> None:
        """Append the entries (timestamp text, body) whose lines the log lacks, then make
        them all durable; under the file's lock, so concurrent replays add each line once."""
        with self._sink_lock:
            if self._sink is None:
                self._sink = _Sink(self.log_file, self.max_bytes, self._marks)
            sink = self._sink
            fd = sink._acquire()
            try:
                sink._write_pending(fd)  # the log as it stands, before looking for lines
                missing = _missing_lines(self.log_file, entries)
                if missing:
                    fd = sink.append_locked(fd, missing, True)
                sink._fsync(fd)  # lines another writer appended, found but maybe unsynced
            except Exception as exc:
                self._reset_sink(exc)
                reason, advice = _describe(self.log_file, exc)
                raise AuditLogError(reason, NOT_REPLAYED, advice) from None
            finally:
                sink.release()

    # -- reading ----------------------------------------------------------------------------

    def files(self) -> list[Path]:
        """The log's files, oldest first (rotated ``.N`` ... ``.1``, then the current one)."""
        current = [self.log_file] if self.log_file.exists() else []
        return _rotated(self.log_file)[::-1] + current

    def verify(self, *, allow_pruned: bool = False) -> VerifyResult:
        """Recompute the hash chain over every file and report the first problem.

        ``allow_pruned=True`` accepts a log whose oldest files were deleted: the first
        remaining line is trusted as the start of the chain. This logger's queued events
        are written first; other loggers' (other processes') only once they flush.
        """
        self._flush_pending()
        try:
            with self._read_lock():
                return _verify(self.files(), allow_pruned)
        except OSError as exc:
            raise _unreadable(self.log_file, exc, "it was not verified") from None

    def query(
        self,
        *,
        event_type: str | None = None,
        user_id: str | None = None,
        since: datetime | str | None = None,
        outcome: str | None = None,
        target_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Events matching every filter given, oldest first, across rotated files.

        ``since`` keeps events at or after that time (a naive datetime is UTC);
        ``limit`` keeps the most recent matches. Lines that are not valid events are
        skipped (:meth:`verify` reports them).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValidationError("limit must be a non-negative integer")
        if limit is not None and limit < 0:
            raise ValidationError("limit must be a non-negative integer")
        wanted = {
            "event": event_type,
            "user_id": user_id,
            "outcome": outcome,
            "target_id": target_id,
        }
        wanted = {k: v for k, v in wanted.items() if v is not None}
        after = None if since is None else _utc_text(since)
        self._flush_pending()
        found: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
        try:
            with self._read_lock():
                for _path, _number, raw in _lines(self.files()):
                    record = _record(raw)
                    if record is None or any(record.get(k) != v for k, v in wanted.items()):
                        continue
                    if after is None or str(record.get("ts", "")) >= after:
                        found.append(record)
        except OSError as exc:
            raise _unreadable(self.log_file, exc, "nothing was returned") from None
        return list(found)

    def _flush_pending(self) -> None:
        """Write this logger's queued events, so a read sees everything logged before it."""
        with self._cond:
            idle = self._worker is None
        if not idle:
            self.flush()

    @contextlib.contextmanager
    def _read_lock(self) -> Iterator[None]:
        """Hold a shared lock on the current file so no writer appends or rotates meanwhile."""
        while True:
            try:
                fd = os.open(self.log_file, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                yield
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                mine = os.fstat(fd)
                try:
                    named = os.stat(self.log_file)
                except FileNotFoundError:
                    continue
                if (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino):
                    yield
                    return
            finally:
                os.close(fd)


def _default_path() -> Path:
    from_env = os.environ.get("ATTUNE_AUDIT_LOG")
    if from_env:
        return Path(from_env)
    return MemoryConfig().ensure_storage_dir() / "audit.jsonl"


def _unreadable(path: Path, exc: OSError, outcome: str) -> AuditLogError:
    why = exc.strerror or type(exc).__name__
    return AuditLogError(
        f"the audit log {path} could not be read ({why})",
        outcome,
        "Check that it is a file and the permissions of it and its directory.",
    )


def _record(raw: bytes) -> dict[str, Any] | None:
    if not raw.endswith(b"\n") or _parse(raw[:-1]) is None:
        return None
    record: dict[str, Any] = json.loads(raw)
    return record


# -- outbox replay -------------------------------------------------------------------------------


def replay_outbox(payloads: list[str]) -> None:
    """Make the audit lines kept in a store's outbox rows durable in their logs.

    For each row's log: append the lines it lacks (their writer died between its
    ``COMMIT`` and its append, or the machine lost the log's unsynced tail), chained
    after the current head and stamped with their original time, then fsync. Lines
    already there are not repeated. The store deletes the rows once this returned.
    Raises :class:`SecurityPipelineError` for a log it cannot write or a row it cannot read.
    """
    by_log: dict[str, list[tuple[str, str]]] = {}
    for payload in payloads:
        log, entries = _outbox_entries(payload)
        by_log.setdefault(log, []).extend(entries)
    for log, entries in by_log.items():
        logger = AuditLogger(log)
        try:
            logger._replay(entries)
        finally:
            logger.close()


def _outbox_payload(log_file: Path, entries: list[tuple[str, str]]) -> str:
    """An outbox row: the log's path as a JSON string, then one ``<ts> <body>`` per line
    (a body is one line of ASCII JSON; a timestamp has no space)."""
    lines = [f"{ts} {body}" for ts, body in entries]
    return "\n".join([_compact_ascii_json(str(log_file)), *lines])


def _outbox_entries(payload: str) -> tuple[str, list[tuple[str, str]]]:
    try:
        head, *lines = payload.split("\n")
        log = json.loads(head)
        entries = [(ts, body) for ts, body in (line.split(" ", 1) for line in lines)]
        datetime.strptime(min(ts for ts, _ in entries), _TS_FORMAT)
    except (ValueError, TypeError):
        raise SecurityPipelineError(
            "an audit outbox row of the long-term store is not readable, so its audit "
            "events cannot be replayed; restore patterns.db from a backup"
        ) from None
    if not isinstance(log, str) or not Path(log).is_absolute():
        raise SecurityPipelineError("an audit outbox row names no absolute audit log path")
    return log, entries


def _missing_lines(log_file: Path, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The entries whose line is in none of the log's files, in their order. Files holding
    some of them are fsynced (a live writer may not have yet). Only files written to
    after the oldest entry's time are read."""
    wanted = set(entries)
    oldest = min(ts for ts, _ in entries)
    since = datetime.strptime(oldest, _TS_FORMAT).replace(tzinfo=UTC).timestamp() - 2.0
    for path in [log_file, *_rotated(log_file)]:
        if not wanted:
            break
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            if os.fstat(handle.fileno()).st_mtime < since:
                break  # neither this file nor an older one was written after the entries
            found = False
            for raw in handle:
                entry = _entry_of(raw, oldest)
                if entry is not None and entry in wanted:
                    wanted.discard(entry)
                    found = True
            if found:
                os.fsync(handle.fileno())
    return [entry for entry in entries if entry in wanted]


def _entry_of(raw: bytes, oldest: str) -> tuple[str, str] | None:
    """(timestamp text, body) of a log line stamped at or after ``oldest``, else None."""
    if not raw.startswith(b'{"ts":"'):
        return None
    line = raw.rstrip(b"\n").decode("ascii", "replace")
    end = line.find('"', 7)
    ts = line[7:end]
    if ts < oldest or not line.startswith(',"seq":', end + 1):
        return None
    start = line.find(",", end + 8) + 1
    stop = line.rfind(',"prev":"')
    if start <= 0 or stop < start:
        return None
    return ts, line[start:stop]


# -- verification --------------------------------------------------------------------------------


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


def _verify(files: list[Path], allow_pruned: bool) -> VerifyResult:
    checked = 0
    expected_seq: int | None = None if allow_pruned else 1
    expected_prev: str | None = None if allow_pruned else GENESIS
    previous: tuple[Path, int] | None = None
    lines = _lines(files)
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
        if reason is not None or parsed is None:
            return VerifyResult(False, checked, where[0], where[1], reason, len(files))
        checked += 1
        expected_seq, expected_prev = parsed[0] + 1, _digest(raw[:-1])
        previous = where
        current = upcoming
    return VerifyResult(True, checked, files=len(files), head=expected_prev)


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


def _chains_from(line: bytes, seq: int, upcoming: tuple[Path, int, bytes] | None) -> bool:
    """Whether the next line links to ``line``: then ``line`` is genuine and the one
    before it was altered. A last line gets the benefit of the doubt likewise."""
    if upcoming is None:
        return True
    after = _parse(upcoming[2][:-1]) if upcoming[2].endswith(b"\n") else None
    return after is not None and after == (seq + 1, _digest(line))
