"""The ``attune`` subcommands: each returns its exit status and prints through
:class:`~attune.cli.output.Output` (one JSON document with ``--json``, tables otherwise)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from attune.cli.output import (
    Output,
    claude_files_table,
    events_table,
    fields_table,
    patterns_table,
)

OK, NO, ERROR = 0, 1, 2
_CLI_USER = "attune-cli"


def run(args: argparse.Namespace, out: Output) -> int:
    command = args.command
    if command == "demo":
        return _demo(out)
    if command == "health":
        return _health(out)
    if command in ("purge", "export", "import", "erase-user"):
        return _transfer(args, out)
    if command in ("search", "list", "show"):
        return _read(args, out)
    if command == "audit":
        return _audit(args, out)
    if command == "keys":
        return _keys(args, out)
    if command == "db":
        return _db_upgrade(out)
    if command == "migrate":
        return _migrate(args, out)
    if command == "claude-memory":
        return _claude_memory(out)
    if command == "mcp":
        return _mcp(args, out)
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover


def _steward() -> Any:
    from attune import AccessTier, EmpathyOS

    return EmpathyOS(user_id=_CLI_USER, access_tier=AccessTier.STEWARD)


def _demo(out: Output) -> int:
    """The demo, in a temporary storage directory unless one is given (``--storage-dir``
    or ``ATTUNE_STORAGE_DIR``): trying it leaves nothing in the user's data directory."""
    import os
    import tempfile

    if os.environ.get("ATTUNE_STORAGE_DIR"):
        return _run_demo(out)
    with tempfile.TemporaryDirectory(prefix="attune-demo-") as scratch:
        os.environ["ATTUNE_STORAGE_DIR"] = scratch
        try:
            code = _run_demo(out)
        finally:
            del os.environ["ATTUNE_STORAGE_DIR"]
            from attune.memory.security.pipeline import close_shared

            close_shared()  # its audit log's writer, before the directory goes
    out.note("(the demo ran in a temporary directory, now removed: --storage-dir DIR keeps it)")
    return code


def _run_demo(out: Output) -> int:
    from attune.demo import run as run_demo

    if not out.as_json:
        run_demo()
        return OK
    with contextlib.redirect_stdout(sys.stderr):  # its story to stderr, its result as JSON
        result = run_demo()
    out.document(result)
    return OK


def _health(out: Output) -> int:
    from attune import AccessTier, EmpathyOS

    with EmpathyOS(user_id=_CLI_USER, access_tier=AccessTier.OBSERVER) as agent:
        report = agent.memory.health_check()
    healthy = report["short_term"]["available"] and report["long_term"]["available"]
    if out.as_json:
        out.document(report)
    else:
        for tier in ("short_term", "long_term", "audit"):
            out.table(fields_table(report[tier], title=tier.replace("_", "-")))
        out.line(
            f"environment {report['environment']}, as {report['user_id']} "
            f"({report['access_tier']}): " + ("healthy" if healthy else "a tier is DOWN"),
            style=None if healthy else "bold red",
        )
    return OK if healthy else NO


