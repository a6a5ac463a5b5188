"""``attune audit verify / query / tail / checkpoint``: the audit log, read where it is
kept (the database's ``audit_events`` table with ``ATTUNE_DATABASE_URL``, else the file;
``--log-file`` names a file, e.g. a mirror). These commands read the log itself, acting
as no agent; ``audit query --user ID`` names whose events to show."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attune.cli import identity
from attune.cli.output import ERROR, NO, OK, Output, events_table
from attune.memory.types import AccessTier


def run(args: argparse.Namespace, out: Output) -> int:
    """audit verify / query / tail, on the configured log: the database's table with
    ``ATTUNE_DATABASE_URL``, else the file (``--log-file`` names a file, e.g. a mirror)."""
    from attune.memory.config import MemoryConfig
    from attune.memory.security.audit import AuditLogger

    config = MemoryConfig()
    log: AuditLogger
    if args.log_file is None and config.database_url is not None:
        from attune.memory.long_term.postgres_audit_log import DatabaseAuditLogger

        log = DatabaseAuditLogger(config.database_url)
    else:
        log = AuditLogger(log_file=args.log_file or config.audit_log_path)
    try:
        if args.action == "checkpoint":
            return _checkpoint(args, config, log, out)
        if args.action == "verify":
            anchor = None if args.checkpoint is None else _anchor(args.checkpoint, config)
            result = log.verify(anchor=anchor)
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
            return _tail(args, log, out)
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

    from attune.errors import ValidationError
    from attune.memory.security.audit.checkpoint import open_checkpoint

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"the checkpoint file {path} could not be read as JSON ({type(exc).__name__})"
        ) from None
    return open_checkpoint(document, _keyring(config))


def _checkpoint(args: argparse.Namespace, config: Any, log: Any, out: Output) -> int:
    """audit checkpoint: verify the chain, then sign its head (never a broken chain's)."""
    import json

    from attune.memory.security.audit.checkpoint import sign_checkpoint

    result = log.verify()
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


#: How often ``audit tail --follow`` looks for new events.
_FOLLOW_S = 0.5


def _tail(args: argparse.Namespace, log: Any, out: Output) -> int:
    """The last ``--lines`` events; with ``--follow``, then every new one as it is written
    (one JSON line each with ``--json``: a stream has no single document)."""
    import time

    from attune.errors import ValidationError

    if args.lines < 0:
        raise ValidationError("--lines must be 0 or more")
    events = log.query(limit=args.lines)
    if not args.follow:
        if out.as_json:
            out.document(events)
        elif events:
            out.table(events_table(events, width=out.out.width))
        return OK
    newest = log.query(limit=1)  # where following starts, even with --lines 0
    last = int(newest[-1].get("seq", 0)) if newest else 0
    _print_events(events, out)
    try:
        while True:
            time.sleep(_FOLLOW_S)
            new = [e for e in log.query(limit=1000) if int(e.get("seq", 0)) > last]
            if new:
                last = int(new[-1].get("seq", last))
                _print_events(new, out)
    except KeyboardInterrupt:
        return OK


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
