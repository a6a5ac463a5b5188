"""The export file of :mod:`.transfer`: its layout, writing it, and reading it back checked.

An export is a JSON Lines file, one stored record a line (every field as stored, bytes in
base64), and beside it ``<path>.manifest.json``: the format, the record count, the
SHA-256 of the JSONL bytes, the namespace, the counts by classification and the master
keys its records are under (but the root), wrapped under the root key. :class:`Spool`
writes both through temporary files renamed into place; :func:`read_export` and
:func:`parse` check a manifest and every line before an import writes anything. Also
used by :mod:`.migration`, which copies a store through the same format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, TypeVar

from attune.errors import CorruptRecordError, ValidationError
from attune.memory import files, validation
from attune.memory.long_term.protocol import PatternRecord
from attune.memory.security.keyfile import KEY_ID_PATTERN
from attune.memory.timestamps import is_readable_ms
from attune.memory.types import RECORD_FORMATS, Classification

#: The layout of an export (the manifest's ``"format"``).
EXPORT_FORMAT = 1
#: The manifest's name: the export's path with this appended.
MANIFEST_SUFFIX = ".manifest.json"
_MAX_PATH = 4096
_MAX_MANIFEST_BYTES = 64 * 1024
_FIELDS = frozenset(PatternRecord._fields)
_BYTES_FIELDS = ("wrapped_key", "nonce")

_T = TypeVar("_T")


# -- the export file ----------------------------------------------------------------------------


class Spool:
    """The JSONL being written: a private temporary file next to its target, hashed as it
    is written, renamed into place (with its manifest) by :meth:`commit`."""

    def __init__(self, handle: IO[bytes], temp: Path) -> None:
        self.handle = handle
        self.temp = temp
        self.digest = hashlib.sha256()

    @classmethod
    def open(cls, target: Path) -> Spool:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            handle = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            Path(name).unlink(missing_ok=True)
            raise
        return cls(handle, Path(name))

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.digest.update(chunk)

    def commit(self, target: Path, manifest: dict[str, Any]) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temp, target)
        # The manifest last: one that matches the JSONL means the export is complete.
        body = json.dumps(manifest, indent=2).encode() + b"\n"
        files.replace_atomically(manifest_path(target), body)

    def discard(self) -> None:
        self.handle.close()
        self.temp.unlink(missing_ok=True)


def dump(record: PatternRecord) -> bytes:
    """The record as one line of the export; a record whose stored fields no import could
    take back (damaged outside attune) raises :class:`CorruptRecordError` naming it."""
    if not _dumpable(record):
        raise CorruptRecordError(
            str(record.pattern_id), "its stored fields are not of the types attune writes"
        )
    fields: dict[str, Any] = record._asdict()
    fields["content"] = _b64(record.content)
    for name in _BYTES_FIELDS:
        fields[name] = None if fields[name] is None else _b64(fields[name])
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def _dumpable(record: PatternRecord) -> bool:
    times = (record.created_at_ms,) if record.expires_at_ms is None else record[4:6]
    return (
        type(record.content) is bytes
        and all(value is None or type(value) is bytes for value in record[10:12])
        and all(is_readable_ms(ms) for ms in times)
        and record.classification in _CLASSIFICATIONS
    )


_CLASSIFICATIONS = frozenset(c.value for c in Classification)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def manifest_path(target: Path) -> Path:
    return target.with_name(target.name + MANIFEST_SUFFIX)


# -- reading an export back ---------------------------------------------------------------------


def read_export(source: Path) -> tuple[bytes, dict[str, Any]]:
    """The export's bytes and its manifest, checked (not the lines: see :func:`parse`)."""
    beside = manifest_path(source)
    if not beside.is_file():
        raise ValidationError(
            f"the export has no manifest ({source.name}{MANIFEST_SUFFIX} next to it): "
            "import the JSONL file export_patterns wrote, with its manifest"
        )
    with beside.open("rb") as handle:
        raw = handle.read(_MAX_MANIFEST_BYTES + 1)
    if len(raw) > _MAX_MANIFEST_BYTES:
        raise ValidationError("the export's manifest is not one export_patterns wrote")
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationError("the export's manifest is not valid JSON") from None
    return source.read_bytes(), _check_manifest(manifest)


