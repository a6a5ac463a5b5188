"""The master key file: its format, and how it is read, created and extended.

The file is JSON ``{"version": 1, "active": kid, "keys": {kid: base64}}``, owner-only
(refused when other users can read it), written to a private temp file and put in place
atomically: created with a hard link, so that of processes starting at once one creates
it and the others read it; extended under a file lock with ``os.replace`` (a new active
key: :func:`add`; a key kept for reading only: :func:`keep`), so keys that other
processes added are kept. A key's id is derived from its material
(:func:`key_id`), so the same key has the same id from the file or from
``ATTUNE_MASTER_KEY``. What the keys are for is :mod:`.keyring`'s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attune.errors import ConfigurationError
from attune.memory import files

#: The default file name, in the storage directory.
KEY_FILE_NAME = "master.key"
#: A master key's length in bytes (AES-256).
KEY_BYTES = 32
_VERSION = 1


def key_id(key: bytes) -> str:
    """The id of a master key, derived from its material (same key, same id, any source)."""
    return "k_" + hashlib.sha256(b"attune-master-key-id:" + key).hexdigest()[:16]


#: What :func:`key_id` gives, as a regular expression.
KEY_ID_PATTERN = r"k_[0-9a-f]{16}"


def decode_key(text: object) -> bytes | None:
    """Strict base64 of exactly 32 bytes, or None."""
    if not isinstance(text, str):
        return None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A key file's content: every key by id, and the id of the active one."""

    active: str
    keys: dict[str, bytes] = field(repr=False)


def _encode(stored: KeyFile) -> bytes:
    keys = {kid: base64.b64encode(key).decode("ascii") for kid, key in stored.keys.items()}
    doc = {"version": _VERSION, "active": stored.active, "keys": keys}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _parse(raw: bytes, path: Path) -> KeyFile:
    def corrupt(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"the master key file {path} is corrupt ({why}); restore it from a backup. "
            'Expected JSON {"version": 1, "active": "<key id>", "keys": {"<key id>": "<base64>"}}'
        )

    try:
        doc = json.loads(raw)
    except ValueError:
        raise corrupt("not valid JSON") from None
    if not isinstance(doc, dict):
        raise corrupt("not a JSON object")
    version = doc.get("version")
    if type(version) is not int or version != _VERSION:
        raise corrupt(f"missing or unsupported version, expected {_VERSION}")
    entries = doc.get("keys")
    if not isinstance(entries, dict) or not entries:
        raise corrupt("'keys' must be a non-empty object")
    keys: dict[str, bytes] = {}
    for number, (kid, encoded) in enumerate(entries.items(), start=1):
        key = decode_key(encoded)
        if key is None or key_id(key) != kid:
            raise corrupt(f"entry {number} of 'keys' is not a 32-byte base64 key under its own id")
        keys[kid] = key
    active = doc.get("active")
    if not isinstance(active, str) or active not in keys:
        raise corrupt("'active' does not name one of its keys")
    return KeyFile(active, keys)


def read(path: Path) -> KeyFile:
    """Read and validate the key file; FileNotFoundError when it does not exist."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & 0o077:
                raise ConfigurationError(
                    f"the master key file {path} is accessible by other users "
                    f"(mode {mode & 0o777:o}): run `chmod 600 {path}`"
                )
            raw = handle.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the master key file {path} ({exc.strerror}); check the path "
            "(ATTUNE_KEY_FILE) and that it is a file readable by this user"
        ) from None
    return _parse(raw, path)


def read_if_present(path: Path) -> KeyFile | None:
    try:
        return read(path)
    except FileNotFoundError:
        return None


def create(path: Path) -> KeyFile:
    """Create the key file with a new key, unless another process just did: then use its.

    The content goes to a private temp file first and is hard-linked into place, which
    fails if the file exists; so concurrent starters end with one key, never a torn file.
    """
    key = secrets.token_bytes(KEY_BYTES)
    stored = KeyFile(key_id(key), {key_id(key): key})
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _put(path, stored, os.link)
        except FileExistsError:
            return read(path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    files.fsync_dir(path.parent)
    return stored


def add(path: Path, kid: str, key: bytes) -> KeyFile:
    """Merge ``key`` into the key file as the active key; returns what was written."""
    return _merge(path, kid, key, activate=True)


def keep(path: Path, kid: str, key: bytes) -> KeyFile:
    """Merge ``key`` into the key file without changing its active key (a new file gets it
    as its only, active, key); returns the file's content. A key already there is not
    written again."""
    return _merge(path, kid, key, activate=False)


def _merge(path: Path, kid: str, key: bytes, *, activate: bool) -> KeyFile:
    """Under the file lock, read the key file, add ``key`` (active if ``activate``) and
    write it back atomically, keeping every key other processes added. A missing file is
    put in place by a hard link, as :func:`create` does (which takes no lock): if one
    appeared meanwhile, it is read and merged into instead of replaced."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with files.exclusive_lock(Path(f"{path}.lock"), create=True):
            while True:
                current = read_if_present(path)
                if current is None:
                    stored = KeyFile(kid, {kid: key})
                elif current.keys.get(kid) == key and (current.active == kid or not activate):
                    return current  # nothing to change
                else:
                    active = kid if activate else current.active
                    stored = KeyFile(active, {**current.keys, kid: key})
                try:
                    _put(path, stored, os.link if current is None else os.replace)
                except FileExistsError:
                    continue  # create() just made it: merge into that one
                break
    except OSError as exc:
        raise _write_error(path, exc) from None
    files.fsync_dir(path.parent)
    return stored


def _put(path: Path, stored: KeyFile, place: Callable[[Path, Path], None]) -> None:
    """Write ``stored`` to a private temp file beside ``path`` and ``place`` it there
    (``os.link``: only if none is; ``os.replace``: over it), never leaving the temp file."""
    temp = files.write_private_temp(path.parent, _encode(stored), KEY_FILE_NAME)
    try:
        place(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _write_error(path: Path, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot write the master key file {path} ({exc.strerror}); make its directory "
        "writable, point ATTUNE_KEY_FILE elsewhere, or set ATTUNE_MASTER_KEY"
    )
