"""Following the audit log (``attune audit tail --follow``): every event written after the
follower started, each handed on once and in ``seq`` order, however many arrive between two
looks.

The follower reads forward from the last event it printed, at most :data:`PAGE` events at
a time (its memory bound), and reads the next page at once while a page comes back full;
only once it has caught up does it wait :data:`POLL_S` before looking again.

- A log file (:class:`FilePages`) is read on from where the last page ended: the file,
  known by its inode (a rotation renames it to ``.1``: it is finished before the fresh
  one), and the offset past its last complete line (a line still being written is read
  once it is complete). Each page is read under the readers' shared lock, so no writer
  rotates meanwhile. Without a known place (the first look, or its file deleted) the
  files are read from the newest one that starts at or before the next ``seq``; lines up
  to the last printed ``seq`` are skipped.
- The database's table (:class:`TablePages`) is read by ``seq``, on one connection.

Lines that are not audit events are skipped, as ``audit query`` skips them (``audit
verify`` reports them).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from attune.memory.security.audit.codec import _record
from attune.memory.security.audit.failures import _unreadable
from attune.memory.security.audit.files import _read_lock

if TYPE_CHECKING:
    import asyncpg

    from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger
    from attune.memory.security.audit import AuditLogger

#: Events read (and printed) at a time: what the follower holds at most.
PAGE = 1000
#: How long the follower waits, once it has caught up, before it looks again.
POLL_S = 0.5
#: What became of the command when the log could not be read.
_STOPPED = "following stopped"

Event = dict[str, Any]


class Pages(Protocol):
    """A log read forward: the events after :attr:`after`, a page at a time."""

    #: The ``seq`` of the last event read.
    after: int

    def next(self, size: int) -> tuple[list[Event], bool]:
        """Up to ``size`` events after :attr:`after`, in ``seq`` order (advancing it), and
        whether more may be there already (a full page was read)."""
        ...

    def close(self) -> None: ...


def follow(pages: Pages, emit: Callable[[list[Event]], None]) -> NoReturn:
    """Hand every new event to ``emit``, a page at a time, until interrupted (Ctrl-C:
    :class:`KeyboardInterrupt`)."""
    while True:
        events, more = pages.next(PAGE)
        if events:
            emit(events)
        if not more:
            _idle()


def _idle() -> None:
    """The wait between two looks at a log that had nothing more."""
    time.sleep(POLL_S)


class FilePages:
    """A log file and its rotated files, read forward (see the module)."""

    def __init__(self, log: AuditLogger, after: int) -> None:
        self._log = log
        self.after = after
        #: (st_dev, st_ino, offset) just past the last line read; None: nothing read yet.
        self._mark: tuple[int, int, int] | None = None

    def next(self, size: int) -> tuple[list[Event], bool]:
        found: list[Event] = []
        try:
            with _read_lock(self._log.log_file):
                files = self._log.files()
                first, offset = self._resume(files)
                for path in files[first:]:
                    if self._read(path, offset, found, size):
                        return found, True
                    offset = 0
        except OSError as exc:
            raise _unreadable(self._log.log_file, exc, _STOPPED) from None
        return found, False

    def close(self) -> None:
        """Nothing to close: each page opens and closes its files."""

    def _resume(self, files: list[Path]) -> tuple[int, int]:
        """Where to read on: the index in ``files`` and the offset in that file."""
        if self._mark is not None:
            device, inode, offset = self._mark
            for index, path in enumerate(files):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if (stat.st_dev, stat.st_ino) == (device, inode):
                    return index, offset
        # No known place: the newest file that starts at or before the next seq wanted.
        for index in range(len(files) - 1, 0, -1):
            first = _first_seq(files[index])
            if first is not None and first <= self.after + 1:
                return index, 0
        return 0, 0

    def _read(self, path: Path, offset: int, found: list[Event], size: int) -> bool:
        """Add the events of ``path`` after :attr:`after`, from ``offset``, to ``found``
        until it holds ``size``; whether it does."""
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # deleted since it was listed (old files pruned)
            return False
        with handle:
            stat = os.fstat(handle.fileno())
            position = offset if offset <= stat.st_size else 0  # else rewritten: from its start
            handle.seek(position)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # still being written (or torn): read once it is complete
                position += len(raw)
                self._mark = (stat.st_dev, stat.st_ino, position)
                event = _record(raw)
                if event is None or event["seq"] <= self.after:
                    continue
                found.append(event)
                self.after = event["seq"]
                if len(found) >= size:
                    return True
        return False


def _first_seq(path: Path) -> int | None:
    """The ``seq`` of a file's first line, if it is an audit event."""
    try:
        with path.open("rb") as handle:
            event = _record(handle.readline())
    except FileNotFoundError:
        return None
    return None if event is None else int(event["seq"])


class TablePages:
    """The database's ``audit_events`` table, read forward by ``seq`` on one connection."""

    def __init__(self, log: DatabaseAuditLogger, after: int) -> None:
        from attune.memory.long_term.postgres_audit_sink import TableSink

        self._log = log
        self._sink = TableSink(log.dsn, log.connect_timeout_s)
        self._conn: asyncpg.Connection | None = None
        self.after = after

    def next(self, size: int) -> tuple[list[Event], bool]:
        from attune.memory.long_term import postgres_audit

        try:
            if self._conn is None:
                self._conn = self._sink.run(self._sink.connect)
            conn, after = self._conn, self.after
            rows = self._sink.run(lambda: postgres_audit.page(conn, after, size))
        except Exception as exc:
            raise self._log.unreadable(exc, _STOPPED) from None
        found: list[Event] = []
        for seq, line in rows:
            self.after = seq
            event = _record(line.encode("ascii", "replace") + b"\n")
            if event is not None:
                found.append(event)
        return found, len(rows) >= size

    def close(self) -> None:
        from attune.memory.long_term.postgres_audit_sink import quietly_close

        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                with contextlib.suppress(Exception):  # Ctrl-C may have cut a read short
                    self._sink.run(lambda: quietly_close(conn))
        finally:
            self._sink.close()
