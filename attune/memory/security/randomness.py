"""Bytes from the operating system's CSPRNG, drawn in blocks, for public values only
(record ids, AES-GCM nonces). Key material never comes from here: data keys are drawn
with ``os.urandom`` directly (``crypto._new_data_key``), so no future key waits in memory.

``os.urandom`` releases the GIL on every call. While other threads are busy (the SQLite
connection's thread, the audit writer) each release hands them the GIL, and the caller
waits to get it back: about 20 µs per call measured under 64 concurrent persists, far
more than the 16-56 bytes a record id or an encryption needs. Drawing 4 KiB at a time and
handing out consecutive, never reused slices gives the same CSPRNG bytes with one
release per ~70 records.

A forked child discards the parent's block (``os.register_at_fork``): parent and child
never hand out the same bytes, so no data key or nonce is ever used twice.
"""

from __future__ import annotations

import os
import threading
import time

_BLOCK = 4096

_lock = threading.Lock()
_block = b""
_used = 0


def token_bytes(count: int) -> bytes:
    """``count`` fresh random bytes (``os.urandom`` quality), each handed out once."""
    global _block, _used
    if count < 0:
        raise ValueError("count must not be negative")
    if count > _BLOCK // 4:  # large draws gain nothing from the block
        return os.urandom(count)
    with _lock:
        end = _used + count
        if end > len(_block):
            _block, _used, end = os.urandom(_BLOCK), 0, count
        chunk = _block[_used:end]
        _used = end
    return chunk


def uuid7_hex() -> str:
    """A version 7 UUID (RFC 9562) as 32 hex digits: the Unix time in milliseconds (48
    bits), then 74 random bits. Ids made later sort later (to the millisecond), so records
    inserted together land on the same B-tree pages instead of all over the table."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + token_bytes(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def _forget_in_child() -> None:
    """After ``fork``: drop the parent's bytes, and a lock another thread may have held."""
    global _lock, _block, _used
    _lock = threading.Lock()
    _block, _used = b"", 0


os.register_at_fork(after_in_child=_forget_in_child)
