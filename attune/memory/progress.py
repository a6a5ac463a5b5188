"""Progress callbacks of the long operations (export, import, key rotation).

A ``progress`` argument is ``None`` or a callable ``progress(done, total)``: ``done``
records handled so far, ``total`` how many there are when known beforehand (else
``None``). It is called on the operation's own event loop, after each page or batch has
been written, so it must be quick and must not block.

A callback cannot break the operation it watches: an :class:`Exception` it raises is
logged (a warning, once) and the operation goes on, without calling it again, to its
end and its audit event. To stop an operation, cancel its task (or interrupt the
program), as without a callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from attune.errors import ValidationError

#: ``progress(done, total_or_None)``.
ProgressCallback = Callable[[int, int | None], None]

logger = logging.getLogger(__name__)


def check_progress(progress: object) -> ProgressCallback | None:
    """``progress`` itself when it is None or callable; else :class:`ValidationError`."""
    if progress is None or callable(progress):
        return progress
    raise ValidationError(
        f"progress must be None or a callable (done, total), not {type(progress).__name__}"
    )


class Reporter:
    """Calls a checked ``progress`` callback, until it raises (then logs and stops)."""

    def __init__(self, progress: ProgressCallback | None, operation: str) -> None:
        self._progress = progress
        self._operation = operation

    def __call__(self, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        try:
            self._progress(done, total)
        except Exception as exc:
            self._progress = None
            logger.warning(
                "%s: the progress callback raised %s; ignored, the operation goes on",
                self._operation,
                type(exc).__name__,
            )
