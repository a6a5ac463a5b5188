"""Export and import of long-term records, exactly as stored (a mixin of the core).

:meth:`PatternTransfer.export_patterns` writes the live records of a namespace (or of
all, ``"*"``) as JSON Lines, one record a line, every field as stored: an encrypted
record's ciphertext, wrapped data key and nonce (base64), never its plaintext. Next to it,
``<path>.manifest.json`` holds the format, the record count, the SHA-256 of the JSONL
bytes, the namespace and the counts by classification. Both files are written to a
temporary file first and renamed into place: an error leaves no half file.

:meth:`PatternTransfer.import_patterns` checks the whole export before its first write:
the manifest, the digest, every line's fields, and that every record opens with this
store's master keys (an export is only readable where its master key is). Then it inserts
each record as it was (id, namespace, times, retention); an id already stored is skipped,
a record past its retention is not imported. The import then indexes the new records for
search (as records stored before search existed are).

Both are STEWARD operations, audited (``pattern.export``, ``pattern.import``). The digest
detects damage, not forgery: an encrypted record is authenticated by its key; a plaintext
record is what the file says, so import only exports you trust.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from attune.errors import ValidationError
from attune.memory import clock, files, validation
from attune.memory.core_parts import CoreParts
from attune.memory.long_term.protocol import InsertOp, PatternRecord
from attune.memory.long_term.queries import PatternQuery
from attune.memory.progress import ProgressCallback, Reporter, check_progress
from attune.memory.security import ring_store
from attune.memory.security.keyfile import KEY_ID_PATTERN
from attune.memory.timestamps import LATEST_MS, iso_ms
from attune.memory.types import RECORD_FORMATS, Classification

if TYPE_CHECKING:
    pass

#: The layout of an export (the manifest's ``"format"``).
EXPORT_FORMAT = 1
#: The manifest's name: the export's path with this appended.
MANIFEST_SUFFIX = ".manifest.json"
_PAGE = 500
_MAX_PATH = 4096
_MAX_MANIFEST_BYTES = 64 * 1024
#: Records inserted concurrently (the store commits them in shared transactions).
_INSERT_CHUNK = 64
_FIELDS = frozenset(PatternRecord._fields)
_BYTES_FIELDS = ("wrapped_key", "nonce")

_T = TypeVar("_T")


class PatternTransfer(CoreParts):
    """The core's export and import (a mixin of ``AsyncUnifiedMemory``)."""

    # From the reads (attune.memory.reads), beside CoreParts.
    _indexed: bool
    _scope: Callable[[Any], Awaitable[str | None]]
    _search_index: Callable[[], Awaitable[Any]]
    _backfill: Callable[[Any], Awaitable[None]]

    async def export_patterns(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Write this agent's namespace's live long-term records (``namespace``: another,
        or ``"*"`` for all) to ``path`` as JSON Lines, exactly as stored (encrypted
        records stay encrypted), and ``<path>.manifest.json`` (STEWARD only). An existing
        file is replaced. Returns the manifest: ``format``, ``records``, ``sha256``,
        ``namespace``, ``exported_at``, ``by_classification``; from a store that keeps its
        key ring (PostgreSQL), ``keys``: the ids of the ring keys the file carries (wrapped
        under the root key), so that another store with the same root key opens them.

        ``progress(done, total)``, if given, is called with the records written so far
        and how many there are, first with ``done=0`` and then after each page (see
        :mod:`attune.memory.progress`: an exception it raises is logged and ignored)."""
        await self._require("export_patterns")
        target = _check_path(path)
        report = Reporter(check_progress(progress), "export_patterns")
        scope = await self._scope(namespace)
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        now = clock.now_ms()
        total = None
        if progress is not None:  # an estimate: a record may expire or arrive meanwhile
            total = await self.long_term.count(PatternQuery(now_ms=now, namespace=scope))
        spool = await _io("write the export file", _Spool.open, target)
        try:
            counts = dict.fromkeys((c.value for c in Classification), 0)
            key_ids: set[str] = set()  # the master keys the exported records are under
            after: tuple[float, str] | None = None
            done = 0
            report(done, total)
            while True:
                query = PatternQuery(now_ms=now, namespace=scope, limit=_PAGE, after=after)
                page = await self.long_term.find(query)
                if not page:
                    break
                lines = []
                for found in page:
                    lines.append(_dump(found.record))
                    if found.record.key_id is not None:
                        key_ids.add(found.record.key_id)
                    counts[found.record.classification] = (
                        counts.get(found.record.classification, 0) + 1
                    )
                await _io("write the export file", spool.write, b"".join(lines))
                done += len(page)
                report(done, max(total, done) if total is not None else None)
                last = page[-1].record
                after = (float(last.created_at_ms), last.pattern_id)
            manifest: dict[str, Any] = {
                "format": EXPORT_FORMAT,
                "records": sum(counts.values()),
                "sha256": spool.digest.hexdigest(),
                "namespace": "*" if scope is None else scope,
                "exported_at": iso_ms(now),
                "by_classification": counts,
            }
            # A store that keeps its key ring (PostgreSQL): the ring keys the records are
            # under go along, wrapped under the root key, so another store with the same
            # root key opens them (a key file is shared with the importer instead).
            keys = (
                await ring_store.export_keys(self.pipeline.cipher.ring, self.long_term, key_ids)
                if key_ids
                else None
            )
            if keys:
                manifest["keys"] = keys
            await _io("write the export file", spool.commit, target, manifest)
        finally:
            await asyncio.to_thread(spool.discard)
        event = self._event(
            "pattern.export",
            details={"count": manifest["records"], "namespace": manifest["namespace"]},
        )
        await self.pipeline.audit(event, done="the export")
        if "keys" in manifest:  # the caller is told which keys went along, not their bytes
            manifest["keys"] = [key["id"] for key in manifest["keys"]]
        return manifest

    async def import_patterns(
        self, path: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> dict[str, int]:
        """Insert the records of an export made by :meth:`export_patterns` (STEWARD only),
        each in the namespace it was exported from. The whole file is checked first (its
        manifest and digest, every line, that every record opens with this store's master
        keys): a damaged or altered export raises :class:`ValidationError` (a record that
        does not open: the error its recall would raise, e.g. :class:`DecryptionError` when
        this store lacks its master key) and imports nothing. Returns ``imported``,
        ``skipped`` (ids already stored) and ``expired`` (records past their retention,
        not imported).

        ``progress(done, total)``, if given, is called with the live records inserted or
        skipped so far and how many there are, first with ``done=0`` and then after each
        batch is written (see :mod:`attune.memory.progress`: an exception it raises is
        logged and ignored)."""
        await self._require("import_patterns")
        source = _check_path(path)
        report = Reporter(check_progress(progress), "import_patterns")
        data, manifest = await _io("read the export", _read_export, source)
        records = await asyncio.to_thread(_parse, data, manifest)
        if manifest.get("keys"):  # the exporter's ring keys: joined to this store's, inactive
            await ring_store.join_exported_keys(
                self.pipeline.cipher.ring, self.long_term, manifest["keys"]
            )
        for record in records:  # readable here, or refused before any write
            await self.pipeline.opened(
                self.long_term, functools.partial(self.pipeline.unseal, record)
            )
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        now = clock.now_ms()
        live = [r for r in records if r.expires_at_ms is None or r.expires_at_ms > now]
        imported = 0
        self._indexed = False  # whatever gets written, this object's next search indexes it
        report(0, len(live))
        for start in range(0, len(live), _INSERT_CHUNK):
            chunk = live[start : start + _INSERT_CHUNK]
            results = await asyncio.gather(*(self.long_term.write(InsertOp(r)) for r in chunk))
            imported += sum(results)
            report(start + len(chunk), len(live))
        if imported:  # indexed now, so every reader's search finds them
            await self._backfill(await self._search_index())
        counts = {
            "imported": imported,
            "skipped": len(live) - imported,
            "expired": len(records) - len(live),
        }
        event = self._event("pattern.import", details=counts)
        await self.pipeline.audit(event, done="the import")
        return counts

    async def _audit_migration(self, details: dict[str, Any]) -> None:
        """The ``store.migrate`` event that ends :mod:`attune.memory.migration` (a copy
        checked record by record), written as the import's is (STEWARD only)."""
        await self._require("import_patterns")
        event = self._event("store.migrate", details=details)
        await self.pipeline.audit(event, done="the migration")


# -- the export file ----------------------------------------------------------------------------


class _Spool:
    """The JSONL being written: a private temporary file next to its target, hashed as it
    is written, renamed into place (with its manifest) by :meth:`commit`."""

    def __init__(self, handle: IO[bytes], temp: Path) -> None:
        self.handle = handle
        self.temp = temp
        self.digest = hashlib.sha256()

    @classmethod
    def open(cls, target: Path) -> _Spool:
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
        files.replace_atomically(_manifest_path(target), body)

    def discard(self) -> None:
        self.handle.close()
        self.temp.unlink(missing_ok=True)


def _dump(record: PatternRecord) -> bytes:
    fields: dict[str, Any] = record._asdict()
    fields["content"] = _b64(record.content)
    for name in _BYTES_FIELDS:
        fields[name] = None if fields[name] is None else _b64(fields[name])
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _manifest_path(target: Path) -> Path:
    return target.with_name(target.name + MANIFEST_SUFFIX)


# -- reading an export back ---------------------------------------------------------------------


def _read_export(source: Path) -> tuple[bytes, dict[str, Any]]:
    manifest_path = _manifest_path(source)
    if not manifest_path.is_file():
        raise ValidationError(
            f"the export has no manifest ({source.name}{MANIFEST_SUFFIX} next to it): "
            "import the JSONL file export_patterns wrote, with its manifest"
        )
    with manifest_path.open("rb") as handle:
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


def _parse(data: bytes, manifest: dict[str, Any]) -> list[PatternRecord]:
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
    if not 0 <= ms <= LATEST_MS:
        raise ValidationError(f"{name} is out of range (ms since 1970, up to the year 9999)")
    return ms


def _optional(value: Any, kind: type[_T], name: str) -> _T | None:
    return None if value is None else _check(value, kind, name)


def _classification(value: Any) -> str:
    if value not in {c.value for c in Classification}:
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


# -- arguments and file errors ------------------------------------------------------------------


def _check_path(path: Any) -> Path:
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


async def _io(what: str, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn`` on a worker thread; an OS error (a missing directory, no permission, a full
    disk) becomes a :class:`ValidationError` saying what could not be done."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValidationError(f"cannot {what} ({reason})") from None
