"""Evidence that a storage directory held data, so losing part of it is never silent.

A store is three things in one directory: ``patterns.db``, the master key (``master.key``
or ``ATTUNE_MASTER_KEY``) and the audit log. Losing the database or the key must not look
like a fresh start: attune would otherwise create an empty database, or a new key under
which every earlier encrypted record is unreadable, and carry on.

The *marker*, ``<storage_dir>/attune-store.json``, records what the directory has held::

    {"version": 1, "created_at": "...", "long_term": true, "key_ids": ["k_..."]}

``long_term``: a database with attune's schema was created here. ``key_ids``: master keys
that were used here. It is written (merged, atomically, under a lock on the directory) the
first time each fact becomes true, never on a hot path.

Before creating a database over a missing or empty file, or going on without a master key
(in development: creating a new one), attune looks for evidence and refuses with
:class:`ConfigurationError` when it finds any:

- the marker;
- for a key: encrypted rows in ``patterns.db``;
- for a directory older than the marker: stored patterns (or encrypted ones) in the audit
  log next to the database.

A directory with none of these (a fresh one) starts as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from attune.errors import ConfigurationError
from attune.memory import files

logger = logging.getLogger(__name__)

MARKER_NAME = "attune-store.json"
DB_NAME = "patterns.db"  # as attune.memory.long_term.sqlite_store.DB_FILENAME
AUDIT_NAME = "audit.jsonl"  # the default audit log, next to the database
_VERSION = 1
#: Audit lines that prove a long-term record was written / something was encrypted.
_STORED = (b'"event":"pattern.store"', b'"event":"pattern.promote"')
_ENCRYPTED = (b'"encrypted":true',)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Marker:
    long_term: bool
    key_ids: tuple[str, ...]
    #: The file exists but cannot be parsed: it says the directory held everything.
    damaged: bool = False


def marker_path(storage_dir: Path) -> Path:
    return storage_dir / MARKER_NAME


def read(storage_dir: Path) -> Marker | None:
    """The marker of ``storage_dir``; None when there is none. An unreadable one counts as
    a marker that says everything (it exists, so the directory held data)."""
    try:
        raw = marker_path(storage_dir).read_bytes()
    except FileNotFoundError:
        return None
    except OSError:  # not a directory, unreadable: nothing to tell from
        return None
    try:
        doc = json.loads(raw)
        long_term = doc["long_term"]
        key_ids = doc["key_ids"]
        if type(long_term) is not bool or type(key_ids) is not list:
            raise TypeError
        if not all(type(k) is str for k in key_ids):
            raise TypeError
        return Marker(long_term, tuple(key_ids))
    except (ValueError, TypeError, KeyError):
        return Marker(True, ("(unknown: the marker is damaged)",), damaged=True)


def note(storage_dir: Path, *, long_term: bool = False, key_ids: Iterable[str] = ()) -> None:
    """Add facts to the marker (creating it). Best effort: a directory where it cannot be
    written loses this protection, not its data, so failures are logged, not raised."""
    wanted = tuple(key_ids)
    current = read(storage_dir)
    if _covers(current, long_term, wanted):
        return  # the common case: nothing new, nothing written
    try:
        with files.exclusive_lock(storage_dir):
            current = read(storage_dir)
            if _covers(current, long_term, wanted):
                return
            base = Marker(False, ()) if current is None else current
            if base.damaged:  # rewritten from what is known now, without made-up key ids
                base = Marker(True, ())
            merged = Marker(
                base.long_term or long_term, tuple(dict.fromkeys((*base.key_ids, *wanted)))
            )
            doc = {
                "version": _VERSION,
                "created_at": _created_at(storage_dir),
                "about": "attune keeps this file to notice a lost database or master key; "
                "keep it with the directory",
                "long_term": merged.long_term,
                "key_ids": list(merged.key_ids),
            }
            files.replace_atomically(
                marker_path(storage_dir), (json.dumps(doc, indent=2) + "\n").encode()
            )
    except OSError as exc:
        logger.warning(
            "cannot write %s (%s); attune cannot detect a lost database or key in %s",
            marker_path(storage_dir),
            exc.strerror,
            storage_dir,
        )


def _created_at(storage_dir: Path) -> str:
    """The marker's creation time, kept across updates (now, for a new marker)."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        value = json.loads(marker_path(storage_dir).read_bytes()).get("created_at")
        if type(value) is str:
            return value
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _covers(marker: Marker | None, long_term: bool, key_ids: tuple[str, ...]) -> bool:
    """Whether ``marker`` already records these facts."""
    if marker is None or marker.damaged or (long_term and not marker.long_term):
        return False
    return set(key_ids) <= set(marker.key_ids)


# -- the checks ---------------------------------------------------------------------------------


def check_database(db_path: Path) -> None:
    """Refuse to start a database at ``db_path`` when it is missing or empty (0 bytes) but
    the directory shows one existed. One ``stat`` when the file has content."""
    try:
        if db_path.stat().st_size > 0:
            return
        state = "is empty (0 bytes)"
        wal = db_path.with_name(db_path.name + "-wal")
        with contextlib.suppress(OSError):
            if wal.stat().st_size > 0:
                return  # its pages are still in the write-ahead log
    except FileNotFoundError:
        state = "is missing"
    except OSError:
        return  # not a directory, no access: opening it reports that
    evidence = database_evidence(db_path.parent)
    if evidence is not None:
        raise ConfigurationError(_database_message(db_path, state, evidence))


