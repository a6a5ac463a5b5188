"""A long-term record's stored form: what step 4 of the pipeline writes, and reading it back.

:func:`seal` turns a pattern's content and metadata into what the store keeps
(:class:`Sealed`): plain UTF-8 and a JSON metadata column, or, when the classification
needs encryption, one ciphertext holding both (the metadata column is then ``{}``).
:func:`unseal` reads a stored :class:`~attune.memory.long_term.protocol.PatternRecord`
back, checking that its flag, key material, label and format agree before any byte of it
is trusted. :class:`~.pipeline.SecurityPipeline` calls both with its own cipher; the
label sets and the JSON helpers here are shared with :mod:`.staged`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from attune.errors import CorruptRecordError
from attune.memory.compact_json import compact_encoder
from attune.memory.long_term.protocol import PatternRecord
from attune.memory.security.crypto import EncryptedBlob, EnvelopeCipher
from attune.memory.timestamps import is_readable_ms
from attune.memory.types import RECORD_FORMATS, Classification

#: Encrypts (plaintext, record_id, classification): the pipeline's, which fails closed.
Encrypt = Callable[[bytes, str, Classification], EncryptedBlob]

#: One encoder, not one per call (``json.dumps`` with options builds a new one each time).
#: Sealed content and metadata: validated JSON values already (no NaN, no cycles).
_json = compact_encoder(ensure_ascii=False)

#: Labels a record may carry; those it may carry unencrypted (SENSITIVE is always sealed).
_LABELS = frozenset(c.value for c in Classification)
_PLAIN_LABELS = _LABELS - {Classification.SENSITIVE.value}


@dataclass(frozen=True, slots=True)
class Sealed:
    """Content as it goes to storage: ciphertext and its key material, or plain UTF-8."""

    content: bytes
    encrypted: bool
    metadata_json: str
    key_id: str | None = None
    wrapped_key: bytes | None = None
    nonce: bytes | None = None


def seal(
    record_id: str,
    classification: Classification,
    content: str,
    metadata: Mapping[str, Any],
    encrypt: Encrypt | None,
) -> Sealed:
    """Content and metadata as they go to storage: plain when ``encrypt`` is None. An
    encrypted record keeps both inside the ciphertext: nothing of it stays readable next to
    it (the metadata column is ``{}``)."""
    if encrypt is None:
        return Sealed(content.encode("utf-8"), False, _json(metadata))
    plaintext = _json({"content": content, "metadata": metadata}).encode("utf-8")
    blob = encrypt(plaintext, record_id, classification)
    return Sealed(blob.ciphertext, True, "{}", blob.key_id, blob.wrapped_key, blob.nonce)


def unseal(
    record: PatternRecord, cipher: Callable[[], EnvelopeCipher]
) -> tuple[str, dict[str, Any]]:
    """(content, metadata) of a stored record, decrypting it (with ``cipher()``, opened
    only for an encrypted record) if needed.

    A record altered or damaged outside attune raises :class:`CorruptRecordError`
    naming it (an encrypted one whose bytes fail authentication:
    :class:`~attune.errors.CorruptCiphertextError`); a missing or wrong master key raises
    :class:`~attune.errors.DecryptionError`. Never a builtin exception, never garbage.
    """
    # One unpacking instead of an attribute lookup per field: every recall runs this.
    (pattern_id, _, label, _, created_at_ms, expires_at_ms, metadata_json, stored, encrypted,
     key_id, wrapped_key, nonce, record_format, _namespace) = record  # fmt: skip
    if not is_readable_ms(created_at_ms) or not (
        expires_at_ms is None or is_readable_ms(expires_at_ms)
    ):
        raise CorruptRecordError(pattern_id, "its times are not milliseconds attune writes")
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
    plaintext = cipher().decrypt(
        blob, record_id=pattern_id, classification=label, record_format=record_format
    )
    opened = _loads_object(plaintext)
    text = opened.get("content") if opened is not None else None
    fields = opened.get("metadata") if opened is not None else None
    if type(text) is not str or type(fields) is not dict:
        raise CorruptRecordError(pattern_id, "its decrypted content is not the JSON attune writes")
    return text, fields


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
