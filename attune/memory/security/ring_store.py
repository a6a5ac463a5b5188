"""A key ring kept in the long-term store, shared by every host that uses it.

With a store of one host (SQLite), the master keys are ``ATTUNE_MASTER_KEY`` and the key
file (:mod:`.keyring`). A store that many hosts share (PostgreSQL) keeps the ring itself
(:meth:`~attune.memory.long_term.protocol.LongTermStore.key_ring`), so a rotation on one
host is read on every other at once:

- the *root key* is this host's master key as today (``ATTUNE_MASTER_KEY``, else the key
  file's active key); it encrypts nothing but the ring;
- the ring's keys are random 256-bit master keys made by attune, each stored wrapped under
  the root (AES-256-GCM under a key derived from the root by HKDF, associated data: the
  root's id and the key's id), one of them active. They wrap records' data keys exactly
  as a local master key does (:mod:`.crypto`);
- a *check value* (AES-GCM of nothing under the same derived key, bound to the root's id)
  proves a root key is the ring's root without revealing it.

The first process with a master key that finds no ring creates one (one new active key;
the store makes exactly one, whoever else starts at once). A process whose root differs
from the ring's refuses to go on (:class:`ConfigurationError` naming both key ids, never
material) before it writes anything; so does one whose ring rows do not open (altered or
damaged). A process with no master key at all (staging, production) leaves the ring alone:
it writes PUBLIC records only and cannot read encrypted ones, as without a store ring.

The hot path stays in memory: the ring is read when a process starts, when the store says
it changed (``on_change``: PostgreSQL LISTEN/NOTIFY) before the next encrypted write, and
once when a record names a key this process has not loaded (:func:`learn`).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from base64 import b64encode
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attune.errors import ConfigurationError, ValidationError
from attune.memory.long_term.protocol import (
    LongTermStore,
    RingAdd,
    RingCreate,
    RingKey,
    RingReroot,
    StoredRing,
)
from attune.memory.security import randomness
from attune.memory.security.keyfile import KEY_BYTES, decode_key, key_id
from attune.memory.security.keyring import ENV_VAR, KeyRing

logger = logging.getLogger(__name__)

_NONCE = 12
_TAG = 16
_WRAPPED = _NONCE + KEY_BYTES + _TAG
_CHECK = _NONCE + _TAG
_ROOT_INFO = b"attune key ring root v1"
_KEY_AAD = b"attune.ring.key.v1"
_CHECK_AAD = b"attune.ring.check.v1"


@dataclass
class _Link:
    """What this process knows of one ring's place in a store."""

    #: The ring was read from the store and holds its keys.
    attached: bool = False
    #: The store said the ring changed since: read it before the next encrypted write.
    stale: bool = False
    #: The store keeps a ring, but this process has no master key to open it.
    rootless: bool = False

    def heard(self) -> None:
        self.stale = True


_lock = threading.Lock()
_links: weakref.WeakKeyDictionary[KeyRing, _Link] = weakref.WeakKeyDictionary()
#: Stores that answered whether they keep a ring (asked once each).
_ringless: weakref.WeakSet[LongTermStore] = weakref.WeakSet()
_ringed: weakref.WeakSet[LongTermStore] = weakref.WeakSet()


def _link(ring: KeyRing) -> _Link:
    with _lock:
        link = _links.get(ring)
        if link is None:
            link = _links[ring] = _Link()
        return link


async def keeps_ring(store: LongTermStore) -> bool:
    """Whether ``store`` keeps a key ring (asked once per store object)."""
    if store in _ringed:
        return True
    if store in _ringless:
        return False
    if await store.key_ring() is None:
        _ringless.add(store)
        return False
    _ringed.add(store)
    return True


async def ready(ring: KeyRing, store: LongTermStore) -> None:
    """Make ``ring`` hold ``store``'s key ring: read (or, on a fresh store, create) and
    checked on first use; read again if the store said it changed. Cheap once done."""
    link = _link(ring)
    if (link.attached or link.rootless) and not link.stale:
        return
    await reload(ring, store)


async def learn(ring: KeyRing, store: LongTermStore) -> bool:
    """Read the store's ring again after a record named a key this process lacks; True if
    that changed the keys (then opening the record again may succeed)."""
    if not await keeps_ring(store):
        return False
    before = ring.key_ids
    await reload(ring, store)
    return ring.key_ids != before


