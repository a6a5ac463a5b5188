"""Envelope encryption (AES-256-GCM): a record's content under its own data key.

Every record gets its own random 256-bit *data key*. The content is encrypted with it
(AES-GCM, random 96-bit nonce) and the associated data binds the record id, the
classification and (record format 2 on) the record's format version and its encrypted flag,
so a blob copied onto another record, relabelled, or read under another format does not
open. Format 1 records (written before the format was stored) keep their own associated
data and stay readable. The data
key is then *wrapped* by the ring's active *master key* (AES-GCM again, own random nonce,
stored as ``wrap_nonce || ciphertext+tag``); that associated data also binds the master key
id. Encodings of associated data are length-prefixed, so they are unambiguous.

The master keys and ``ATTUNE_MASTER_KEY`` are :mod:`.keyring`'s, the key file
:mod:`.keyfile`'s; the public names (``KeyRing``, ``generate_master_key``, ``key_id``,
``ENV_VAR``, ``KEY_FILE_NAME``) stay importable from here.

Rotation: :meth:`KeyRing.add_key` makes a new key active; :meth:`EnvelopeCipher.rewrap` moves
a record's data key under it without touching the content. Rotate before a master key has
wrapped about 2**32 data keys (the random-nonce bound of AES-GCM).

Crypto-shredding: each record has its own data key, so deleting a record's wrapped key (or
every master key that wrapped it) makes its content unrecoverable, even from backups of the
ciphertext.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attune.errors import CorruptCiphertextError, CorruptRecordError, DecryptionError
from attune.memory.security import randomness
from attune.memory.security.keyfile import KEY_BYTES
from attune.memory.security.keyring import ENV_VAR as ENV_VAR
from attune.memory.security.keyring import KEY_FILE_NAME as KEY_FILE_NAME
from attune.memory.security.keyring import KeyRing as KeyRing
from attune.memory.security.keyring import generate_master_key as generate_master_key
from attune.memory.security.keyring import key_id as key_id
from attune.memory.types import RECORD_FORMAT, Classification

_NONCE_BYTES = 12
_TAG_BYTES = 16
_WRAPPED_BYTES = _NONCE_BYTES + KEY_BYTES + _TAG_BYTES
_CONTENT_AAD = b"attune.content.v1"
#: Format 2 on: the purpose names the format, and the format and the encrypted flag (always
#: set for a record that is decrypted) follow the id and the classification.
_CONTENT_AAD_V2 = b"attune.content.v2"
_FLAG_AND_FORMAT_V2 = b"".join(
    len(part).to_bytes(4, "big") + part for part in (b"format=2", b"encrypted=1")
)
_WRAP_AAD = b"attune.wrap.v1"


@dataclass(frozen=True, slots=True)
class EncryptedBlob:
    """What an encrypted record stores: master key id, wrapped data key, nonce, ciphertext."""

    key_id: str
    wrapped_key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


class EnvelopeCipher:
    """Encrypts records under per-record data keys wrapped by the ring's active master key."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def encrypt(
        self,
        plaintext: bytes,
        *,
        record_id: str,
        classification: str | Classification,
        record_format: int = RECORD_FORMAT,
    ) -> EncryptedBlob:
        label = _label(classification)
        aad = _content_aad(record_id, label, record_format)
        kid, master = self.ring._active_key()
        # The data key straight from the OS, never from the block buffer, so no future key
        # waits in memory (a buffered key draw measured no faster: ab_randomness.py). The
        # nonces are public, stored beside the ciphertext: one buffered draw for both.
        data_key = _new_data_key()
        nonces = randomness.token_bytes(2 * _NONCE_BYTES)
        nonce, wrap_nonce = nonces[:_NONCE_BYTES], nonces[_NONCE_BYTES:]
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        wrapped = _wrap(master, kid, data_key, record_id, label, wrap_nonce)
        return EncryptedBlob(kid, wrapped, nonce, ciphertext)

    def decrypt(
        self,
        blob: EncryptedBlob,
        *,
        record_id: str,
        classification: str | Classification,
        record_format: int = RECORD_FORMAT,
    ) -> bytes:
        """The plaintext. A missing or wrong master key raises :class:`DecryptionError`;
        bytes that fail authentication once the data key opened (content, nonce, or the
        format / id / classification bound to them) raise :class:`CorruptCiphertextError`."""
        label = _label(classification)
        aad = _content_aad(record_id, label, record_format)
        data_key = self._unwrap(blob, record_id, label)
        if not _has_length(blob.nonce, _NONCE_BYTES):
            raise CorruptCiphertextError(record_id, _altered("its nonce is malformed"))
        if not isinstance(blob.ciphertext, bytes):
            raise CorruptCiphertextError(record_id, _altered("its ciphertext is not bytes"))
        try:
            return AESGCM(data_key).decrypt(blob.nonce, blob.ciphertext, aad)
        except InvalidTag:
            raise CorruptCiphertextError(
                record_id,
                _altered("its ciphertext, nonce or format failed authentication"),
            ) from None

    def rewrap(
        self, blob: EncryptedBlob, *, record_id: str, classification: str | Classification
    ) -> EncryptedBlob:
        """The same record with its data key wrapped by the active master key (for rotation).

        The content (ciphertext and nonce) is unchanged; a blob already under the active
        key is returned as is.
        """
        label = _label(classification)
        kid, master = self.ring._active_key()
        if blob.key_id == kid:
            return blob
        data_key = self._unwrap(blob, record_id, label)
        return replace(blob, key_id=kid, wrapped_key=_wrap(master, kid, data_key, record_id, label))

    def _unwrap(self, blob: EncryptedBlob, record_id: str, label: str) -> bytes:
        master = self.ring._key(blob.key_id) if isinstance(blob.key_id, str) else None
        if master is None and self.ring.in_store:
            raise DecryptionError(
                f"cannot decrypt record {record_id!r}: it was encrypted under master key "
                f"{blob.key_id!r}, which is not in the key ring kept in the long-term database "
                "(nor was it there when the ring was read again). Restore the key ring's "
                "tables from a backup, or import that key; if it was deleted on purpose the "
                "record is unrecoverable (crypto-shredded)"
            )
        if master is None:
            raise DecryptionError(
                f"cannot decrypt record {record_id!r}: it was encrypted under master key "
                f"{blob.key_id!r}, which is neither {ENV_VAR} nor in the key file "
                f"({self.ring.key_file}). Restore that key to the key file or set {ENV_VAR} "
                "to it; if it was deleted "
                "on purpose the record is unrecoverable (crypto-shredded)"
            )
        wrapped = blob.wrapped_key
        if not _has_length(wrapped, _WRAPPED_BYTES):
            raise CorruptCiphertextError(record_id, _altered("its wrapped data key is malformed"))
        aad = _wrap_aad(record_id, label, blob.key_id)
        try:
            return AESGCM(master).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], aad)
        except InvalidTag:
            # A key id is derived from the key's material, and the ring holds only keys
            # whose id matches it: this is the key the record was written under, so the
            # row itself (wrapped key, id or classification) was altered.
            raise CorruptCiphertextError(
                record_id, _altered("its data key does not open under its master key")
            ) from None


