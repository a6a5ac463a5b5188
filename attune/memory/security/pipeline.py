"""The security pipeline: the one place every write path runs through.

For a pattern write (``persist_pattern``, ``stage_pattern``, ``promote_pattern``)
the steps run in this order, each a small unit of its own module:

1. **detect secrets** (:mod:`.secrets`) in the content and in every string of the
   metadata / pattern data: any finding blocks the write;
2. **scrub PII** (:mod:`.pii`) from the same strings;
3. **classify** (:mod:`.classifier`): explicit, or auto-detected from the rule table;
4. **encrypt** (:mod:`.crypto`): SENSITIVE always, INTERNAL when ``encryption_enabled``;
5. **audit** (:mod:`.audit`): every decision, with counts and kinds only.

The pipeline *fails closed*: if a step raises something unexpected or returns
something unusable, the write is refused with :class:`SecurityPipelineError`;
unscrubbed data is never stored as a fallback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from attune.errors import (
    AttuneError,
    AuditLogError,
    CorruptRecordError,
    SecretsDetectedError,
    SecurityPipelineError,
    ValidationError,
)
from attune.memory import store_marker
from attune.memory.compact_json import compact_encoder
from attune.memory.config import MemoryConfig
from attune.memory.long_term.protocol import Audited, PatternRecord, WrappedKey
from attune.memory.security.audit import AuditEvent, AuditLogger, Durability
from attune.memory.security.classifier import ClassificationDecision, decide
from attune.memory.security.crypto import EncryptedBlob, EnvelopeCipher, KeyRing
from attune.memory.security.pii import PIIScrubber
from attune.memory.security.secrets import SecretsDetector
from attune.memory.types import RECORD_FORMAT, RECORD_FORMATS, Classification

T = TypeVar("T")

_TYPE_CACHE_SIZE = 256

#: Events of reads: a read the audit log refuses says "read", not "write".
_READ_EVENTS = frozenset({"pattern.retrieve", "staging.list"})
_READ_REFUSED = (
    "the read was refused: every read is audited, and reads are served again once the "
    "log can be written"
)
_WRITE_REFUSED = "the write was refused and nothing was stored"

_registry_lock = threading.Lock()
_audit_loggers: dict[Path, AuditLogger] = {}
#: Bumped by close_shared(), so pipelines drop the loggers they cached.
_generation = 0
_keyrings: dict[tuple[Path, str, Path | None], KeyRing] = {}


def shared_audit_logger(path: Path, sync: bool) -> AuditLogger:
    """One logger per file in a process, so every writer extends the same hash chain.

    The first configuration to open a file decides its ``sync`` mode.
    """
    with _registry_lock:
        logger = _audit_loggers.get(path)
        if logger is None:
            logger = AuditLogger(log_file=path, sync=sync)
            _audit_loggers[path] = logger
        return logger


def shared_keyring(storage_dir: Path, environment: str, key_file: Path | None) -> KeyRing:
    """One key ring per storage directory in a process, so rotation is seen by every agent."""
    key = (storage_dir.expanduser().resolve(), environment, key_file)
    with _registry_lock:
        ring = _keyrings.get(key)
        if ring is None:
            ring = KeyRing.load(storage_dir=key[0], environment=environment, key_file=key_file)
            # Remember the keys in use here: losing them later is refused, not papered over.
            if ring.key_ids:
                store_marker.note(key[0], key_ids=ring.key_ids)
            _keyrings[key] = ring
        return ring


def close_shared() -> None:
    """Flush and close the shared audit loggers and forget the key rings (tests, shutdown)."""
    global _generation
    with _registry_lock:
        loggers = list(_audit_loggers.values())
        _audit_loggers.clear()
        _generation += 1
        _keyrings.clear()
    for logger in loggers:
        logger.close()


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a pattern write stores after steps 1-3."""

    content: str
    data: dict[str, Any]
    decision: ClassificationDecision
    pii_counts: dict[str, int] = field(default_factory=dict)

    @property
    def classification(self) -> Classification:
        return self.decision.classification

    @property
    def metadata(self) -> dict[str, Any]:
        return self.data

    @property
    def audit_details(self) -> dict[str, Any]:
        return {"rule": self.decision.rule, "pii": dict(self.pii_counts)}


@dataclass(frozen=True, slots=True)
class Sealed:
    """Content as it goes to storage: ciphertext and its key material, or plain UTF-8."""

    content: bytes
    encrypted: bool
    metadata_json: str
    key_id: str | None = None
    wrapped_key: bytes | None = None
    nonce: bytes | None = None


