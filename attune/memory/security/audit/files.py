"""The log's files as the file system holds them, apart from any writer.

The current file and its rotated predecessors (``.1`` newest, then ``.2``...:
:func:`_rotated`, and :func:`_shift_rotated`, which makes room for a fresh file); reading
a file from its end (:func:`_last_line`, and :func:`_chain_head`, the chain head a file
continues: its own last line's, else the newest rotated file's); dropping a torn last
line (:func:`_drop_torn_line`); owner-only directories and their fsync; and the shared
lock readers hold (:func:`_read_lock`). The sink that appends under the exclusive lock
is :mod:`.logfile`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from attune.memory.security.audit.codec import GENESIS, _head_of

_TAIL_CHUNK = 4096


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


def _chain_head(fd: int, size: int, path: Path) -> tuple[int, str]:
    """(seq, hash) of the last event of the chain the file ``fd`` (``size`` bytes, at
    ``path``) continues: its last line's; for an empty file, the newest rotated file's."""
    if size:
        return _head_of(_last_line(fd, size))
    for older in _rotated(path):  # a fresh file continues the newest rotated one
        with older.open("rb") as f:
            older_size = os.fstat(f.fileno()).st_size
            if older_size:
                return _head_of(_last_line(f.fileno(), older_size))
    return 0, GENESIS


def _drop_torn_line(fd: int, size: int) -> int:
    """Truncate a torn last line (a write that crashed; never acknowledged) off the file
    ``fd`` of ``size`` bytes; return its size (unchanged if it ends with a newline)."""
    if size and os.pread(fd, 1, size - 1) != b"\n":
        size = _rfind_newline(fd, size) + 1
        os.ftruncate(fd, size)
    return size


def _shift_rotated(path: Path) -> None:
    """Shift ``.N`` to ``.N+1`` and ``path`` to ``.1``, then fsync the directory (under the
    current file's lock: the chain continues in a fresh file)."""
    for older in _rotated(path)[::-1]:
        number = int(older.name.rsplit(".", 1)[1])
        os.rename(older, older.with_name(f"{path.name}.{number + 1}"))
    os.rename(path, path.with_name(f"{path.name}.1"))
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _read_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock on the current file so no writer appends or rotates meanwhile."""
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            mine = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                continue
            if (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino):
                yield
                return
        finally:
            os.close(fd)
