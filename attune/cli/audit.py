"""``attune audit verify / query / tail / checkpoint``: the audit log, read where it is
kept (the database's ``audit_events`` table with ``ATTUNE_DATABASE_URL``, else the file;
``--log-file`` names a file, e.g. a mirror). These commands read the log itself, acting
as no agent; ``audit query --user ID`` names whose events to show.

``verify`` and ``checkpoint`` never pass a log file that is not there. With no file at
the path (nor rotated ones) it is a usage error (exit 2: a mistyped ``--log-file``, or a
store that has logged nothing yet), unless the path is the store's own log and something
says it held events: the long-term store's records (each written with its event), or a
checkpoint signed with the store's key. That log, missing or empty, was deleted or
emptied: a negative answer (exit 1), as a tampered one. Rotated files without the current
one are the library's finding (``AuditLogger.verify``): exit 1 too. ``query`` and ``tail``
of a ``--log-file`` that is not there are a usage error too (exit 2), never "no events".

A storage directory chosen (``--storage-dir``, ``ATTUNE_STORAGE_DIR``) that does not
exist is refused (exit 2, nothing created) when the command would read it: the store's
own log, its key ring (``checkpoint``, ``verify --checkpoint``), its audit pseudonyms
(``query --user``); see :func:`.guards.require_store`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attune.cli import guards, identity
from attune.cli.output import ERROR, NO, OK, Output, events_table
from attune.errors import ValidationError
from attune.memory.security.audit import VerifyResult
from attune.memory.types import AccessTier


def run(args: argparse.Namespace, out: Output) -> int:
    """audit verify / query / tail, on the configured log: the database's table with
    ``ATTUNE_DATABASE_URL``, else the file (``--log-file`` names a file, e.g. a mirror)."""
    from attune.memory.config import MemoryConfig
    from attune.memory.security.audit import AuditLogger

    config = MemoryConfig()
    if _reads_store(args, config):
        guards.require_store(args)
    log: AuditLogger
    table = args.log_file is None and config.database_url is not None
    if table:
        from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger

        assert config.database_url is not None
        log = DatabaseAuditLogger(config.database_url)
    else:
        log = AuditLogger(log_file=args.log_file or config.audit_log_path)
    try:
        if args.action in ("query", "tail") and args.log_file is not None and not log.files():
            raise ValidationError(
                f"there is no audit log at {log.log_file} (no such file, nor rotated "
                f"{log.log_file.name}.N files), so there are no events to show; check "
                "--log-file for a typo"
            )
        if args.action == "checkpoint":
            return _checkpoint(args, config, log, out)
        if args.action == "verify":
            anchor = None if args.checkpoint is None else _anchor(args.checkpoint, config)
            result = _verify(log, config, anchor, args.checkpoint)
            if out.as_json:
                out.document(
                    {
                        "ok": result.ok,
                        "lines_checked": result.lines_checked,
                        "files": result.files,
                        "file": None if result.file is None else str(result.file),
                        "line": result.line,
                        "reason": result.reason,
                        "head": result.head,
                        "table": result.table,
                    }
                )
            else:
                out.line(str(result), style="green" if result.ok else "bold red")
            return OK if result.ok else NO
        if args.action == "tail":
            return _tail(args, log, out, table=table)
        events = _events(args, log)
        if out.as_json:
            out.document(events)
        elif events:
            out.table(events_table(events, width=out.out.width))
        else:
            out.note("No audit events match.")
        return OK
    finally:
        log.close()


def _reads_store(args: argparse.Namespace, config: Any) -> bool:
    """Whether this command reads the storage directory: the store's own log (no
    ``--log-file``, no ``ATTUNE_AUDIT_LOG``), its key ring (``checkpoint``, ``verify
    --checkpoint``) or its audit pseudonyms (``query --user``)."""
    if args.action == "checkpoint" or getattr(args, "checkpoint", None) is not None:
        return True
    if args.action == "query" and args.user is not None:
        return True
    return args.log_file is None and config.audit_log_file is None


def _keyring(config: Any) -> Any:
    from attune.memory.security.keyring import KeyRing

    return KeyRing.load(
        storage_dir=config.ensure_storage_dir(),
        environment=config.environment.value,
        key_file=config.master_key_file,
    )


def _anchor(path: str, config: Any) -> tuple[int, str]:
    """(seq, hash) of a checkpoint file whose signature the master key confirms."""
    import json

    from attune.memory.security.audit.checkpoint import open_checkpoint

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"the checkpoint file {path} could not be read as JSON ({type(exc).__name__})"
        ) from None
    return open_checkpoint(document, _keyring(config))


def _verify(
    log: Any, config: Any, anchor: tuple[int, str] | None, checkpoint: str | None
) -> VerifyResult:
    """``log.verify(anchor=anchor)``, where a log file that is not there, or holds no event,
    fails when something says it held events; a path with no file at all is otherwise a
    usage error (a :class:`ValidationError`: exit 2). See the module."""

    result: VerifyResult = log.verify(anchor=anchor)
    if result.table is not None or (result.files and (result.lines_checked or not result.ok)):
        return result
    path: Path = log.log_file
    evidence = _held_events(path, config, anchor, checkpoint)
    if evidence is not None:
        state = "is empty" if result.files else "is missing"
        reason = f"{path} {state}, but {evidence}: its events were deleted, or it was moved"
        return VerifyResult(False, 0, path, None, reason, result.files)
    if result.files:  # empty, and nothing says it held events: intact
        return result
    raise ValidationError(
        f"there is no audit log at {path} (no such file, nor rotated {path.name}.N files), "
        "so there is nothing to verify. Check the path (--log-file, ATTUNE_AUDIT_LOG or "
        "--storage-dir); a store that has logged nothing yet has no log"
    )


def _held_events(
    path: Path, config: Any, anchor: tuple[int, str] | None, checkpoint: str | None
) -> str | None:
    """Why the store's own log at ``path`` is known to have held events, or None. Only the
    configured log (its events are the store's): a file named by ``--log-file`` elsewhere
    may just be a mistyped path."""
    if config.database_url is not None or path.resolve() != config.audit_log_path:
        return None
    if anchor is not None:
        return (
            f"the checkpoint {checkpoint}, signed with this store's key, names its seq {anchor[0]}"
        )
    from attune.memory.long_term.sqlite_store import DB_FILENAME

    database = config.storage_dir / DB_FILENAME
    counts = _store_records(database)
    if counts is None:
        return None
    return (
        f"the long-term store {database} holds records written with audit events "
        f"({counts[0]} pattern(s), audit pseudonyms of {counts[1]} user(s))"
    )


def _store_records(database: Path) -> tuple[int, int] | None:
    """(patterns, audit pseudonyms) of the SQLite store ``database``, read only; None when
    it has neither (or there is no readable store: it was never written to)."""
    import contextlib
    import sqlite3

    try:
        if not database.is_file():
            return None
        uri = database.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as db:
            patterns = int(db.execute("SELECT COUNT(*) FROM patterns").fetchone()[0])
            subjects = int(db.execute("SELECT COUNT(*) FROM audit_subjects").fetchone()[0])
    except (OSError, sqlite3.Error):
        return None
    return (patterns, subjects) if patterns or subjects else None


def _checkpoint(args: argparse.Namespace, config: Any, log: Any, out: Output) -> int:
    """audit checkpoint: verify the chain, then sign its head (never a broken chain's, nor
    one of a log that is not there)."""
    import json

    from attune.memory.security.audit.checkpoint import sign_checkpoint

    result = _verify(log, config, None, None)
    if not result.ok or result.head is None or result.head_seq is None:
        out.error(f"no checkpoint: {result}")
        return NO
    document = sign_checkpoint(_keyring(config), result.head_seq, result.head)
    if args.out is None:
        if out.as_json:
            out.document(document)
        else:
            out.line(json.dumps(document))
        return OK
    try:
        Path(args.out).write_text(json.dumps(document) + "\n", encoding="utf-8")
    except OSError as exc:
        out.error(
            f"the checkpoint could not be written to {args.out} ({exc.strerror or exc}); "
            "give --out a file in an existing, writable directory"
        )
        return ERROR
    out.note(f"checkpoint of seq {document['seq']} written to {args.out}")
    return OK


def _tail(args: argparse.Namespace, log: Any, out: Output, *, table: bool) -> int:
    """The last ``--lines`` events; with ``--follow``, then every event written after them,
    each once, in order (one JSON line each with ``--json``: a stream has no single
    document), however many come at once (:mod:`attune.memory.security.audit.follow`)."""
    from attune.memory.security.audit import follow as audit_follow

    if args.lines < 0:
        raise ValidationError("--lines must be 0 or more")
    events = log.query(limit=args.lines)
    if not args.follow:
        if out.as_json:
            out.document(events)
        elif events:
            out.table(events_table(events, width=out.out.width))
        return OK
    # Following goes on after the last event shown (the newest there now, with -n 0).
    shown = events or log.query(limit=1)
    after = int(shown[-1].get("seq", 0)) if shown else 0
    _print_events(events, out)
    pages: audit_follow.Pages = (
        audit_follow.TablePages(log, after) if table else audit_follow.FilePages(log, after)
    )
    try:
        audit_follow.follow(pages, lambda new: _print_events(new, out))
    except KeyboardInterrupt:
        return OK
    finally:
        pages.close()


def _print_events(events: list[dict[str, Any]], out: Output) -> None:
    import json

    for event in events:
        if out.as_json:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        else:
            out.table(events_table([event], width=out.out.width))


def _events(args: argparse.Namespace, log: Any) -> list[dict[str, Any]]:
    names: list[str | None] = [None]
    if args.user is not None:
        from attune.memory import UnifiedMemory

        # --user is whose events here (not who acts): the lookup acts as the CLI's agent.
        tier = identity.tier(args, AccessTier.STEWARD)
        with UnifiedMemory(identity.DEFAULT_USER, access_tier=tier) as memory:
            pseudonym = memory.audit_pseudonym(args.user)
        # Lines written before pseudonyms named users in clear.
        names = [args.user] if pseudonym is None else [pseudonym, args.user]
    events = [
        event
        for name in names
        for event in log.query(
            user_id=name,
            event_type=args.event,
            outcome=args.outcome,
            target_id=args.target,
            since=args.since,
            limit=args.limit,
        )
    ]
    events.sort(key=lambda event: (str(event.get("ts", "")), int(event.get("seq", 0))))
    if args.limit is not None:  # the most recent of both names together
        events = events[len(events) - args.limit :] if args.limit else []
    return events
