"""What the ``attune`` command checks before a command reads, and hides in what it says.

A storage directory that is not there. ``--storage-dir`` (or ``ATTUNE_STORAGE_DIR``)
naming a directory that does not exist is almost always a typo; a command that writes
starts a new store there (as it always did), but a command that only reads or removes
would create an empty store and answer from it: "nothing stashed", "No patterns match",
"0 erased", exit 0, and the user believes their data is gone. :func:`require_store`
refuses instead (a :class:`~attune.errors.ConfigurationError`: exit 2, a message naming
the option or the variable and what to do, nothing on stdout, nothing created). Only a
directory the user chose: the per-user default is simply new on a first run. Not with
``ATTUNE_DATABASE_URL``: the long-term store is then the PostgreSQL database, and the
directory (a key file at most) may well not exist yet.

Keys and ids typed on the command line. A working-data key, an id, an agent id, a query
may carry personal data or a secret pasted in the wrong place; an error message (stderr:
a terminal's scrollback, a CI log) never repeats one. The CLI's own messages do not, and
:func:`hide_typed` takes them out of any other (the library's, e.g. a corrupt stashed
value's), as the library's own :func:`~attune.memory.validation.shown_id` does: ids
attune makes (``pat_...``, ``stg_...``) may be shown, nothing else typed is.
"""

from __future__ import annotations

import argparse
import os

from attune.errors import ConfigurationError
from attune.memory.validation import is_own_id

#: Arguments that hold something typed that an error message must not repeat, and what
#: a message says in its place.
_TYPED = {
    "key": "the key given",
    "pattern_id": "the id given",
    "staged_id": "the id given",
    "target": "the id given",
    "user_id": "the user id given",
    "agent": "the agent id given",
    "user": "the user id given",
    "query": "the query given",
    "content": "the content given",
    "value": "the value given",
    "reason": "the reason given",
}
#: Typed values shorter than this are hidden only where the message quotes them
#: (``'k'``): bare, they would match the message's own words.
_BARE_MIN = 6


def require_store(args: argparse.Namespace) -> None:
    """Refuse a chosen storage directory that does not exist, before a command that only
    reads opens it (see the module). Run inside :func:`.identity.run_environment`."""
    from attune.memory.config import MemoryConfig

    if getattr(args, "storage_dir", None):
        chosen = "--storage-dir"
    elif os.environ.get("ATTUNE_STORAGE_DIR"):
        chosen = "ATTUNE_STORAGE_DIR"
    else:
        return
    config = MemoryConfig()
    if config.database_url is not None:
        return
    path = config.storage_dir.expanduser()
    if path.is_dir():
        return
    state = "is not a directory" if path.exists() else "does not exist"
    raise ConfigurationError(
        f"the storage directory {path} ({chosen}) {state}, so there is nothing to read or "
        "remove; "
        f"check {chosen} for a typo. Nothing was created (a command that writes, such as "
        "stash or patterns import, starts a new store there)"
    )


def hide_typed(message: str, args: argparse.Namespace | None) -> str:
    """``message`` without any key, id or text typed for this command (see the module):
    each occurrence, quoted or (if not short) bare, becomes a note of what it was, such
    as "(the key given, not shown)"."""
    if args is None:
        return message
    for name, label in _TYPED.items():
        value = getattr(args, name, None)
        if not isinstance(value, str) or not value or is_own_id(value):
            continue
        shown = f"({label}, not shown)"
        message = message.replace(repr(value), shown)
        if len(value) >= _BARE_MIN:
            message = message.replace(value, shown)
    return message
