"""Small durable-file steps shared by the key ring (``security/crypto.py``) and the store
marker (``store_marker.py``): an inter-process lock, a private file written to disk, an
atomic replace, and the directory fsync that makes a rename or link durable."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: Path, *, create: bool = False) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for a read-modify-write between processes: a
    directory, or a lock file (made, mode 0600, with ``create=True``)."""
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private_temp(directory: Path, data: bytes, prefix: str) -> Path:
    """A new owner-only (0600) file in ``directory`` holding ``data``, flushed to disk."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{prefix}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def replace_atomically(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data`` (0600): readers see the old file or the new one, never
    a torn one, and the new one survives a crash once this returns."""
    temp = write_private_temp(path.parent, data, path.name)
    try:
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable; best effort where directories
    cannot be fsynced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