def _transfer(args: argparse.Namespace, out: Output) -> int:
    """purge, export, import, erase-user: STEWARD work with a count to tell."""
    if args.command == "erase-user" and not args.yes:
        out.error(
            "erase-user deletes everything this user wrote and cannot be undone; "
            "run it again with --yes"
        )
        return ERROR
    with _steward() as agent:
        memory = agent.memory
        if args.command == "purge":
            with out.status("Purging expired patterns…"):
                result: dict[str, Any] = {"purged": memory.purge_expired()}
            summary = f"Purged {result['purged']} expired pattern(s)."
        elif args.command == "export":
            from datetime import UTC, datetime

            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            path = args.out or f"attune-export-{stamp}.jsonl"
            with out.progress("Exporting") as progress:
                manifest = memory.export_patterns(path, namespace=args.namespace, progress=progress)
            result = {"file": path, **manifest}
            counts = ", ".join(f"{n} {c}" for c, n in manifest["by_classification"].items())
            summary = (
                f"Exported {manifest['records']} record(s) ({counts}) of namespace "
                f"{manifest['namespace']!r} to {path} (manifest: {path}.manifest.json)."
            )
        elif args.command == "import":
            with out.progress("Importing") as progress:
                result = memory.import_patterns(args.file, progress=progress)
            summary = (
                f"Imported {result['imported']} record(s); skipped {result['skipped']} "
                f"already stored, {result['expired']} past their retention."
            )
        else:
            with out.status(f"Erasing {args.user_id}…"):
                result = memory.erase_user(args.user_id)
            summary = (
                f"Erased user {result['user_id']}: {result['patterns']} pattern(s), "
                f"{result['staged_patterns']} staged pattern(s), {result['working_data']} "
                "working-data key(s); audit pseudonym "
                + ("erased." if result["pseudonym_erased"] else "not found.")
            )
    if out.as_json:
        out.document(result)
    else:
        out.line(summary)
    return OK


def _db_upgrade(out: Output) -> int:
    """Open the configured long-term store, which applies its pending migrations (under
    the store's own lock: safe while other processes start), and report its schema."""
    from attune._runner import run_sync
    from attune.errors import LongTermUnavailableError
    from attune.memory import backends
    from attune.memory.config import MemoryConfig

    async def upgrade() -> dict[str, Any]:
        store = backends.open_long_term(MemoryConfig())
        try:
            report: dict[str, Any] = await store.health()
        finally:
            await store.aclose()
        return report

    with out.status("Upgrading the long-term store"):
        report = run_sync(upgrade())
    if not report.get("available"):
        raise LongTermUnavailableError(str(report.get("error", "the store did not open")))
    where = report.get("path") or report.get("url")
    result = {
        "backend": report["backend"],
        "where": where,
        "schema_version": report["schema_version"],
        "patterns": report["patterns"],
    }
    if out.as_json:
        out.document(result)
    else:
        out.line(
            f"{result['backend']} store at {where}: schema version {result['schema_version']}, "
            f"{result['patterns']} pattern(s)."
        )
    return OK


def _migrate(args: argparse.Namespace, out: Output) -> int:
    """migrate --to URL: export, load, verify, each with its progress bar."""
    from attune._runner import run_sync
    from attune.memory.migration import Migration

    migration = Migration(args.to)
    with out.progress("Exporting from SQLite") as progress:
        run_sync(migration.export(progress))
    with out.progress("Loading into PostgreSQL") as progress:
        run_sync(migration.load(progress))
    with out.progress("Verifying") as progress:
        run_sync(migration.verify(progress))
    report = migration.report
    if out.as_json:
        out.document(report)
    else:
        out.line(
            f"Copied {report['imported']} record(s) to {report['target']} "
            f"({report['skipped']} already there); verified {report['verified']} "
            f"(sha256 {report['sha256'][:16]}...). Set ATTUNE_DATABASE_URL to switch over."
        )
    return OK


def _keys(args: argparse.Namespace, out: Output) -> int:
    if args.action == "generate":
        from attune.memory.security.crypto import generate_master_key

        key = generate_master_key()
        if out.as_json:
            out.document({"master_key": key})
        else:
            sys.stdout.write(key + "\n")  # the bare key, to paste or to pipe
        return OK
    if args.action == "reroot":
        return _reroot(out)
    with _steward() as agent, out.progress("Re-wrapping data keys") as progress:
        result = agent.memory.rotate_keys(progress=progress)
    if out.as_json:
        out.document(result)
    else:
        out.line(
            f"New master key {result['key_id']} active; "
            f"re-wrapped {result['rewrapped']} data key(s)."
        )
    return OK


