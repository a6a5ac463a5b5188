"""The security pipeline: the one place every write path runs through.

For a pattern write (``persist_pattern``, ``stage_pattern``, ``promote_pattern``)
the steps run in this order, each a small unit of its own module:

1. **detect secrets** (:mod:`.secrets`) in the content and in every string of the
   metadata / pattern data: any finding blocks the write;
2. **scrub PII** (:mod:`.pii`) from the same strings;
3. **classify** (:mod:`.classifier`): explicit, or auto-detected from the rule table;
4. **encrypt** (:mod:`.crypto`, master keys in :mod:`.keyring`): SENSITIVE always,
   INTERNAL when ``encryption_enabled``;
5. **audit** (:mod:`.audit`): every decision, with counts and kinds only.

The pipeline *fails closed*: if a step raises something unexpected or returns
something unusable, the write is refused with :class:`SecurityPipelineError`;
unscrubbed data is never stored as a fallback.

Here: the order of the steps, the :class:`SecurityPipeline` methods the core and the
staging area call, and the audit entry point (``audit``, ``audited``). Beside it,
one job each:

- :mod:`.steps`: what steps 1-3 share (``Prepared``, running a step fail-closed, the
  text the secrets detector scans);
- :mod:`.records`: a long-term record's stored form (``seal``/``unseal``: plain or one
  ciphertext, and the consistency checks on the way back);
- :mod:`.staged`: a staged pattern's JSON entry in Redis (``seal_staged``/``open_staged``);
- :mod:`.shared`: the process's shared audit loggers and key rings (``close_shared``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from attune.errors import (
    AttuneError,
    AuditLogError,
    ConfigurationError,
    DecryptionError,
    SecretsDetectedError,
    SecurityPipelineError,
    ValidationError,
)
from attune.memory.config import MemoryConfig
from attune.memory.long_term.protocol import Audited, LongTermStore, PatternRecord, WrappedKey
from attune.memory.security import records, ring_store, shared, staged
from attune.memory.security.audit import AuditEvent, AuditLogger, Durability
from attune.memory.security.classifier import ClassificationDecision, decide
from attune.memory.security.crypto import EncryptedBlob, EnvelopeCipher
from attune.memory.security.pii import PIIScrubber
from attune.memory.security.records import Sealed
from attune.memory.security.secrets import SecretsDetector
from attune.memory.security.shared import close_shared as close_shared  # pipeline.close_shared()
from attune.memory.security.shared import (
    shared_audit_logger,
    shared_database_audit_logger,
    shared_keyring,
)
from attune.memory.security.steps import Prepared, _as_lines, _step
from attune.memory.types import Classification

T = TypeVar("T")

_TYPE_CACHE_SIZE = 256

#: Events of reads: a read the audit log refuses says "read", not "write".
_READ_EVENTS = frozenset({"pattern.retrieve", "staging.list"})
_READ_REFUSED = (
    "the read was refused: every read is audited, and reads are served again once the "
    "log can be written"
)
_WRITE_REFUSED = "the write was refused and nothing was stored"

#: One record per refused write (the kinds of credential, never a value).
_log = logging.getLogger("attune.security")


class SecurityPipeline:
    """Runs the security steps for one configuration. Cheap to create; the audit
    log and the key ring behind it are shared per file within the process.

    ``scan_engine``: the detectors' literal-scan engine (:mod:`.scan_engine`); ``None``
    follows ``ATTUNE_SCAN_ENGINE`` (default ``auto``)."""

    def __init__(self, config: MemoryConfig, *, scan_engine: str | None = None) -> None:
        self.config = config
        self.secrets = _step(
            "secrets detector",
            lambda: SecretsDetector(
                extra_patterns=config.secret_patterns or None, engine=scan_engine
            ),
        )
        self.scan_engine = self.secrets.engine
        self.scrubber = _step(
            "PII scrubber",
            lambda: PIIScrubber(
                disabled=config.pii_disabled_kinds,
                custom_patterns=config.pii_custom_patterns or None,
                engine=self.scan_engine,
            ),
        )
        self._audit_path: Path | None = None
        self._audit: tuple[int, AuditLogger] | None = None
        #: pattern types already found clean (bounded).
        self._clean_types: set[str] = set()
        self._cipher: EnvelopeCipher | None = None
        self._lock = threading.Lock()

    # -- lazily opened resources -----------------------------------------------------------------

    @property
    def audit_logger(self) -> AuditLogger:
        # Cached until close_shared() closes the shared loggers; then looked up afresh.
        cached = self._audit
        if cached is not None and cached[0] == shared.generation:
            return cached[1]
        generation = shared.generation  # read first: a close_shared() meanwhile forces a lookup
        if self.config.database_url is not None:  # the database's table, one chain for all
            mirror = self.config.ensure_audit_log_path() if self.config.audit_mirror else None
            logger = shared_database_audit_logger(
                self.config.database_url, self.config.audit_sync, mirror
            )
        else:
            if self._audit_path is None:
                self._audit_path = self.config.ensure_audit_log_path()
            logger = shared_audit_logger(self._audit_path, self.config.audit_sync)
        self._audit = (generation, logger)
        return logger

    @property
    def cipher(self) -> EnvelopeCipher:
        return self._open_cipher()

    def _open_cipher(self) -> EnvelopeCipher:
        """The cipher, opening the shared key ring on first use: what :mod:`.records` and
        :mod:`.staged` are given, and call only for an encrypted entry."""
        with self._lock:
            if self._cipher is None:
                ring = shared_keyring(
                    self.config.ensure_storage_dir(),
                    self.config.environment.value,
                    self.config.master_key_file,
                    self.config.database_url,
                )
                self._cipher = EnvelopeCipher(ring)
            return self._cipher

    # -- the key ring a long-term store keeps (ring_store) --------------------------------------

    async def keys_ready(self, store: LongTermStore) -> None:
        """Make the key ring hold ``store``'s ring, if it keeps one (:mod:`.ring_store`):
        read and checked on first use (a wrong root key raises ConfigurationError here,
        before anything is written), read again after the store said it changed. Free for
        a store that keeps none."""
        if await ring_store.keeps_ring(store):
            await ring_store.ready(self.cipher.ring, store)

    async def opened(self, store: LongTermStore, fn: Callable[[], T]) -> T:
        """``fn()``, which opens encrypted data; if it meets a master key this process has
        not loaded (DecryptionError, or ConfigurationError for a search key), ``store``'s
        key ring is read again once (another host rotated) and, if that brought keys,
        ``fn`` runs again; else its error stands."""
        try:
            return fn()
        except (DecryptionError, ConfigurationError):
            if self._cipher is None or not await ring_store.learn(self._cipher.ring, store):
                raise
        return fn()

    async def new_active_key(self, store: LongTermStore) -> str:
        """A new active master key (rotation): in ``store``'s ring if it keeps one, for
        every host at once, else in the key file; its id."""
        return await ring_store.rotate(self.cipher.ring, store)

    # -- steps 1-3 -------------------------------------------------------------------------------

    def _sanitize(
        self, texts: Mapping[str, Any], where: str
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """Block secrets in, then scrub PII from, every string in ``texts`` (keys included)."""
        found = _step("secrets detector", lambda: self.secrets.kinds(_as_lines(texts)))
        if found:
            raise SecretsDetectedError(found, where)
        scrubbed, counts = _step("PII scrubber", lambda: self.scrubber.scrub_value(dict(texts)))
        if not isinstance(scrubbed, dict) or not isinstance(counts, dict):
            raise SecurityPipelineError(
                "the PII scrubber returned unusable output; the write was refused"
            )
        return scrubbed, {str(k): int(v) for k, v in counts.items()}

    async def _guard(
        self, action: Callable[[], T], *, subject: str, tier: str, target_id: str, event: str
    ) -> T:
        try:
            return action()
        except SecretsDetectedError as exc:
            await self.audit(
                AuditEvent(
                    "security.violation",
                    subject,
                    tier,
                    target_id,
                    outcome="blocked",
                    details={"kinds": exc.kinds, "during": event},
                )
            )
            _log.warning(
                "%s of %s refused: it holds a credential (%s); agent %s",
                event,
                target_id,
                ", ".join(sorted(exc.kinds)),
                subject,
            )
            raise

    async def prepare_pattern(
        self,
        content: str,
        pattern_type: str,
        metadata: dict[str, Any],
        explicit: Classification | None,
        auto_classify: bool,
        *,
        subject: str,
        tier: str,
        target_id: str,
    ) -> Prepared:
        """Steps 1-3 for a long-term write (persist or promote); ``subject`` is the writer's
        audit pseudonym (:mod:`.pseudonyms`)."""

        def run() -> Prepared:
            self._check_pattern_type(pattern_type)
            clean, counts = self._sanitize(
                {"content": content, "metadata": metadata}, "the pattern"
            )
            decision = self._classify(
                explicit, clean["content"], pattern_type, clean["metadata"], auto_classify
            )
            return Prepared(clean["content"], clean["metadata"], decision, counts)

        prepared = await self._guard(
            run, subject=subject, tier=tier, target_id=target_id, event="pattern.store"
        )
        # Queued: the operation's final event follows and is awaited.
        decided = AuditEvent(
            "classification.decision",
            subject,
            tier,
            target_id,
            prepared.classification.value,
            details={
                "rule": prepared.decision.rule,
                "term": _identifier(prepared.decision.term),
                "auto": explicit is None and auto_classify,
            },
        )
        await self.audit(decided, Durability.QUEUED)
        return prepared

    async def prepare_staged(
        self, data: dict[str, Any], pattern_type: str, *, subject: str, tier: str, staged_id: str
    ) -> Prepared:
        """Steps 1-3 for a staged pattern, before anything reaches Redis."""

        def run() -> Prepared:
            self._check_pattern_type(pattern_type)
            clean, counts = self._sanitize(data, "the staged pattern")
            rest = {k: v for k, v in clean.items() if k != "content"}
            decision = self._classify(None, clean["content"], pattern_type, rest, True)
            return Prepared(clean["content"], clean, decision, counts)

        return await self._guard(
            run, subject=subject, tier=tier, target_id=staged_id, event="pattern.stage"
        )

    def _classify(
        self,
        explicit: Classification | None,
        content: str,
        pattern_type: str,
        metadata: Mapping[str, Any],
        auto_classify: bool,
    ) -> ClassificationDecision:
        decision = _step(
            "classifier",
            lambda: decide(
                explicit,
                content,
                pattern_type,
                metadata,
                auto_classify=auto_classify,
                engine=self.scan_engine,
            ),
        )
        if not isinstance(decision, ClassificationDecision) or not isinstance(
            decision.classification, Classification
        ):
            raise SecurityPipelineError(
                "the classifier returned unusable output; the write was refused"
            )
        return decision

    def _check_pattern_type(self, pattern_type: str) -> None:
        if pattern_type in self._clean_types:  # agents reuse a handful of types
            return
        if self.secrets.contains_secrets(pattern_type) or self.scrubber.scrub(pattern_type).total:
            raise ValidationError("pattern_type must not contain personal data or credentials")
        if len(self._clean_types) >= _TYPE_CACHE_SIZE:
            self._clean_types.clear()
        self._clean_types.add(pattern_type)  # only clean ones: no secret is kept around

    # -- step 4: encryption ----------------------------------------------------------------------

    def needs_encryption(self, classification: Classification) -> bool:
        if classification is Classification.SENSITIVE:
            return True
        return classification is Classification.INTERNAL and self.config.encryption_enabled

    def seal(
        self,
        record_id: str,
        classification: Classification,
        content: str,
        metadata: Mapping[str, Any],
    ) -> Sealed:
        """Content and metadata as they go to storage (:func:`.records.seal`), encrypted
        when the classification needs it."""
        encrypt = self._encrypt if self.needs_encryption(classification) else None
        return records.seal(record_id, classification, content, metadata, encrypt)

    def _encrypt(
        self, plaintext: bytes, record_id: str, classification: Classification
    ) -> EncryptedBlob:
        cipher = self.cipher
        try:
            return cipher.encrypt(plaintext, record_id=record_id, classification=classification)
        except AttuneError:
            raise
        except Exception as exc:
            raise SecurityPipelineError(
                f"encryption failed ({type(exc).__name__}); the write was refused"
            ) from None

    def unseal(self, record: PatternRecord) -> tuple[str, dict[str, Any]]:
        """(content, metadata) of a stored record, decrypting it if needed; a damaged record
        raises :class:`~attune.errors.CorruptRecordError` (see :func:`.records.unseal`)."""
        return records.unseal(record, self._open_cipher)

    def rewrap(self, key: WrappedKey) -> WrappedKey:
        """The record's data key wrapped under the active master key (content untouched)."""
        # Only the wrapped key is read: the content nonce and ciphertext are not needed.
        blob = EncryptedBlob(key.key_id, key.wrapped_key, b"", b"")
        new = self.cipher.rewrap(blob, record_id=key.pattern_id, classification=key.classification)
        return WrappedKey(key.pattern_id, key.classification, new.key_id, new.wrapped_key)

    def seal_staged(self, envelope: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
        """The JSON held in Redis for a staged pattern (:func:`.staged.seal_staged`); a
        SENSITIVE pattern keeps only id, type and times readable."""
        return staged.seal_staged(envelope, prepared, self._encrypt)

    def open_staged(
        self, stored: Mapping[str, Any] | bytes | str, *, staged_id: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(envelope, data) of a staged pattern as held in Redis (JSON object, bytes or text);
        anything malformed raises :class:`~attune.errors.CorruptRecordError` naming
        ``staged_id`` (see :func:`.staged.open_staged`)."""
        return staged.open_staged(stored, self._open_cipher, staged_id=staged_id)

    # -- retention -------------------------------------------------------------------------------

    def retention_ms(self, classification: Classification) -> int:
        days = {
            Classification.PUBLIC: self.config.retention_days_public,
            Classification.INTERNAL: self.config.retention_days_internal,
            Classification.SENSITIVE: self.config.retention_days_sensitive,
        }[classification]
        return days * 86_400_000

    # -- step 5: audit ---------------------------------------------------------------------------

    async def audit(
        self,
        event: AuditEvent,
        durability: Durability = Durability.DURABLE,
        *,
        done: str | None = None,
    ) -> None:
        """Audit one event: the one way in for every operation's events but a long-term
        write's own (:meth:`audited`).

        ``Durability.DURABLE`` returns once the event is written (fsynced, with
        ``audit_sync=True``); ``Durability.QUEUED`` only queues it: a read's event, or a
        decision the operation's durable event follows (that one's durability covers it:
        one fsync per operation, not per event). A failure to write earlier events nobody
        waited for refuses the call; a read's event says the read was refused.

        ``done`` names an operation already carried out (``"the delete"``): if the event
        cannot be written, the :class:`~attune.errors.AuditLogError` says that operation
        was done and its event is missing (``committed``), never that it was refused.
        """
        logger = self.audit_logger
        try:
            if durability is Durability.QUEUED:
                logger.submit(event)
            else:
                await logger.alog(event)
        except AuditLogError as exc:
            if done is not None:
                raise exc.retold(
                    f"{done} WAS done, but its audit event could not be written (it is not "
                    "in the log). Do not retry it",
                    committed=True,
                ) from None
            if event.name in _READ_EVENTS:
                raise exc.retold(_READ_REFUSED) from None
            raise

    async def audit_ready(self) -> None:
        """Refuse (:class:`~attune.errors.AuditLogError`) an operation whose event is
        written after it runs (delete, purge, key rotation) if the audit log cannot be
        extended now, before it changes anything. One thread hop: those calls are rare."""
        logger = self.audit_logger
        logger.report_failures()
        await asyncio.to_thread(logger.check)

    async def audit_health(self) -> dict[str, Any]:
        """The audit log's part of ``health_check`` (never raises): whether it can be
        extended now (:meth:`AuditLogger.check`, which also appends events a failed append
        left behind), why not, and how many committed events wait for it. A log not
        written yet is not created, only checked to be creatable where it is configured."""
        report: dict[str, Any] = {}
        problem: str | None = None
        try:
            logger = self.audit_logger
            report.update(logger.where())
            if logger.held_events or logger.written():
                await asyncio.to_thread(logger.check)
            else:  # not created by a check, but one that could not be is reported
                problem = logger.cannot_create()
        except AuditLogError as exc:
            report.update(available=False, error=f"{exc.reason}. {exc.advice}".rstrip())
        except Exception as exc:  # health never raises
            report.update(available=False, error=f"{type(exc).__name__}: {exc}")
        else:
            report.update(available=problem is None)
            if problem is not None:
                report["error"] = problem
        if "path" in report or "database" in report:
            report["held_events"] = logger.held_events
        return report

    def audited(self, event: AuditEvent) -> Audited:
        """A long-term write's final event, for the store to make durable together with
        the record (``InsertOp(record, pipeline.audited(event))``; see
        :class:`~attune.memory.long_term.Journal`): the SQLite store keeps it in the
        record's own transaction (one fsync for both, shared by a whole group commit); a
        store without an outbox (or ``audit_sync=False``) appends it right after the
        commit. Either way the event is written only once the write is durable.

        An audit failure not yet reported refuses the write here, before anything is
        stored; a store with an outbox checks the log again before its COMMIT
        (:meth:`AuditLogger.begin`) and stores nothing if the log cannot take the event;
        a failure after the commit says the write was stored.
        """
        logger = self.audit_logger
        try:
            logger.report_failures()  # no lock, nothing done, unless a failure waits
        except AuditLogError as exc:
            raise exc.retold(_WRITE_REFUSED) from None
        return Audited(logger.journal, event)


def _identifier(term: str | None) -> str | None:
    """A rule-table term as an audit identifier ("medical record" -> "medical_record")."""
    return None if term is None else term.replace(" ", "_")
