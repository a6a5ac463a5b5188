"""The sink: appending chained lines to the log's current file under an exclusive ``flock``.

:class:`_Sink` appends chained lines (built by :mod:`.codec`) to the current file: it locks
the file, drops a torn last line (a write that crashed, never acknowledged), reads the
chain head from the file's tail (or, for a fresh file, from the newest rotated one), and
appends a whole batch with one ``write``. When a file would exceed ``max_bytes`` it is
renamed to ``.1`` (older ones shift to ``.2``...) and the chain continues in a fresh file;
rotated files are never deleted. Several processes (or several loggers) appending to one
file keep one valid chain, since each reads the real head under the lock. It also holds
an outbox write's lines between the store's COMMIT and their append (``reserve``,
``write_reserved``, pending lines), and counts appends not yet fsynced (:class:`_SyncMarks`).

What it does to the files, apart from its own state (rotated names and their shift, the
last line, torn-line repair, directories, the readers' shared lock), is :mod:`.files`.
The sink itself stays one class: its lock, pending lines, cached head and fsync marks
are one state every method reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attune.memory.security.audit.codec import _chain_hash, _digest, _line
from attune.memory.security.audit.files import (
    _chain_head,
    _drop_torn_line,
    _fsync_dir,
    _make_dirs,
    _shift_rotated,
)

#: Once another writer's lines are seen in the log, outbox lines are appended at once
#: (not held pending, see :class:`_Sink`) until it has been quiet this long.
_SHARED_S = 1.0


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
    waits for: a stall until the writer thread appends. So once :meth:`acquire` finds lines
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
        self._locked: os.stat_result | None = None  # fstat of the file as acquire locked it
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
            fd = self.acquire()
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
            self._write_pending(reserved.fd)  # (nothing older pends: see acquire)
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
            fd = self.acquire()
            try:
                self._write_pending(fd)
                self.append_locked(fd, entries, fsync)
            finally:
                self.release()
        if fsync:
            self.sync()

    def append_locked(self, fd: int, entries: list[tuple[str, str]], fsync: bool) -> int:
        """Append ``entries`` to the file ``fd`` locked by :meth:`acquire`, rotating to a
        fresh file (and locking it) whenever one is full; returns the file locked last."""
        done = self._append_some(fd, entries, 0, fsync)
        while done < len(entries):
            self._rotate(fd)
            fd = self.acquire()
            done = self._append_some(fd, entries, done, fsync)
        return fd

    def check(self) -> None:
        """Lock the file and read its chain head, then let go: raises if the log cannot be
        extended now (a garbled last line, a file that cannot be opened)."""
        fd = self.acquire()
        try:
            self._tail(fd)
        finally:
            self.release()

    def append_missing(self, fd: int, missing: Callable[[], list[tuple[str, str]]]) -> None:
        """Append the entries ``missing()`` finds the log lacks to the file ``fd`` locked by
        :meth:`acquire` (pending lines written first, so it sees the log as it stands),
        then fsync (lines another writer appended, found there, may not be yet). Under
        the lock, so concurrent replays add each line once; the caller releases it."""
        self._write_pending(fd)
        entries = missing()
        if entries:
            fd = self.append_locked(fd, entries, True)
        self._fsync(fd)

    def _open(self) -> int:
        _make_dirs(self.path.parent)
        existed = self.path.exists()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        if not existed:
            _fsync_dir(self.path.parent)
        return fd

    def acquire(self) -> int:
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
        used, limit, sha256 = size, self.max_bytes, _chain_hash
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
        """((st_dev, st_ino, size), seq, hash) of the file ``acquire`` locked: where it
        ends once a torn last line is dropped (and pending lines written), and the head of
        its chain."""
        if self._pending:
            assert self._cache is not None  # set with them, and the lock kept it true
            return self._cache
        assert self._locked is not None  # acquire's fstat: the lock keeps it true
        key = (self._locked.st_dev, self._locked.st_ino, self._repair(fd, self._locked))
        return (key, *self._head(fd, key))

    def _repair(self, fd: int, stat: os.stat_result) -> int:
        """Drop a torn last line (a write that crashed; never acknowledged); return the size."""
        size = stat.st_size
        if self._cache is not None and self._cache[0] == (stat.st_dev, stat.st_ino, size):
            return size  # it ends where our own last append ended, with its newline
        repaired = _drop_torn_line(fd, size)
        if repaired != size:
            self._fsync(fd)
            self._cache = None
        return repaired

    def _head(self, fd: int, key: tuple[int, int, int]) -> tuple[int, str]:
        """(seq, hash) of the last event in the chain."""
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        return _chain_head(fd, key[2], self.path)

    def _rotate(self, fd: int) -> None:
        """Shift ``.N`` to ``.N+1`` and the current file to ``.1`` (under its lock)."""
        self._write_pending(fd)  # chained onto this file, and sized to fit it
        self.sync()
        _shift_rotated(self.path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.close()
        self._cache = None  # the fresh file continues the chain from .1 (see _head)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