def _check_manifest(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ValidationError(
            f"the export's manifest is not an attune export of format {EXPORT_FORMAT}"
        )
    records, digest = manifest.get("records"), manifest.get("sha256")
    if isinstance(records, bool) or not isinstance(records, int) or records < 0:
        raise ValidationError("the export's manifest has no valid record count")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ValidationError("the export's manifest has no valid sha256 digest")
    if "keys" in manifest:
        manifest["keys"] = _manifest_keys(manifest["keys"])
    return manifest


def _manifest_keys(keys: Any) -> list[tuple[str, str, bytes]]:
    """The master keys a manifest carries, as ``(id, root id, wrapped)``."""
    if not isinstance(keys, list) or len(keys) > _MAX_EXPORT_KEYS:
        raise ValidationError("the export's manifest has no valid list of keys")
    out = []
    for entry in keys:
        if not isinstance(entry, dict) or set(entry) != {"id", "root", "wrapped"}:
            raise ValidationError("the export's manifest has a key that is not one")
        kid, root = entry["id"], entry["root"]
        if not (isinstance(kid, str) and _KEY_ID.fullmatch(kid)) or not (
            isinstance(root, str) and _KEY_ID.fullmatch(root)
        ):
            raise ValidationError("the export's manifest has a key with an invalid key id")
        out.append((kid, root, _unb64(entry["wrapped"], "a key of the manifest")))
    return out


#: A master key's id (keyfile.key_id), and the most keys a manifest may carry.
_KEY_ID = re.compile(KEY_ID_PATTERN)
_MAX_EXPORT_KEYS = 10_000


def parse(data: bytes, manifest: dict[str, Any]) -> list[PatternRecord]:
    """Every record of the export, checked (nothing is written before this returns)."""
    if hashlib.sha256(data).hexdigest() != manifest["sha256"].lower():
        raise ValidationError(
            "the export file does not match its manifest's sha256 digest: it was damaged "
            "or altered after export; nothing was imported"
        )
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise ValidationError("the export file does not end with a complete line")
    lines.pop()
    if len(lines) != manifest["records"]:
        raise ValidationError(
            f"the export file holds {len(lines)} lines, its manifest says "
            f"{manifest['records']} records; nothing was imported"
        )
    records = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        try:
            record = _load(line)
        except ValidationError as exc:
            raise ValidationError(f"line {number} of the export: {exc}") from None
        if record.pattern_id in seen:
            raise ValidationError(f"line {number} of the export repeats a record id")
        seen.add(record.pattern_id)
        records.append(record)
    return records


def _load(line: bytes) -> PatternRecord:
    try:
        fields = json.loads(line)
    except (ValueError, RecursionError):
        raise ValidationError("not valid JSON") from None
    if not isinstance(fields, dict) or set(fields) != _FIELDS:
        raise ValidationError("not a record of an attune export (unexpected fields)")
    record = PatternRecord(
        pattern_id=validation.check_pattern_id(fields["pattern_id"]),
        pattern_type=validation.check_pattern_type(fields["pattern_type"]),
        classification=_classification(fields["classification"]),
        created_by=validation.check_agent_id(fields["created_by"], "created_by"),
        created_at_ms=_instant(fields["created_at_ms"], "created_at_ms"),
        expires_at_ms=None
        if fields["expires_at_ms"] is None
        else _instant(fields["expires_at_ms"], "expires_at_ms"),
        metadata_json=validation.check_text(fields["metadata_json"], "metadata_json"),
        content=_unb64(fields["content"], "content"),
        encrypted=_check(fields["encrypted"], bool, "encrypted"),
        key_id=_optional(fields["key_id"], str, "key_id"),
        wrapped_key=_optional_b64(fields["wrapped_key"], "wrapped_key"),
        nonce=_optional_b64(fields["nonce"], "nonce"),
        record_format=_check(fields["record_format"], int, "record_format"),
        namespace=validation.check_namespace(fields["namespace"]),
    )
    if record.record_format not in RECORD_FORMATS:
        raise ValidationError("record_format is not one this version reads")
    if record.encrypted and None in (record.key_id, record.wrapped_key, record.nonce):
        raise ValidationError("an encrypted record without its key_id, wrapped_key or nonce")
    return record


def _check(value: Any, kind: type[_T], name: str) -> _T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValidationError(f"{name} must be of type {kind.__name__}")
    if isinstance(value, str):
        validation.check_text(value, name)
    return value


def _instant(value: Any, name: str) -> int:
    """A time in ms since the epoch that every read can show (1970 to the year 9999)."""
    ms = _check(value, int, name)
    if not is_readable_ms(ms):
        raise ValidationError(f"{name} is out of range (ms since 1970, up to the year 9999)")
    return ms


def _optional(value: Any, kind: type[_T], name: str) -> _T | None:
    return None if value is None else _check(value, kind, name)


def _classification(value: Any) -> str:
    if value not in _CLASSIFICATIONS:
        raise ValidationError("classification must be PUBLIC, INTERNAL or SENSITIVE")
    return str(value)


def _optional_b64(value: Any, name: str) -> bytes | None:
    return None if value is None else _unb64(value, name)


def _unb64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{name} is not valid base64") from None


# -- the path argument ------------------------------------------------------------------


def check_replaceable(target: Path) -> None:
    """ValidationError if the export's path (or its manifest's) is there but is not a
    regular file. An export is renamed into place, which replaces whatever the path names:
    a symbolic link (``/dev/stdout``), a device (``/dev/null``, as root), a pipe, a
    directory would be replaced by a file of records."""
    for candidate in (target, manifest_path(target)):
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:  # not there (or not reachable: writing the export says why)
            continue
        if not stat.S_ISREG(mode):
            raise ValidationError(
                "the export path (or its manifest's, .manifest.json) is there and is not a "
                "regular file (a symbolic link, a device such as /dev/stdout, a pipe or a "
                "directory): an export replaces what is at its path, so it would replace "
                "that. Name a new or regular file; nothing was written"
            )


def check_path(path: Any) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise ValidationError(f"path must be a str or a path, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ValidationError("path must be a str or a path of text, not bytes")
    validation.check_text(text, "path")
    if len(text) > _MAX_PATH:
        raise ValidationError(f"path must be at most {_MAX_PATH} characters")
    if "\x00" in text:
        raise ValidationError("path must not contain NUL")
    named = Path(text)
    if named.name in ("", ".", ".."):
        raise ValidationError("path must name a file (the export's JSONL), not a directory")
    return named