def database_evidence(storage_dir: Path) -> str | None:
    """Why ``storage_dir`` is known to have held a long-term database, or None."""
    marker = read(storage_dir)
    if marker is not None:
        return f"its marker {marker_path(storage_dir)} records one" if marker.long_term else None
    if _audit_mentions(storage_dir, _STORED):
        return f"its audit log {storage_dir / AUDIT_NAME} records stored patterns"
    return None


def refuse_schemaless_database(db_path: Path) -> None:
    """A database file without attune's schema where the marker says it had one (its
    tables were dropped, or another file was put in its place)."""
    marker = read(db_path.parent)
    if marker is not None and marker.long_term:
        raise ConfigurationError(
            _database_message(
                db_path,
                "has no attune tables",
                f"its marker {marker_path(db_path.parent)} records a database with patterns",
            )
        )


def check_key_missing(storage_dir: Path, key_file: Path) -> None:
    """Refuse to go on without a master key (development: to create a new one) when
    ``storage_dir`` shows data was encrypted here under a key this process does not have."""
    found: list[str] = []
    marker = read(storage_dir)
    if marker is not None and marker.key_ids:
        found.append(
            f"its marker {marker_path(storage_dir)} records master key {', '.join(marker.key_ids)}"
        )
    key_in_db = _encrypted_key_id(storage_dir / DB_NAME)
    if key_in_db is not None:
        found.append(f"{storage_dir / DB_NAME} holds records encrypted under {key_in_db}")
    if marker is None and not found and _audit_mentions(storage_dir, _ENCRYPTED):
        found.append(f"its audit log {storage_dir / AUDIT_NAME} records encrypted writes")
    if found:
        raise ConfigurationError(
            f"the master key file {key_file} is missing and ATTUNE_MASTER_KEY is not set, "
            f"but {storage_dir} holds data encrypted with a master key ({'; '.join(found)}). "
            "Those records cannot be read without it and a new key would not open them, so "
            "attune created none. Restore the key file from a backup (or point "
            "ATTUNE_KEY_FILE at it), or set ATTUNE_MASTER_KEY to the key. To start over "
            f"deliberately, move the storage directory {storage_dir} aside"
        )


def check_key_known(storage_dir: Path, key_ids: tuple[str, ...]) -> None:
    """Refuse a key ring none of whose keys was used in ``storage_dir`` before, when its
    marker records keys that were: the master key (``ATTUNE_MASTER_KEY`` or the key file)
    is a different one, so nothing written here opens with it, and what it wrote could
    not be opened by the right key. Before its id is recorded: a wrong key leaves no trace."""
    marker = read(storage_dir)
    if marker is None or not marker.key_ids or set(key_ids) & set(marker.key_ids):
        return
    raise ConfigurationError(
        f"the master key ({', '.join(key_ids)}) is not one {storage_dir} was used with: its "
        f"marker {marker_path(storage_dir)} records master key {', '.join(marker.key_ids)}. "
        "ATTUNE_MASTER_KEY or the key file holds a different key, which opens nothing "
        "stored here; set ATTUNE_MASTER_KEY to the right key or restore its key file. If "
        "those keys were destroyed on purpose (every record encrypted under them is lost), "
        "move the storage directory aside and start a new one"
    )


def _database_message(db_path: Path, state: str, evidence: str) -> str:
    return (
        f"the long-term database {db_path} {state}, but this storage directory held one "
        f"({evidence}). attune left it untouched and did not start an empty database in its "
        "place. Stop every process using the directory and restore patterns.db from a "
        f"backup; to start over deliberately, move the storage directory {db_path.parent} "
        "aside"
    )


def _encrypted_key_id(db_path: Path) -> str | None:
    """A key id of an encrypted row of the database, read-only; None when there is none
    (or no readable database)."""
    try:
        if db_path.stat().st_size == 0:
            return None
        uri = db_path.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as db:
            row = db.execute("SELECT key_id FROM patterns WHERE encrypted = 1 LIMIT 1").fetchone()
    except (OSError, sqlite3.Error):
        return None
    return None if row is None else str(row[0])


def _audit_mentions(storage_dir: Path, needles: tuple[bytes, ...]) -> bool:
    """Whether the audit log in ``storage_dir`` (and its rotated files) holds any of
    ``needles``. Read only where there is no marker: directories older than it."""
    try:
        files = [p for p in storage_dir.iterdir() if p.name.startswith(AUDIT_NAME)]
    except OSError:
        return False
    overlap = max(len(n) for n in needles)
    for path in files:
        try:
            with path.open("rb") as handle:
                tail = b""
                while chunk := handle.read(_CHUNK):
                    window = tail + chunk
                    if any(n in window for n in needles):
                        return True
                    tail = window[-overlap:]
        except OSError:
            continue
    return False