def _label(classification: str | Classification) -> str:
    return Classification.parse(classification).value


def _has_length(value: object, length: int) -> bool:
    return isinstance(value, bytes) and len(value) == length


def _altered(what: str) -> str:
    return f"{what}, so the stored record was altered or damaged, or belongs to another record"


def _new_data_key() -> bytes:
    """A fresh 256-bit data key from the OS CSPRNG (one ``os.urandom`` call)."""
    return os.urandom(KEY_BYTES)


def _wrap(
    master: bytes, kid: str, data_key: bytes, record_id: str, label: str, nonce: bytes | None = None
) -> bytes:
    nonce = randomness.token_bytes(_NONCE_BYTES) if nonce is None else nonce
    return nonce + AESGCM(master).encrypt(nonce, data_key, _wrap_aad(record_id, label, kid))


def _content_aad(record_id: str, label: str, record_format: object) -> bytes:
    """The content's associated data for a record of ``record_format``."""
    if record_format == 2 and type(record_format) is int:
        return _aad(_CONTENT_AAD_V2, record_id, label) + _FLAG_AND_FORMAT_V2
    if record_format == 1 and type(record_format) is int:
        return _aad(_CONTENT_AAD, record_id, label)
    raise CorruptRecordError(
        str(record_id), "its stored format version is not one this version of attune reads"
    )


def _wrap_aad(record_id: str, label: str, kid: str) -> bytes:
    return _aad(_WRAP_AAD, record_id, label, kid)


def _aad(purpose: bytes, *parts: str) -> bytes:
    """``purpose`` then each part as a 4-byte big-endian length and its UTF-8 bytes."""
    out = [purpose]
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        out += (len(raw).to_bytes(4, "big"), raw)
    return b"".join(out)
