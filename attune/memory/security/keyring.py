"""Master keys: the key ring, the key file and ``ATTUNE_MASTER_KEY``.

Master keys live in a :class:`KeyRing`. A key id is derived from the key material, so the
same key has the same id whether it comes from ``ATTUNE_MASTER_KEY`` or from the key file
(its format, reading and atomic writes are :mod:`.keyfile`'s). Development creates that
file once, race-safely, and reuses it; staging and production never invent a key: without
one only PUBLIC data can be written. A key that was used in a storage directory and is
gone is refused (:mod:`attune.memory.store_marker`), never silently replaced.

A long-term store that many hosts share (PostgreSQL) keeps the ring itself: there the key
above is only the *root* that opens it, and :mod:`.ring_store` fills this ring from the
store (:meth:`KeyRing._use_store_keys`) and rotates there.

Rotation: :meth:`KeyRing.keep_env_key` writes ``ATTUNE_MASTER_KEY``'s key to the key file
(not active), so it stays in the ring once the variable names the new key;
:meth:`KeyRing.add_key` makes a new key active (written to the key file first);
:meth:`~.crypto.EnvelopeCipher.rewrap` moves a record's data key under it. What the keys
encrypt, and how, is :mod:`.crypto`.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attune.errors import ConfigurationError
from attune.memory import store_marker
from attune.memory.config import Environment
from attune.memory.search.blind_index import derive_search_key
from attune.memory.security import keyfile
from attune.memory.security.keyfile import KEY_FILE_NAME as KEY_FILE_NAME
from attune.memory.security.keyfile import key_id as key_id

#: The logger of the module this code came from, so logging set up for it keeps working.
logger = logging.getLogger("attune.memory.security.crypto")

ENV_VAR = "ATTUNE_MASTER_KEY"

_GENERATE_HINT = (
    "generate one with `openssl rand -base64 32` or "
    "`python -c 'from attune.memory.security.crypto import generate_master_key; "
    "print(generate_master_key())'`"
)


def generate_master_key() -> str:
    """A fresh master key: base64 of 32 random bytes (the ``ATTUNE_MASTER_KEY`` format)."""
    return base64.b64encode(secrets.token_bytes(keyfile.KEY_BYTES)).decode("ascii")


class KeyRing:
    """Master keys by id, one of them active (the one new data keys are wrapped with).

    Thread-safe. Build one with :meth:`load`; ``KeyRing(keys)`` makes an in-memory ring
    whose last key is active (``key_file=`` makes :meth:`add_key` persist there).
    """

    def __init__(self, keys: Iterable[bytes] = (), *, key_file: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._active: str | None = None
        self._key_file = key_file
        self._env_key_id: str | None = None
        #: The root key (ATTUNE_MASTER_KEY, else the key file's active key): what a key ring
        #: kept in the long-term store is wrapped under (:mod:`.ring_store`).
        self._root: tuple[str, bytes] | None = None
        #: Whether the keys are the long-term store's ring (then the key file is not used).
        self._in_store = False
        #: The key file as last read here (inode, mtime, size): :meth:`_follow_file`.
        self._file_seen: tuple[int, int, int] | None = None
        for key in keys:
            self._install(_checked_key(key))

    @classmethod
    def load(cls, *, storage_dir: Path, environment: str, key_file: Path | None) -> KeyRing:
        """The ring of a deployment: ``ATTUNE_MASTER_KEY`` (active) plus the key file's keys.

        The key file is ``key_file`` or ``<storage_dir>/master.key``. With neither an
        environment key nor a key file where ``storage_dir`` shows data was encrypted before
        (see :mod:`attune.memory.store_marker`), :class:`ConfigurationError` says how to
        restore the key, and nothing is created. Otherwise, in development, the file is
        created once with a new key; in staging and production the ring stays empty:
        encrypting then raises :class:`ConfigurationError` while PUBLIC writes keep working.
        """
        env = _parse_environment(environment)
        path = (key_file if key_file is not None else storage_dir / KEY_FILE_NAME).expanduser()
        env_key = _env_master_key()
        stored = keyfile.read_if_present(path)
        if stored is None and env_key is None:
            # Data encrypted here under a key that is gone: say so, never a silent new key.
            store_marker.check_key_missing(storage_dir.expanduser(), path)
            if env is Environment.DEVELOPMENT:
                stored = keyfile.create(path)
        ring = cls(key_file=path)
        if stored is not None:
            ring._install_file(stored)
            ring._root = (stored.active, stored.keys[stored.active])
        if env_key is not None:
            ring._env_key_id = ring._install(env_key)
            ring._root = (ring._env_key_id, env_key)
        return ring

    @property
    def active_key_id(self) -> str:
        """Id of the active master key (ConfigurationError when the ring is empty)."""
        return self._active_key()[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._keys)

    @property
    def key_file(self) -> Path | None:
        return self._key_file

    def add_key(self, key: bytes | None = None) -> str:
        """Add ``key`` (or a new random one), make it active and return its id.

        A file-backed ring writes it to the key file first (atomic replace, 0600, merged
        under a file lock with keys other processes added), so no data is ever encrypted
        under a key that a restart would lose. If ``ATTUNE_MASTER_KEY`` is set, that
        variable still decides the active key on the next start: the new key is active in
        this ring only, until the operator sets ``ATTUNE_MASTER_KEY`` to it (its base64 is
        in the key file). The environment key itself is not written here: a rotation keeps
        it in the key file first (:meth:`keep_env_key`), since the search index stays
        under it; a caller of this method alone keeps the old key available itself.
        """
        material = _checked_key(secrets.token_bytes(keyfile.KEY_BYTES) if key is None else key)
        kid = key_id(material)
        with self._lock:
            if self._in_store:
                raise ConfigurationError(
                    "this key ring is kept in the long-term database for every host: add a "
                    "key with rotate_keys(), which stores it there first"
                )
            if self._key_file is not None:
                self._learn(keyfile.add(self._key_file, kid, material))
            self._install(material)
        if self._env_key_id is not None and self._env_key_id != kid:
            logger.warning(
                "master key %s was added to %s and is active in this process only; %s still "
                "names key %s, which becomes active again on restart: set %s to the new key",
                kid,
                self._key_file,
                ENV_VAR,
                self._env_key_id,
                ENV_VAR,
            )
        return kid

    def keep_env_key(self) -> str | None:
        """Write ``ATTUNE_MASTER_KEY``'s key to the key file, not active, unless it is there
        already; its id, or None when there is nothing to keep (no environment key, no key
        file, or the ring is kept in the long-term store).

        A rotation (``rotate_keys``) calls this before :meth:`add_key`: the operator then
        sets ``ATTUNE_MASTER_KEY`` to the new key, and the old one must stay in the ring
        from the file, since the store's search index (and audit checkpoints, staged
        patterns, backups) stay under it. The file is already as secret as the key: it
        holds the new key, which opens every rewrapped record."""
        with self._lock:
            if self._in_store or self._key_file is None or self._env_key_id is None:
                return None
            kid = self._env_key_id
            self._keep(self._key_file, kid, self._keys[kid])
        logger.info(
            "master key %s (%s) is kept in %s, so what was written under it stays readable "
            "once %s names another key",
            kid,
            ENV_VAR,
            self._key_file,
            ENV_VAR,
        )
        return kid

    def keep_key(self, material: bytes) -> str:
        """Write master key ``material`` to the key file, not active, unless it is there
        already (the keys an export of another store carried); its id."""
        kid = key_id(material)
        with self._lock:
            if self._in_store or self._key_file is None:
                raise ConfigurationError(
                    f"master key {kid} cannot be kept: this ring has no key file "
                    "(set master_key_file, or ATTUNE_STORAGE_DIR to a writable directory)"
                )
            self._keep(self._key_file, kid, material)
        return kid

    def _keep(self, path: Path, kid: str, material: bytes) -> None:
        """(``_lock`` held) ``material`` merged into the key file at ``path``, not active;
        this ring learns every key the file holds then."""
        self._learn(keyfile.keep(path, kid, material))

    def _learn(self, stored: keyfile.KeyFile) -> None:
        """(``_lock`` held) Every key the key file holds, added to this ring (not active)."""
        for kid, key in stored.keys.items():
            self._keys.setdefault(kid, key)

    def derived_key(self, kid: str, info: bytes) -> bytes | None:
        """A 32-byte key derived from master key ``kid`` by HKDF-SHA256 (``info``, no
        salt), for a purpose of its own (audit checkpoints); None if the ring lacks that
        key. The master key itself never leaves the ring this way."""
        material = self._key(kid)
        if material is None:
            return None
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)

    def search_key(self, kid: str) -> bytes:
        """The search key derived from master key ``kid`` (HKDF-SHA256; see
        :mod:`attune.memory.search.blind_index`). A ConfigurationError if the ring lacks
        that key: encrypted records indexed under it cannot be searched without it."""
        material = self._key(kid)
        if material is None:
            raise ConfigurationError(
                f"the search index was built with master key {kid}, which is not in the key "
                "ring: restore that key (the key file or ATTUNE_MASTER_KEY) to search "
                "encrypted patterns"
            )
        return derive_search_key(material)

    @property
    def in_store(self) -> bool:
        """Whether the keys are the ring kept in the long-term store (see :mod:`.ring_store`)."""
        return self._in_store

    def _root_key(self) -> tuple[str, bytes] | None:
        """(id, material) of the root key, or None when this process has no master key."""
        return self._root

    def _use_store_keys(self, keys: dict[str, bytes], active: str | None) -> None:
        """Hold exactly ``keys`` (the store's ring, opened), ``active`` active; from now on
        the key file is neither read nor written."""
        with self._lock:
            self._keys = dict(keys)
            self._active = active
            self._key_file = None
            self._in_store = True

    def __repr__(self) -> str:
        with self._lock:
            return f"KeyRing(active={self._active!r}, key_ids={tuple(self._keys)!r})"

    # -- used by EnvelopeCipher ------------------------------------------------------------

    def _active_key(self) -> tuple[str, bytes]:
        if self._key_file is not None and self._env_key_id is None and not self._in_store:
            self._follow_file(self._key_file)
        with self._lock:
            if self._active is None:
                raise ConfigurationError(_no_key_message(self._key_file))
            return self._active, self._keys[self._active]

    def _follow_file(self, path: Path) -> None:
        """Take the key file's active key if another process changed it (a ``rotate_keys``
        there), so what this process encrypts next is under the new key: a stat per
        encryption (0.9 µs, beside a persist's 700), a read only when the file changed. A
        file that cannot be read now keeps the ring as it is (the error shows at the next
        start)."""
        try:
            st = os.stat(path)
        except OSError:
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._file_seen:
            return
        try:
            stored = keyfile.read_if_present(path)
        except ConfigurationError as exc:
            logger.warning("key file %s cannot be read now; keys unchanged: %s", path, exc)
            stored = None
        with self._lock:
            self._file_seen = seen
            if stored is None:
                return
            self._learn(stored)
            if stored.active != self._active:
                logger.info("master key %s is active (from %s)", stored.active, path)
            self._active = stored.active

    def _key(self, kid: str) -> bytes | None:
        """The master key ``kid``; re-reads the key file once if another process added it.
        With the ring kept in the store, the root key opens what was written under it
        before the store kept a ring (never active; ``rotate_keys`` moves those records)."""
        with self._lock:
            found = self._keys.get(kid)
            if found is None and self._in_store and self._root is not None:
                found = self._root[1] if self._root[0] == kid else None
        if found is not None or self._key_file is None:
            return found
        stored = keyfile.read_if_present(self._key_file)
        if stored is None:
            return None
        with self._lock:
            self._learn(stored)
            return self._keys.get(kid)

    def _install(self, key: bytes) -> str:
        kid = key_id(key)
        self._keys[kid] = key
        self._active = kid
        return kid

    def _install_file(self, stored: keyfile.KeyFile) -> None:
        for kid, key in stored.keys.items():
            if kid != stored.active:
                self._install(key)
        self._install(stored.keys[stored.active])


def _checked_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != keyfile.KEY_BYTES:
        raise ConfigurationError(f"a master key must be exactly {keyfile.KEY_BYTES} bytes")
    return key


def _no_key_message(path: Path | None) -> str:
    where = f" (the key file {path} does not exist)" if path is not None else ""
    return (
        f"no master key configured{where}: set {ENV_VAR} (base64 of 32 random bytes; "
        f"{_GENERATE_HINT}) or ATTUNE_KEY_FILE to a key file. Until then only PUBLIC "
        "patterns can be written"
    )


def _parse_environment(value: str) -> Environment:
    try:
        return Environment(value)
    except ValueError:
        names = ", ".join(e.value for e in Environment)
        raise ConfigurationError(
            f"unknown environment {value!r} for the key ring: expected one of {names}"
        ) from None


def _env_master_key() -> bytes | None:
    value = os.environ.get(ENV_VAR, "")
    if not value.strip():
        return None
    key = keyfile.decode_key(value)
    if key is None:
        raise ConfigurationError(
            f"{ENV_VAR} is not a valid master key: it must be the base64 encoding of exactly "
            f"{keyfile.KEY_BYTES} random bytes ({_GENERATE_HINT})"
        )
    return key
