"""Signed checkpoints of the audit chain head: the anchor against a rewritten history.

The chain is keyless: whoever can write the log (a database administrator, for the
PostgreSQL table) can rewrite every line after an edit and recompute the hashes, or drop
the newest lines and move the head back. A *checkpoint*, exported somewhere that writer
cannot reach, pins what the chain held: ::

    {"version":1,"seq":<n>,"hash":"<SHA-256 hex of line n>","time":"<UTC>",
     "key_id":"<master key id>","mac":"<HMAC-SHA256 hex>"}

The MAC is HMAC-SHA256, under a key derived by HKDF-SHA256 (fixed info, no salt) from the
master key ``key_id``, over the compact JSON of the other fields. So a checkpoint cannot be
forged or moved without the master key, and verifying it needs that key (from the key file
or ``ATTUNE_MASTER_KEY``, never the database). :func:`open_checkpoint` checks the MAC and
returns (seq, hash), which ``verify(anchor=...)`` then requires of the chain: the line at
``seq`` must hash to ``hash`` (so nothing up to it was rewritten) and the chain must
reach it (so nothing up to it was cut off the end).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from attune.errors import AuditLogError, ValidationError
from attune.memory.security.audit.codec import _HEX64, _signed_text
from attune.memory.security.keyring import KeyRing

VERSION = 1
_INFO = b"attune audit checkpoint v1"
_FIELDS = ("version", "seq", "hash", "time", "key_id")
_NOT_VERIFIED = "the chain was not checked against it"


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    """The MAC of a checkpoint's fields under ``key`` (the ring's
    :meth:`~attune.memory.security.keyring.KeyRing.derived_key` for checkpoints)."""
    text = _signed_text({k: fields[k] for k in _FIELDS})
    return hmac.new(key, text, "sha256").hexdigest()


def sign_checkpoint(
    ring: KeyRing, seq: int, head: str, when: datetime | None = None
) -> dict[str, Any]:
    """A checkpoint of the chain head (``seq``, ``head``: a verified chain's
    ``head_seq`` and ``head``), signed under the ring's active master key."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValidationError("a checkpoint's seq must be a whole number, 0 or more")
    if not isinstance(head, str) or not _HEX64.fullmatch(head):
        raise ValidationError("a checkpoint's hash must be 64 lowercase hex digits")
    kid = ring.active_key_id
    key = ring.derived_key(kid, _INFO)
    assert key is not None  # the active key is in the ring
    stamp = (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields: dict[str, Any] = {
        "version": VERSION,
        "seq": seq,
        "hash": head,
        "time": stamp,
        "key_id": kid,
    }
    fields["mac"] = _mac(key, fields)
    return fields


def open_checkpoint(document: object, ring: KeyRing) -> tuple[int, str]:
    """(seq, hash) of a checkpoint whose MAC is valid under its master key in ``ring``;
    :class:`~attune.errors.AuditLogError` for one that is malformed, names a key the ring
    lacks, or was altered (nothing of it is trusted then)."""
    if not isinstance(document, dict) or set(document) != {*_FIELDS, "mac"}:
        raise _bad("it is not a checkpoint document (its fields are not the expected ones)")
    seq, head, kid, mac = document["seq"], document["hash"], document["key_id"], document["mac"]
    if (
        document["version"] != VERSION
        or isinstance(seq, bool)
        or not isinstance(seq, int)
        or seq < 0
        or not isinstance(head, str)
        or not _HEX64.fullmatch(head)
        or not isinstance(kid, str)
        or not isinstance(mac, str)
        or not isinstance(document["time"], str)
    ):
        raise _bad("one of its fields is not valid")
    key = ring.derived_key(kid, _INFO)
    if key is None:
        raise AuditLogError(
            f"the checkpoint was signed with master key {kid}, which is not in the key ring",
            _NOT_VERIFIED,
            "Restore that key (the key file or ATTUNE_MASTER_KEY) and verify again.",
        )
    if not hmac.compare_digest(_mac(key, document), mac):
        raise _bad("its signature does not match: it was altered or forged")
    return seq, head


def _bad(why: str) -> AuditLogError:
    return AuditLogError(
        f"the audit checkpoint is not valid: {why}",
        _NOT_VERIFIED,
        "Use the checkpoint file exactly as `attune audit checkpoint` wrote it.",
    )