async def reload(ring: KeyRing, store: LongTermStore) -> None:
    link = _link(ring)
    link.stale = False  # a change heard while reading marks it stale again
    stored = await store.key_ring(link.heard)
    if stored is None:
        return
    root = ring._root_key()
    if root is None:  # no master key here: PUBLIC only, the ring is left alone
        link.rootless = True
        return
    if not stored.created:
        stored = await store.change_key_ring(_new_ring(root))
    if link.attached and stored.root_key_id != root[0]:
        # Moved to a new root while this process runs: the keys it holds are still the
        # ring's, so what it writes stays readable everywhere; it learns no new ones.
        logger.warning(
            "the key ring in the long-term database was moved to root key %s; this process "
            "(root key %s) keeps the keys it holds but cannot learn new ones: restart it "
            "with the new root key in %s",
            stored.root_key_id,
            root[0],
            ENV_VAR,
        )
        return
    keys, active = open_ring(stored, root)
    ring._use_store_keys(keys, active)
    link.attached = True


async def rotate(ring: KeyRing, store: LongTermStore) -> str:
    """A new master key in the store's ring, made active for every host; its id. A store
    that keeps no ring: :meth:`KeyRing.add_key` (the key file), as before."""
    if not await keeps_ring(store):
        return ring.add_key()
    await ready(ring, store)
    root = _root_or_refuse(ring)
    material = randomness.token_bytes(KEY_BYTES)
    kid = key_id(material)
    stored = await store.change_key_ring(RingAdd(root[0], RingKey(kid, wrap(root, kid, material))))
    if stored.active_key_id != kid:
        raise _moved(root[0], stored.root_key_id, "no key was added")
    keys, active = open_ring(stored, root)
    ring._use_store_keys(keys, active)
    return kid


async def import_keys(ring: KeyRing, store: LongTermStore, keys: Iterable[bytes]) -> list[str]:
    """Add existing master keys (32 bytes each) to the store's ring without making them
    active, so records encrypted under them elsewhere (a SQLite store's key file, copied
    by a migration) open on every host; the ids of those the ring did not hold yet, in
    order. Keys already there are left as they are (and not counted)."""
    materials = [bytes(k) for k in keys]
    if any(len(k) != KEY_BYTES for k in materials):
        raise ConfigurationError(f"a master key to import must be exactly {KEY_BYTES} bytes")
    if not await keeps_ring(store):
        raise ConfigurationError(
            "this long-term store keeps no key ring: its master keys are in the key file"
        )
    await reload(ring, store)  # the ring as stored now: what is new is counted against it
    root = _root_or_refuse(ring)
    known = set(ring.key_ids)
    added: list[str] = []
    stored: StoredRing | None = None
    for material in materials:
        kid = key_id(material)
        op = RingAdd(root[0], RingKey(kid, wrap(root, kid, material)), activate=False)
        stored = await store.change_key_ring(op)
        if stored.root_key_id != root[0]:
            raise _moved(root[0], stored.root_key_id, "no key was imported")
        if kid not in known:
            added.append(kid)
        known = {entry.key_id for entry in stored.keys}
    if stored is not None:
        keys_now, active = open_ring(stored, root)
        ring._use_store_keys(keys_now, active)
    return added


async def import_ring(ring: KeyRing, store: LongTermStore, source: KeyRing) -> list[str]:
    """Every master key of ``source`` (a SQLite deployment's ring: ``ATTUNE_MASTER_KEY``
    and its key file) added to the store's ring without becoming active, so the records
    ``attune migrate`` copies as stored open on every host; their ids."""
    materials = [key for kid in source.key_ids if (key := source._key(kid)) is not None]
    return await import_keys(ring, store, materials)


