"""How the audit log names people: a keyed pseudonym per user, never the user id itself.

The audit log is append-only and hash-chained, so nothing in it can be deleted later. A
user id written there in clear could never be erased; instead each user has a random
secret (kept by the long-term store, :class:`~attune.memory.long_term.protocol.SubjectOp`)
and the log holds ``HMAC-SHA256(secret, user_id)``, shortened. While the secret exists,
the pseudonym is recomputed to find a user's events (``attune audit query --user``);
erasing the user deletes the secret, and the log can no longer be linked to the person
(nor can the pseudonym be recomputed from the id: the secret is random, not derived),
while its chain still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import os

#: Bytes of a new user's secret.
SECRET_BYTES = 32
#: Hex characters of a pseudonym kept (96 bits: no two users of a store collide).
_PSEUDONYM_HEX = 24
PREFIX = "u_"


def new_secret() -> bytes:
    """A fresh random secret for a user seen for the first time (once per user: straight
    from the OS, nothing buffered)."""
    return os.urandom(SECRET_BYTES)


def pseudonym(secret: bytes, user_id: str) -> str:
    """The name ``user_id`` has in the audit log, e.g. ``u_3f9a...``."""
    digest = hmac.new(secret, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:_PSEUDONYM_HEX]
