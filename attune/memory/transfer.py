"""Export and import of long-term records, exactly as stored (a mixin of the core).

:meth:`PatternTransfer.export_patterns` writes the live records of a namespace (or of
all, ``"*"``) as JSON Lines, one record a line, every field as stored: an encrypted
record's ciphertext, wrapped data key and nonce (base64), never its plaintext. Next to it,
``<path>.manifest.json`` holds the format, the record count, the SHA-256 of the JSONL
bytes, the namespace and the counts by classification. Both files are written to a
temporary file first and renamed into place: an error leaves no half file. The file's
layout, writing and checking are in :mod:`.export_file`; this module is the core's side.

:meth:`PatternTransfer.import_patterns` checks the whole export before its first write:
the manifest, the digest, every line's fields, and that every record opens with this
store's master keys or those the manifest carries (an export is only readable where its
root key is). Then it joins the carried keys to the ring or key file and inserts
each record as it was (id, namespace, times, retention); an id already stored is skipped,
a record past its retention is not imported. The import then indexes the new records for
search (as records stored before search existed are).

Both are STEWARD operations, audited (``pattern.export``, ``pattern.import``). The digest
detects damage, not forgery: an encrypted record is authenticated by its key; a plaintext
record is what the file says, so import only exports you trust.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from attune.errors import CorruptRecordError, ValidationError
from attune.memory import clock, export_file, store_marker
from attune.memory.core_parts import CoreParts
from attune.memory.long_term.protocol import InsertOp, PatternRecord
from attune.memory.long_term.queries import PatternQuery
from attune.memory.progress import ProgressCallback, Reporter, check_progress
from attune.memory.security import records as sealed
from attune.memory.security import ring_store
from attune.memory.security.audit import Durability
from attune.memory.security.crypto import EnvelopeCipher
from attune.memory.security.keyring import KEY_FILE_NAME, KeyRing
from attune.memory.timestamps import iso_ms
from attune.memory.types import Classification

_PAGE = 500
#: Records inserted concurrently (the store commits them in shared transactions).
_INSERT_CHUNK = 64

_T = TypeVar("_T")

#: What follows a store file's name in the names of its companions: SQLite's WAL, shared
#: memory and journal, the key file's lock, the audit log's rotated files.
_COMPANION = re.compile(r"(-wal|-shm|-journal|\.lock|\.[0-9]+)?")


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
        ``namespace``, ``exported_at``, ``by_classification``; ``keys``: the ids of the master
        keys the file carries (wrapped under the root key: a PostgreSQL store's ring keys,
        a SQLite store's key-file keys other than the root), so that another store with the
        same root key opens the records, if there are any;
        ``corrupt``: how many records damaged outside attune were left out (each reported
        in the audit log, as by every read), only if any were.

        ``progress(done, total)``, if given, is called with the records written so far
        and how many there are, first with ``done=0`` and then after each page (see
        :mod:`attune.memory.progress`: an exception it raises is logged and ignored)."""
        await self._require("export_patterns")
        target = export_file.check_path(path)
        self._refuse_own_files(target)
        export_file.check_replaceable(target)
        report = Reporter(check_progress(progress), "export_patterns")
        scope = await self._scope(namespace)
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        now = clock.now_ms()
        total = None
        if progress is not None:  # an estimate: a record may expire or arrive meanwhile
            total = await self.long_term.count(PatternQuery(now_ms=now, namespace=scope))
        spool = await _io("write the export file", export_file.Spool.open, target)
        try:
            counts = dict.fromkeys((c.value for c in Classification), 0)
            key_ids: set[str] = set()  # the master keys the exported records are under
            corrupt: list[str] = []  # ids of records damaged outside attune: left out
            last: PatternRecord | None = None
            after: tuple[float, str] | None = None
            done = 0
            report(done, total)
            while True:
                query = PatternQuery(now_ms=now, namespace=scope, limit=_PAGE, after=after)
                page = await self.long_term.find(query)
                if not page:
                    break
                lines = []
                last = None  # the page's last record with a readable time: the cursor
                for found in page:
                    if type(found.record.created_at_ms) is int:
                        last = found.record
                    try:
                        lines.append(export_file.dump(found.record))
                    except CorruptRecordError:  # left out and reported, as by every read
                        corrupt.append(found.record.pattern_id)
                        continue
                    if found.record.key_id is not None:
                        key_ids.add(found.record.key_id)
                    counts[found.record.classification] += 1
                await _io("write the export file", spool.write, b"".join(lines))
                done += len(page)
                report(done, max(total, done) if total is not None else None)
                if last is None:  # a page of damaged records only: nowhere to go on from
                    raise CorruptRecordError(corrupt[-1], "its creation time cannot be read")
                after = (float(last.created_at_ms), last.pattern_id)
            manifest: dict[str, Any] = {
                "format": export_file.EXPORT_FORMAT,
                "records": sum(counts.values()),
                "sha256": spool.digest.hexdigest(),
                "namespace": "*" if scope is None else scope,
                "exported_at": iso_ms(now),
                "by_classification": counts,
            }
            # The master keys the records are under go along, wrapped under the root key,
            # so another store with the same root key opens them (the root itself does not:
            # the importer has it).
            keys = (
                await ring_store.export_keys(self.pipeline.cipher.ring, self.long_term, key_ids)
                if key_ids
                else None
            )
            if keys:
                manifest["keys"] = keys
            if corrupt:
                manifest["corrupt"] = len(corrupt)
            await _io("write the export file", spool.commit, target, manifest)
        finally:
            await asyncio.to_thread(spool.discard)
        for pid in corrupt:
            damaged = self._event("pattern.retrieve", target_id=pid, outcome="corrupt")
            await self.pipeline.audit(damaged, Durability.QUEUED)
        event = self._event(
            "pattern.export",
            details={"count": manifest["records"], "namespace": manifest["namespace"]},
        )
        await self.pipeline.audit(event, done="the export")
        if "keys" in manifest:  # the caller is told which keys went along, not their bytes
            manifest["keys"] = [key["id"] for key in manifest["keys"]]
        return manifest

    def _refuse_own_files(self, target: Path) -> None:
        """ValidationError if the export (or its manifest) would replace one of this
        store's own files: the database and its WAL, the master key file, the audit log
        (or a rotated one) or the store marker. An export replaces what is at its path, so
        a slip of the path would otherwise destroy the store (a replaced key file loses
        every encrypted record)."""
        storage = self.config.storage_dir.expanduser()
        key_file = self.config.master_key_file
        own = [
            storage / store_marker.DB_NAME,
            storage / store_marker.MARKER_NAME,
            key_file.expanduser() if key_file is not None else storage / KEY_FILE_NAME,
            self.config.audit_log_path,
        ]
        db_path = getattr(self.long_term, "path", None)
        if isinstance(db_path, Path):
            own.append(db_path)
        # Each as named and, if it is a symlink, where it leads (replacing that loses it too).
        places = {_located(p) for p in own} | {Path(os.path.realpath(p)) for p in own}
        for candidate in (target, export_file.manifest_path(target)):
            where = _located(candidate)
            for place in places:
                if (
                    where.parent == place.parent
                    and where.name.startswith(place.name)
                    and _COMPANION.fullmatch(where.name[len(place.name) :])
                ):
                    raise ValidationError(
                        "the export path names one of this store's own files (its database, "
                        "master key file, audit log or store marker), which the export would "
                        "replace: choose another path; nothing was written"
                    )

    async def import_patterns(
        self, path: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> dict[str, int]:
        """Insert the records of an export made by :meth:`export_patterns` (STEWARD only),
        each in the namespace it was exported from. The whole file is checked first (its
        manifest and digest, every line, that every record opens with this store's master
        keys and those the manifest carries): a damaged or altered export raises
        :class:`ValidationError` (a record that does not open: the error its recall would
        raise, e.g. :class:`DecryptionError` when this store lacks its master key) and
        imports nothing, the key ring and key file included: the manifest's keys are
        joined to them (not active) only once every record opened. Returns ``imported``,
        ``skipped`` (ids already stored) and ``expired`` (records past their retention,
        not imported).

        ``progress(done, total)``, if given, is called with the live records inserted or
        skipped so far and how many there are, first with ``done=0`` and then after each
        batch is written (see :mod:`attune.memory.progress`: an exception it raises is
        logged and ignored)."""
        await self._require("import_patterns")
        source = export_file.check_path(path)
        report = Reporter(check_progress(progress), "import_patterns")
        data, manifest = await _io("read the export", export_file.read_export, source)
        records = await asyncio.to_thread(export_file.parse, data, manifest)
        # The exporter's keys this store lacks: opened now, joined to its ring (inactive)
        # only once every record is known to open, so a refused import leaves it as it was.
        ring = self.pipeline.cipher.ring
        carried = await ring_store.open_exported_keys(
            ring, self.long_term, manifest.get("keys", ())
        )
        under_carried = EnvelopeCipher(KeyRing(carried.values()))
        for record in records:  # readable here, or refused before any write
            if record.key_id in carried:
                sealed.unseal(record, lambda: under_carried)
            else:
                await self.pipeline.opened(
                    self.long_term, functools.partial(self.pipeline.unseal, record)
                )
        await self.pipeline.audit_ready()  # its event follows: refused now if it cannot
        if carried:
            await ring_store.join_keys(ring, self.long_term, carried.values())
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
        if live:  # indexed now, so every reader's search finds them (and those an
            # interrupted import of this file stored but did not index: all skipped now)
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


def _located(path: Path) -> Path:
    """``path`` made absolute through its directory's real path (the name itself as given)."""
    return Path(os.path.realpath(path.expanduser().parent)) / path.name


# -- file errors ---------------------------------------------------------------------------------


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
