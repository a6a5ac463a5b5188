"""Every logger of the process: flushed at exit, and started afresh in a forked child.

:data:`_live` holds every :class:`~.logger.AuditLogger` (weakly; each adds itself when
made). At interpreter exit :func:`_close_all` closes them all, so queued events are
written; after ``fork`` :func:`_reset_in_child` gives each, in the child, new locks, no
writer thread (the next event starts one) and no open file, and drops what the parent
queued (the parent's to write). The state it resets is :class:`~.writer._LogWriter`'s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from typing import TYPE_CHECKING

from attune.errors import SecurityPipelineError

if TYPE_CHECKING:
    from attune.memory.security.audit.logger import AuditLogger

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
