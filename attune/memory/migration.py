"""Moving a deployment's long-term memory from SQLite to PostgreSQL (``attune migrate``).

:class:`Migration` copies the SQLite store of a configuration (``<storage_dir>/patterns.db``)
into the PostgreSQL database of ``target_url`` in three steps, each with its own progress:

1. :meth:`~Migration.export`: every live record, exactly as stored (ciphertext, wrapped
   data key and nonce; never plaintext), to ``<storage_dir>/migrate/to-<target>-<run>.jsonl``
   with its manifest (:meth:`~attune.memory.transfer.PatternTransfer.export_patterns`): a
   file of this run's own, so two runs at once never replace or delete each other's;
2. :meth:`~Migration.load`: the source's master keys added to the database's key ring
   (wrapped under the root key, not active: :mod:`attune.memory.security.ring_store`;
   ``keys_imported`` counts those it lacked), then the export inserted into PostgreSQL
   (:meth:`~attune.memory.transfer.PatternTransfer.import_patterns`): every record is
   checked to open with the target's keys before the first write, and an id already
   stored there is skipped. An interrupted migration is resumed by running it again: the
   records copied before the interruption are skipped, the rest inserted;
3. :meth:`~Migration.verify`: every exported record read back from PostgreSQL and
   compared field by field with the export (counts, and a SHA-256 over the records in id
   order on each side); a difference raises :class:`~attune.errors.MigrationError`.
   Verified, the export is deleted (a copy of the data that erasure and retention would
   not see), as it is when a step fails; only a process killed outright leaves its file.

The target's audit chain then records a ``store.migrate`` event anchoring the source's:
the head hash and event count of the SQLite deployment's audit log at the migration, the
record count and the digest, so the two chains can be tied together later. Nothing is
deleted from the source: switching a deployment over is setting ``ATTUNE_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attune.errors import (
    AuditLogError,
    ConfigurationError,
    LongTermUnavailableError,
    MigrationError,
)
from attune.memory import clock
from attune.memory.config import MemoryConfig
from attune.memory.export_file import MANIFEST_SUFFIX, dump, parse, read_export
from attune.memory.long_term.protocol import PatternRecord
from attune.memory.progress import ProgressCallback, Reporter, check_progress
from attune.memory.security import ring_store
from attune.memory.security.audit import AuditLogger
from attune.memory.unified import AsyncUnifiedMemory

#: The agent id the migration acts (and is audited) as, with the STEWARD tier.
MIGRATION_USER = "attune-migrate"
#: Records read back from the target at once while verifying.
_VERIFY_CHUNK = 256


@dataclass
class Migration:
    """A copy of ``config``'s SQLite store into the PostgreSQL database at ``target_url``.

    ``config`` is the deployment being moved (its storage directory, keys and audit log;
    a ``database_url`` in it is ignored: the source is always its SQLite file). The
    target uses the same configuration with ``database_url=target_url``, so the same
    master key must open the records there.
    """

    target_url: str
    config: MemoryConfig = field(default_factory=MemoryConfig)
    #: Filled in by the steps: what a report of the migration says.
    report: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.source_config = self.config.model_copy(update={"database_url": None})
        # Validated as ATTUNE_DATABASE_URL is (scheme, port, no stray characters).
        self.target_config = MemoryConfig(
            **{**self.config.model_dump(), "database_url": self.target_url}
        )
        if self.target_config.long_term_backend != "postgres":
            raise ConfigurationError("migrate copies into PostgreSQL: give a postgresql:// URL")
        self.source_db = self.source_config.storage_dir / "patterns.db"
        if not self.source_db.is_file():
            raise ConfigurationError(
                f"there is no SQLite long-term store to migrate at {self.source_db}; "
                "point ATTUNE_STORAGE_DIR (or --storage-dir) at the deployment's directory"
            )
        target = hashlib.sha256(str(self.target_config.redacted_database_url).encode())
        # A file of this run's own: another run at once never replaces or deletes it.
        run = secrets.token_hex(6)
        self.export_path = (
            self.source_config.storage_dir / "migrate" / f"to-{target.hexdigest()[:12]}-{run}.jsonl"
        )
        self.report.update(
            source=str(self.source_db), target=self.target_config.redacted_database_url
        )

    async def run(
        self,
        export: ProgressCallback | None = None,
        load: ProgressCallback | None = None,
        verify: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """All three steps, each with its progress callback; returns :attr:`report`."""
        await self.export(export)
        await self.load(load)
        await self.verify(verify)
        return self.report

    async def export(self, progress: ProgressCallback | None = None) -> None:
        """The source's live records, as stored, to :attr:`export_path`; and the head of
        its audit chain (refused if that chain does not verify: fix it first)."""
        self.export_path.parent.mkdir(mode=0o700, exist_ok=True)
        head = await asyncio.to_thread(_audit_head, self.source_config.audit_log_path)
        async with self._discarded_on_error(), self._memory(self.source_config) as memory:
            manifest = await memory.export_patterns(
                self.export_path, namespace="*", progress=progress
            )
        self.report.update(
            records=manifest["records"],
            by_classification=manifest["by_classification"],
            source_audit=head,
            export=str(self.export_path),
        )

    async def load(self, progress: ProgressCallback | None = None) -> None:
        """The source's master keys joined to the database's key ring (not active: the
        ring's own key stays the one new data is written under), then the export inserted
        into PostgreSQL (ids already there are skipped)."""
        async with self._discarded_on_error():
            async with (
                self._memory(self.source_config) as source,
                self._memory(self.target_config) as memory,
            ):
                keys = await ring_store.import_ring(
                    memory.pipeline.cipher.ring, memory.long_term, source.pipeline.cipher.ring
                )
                counts = await memory.import_patterns(self.export_path, progress=progress)
            self.report["keys_imported"] = len(keys)  # those the database's ring lacked
            # Skipped records too: a run cut off after its inserts, before its ANALYZE,
            # left them without statistics; the run resuming it imports nothing new.
            if counts["imported"] or counts["skipped"]:
                await _analyze(self.target_url)
            self.report.update(counts)

    async def verify(self, progress: ProgressCallback | None = None) -> None:
        """Every exported record read back from PostgreSQL, compared field by field; then
        the ``store.migrate`` event in the target's audit chain."""
        async with self._discarded_on_error():
            await self._verify(progress)
        # A copy of every record outside the store: gone once it served (erasure and
        # retention never look here), as after a failed step.
        self._discard_export()

    async def _verify(self, progress: ProgressCallback | None) -> None:
        report = Reporter(check_progress(progress), "migrate")
        data, manifest = await asyncio.to_thread(read_export, self.export_path)
        records = await asyncio.to_thread(parse, data, manifest)
        exported = sorted(records, key=lambda r: r.pattern_id)
        async with self._memory(self.target_config) as memory:
            source, copied = hashlib.sha256(), hashlib.sha256()
            expired = 0
            report(0, len(exported))
            for start in range(0, len(exported), _VERIFY_CHUNK):
                chunk = exported[start : start + _VERIFY_CHUNK]
                now = clock.now_ms()
                found = await _gather([memory.long_term.get(r.pattern_id, now) for r in chunk])
                for record, stored in zip(chunk, found, strict=True):
                    if stored is None and _expired(record, now):
                        expired += 1  # its retention ended while migrating
                        continue
                    source.update(dump(record))
                    copied.update(b"-\n" if stored is None else dump(stored))
                report(start + len(chunk), len(exported))
            if source.digest() != copied.digest():
                raise MigrationError(
                    "the records in PostgreSQL differ from the SQLite store's (a record is "
                    "missing or altered); nothing was deleted: run attune migrate again, "
                    "and if it persists, look for another writer changing those records"
                )
            details = {
                "records": len(exported) - expired,
                "sha256": source.hexdigest(),
                "source": "sqlite",
                "source_audit_head": self.report["source_audit"]["head"],
                "source_audit_events": self.report["source_audit"]["events"],
            }
            await memory._audit_migration(details)
        self.report.update(verified=len(exported) - expired, sha256=source.hexdigest())

    @contextlib.asynccontextmanager
    async def _discarded_on_error(self) -> AsyncIterator[None]:
        """The export deleted if the step fails (or is cancelled): no other run reads it,
        and the next run exports anew."""
        try:
            yield
        except BaseException:
            self._discard_export()
            raise

    def _discard_export(self) -> None:
        for path in (
            self.export_path,
            self.export_path.with_name(self.export_path.name + MANIFEST_SUFFIX),
        ):
            path.unlink(missing_ok=True)

    def _memory(self, config: MemoryConfig) -> AsyncUnifiedMemory:
        return AsyncUnifiedMemory(MIGRATION_USER, config, access_tier="STEWARD")


async def _analyze(url: str) -> None:
    """Fresh planner statistics for the rows just loaded: until autovacuum gathers them
    (up to a minute or more), the planner takes the table for empty and sorts every
    match of a filtered listing (44 ms instead of 0.1 ms for a page at 100k records)."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ANALYZE patterns")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        raise LongTermUnavailableError(
            f"the records are copied, but ANALYZE failed ({type(exc).__name__}); "
            "run ANALYZE patterns on the database, or let autovacuum do it"
        ) from None


def _expired(record: PatternRecord, now_ms: int) -> bool:
    return record.expires_at_ms is not None and record.expires_at_ms <= now_ms


async def _gather(calls: list[Awaitable[PatternRecord | None]]) -> list[PatternRecord | None]:
    return list(await asyncio.gather(*calls))


def _audit_head(path: Path) -> dict[str, Any]:
    """The source audit chain's head and length; refused unless it verifies."""
    if not path.exists():
        return {"head": None, "events": 0}
    log = AuditLogger(log_file=path)
    try:
        result = log.verify(allow_pruned=True)
    finally:
        log.close()
    if not result.ok:
        raise AuditLogError(
            f"the SQLite deployment's audit log does not verify ({result})",
            "nothing was migrated",
            "migrate anchors that chain in the new one: run `attune audit verify` and "
            "resolve it first",
        )
    return {"head": result.head, "events": result.lines_checked}