async def export_keys(
    ring: KeyRing, store: LongTermStore, kids: Iterable[str]
) -> list[dict[str, str]] | None:
    """The master keys ``kids`` for an export of ``store``'s records, each wrapped under
    this process's root key as a store ring keeps it: ``{"id", "root", "wrapped"}``
    (base64), so another store with the same root key can join them
    (:func:`open_exported_keys`, :func:`join_keys`). A store that keeps a ring: every one
    (ConfigurationError if the ring lacks one). A store of one host (the key file): those
    other than the root itself (the importer has it) and that the ring holds (the others
    must be given to the importer as they are). None when there is nothing to carry."""
    in_store = await keeps_ring(store)
    if in_store:
        await ready(ring, store)
        root = _root_or_refuse(ring)
    else:
        found = ring._root_key()
        if found is None:
            return None
        root = found
    out = []
    for kid in sorted(set(kids)):
        if not in_store and kid == root[0]:
            continue
        material = ring._key(kid)
        if material is None:
            if not in_store:
                continue
            raise ConfigurationError(f"master key {kid} is not in the key ring; nothing exported")
        out.append(
            {"id": kid, "root": root[0], "wrapped": b64encode(wrap(root, kid, material)).decode()}
        )
    return out or None


async def open_exported_keys(
    ring: KeyRing, store: LongTermStore, entries: Iterable[tuple[str, str, bytes]]
) -> dict[str, bytes]:
    """The keys an export carried (``(id, root id, wrapped)`` each) that this process does
    not hold, opened with its root key, which must be the exporter's; by id. Nothing is
    stored: :func:`join_keys` does, once the import is checked. ValidationError if one
    does not open."""
    if await keeps_ring(store):
        await ready(ring, store)
    missing = [entry for entry in entries if ring._key(entry[0]) is None]
    if not missing:
        return {}
    root = _root_or_refuse(ring)
    kek = _kek(root)
    materials = {}
    for kid, root_id, wrapped in missing:
        if root_id != root[0]:
            raise ValidationError(
                f"the export's master keys are under root key {root_id}, this process's root "
                f"key is {root[0]}: set {ENV_VAR} to the exporting deployment's root key; "
                "nothing was imported"
            )
        try:
            materials[kid] = _unwrap(kek, root_id, RingKey(kid, wrapped))
        except ConfigurationError:
            raise ValidationError(
                f"the export's master key {kid} does not open under root key {root_id}: the "
                "export was altered; nothing was imported"
            ) from None
    return materials


async def join_keys(ring: KeyRing, store: LongTermStore, keys: Iterable[bytes]) -> list[str]:
    """Master keys (of :func:`open_exported_keys`) joined, not active, to ``store``'s ring
    or to the key file; the ids of those that were not there yet."""
    materials = list(keys)
    if await keeps_ring(store):
        return await import_keys(ring, store, materials)
    added = []
    for material in materials:
        if ring._key(key_id(material)) is None:
            added.append(ring.keep_key(material))
    return added


def _moved(root_id: str, now: str | None, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"the key ring in the long-term store is no longer under root key {root_id} (its "
        f"root is now {now}): {what}. Restart this process with the new root key in "
        f"{ENV_VAR}, then try again"
    )


#: Where ``attune keys reroot`` reads the new root key from.
NEW_ROOT_ENV_VAR = "ATTUNE_NEW_MASTER_KEY"


def new_root_from_environment() -> bytes:
    """The new root key in :data:`NEW_ROOT_ENV_VAR` (base64 of 32 bytes)."""
    key = decode_key(os.environ.get(NEW_ROOT_ENV_VAR, ""))
    if key is None:
        raise ConfigurationError(
            f"{NEW_ROOT_ENV_VAR} must hold the new root key: the base64 encoding of exactly "
            f"{KEY_BYTES} random bytes (`attune keys generate` prints one)"
        )
    return key


async def reroot(ring: KeyRing, store: LongTermStore, new_root: bytes) -> str:
    """Re-wrap every key of the store's ring under ``new_root`` (32 bytes) instead of this
    process's root; the new root's id. Records are untouched (their data keys stay under
    the same ring keys). Every host must then start with the new root key."""
    if len(new_root) != KEY_BYTES or not isinstance(new_root, bytes):
        raise ConfigurationError(f"a new root key must be exactly {KEY_BYTES} bytes")
    if not await keeps_ring(store):
        raise ConfigurationError(
            "this long-term store keeps no key ring: its master keys are in the key file"
        )
    await reload(ring, store)
    old = _root_or_refuse(ring)
    stored = await store.key_ring()
    assert stored is not None
    keys, _active = open_ring(stored, old)
    new = (key_id(new_root), new_root)
    wrapped = tuple(RingKey(kid, wrap(new, kid, material)) for kid, material in keys.items())
    after = await store.change_key_ring(RingReroot(old[0], new[0], check_value(new), wrapped))
    if after.root_key_id != new[0]:
        raise ConfigurationError(
            f"the key ring changed while it was being moved to root key {new[0]} (its root "
            f"is {after.root_key_id}): nothing was changed; run it again"
        )
    return new[0]