class SecurityPipeline:
    """Runs the security steps for one configuration. Cheap to create; the audit
    log and the key ring behind it are shared per file within the process."""

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config
        self.secrets = _step(
            "secrets detector",
            lambda: SecretsDetector(extra_patterns=config.secret_patterns or None),
        )
        self.scrubber = _step(
            "PII scrubber",
            lambda: PIIScrubber(
                disabled=config.pii_disabled_kinds,
                custom_patterns=config.pii_custom_patterns or None,
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
        if cached is not None and cached[0] == _generation:
            return cached[1]
        if self._audit_path is None:
            self._audit_path = self.config.ensure_audit_log_path()
        generation = _generation  # read first: a concurrent close_shared() forces a new lookup
        logger = shared_audit_logger(self._audit_path, self.config.audit_sync)
        self._audit = (generation, logger)
        return logger

    @property
    def cipher(self) -> EnvelopeCipher:
        with self._lock:
            if self._cipher is None:
                ring = shared_keyring(
                    self.config.ensure_storage_dir(),
                    self.config.environment.value,
                    self.config.master_key_file,
                )
                self._cipher = EnvelopeCipher(ring)
            return self._cipher

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
        self, action: Callable[[], T], *, user_id: str, tier: str, target_id: str, event: str
    ) -> T:
        try:
            return action()
        except SecretsDetectedError as exc:
            await self.audit(
                AuditEvent(
                    "security.violation",
                    user_id,
                    tier,
                    target_id,
                    outcome="blocked",
                    details={"kinds": exc.kinds, "during": event},
                )
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
        user_id: str,
        tier: str,
        target_id: str,
    ) -> Prepared:
        """Steps 1-3 for a long-term write (persist or promote)."""

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
            run, user_id=user_id, tier=tier, target_id=target_id, event="pattern.store"
        )
        # Queued: the operation's final event follows and is awaited.
        decided = AuditEvent(
            "classification.decision",
            user_id,
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
        self, data: dict[str, Any], pattern_type: str, *, user_id: str, tier: str, staged_id: str
    ) -> Prepared:
        """Steps 1-3 for a staged pattern, before anything reaches Redis."""

        def run() -> Prepared:
            self._check_pattern_type(pattern_type)
            clean, counts = self._sanitize(data, "the staged pattern")
            rest = {k: v for k, v in clean.items() if k != "content"}
            decision = self._classify(None, clean["content"], pattern_type, rest, True)
            return Prepared(clean["content"], clean, decision, counts)

        return await self._guard(
            run, user_id=user_id, tier=tier, target_id=staged_id, event="pattern.stage"
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
            lambda: decide(explicit, content, pattern_type, metadata, auto_classify=auto_classify),
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
        """Content and metadata as they go to storage. An encrypted record keeps both inside
        the ciphertext: nothing of it stays readable next to it (the metadata column is ``{}``)."""
        if not self.needs_encryption(classification):
            return Sealed(content.encode("utf-8"), False, _json(metadata))
        plaintext = _json({"content": content, "metadata": metadata}).encode("utf-8")
        blob = self._encrypt(plaintext, record_id, classification)
        return Sealed(blob.ciphertext, True, "{}", blob.key_id, blob.wrapped_key, blob.nonce)

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
        """(content, metadata) of a stored record, decrypting it if needed.

        A record altered or damaged outside attune raises :class:`CorruptRecordError`
        naming it (an encrypted one whose bytes fail authentication:
        :class:`~attune.errors.CorruptCiphertextError`); a missing or wrong master key raises
        :class:`DecryptionError`. Never a builtin exception, never garbage.
        """
        # One unpacking instead of an attribute lookup per field: every recall runs this.
        (pattern_id, _, label, _, _, _, metadata_json, stored, encrypted, key_id, wrapped_key,
         nonce, record_format) = record  # fmt: skip
        if not encrypted:
            # A plain record has no key material and is never SENSITIVE: a flipped flag
            # or label shows here, before its bytes are trusted as text.
            if (
                key_id is not None
                or nonce is not None
                or wrapped_key is not None
                or label not in _PLAIN_LABELS
                or record_format not in RECORD_FORMATS
            ):
                raise _inconsistent(pattern_id)
            try:
                metadata = json.loads(metadata_json)
                content: str = stored.decode("utf-8")
            except (ValueError, TypeError, AttributeError, RecursionError):
                raise CorruptRecordError(
                    pattern_id, "its content is not UTF-8 text or its metadata is not JSON"
                ) from None
            if type(metadata) is not dict:  # persist writes an object
                raise CorruptRecordError(pattern_id, "its metadata is not a JSON object")
            return content, metadata
        if (
            type(key_id) is not str
            or type(wrapped_key) is not bytes
            or type(nonce) is not bytes
            or type(stored) is not bytes
            or label not in _LABELS
        ):
            raise _inconsistent(pattern_id)
        blob = EncryptedBlob(key_id, wrapped_key, nonce, stored)
        plaintext = self.cipher.decrypt(
            blob, record_id=pattern_id, classification=label, record_format=record_format
        )
        opened = _loads_object(plaintext)
        text = opened.get("content") if opened is not None else None
        fields = opened.get("metadata") if opened is not None else None
        if type(text) is not str or type(fields) is not dict:
            raise CorruptRecordError(
                pattern_id, "its decrypted content is not the JSON attune writes"
            )
        return text, fields

    def rewrap(self, key: WrappedKey) -> WrappedKey:
        """The record's data key wrapped under the active master key (content untouched)."""
        # Only the wrapped key is read: the content nonce and ciphertext are not needed.
        blob = EncryptedBlob(key.key_id, key.wrapped_key, b"", b"")
        new = self.cipher.rewrap(blob, record_id=key.pattern_id, classification=key.classification)
        return WrappedKey(key.pattern_id, key.classification, new.key_id, new.wrapped_key)

    def seal_staged(self, envelope: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
        """The JSON held in Redis; a SENSITIVE pattern keeps only id, type and times readable.

        ``"v"`` is the entry's format (:data:`RECORD_FORMAT`); a sealed entry binds it into
        its ciphertext, as a long-term record does."""
        classification = prepared.classification
        if classification is not Classification.SENSITIVE:
            return {
                "v": RECORD_FORMAT,
                **envelope,
                "classification": classification.value,
                "data": prepared.data,
            }
        secret = {"staged_by": envelope["staged_by"], "data": prepared.data}
        plaintext = _json(secret).encode("utf-8")
        blob = self._encrypt(plaintext, envelope["pattern_id"], classification)
        visible = {k: envelope[k] for k in _STAGED_VISIBLE}
        return {
            "v": RECORD_FORMAT,
            **visible,
            "sealed": {
                "key_id": blob.key_id,
                "wrapped_key": _b64(blob.wrapped_key),
                "nonce": _b64(blob.nonce),
                "ciphertext": _b64(blob.ciphertext),
            },
        }

    def open_staged(
        self, stored: Mapping[str, Any] | bytes | str, *, staged_id: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(envelope, data) of a staged pattern as held in Redis: the parsed JSON object,
        or its raw bytes / text.

        Anything malformed (not JSON, not an object, a field missing or of the wrong type,
        an unknown version or classification, a SENSITIVE entry left unsealed, a sealed part
        that does not authenticate) raises :class:`CorruptRecordError` naming ``staged_id``
        (else the entry's own ``pattern_id``); a missing or wrong master key raises
        :class:`~attune.errors.DecryptionError`. The data always holds a ``content`` string.
        """
        name = staged_id if staged_id is not None else _UNNAMED_STAGED
        if isinstance(stored, bytes | bytearray | str):
            parsed = _loads_object(stored)
            if parsed is None:
                raise CorruptRecordError(name, "it is not a JSON object")
            stored = parsed
        elif not isinstance(stored, Mapping):
            raise CorruptRecordError(name, "it is not a JSON object")
        own_id = stored.get("pattern_id")
        if staged_id is None and type(own_id) is str and own_id:
            name = own_id
        elif own_id != staged_id and staged_id is not None:
            raise CorruptRecordError(
                name, "its pattern_id does not match the id it is stored under"
            )
        version = stored.get("v")
        if type(version) is not int or version not in RECORD_FORMATS:
            raise CorruptRecordError(name, "its format version is missing or unknown")
        envelope: dict[str, Any] = {}
        for k in _STAGED_VISIBLE:
            value = stored.get(k)
            if type(value) is not str or not value:
                raise CorruptRecordError(name, f"its {k!r} field is missing or not a string")
            envelope[k] = value
        sealed = stored.get("sealed")
        if sealed is None:
            classification = stored.get("classification")
            if classification not in _PLAIN_LABELS:  # SENSITIVE is always sealed
                raise CorruptRecordError(
                    name, "its classification is missing, unknown, or SENSITIVE but not sealed"
                )
            envelope["classification"] = classification
            return envelope, _staged_secret(name, stored, envelope)
        # Only SENSITIVE patterns are sealed; even the label stays out of the readable part.
        envelope["classification"] = Classification.SENSITIVE.value
        blob = _staged_blob(name, sealed)
        plaintext = self.cipher.decrypt(
            blob,
            record_id=envelope["pattern_id"],
            classification=Classification.SENSITIVE,
            record_format=version,
        )
        secret = _loads_object(plaintext)
        if secret is None:
            raise CorruptRecordError(name, "its decrypted part is not the JSON attune writes")
        return envelope, _staged_secret(name, secret, envelope)

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
        write's own (:meth:`commit_hook`).

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
        written yet is not created."""
        report: dict[str, Any] = {}
        try:
            logger = self.audit_logger
            report["path"] = str(logger.log_file)
            if logger.held_events or logger.log_file.exists():
                await asyncio.to_thread(logger.check)
        except AuditLogError as exc:
            report.update(available=False, error=f"{exc.reason}. {exc.advice}".rstrip())
        except Exception as exc:  # health never raises
            report.update(available=False, error=f"{type(exc).__name__}: {exc}")
        else:
            report["available"] = True
        if "path" in report:
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


def _step(name: str, fn: Callable[[], T]) -> T:
    """Run one pipeline step; anything unexpected refuses the write (fail closed)."""
    try:
        return fn()
    except AttuneError:
        raise
    except Exception as exc:
        raise SecurityPipelineError(
            f"security step '{name}' failed ({type(exc).__name__}); the write was refused"
        ) from None


def _as_lines(value: Any) -> str:
    """Every string of ``value`` (keys included) as one text for the secrets detector.

    A string under a key reads ``key: value``, as it would in a config file, so a
    credential is found by its field name too (``{"api_key": "..."}``); one scan of
    one text instead of one per string.
    """
    lines: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            lines.append(item)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and isinstance(child, str):
                    lines.append(f"{key}: {child}")
                else:
                    walk(key)
                    walk(child)
        elif isinstance(item, list | tuple):
            for child in item:
                walk(child)

    walk(value)
    return "\n".join(lines)


def _identifier(term: str | None) -> str | None:
    """A rule-table term as an audit identifier ("medical record" -> "medical_record")."""
    return None if term is None else term.replace(" ", "_")


#: One encoder, not one per call (``json.dumps`` with options builds a new one each time).
#: Sealed content and metadata: validated JSON values already (no NaN, no cycles).
_json = compact_encoder(ensure_ascii=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


#: Labels a record may carry; those it may carry unencrypted (SENSITIVE is always sealed).
_LABELS = frozenset(c.value for c in Classification)
_PLAIN_LABELS = _LABELS - {Classification.SENSITIVE.value}
#: The readable part of a staged entry, sealed or not.
_STAGED_VISIBLE = ("pattern_id", "pattern_type", "staged_at", "expires_at")
_UNNAMED_STAGED = "(a staged pattern without a readable id)"


def _inconsistent(pattern_id: str) -> CorruptRecordError:
    return CorruptRecordError(
        pattern_id,
        "its encrypted flag, key material, classification or format do not agree (a flag "
        "or label was changed outside attune)",
    )


def _loads_object(raw: bytes | bytearray | str) -> dict[str, Any] | None:
    """The JSON object in ``raw``, or None when it is not valid JSON or not an object."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None
    return value if type(value) is dict else None


def _staged_secret(
    name: str, source: Mapping[str, Any], envelope: dict[str, Any]
) -> dict[str, Any]:
    """Checks ``staged_by`` and ``data`` of a staged entry (or its sealed part): puts the
    first into ``envelope``, returns a copy of the second."""
    staged_by, data = source.get("staged_by"), source.get("data")
    if type(staged_by) is not str or not staged_by:
        raise CorruptRecordError(name, "its 'staged_by' field is missing or not a string")
    if type(data) is not dict or type(data.get("content")) is not str:
        raise CorruptRecordError(name, "its data is missing or has no 'content' string")
    envelope["staged_by"] = staged_by
    return dict(data)


def _staged_blob(name: str, sealed: object) -> EncryptedBlob:
    """The sealed part of a staged entry as a blob (its fields base64 in JSON)."""
    if not isinstance(sealed, Mapping):
        raise CorruptRecordError(name, "its sealed part is not a JSON object")
    key_id = sealed.get("key_id")
    encoded = [e for k in ("wrapped_key", "nonce", "ciphertext") if type(e := sealed.get(k)) is str]
    if type(key_id) is not str or len(encoded) != 3:
        raise CorruptRecordError(name, "its sealed part lacks a key id or an encoded field")
    try:
        wrapped_key, nonce, ciphertext = (base64.b64decode(e, validate=True) for e in encoded)
    except (binascii.Error, ValueError):
        raise CorruptRecordError(name, "its sealed part is not valid base64") from None
    return EncryptedBlob(key_id, wrapped_key, nonce, ciphertext)
