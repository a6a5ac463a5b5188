"""The key ring PostgreSQL keeps for every host that shares the database.

Two tables (their migration is in :data:`.postgres_schema.MIGRATIONS`): ``key_ring``, one
row (the root key's id, its check value and the active key's id), and ``key_ring_keys``,
one row per master key (its id and its material wrapped under the root key). What the
bytes are, and the checks on them, is :mod:`attune.memory.security.ring_store`'s: this
module only stores and serializes.

Every change (:func:`change`) runs in one transaction holding :data:`KEY_RING_LOCK`, a
transaction-level advisory lock, and reads the ring again under it: two processes that
create the ring of a fresh database at once make exactly one (the second finds the
first's), and a key added while the root is being changed is refused, not lost. A change
of an existing ring ends with ``NOTIFY`` on :data:`CHANNEL` (delivered at COMMIT, to every
listening session: :class:`Listener`), so other processes learn a new active key without
waiting for a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from attune.memory import clock
from attune.memory.long_term.postgres_schema import KEY_RING_LOCK
from attune.memory.long_term.protocol import (
    RingAdd,
    RingCreate,
    RingKey,
    RingOp,
    RingReroot,
    StoredRing,
)

logger = logging.getLogger(__name__)

#: The channel a change is announced on (the payload: the active key's id).
CHANNEL = "attune_key_ring"

_HEAD = "SELECT root_key_id, root_check, active_key_id FROM key_ring"
_KEYS = "SELECT key_id, wrapped FROM key_ring_keys ORDER BY added_at_ms, key_id"
_NONE = StoredRing(None, b"", None, ())


async def read(conn: asyncpg.Connection) -> StoredRing:
    """The ring as one consistent snapshot (``root_key_id`` None: not created yet)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _current(conn)


async def change(conn: asyncpg.Connection, op: RingOp) -> StoredRing:
    """Apply ``op`` if its condition holds (see each operation), under :data:`KEY_RING_LOCK`;
    the ring as stored afterwards."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_RING_LOCK)
        current = await _current(conn)
        now = clock.now_ms()
        if isinstance(op, RingCreate):
            if current.created:
                return current
            await _insert_keys(conn, op.keys, now)
            await conn.execute(
                "INSERT INTO key_ring (root_key_id, root_check, active_key_id, changed_at_ms) "
                "VALUES ($1, $2, $3, $4)",
                op.root_key_id,
                op.check,
                op.active_key_id,
                now,
            )
            # No NOTIFY: every process with a root key reads (or makes) the ring at start.
            return await _current(conn)
        elif isinstance(op, RingAdd):
            if current.root_key_id != op.root_key_id:
                return current
            await conn.execute(
                "INSERT INTO key_ring_keys (key_id, wrapped, added_at_ms) VALUES ($1, $2, $3) "
                "ON CONFLICT (key_id) DO NOTHING",
                op.key.key_id,
                op.key.wrapped,
                now,
            )
            if not op.activate:
                return await _current(conn)
            await conn.execute(
                "UPDATE key_ring SET active_key_id = $1, changed_at_ms = $2",
                op.key.key_id,
                now,
            )
            active = op.key.key_id
        elif isinstance(op, RingReroot):
            names = {k.key_id for k in current.keys}
            if current.root_key_id != op.old_root_key_id or names != {k.key_id for k in op.keys}:
                return current
            await conn.executemany(
                "UPDATE key_ring_keys SET wrapped = $2 WHERE key_id = $1",
                [(k.key_id, k.wrapped) for k in op.keys],
            )
            await conn.execute(
                "UPDATE key_ring SET root_key_id = $1, root_check = $2, changed_at_ms = $3",
                op.root_key_id,
                op.check,
                now,
            )
            active = current.active_key_id or ""
        else:
            raise TypeError(f"not a key ring change: {type(op).__name__}")
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, active)
        return await _current(conn)


async def _insert_keys(conn: asyncpg.Connection, keys: tuple[RingKey, ...], now: int) -> None:
    await conn.executemany(
        "INSERT INTO key_ring_keys (key_id, wrapped, added_at_ms) VALUES ($1, $2, $3) "
        "ON CONFLICT (key_id) DO UPDATE SET wrapped = EXCLUDED.wrapped",
        [(k.key_id, k.wrapped, now) for k in keys],
    )


async def _current(conn: asyncpg.Connection) -> StoredRing:
    head = await conn.fetchrow(_HEAD)
    if head is None:
        return _NONE
    rows = await conn.fetch(_KEYS)
    return StoredRing(
        str(head[0]),
        bytes(head[1]),
        str(head[2]),
        tuple(RingKey(str(r[0]), bytes(r[1])) for r in rows),
    )


class Listener:
    """One session LISTENing on :data:`CHANNEL` for one event loop's pool: calls each
    watcher when the ring changed, and when the session ends (then nothing more is heard:
    the watchers read the ring again, which opens a new listener)."""

    def __init__(self) -> None:
        self.conn: asyncpg.Connection | None = None
        self.watchers: list[Callable[[], None]] = []

    @property
    def listening(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()

    async def watch(
        self, on_change: Callable[[], None], dsn: str, connect_timeout_s: float
    ) -> None:
        """Call ``on_change`` on every change; listening from now on if not yet. A session
        that cannot listen is logged and done without (the next watch tries again): the
        core still reads the ring again when a record names a key it lacks."""
        if on_change not in self.watchers:
            self.watchers.append(on_change)
        if self.listening:
            return
        try:
            self.conn = await self._start(dsn, connect_timeout_s)
        except (
            TimeoutError,
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # its session ended as it began to listen
        ) as exc:
            logger.warning(
                "cannot listen for key ring changes on PostgreSQL (%s): other hosts' new "
                "active keys are learnt only when a record needs one",
                type(exc).__name__,
            )

    async def _start(self, dsn: str, connect_timeout_s: float) -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout_s)
        try:
            await conn.add_listener(CHANNEL, self._heard)
            conn.add_termination_listener(self._ended)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._ended)  # closed on purpose: nothing to tell
            await conn.close()

    def _heard(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._tell()

    def _ended(self, _conn: Any) -> None:
        self.conn = None
        self._tell()

    def _tell(self) -> None:
        for watcher in list(self.watchers):
            try:
                watcher()
            except Exception:  # a watcher's failure is its own; the others still hear
                logger.exception("a key ring watcher failed")