# -- the bytes of a stored ring -------------------------------------------------------------


def _kek(root: tuple[str, bytes]) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_ROOT_INFO).derive(root[1])
    return AESGCM(derived)


def _aad(purpose: bytes, *parts: str) -> bytes:
    out = [purpose]
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        out += (len(raw).to_bytes(4, "big"), raw)
    return b"".join(out)


def wrap(root: tuple[str, bytes], kid: str, material: bytes) -> bytes:
    """``material`` (the ring key ``kid``) wrapped under ``root``: nonce || ciphertext+tag."""
    nonce = randomness.token_bytes(_NONCE)
    return nonce + _kek(root).encrypt(nonce, material, _aad(_KEY_AAD, root[0], kid))


def check_value(root: tuple[str, bytes]) -> bytes:
    """The ring's proof of its root: AES-GCM of nothing, bound to the root's id."""
    nonce = randomness.token_bytes(_NONCE)
    return nonce + _kek(root).encrypt(nonce, b"", _aad(_CHECK_AAD, root[0]))


def _new_ring(root: tuple[str, bytes]) -> RingCreate:
    material = randomness.token_bytes(KEY_BYTES)
    kid = key_id(material)
    return RingCreate(root[0], check_value(root), kid, (RingKey(kid, wrap(root, kid, material)),))


def open_ring(stored: StoredRing, root: tuple[str, bytes]) -> tuple[dict[str, bytes], str]:
    """The ring's keys, opened with ``root``, and its active key's id; ConfigurationError
    (key ids only) if ``root`` is not its root or a row does not open."""
    if stored.root_key_id != root[0]:
        raise ConfigurationError(
            f"this process's master key is {root[0]}, but the key ring in the long-term "
            f"database is under root key {stored.root_key_id}: this process cannot open it, "
            "so it writes nothing (what it wrote could not be read by the other hosts). Set "
            f"{ENV_VAR} (or the key file) to the same root key as every other host; after a "
            "root key change (attune keys reroot), to the new one"
        )
    kek = _kek(root)
    check = stored.check
    try:
        if not isinstance(check, bytes) or len(check) != _CHECK:
            raise InvalidTag
        kek.decrypt(check[:_NONCE], check[_NONCE:], _aad(_CHECK_AAD, root[0]))
    except InvalidTag:
        raise _corrupt(f"its check value does not verify under root key {root[0]}") from None
    keys: dict[str, bytes] = {}
    for entry in stored.keys:
        keys[entry.key_id] = _unwrap(kek, root[0], entry)
    if stored.active_key_id not in keys:
        raise _corrupt(f"its active key {stored.active_key_id} is not one of its keys")
    assert stored.active_key_id is not None
    return keys, stored.active_key_id


def _unwrap(kek: AESGCM, root_id: str, entry: RingKey) -> bytes:
    wrapped = entry.wrapped
    try:
        if not isinstance(wrapped, bytes) or len(wrapped) != _WRAPPED:
            raise InvalidTag
        material = kek.decrypt(
            wrapped[:_NONCE], wrapped[_NONCE:], _aad(_KEY_AAD, root_id, entry.key_id)
        )
    except InvalidTag:
        raise _corrupt(f"its key {entry.key_id} does not open under root key {root_id}") from None
    if key_id(material) != entry.key_id:
        raise _corrupt(f"its key {entry.key_id} holds another key's material")
    return material


def _corrupt(why: str) -> ConfigurationError:
    return ConfigurationError(
        f"the key ring in the long-term database is damaged or was altered ({why}); nothing "
        "was written. Restore the tables key_ring and key_ring_keys from a backup"
    )


def _root_or_refuse(ring: KeyRing) -> tuple[str, bytes]:
    root = ring._root_key()
    if root is None:
        raise ConfigurationError(
            f"no master key configured: set {ENV_VAR} (the root key every host shares) to "
            "change the key ring kept in the long-term database"
        )
    return root
