"""What every security pipeline of a process shares: one audit logger per log file, one
key ring per storage directory.

Every writer to a log file must extend the same hash chain, and a key rotation must be
seen by every agent, so :class:`~.pipeline.SecurityPipeline` (cheap to create, one per
configuration) looks both up here instead of opening its own. :func:`close_shared`
flushes and closes the loggers and forgets the key rings (tests, shutdown); a pipeline
notices through :data:`generation` and looks its logger up afresh.
"""

from __future__ import annotations

import threading
from pathlib import Path

from attune.memory import store_marker
from attune.memory.security.audit import AuditLogger
from attune.memory.security.keyring import KeyRing

_registry_lock = threading.Lock()
_audit_loggers: dict[Path, AuditLogger] = {}
_database_loggers: dict[str, AuditLogger] = {}
#: Bumped by close_shared(), so pipelines drop the loggers they cached.
generation = 0
_keyrings: dict[tuple[Path, str, Path | None, str | None], KeyRing] = {}


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


def shared_database_audit_logger(dsn: str, sync: bool, mirror: Path | None) -> AuditLogger:
    """One logger per database in a process (its ``audit_events`` table, see
    :mod:`attune.memory.long_term.postgres_audit_log`); the first configuration to open it
    decides its ``sync`` mode and its local mirror."""
    from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger

    with _registry_lock:
        logger = _database_loggers.get(dsn)
        if logger is None:
            logger = DatabaseAuditLogger(dsn, sync=sync, mirror=mirror)
            _database_loggers[dsn] = logger
        return logger


def shared_keyring(
    storage_dir: Path, environment: str, key_file: Path | None, database: str | None = None
) -> KeyRing:
    """One key ring per storage directory (and long-term database, which may keep the
    ring: :mod:`.ring_store`) in a process, so rotation is seen by every agent."""
    key = (storage_dir.expanduser().resolve(), environment, key_file, database)
    with _registry_lock:
        ring = _keyrings.get(key)
        if ring is None:
            ring = KeyRing.load(storage_dir=key[0], environment=environment, key_file=key_file)
            # Remember the keys in use here: losing them later is refused, not papered over;
            # a ring of only keys never used here is refused before it leaves a trace.
            if ring.key_ids:
                store_marker.check_key_known(key[0], ring.key_ids)
                store_marker.note(key[0], key_ids=ring.key_ids)
            _keyrings[key] = ring
        return ring


def close_shared() -> None:
    """Flush and close the shared audit loggers and forget the key rings (tests, shutdown)."""
    global generation
    with _registry_lock:
        loggers = [*_audit_loggers.values(), *_database_loggers.values()]
        _audit_loggers.clear()
        _database_loggers.clear()
        generation += 1
        _keyrings.clear()
    for logger in loggers:
        logger.close()