def _reroot(out: Output) -> int:
    """keys reroot: the ring kept in the long-term database, re-wrapped under the root key
    in ATTUNE_NEW_MASTER_KEY (read from the environment, never from the command line)."""
    import asyncio

    from attune.memory import MemoryConfig, backends
    from attune.memory.security import ring_store
    from attune.memory.security.pipeline import SecurityPipeline

    config = MemoryConfig()
    new_root = ring_store.new_root_from_environment()
    ring = SecurityPipeline(config).cipher.ring

    async def reroot() -> str:
        store = backends.open_long_term(config)
        try:
            return await ring_store.reroot(ring, store, new_root)
        finally:
            await store.aclose()

    root_key_id = asyncio.run(reroot())
    if out.as_json:
        out.document({"root_key_id": root_key_id, "keys": len(ring.key_ids)})
    else:
        out.line(
            f"The key ring ({len(ring.key_ids)} key(s)) is now under root key {root_key_id}: "
            "start every host with ATTUNE_MASTER_KEY set to it."
        )
    return OK


def _claude_memory(out: Output) -> int:
    """claude-memory show: load the hierarchy for this directory (whatever
    ATTUNE_CLAUDE_MEMORY says: asking is enough), with the other settings as configured."""
    from attune.memory import claude_memory
    from attune.memory.config import MemoryConfig

    loaded = claude_memory.load(MemoryConfig(load_claude_memory=True))
    if out.as_json:
        out.document(loaded.to_dict())
        return OK
    if not loaded.files:
        out.note("No Claude memory here: no CLAUDE.md in the hierarchy.")
        return OK
    out.table(claude_files_table(loaded.files))
    out.line(f"{len(loaded.files)} file(s), {loaded.total_bytes} bytes.")
    out.line("")
    out.line(loaded.text)
    return OK


def _mcp(args: argparse.Namespace, out: Output) -> int:
    """mcp: serve until the client goes (stdout is the protocol's: nothing else is
    printed there)."""
    try:
        from attune import mcp_server
    except ImportError as exc:
        out.error(f"attune mcp needs the MCP SDK: pip install 'attune[mcp]' ({exc})")
        return ERROR
    mcp_server.serve(args.user, args.tier, http=args.http)
    return OK


def _audit(args: argparse.Namespace, out: Output) -> int:
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
    Path(args.out).write_text(json.dumps(document) + "\n", encoding="utf-8")
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
        with _steward() as agent:
            pseudonym = agent.memory.audit_pseudonym(args.user)
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


def _read(args: argparse.Namespace, out: Output) -> int:
    """search / list / show: an OBSERVER of the namespace, a STEWARD to read another."""
    from attune import AccessTier, EmpathyOS

    own = args.namespace in (None, "*")
    tier = AccessTier.STEWARD if args.namespace == "*" else AccessTier.OBSERVER
    namespace = None if own else args.namespace
    with EmpathyOS(user_id=_CLI_USER, access_tier=tier, namespace=namespace) as agent:
        scope = "*" if args.namespace == "*" else None
        if args.command == "show":
            found = agent.memory.recall_pattern(args.pattern_id, namespace=scope)
            if out.as_json:
                out.document(found)
            elif found is not None:
                out.table(fields_table(found, title=args.pattern_id))
            if found is None:
                out.error(f"no pattern {args.pattern_id!r} here")
                return NO
            return OK
        filters = {
            "created_by": args.created_by,
            "since": args.since,
            "until": args.until,
            "cursor": args.cursor,
            "namespace": scope,
        }
        if args.command == "search":
            page = agent.memory.search_patterns(
                args.query, args.pattern_type, args.classification, args.limit, **filters
            )
        else:
            page = agent.memory.list_patterns(
                args.pattern_type, args.classification, args.limit, **filters
            )
    results = list(page)
    if out.as_json:
        out.document({"results": results, "next_cursor": page.next_cursor})
        return OK
    if results:
        out.table(patterns_table(results, scored=args.command == "search", width=out.out.width))
    else:
        out.note("No patterns match.")
    if page.next_cursor:
        out.note(f"More: run it again with --cursor {page.next_cursor}")
    return OK
