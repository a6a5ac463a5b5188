"""A staged pattern as held in Redis: the JSON entry written, and every check of it read back.

:func:`seal_staged` builds the entry from a pattern that passed steps 1-3: ``"v"`` (its
format), ``pattern_id``, ``pattern_type``, ``staged_at``, ``expires_at``, then either the
classification, ``staged_by`` and the data in the clear, or, for a SENSITIVE pattern, a
``sealed`` part (base64 fields) whose ciphertext holds ``staged_by`` and the data, so only
the id, type and times stay readable. :func:`open_staged` reads an entry back and refuses
anything malformed with :class:`~attune.errors.CorruptRecordError`.
:class:`~.pipeline.SecurityPipeline` calls both (``seal_staged``/``open_staged``) with its
own cipher; a long-term record's stored form is :mod:`.records`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from attune.errors import CorruptRecordError
from attune.memory.security.crypto import EncryptedBlob, EnvelopeCipher
from attune.memory.security.records import _PLAIN_LABELS, Encrypt, _json, _loads_object
from attune.memory.types import RECORD_FORMAT, RECORD_FORMATS, Classification

if TYPE_CHECKING:
    from attune.memory.security.steps import Prepared

#: The readable part of a staged entry, sealed or not.
_STAGED_VISIBLE = ("pattern_id", "pattern_type", "staged_at", "expires_at")
_UNNAMED_STAGED = "(a staged pattern without a readable id)"


def seal_staged(envelope: dict[str, Any], prepared: Prepared, encrypt: Encrypt) -> dict[str, Any]:
    """The JSON held in Redis; a SENSITIVE pattern keeps only id, type, times and namespace
    readable (its secret part encrypted with ``encrypt``).

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
    blob = encrypt(plaintext, envelope["pattern_id"], classification)
    visible = {k: envelope[k] for k in (*_STAGED_VISIBLE, "namespace") if k in envelope}
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
    stored: Mapping[str, Any] | bytes | str,
    cipher: Callable[[], EnvelopeCipher],
    *,
    staged_id: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(envelope, data) of a staged pattern as held in Redis: the parsed JSON object,
    or its raw bytes / text; a sealed one is decrypted with ``cipher()``.

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
        raise CorruptRecordError(name, "its pattern_id does not match the id it is stored under")
    version = stored.get("v")
    if type(version) is not int or version not in RECORD_FORMATS:
        raise CorruptRecordError(name, "its format version is missing or unknown")
    envelope: dict[str, Any] = {}
    for k in _STAGED_VISIBLE:
        value = stored.get(k)
        if type(value) is not str or not value:
            raise CorruptRecordError(name, f"its {k!r} field is missing or not a string")
        envelope[k] = value
    # Entries staged before namespaces existed belong to the default one.
    namespace = stored.get("namespace", "default")
    if type(namespace) is not str or not namespace:
        raise CorruptRecordError(name, "its 'namespace' field is not a string")
    envelope["namespace"] = namespace
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
    plaintext = cipher().decrypt(
        blob,
        record_id=envelope["pattern_id"],
        classification=Classification.SENSITIVE,
        record_format=version,
    )
    secret = _loads_object(plaintext)
    if secret is None:
        raise CorruptRecordError(name, "its decrypted part is not the JSON attune writes")
    return envelope, _staged_secret(name, secret, envelope)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
