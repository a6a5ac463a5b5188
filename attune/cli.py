"""The ``attune`` command.

    attune demo                 the documented multi-agent workflow on the embedded default
    attune health               both tiers' health as JSON (exit 1 if a tier is down)
    attune audit verify         check the audit log's hash chain (exit 1 if tampered)
    attune keys generate        print a new master key for ATTUNE_MASTER_KEY
    attune keys rotate          new master key; re-wrap every record's data key under it
    attune purge                delete long-term patterns past their retention
    attune export [--namespace N] [--out FILE]
                                write long-term records, as stored, to FILE (JSON Lines)
                                and FILE.manifest.json; every namespace unless one is named
    attune import FILE          insert the records of an export (ids already stored skipped)
    attune search QUERY [filters]   ranked keyword search of long-term patterns (JSON lines)
    attune list [filters]       long-term patterns, newest first (JSON lines)
    attune show ID              one long-term pattern (JSON)
    attune erase-user ID --yes  erase everything a user wrote, in both tiers, and the secret
                                of their audit pseudonym (right to be forgotten)
    attune audit query [--user ID] [--event E] [--outcome O] [--target ID] [--since T]
                       [--limit N]
                                audit events as JSON lines, oldest first; ``--user`` finds
                                a user's events by their pseudonym

``search`` and ``list`` read as an OBSERVER in ``--namespace`` (default: ATTUNE_NAMESPACE,
else "default"; ``*`` for every namespace reads as a STEWARD); filters: ``--type``,
``--classification``, ``--created-by``, ``--since``, ``--until``, ``--limit``. Each result is
one JSON line; a last line ``{"next_cursor": ...}`` tells how to ask for the next page
(``--cursor``).

Every command reads the usual environment (``ATTUNE_*``, ``REDIS_URL``);
``--storage-dir`` overrides ``ATTUNE_STORAGE_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from attune.errors import AttuneError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attune", description="Two-tier memory for AI agents.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--storage-dir",
        help="long-term storage directory (default: ATTUNE_STORAGE_DIR or the per-user data dir)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", parents=[common], help="run the multi-agent knowledge-building workflow")
    sub.add_parser("health", parents=[common], help="report both memory tiers' health as JSON")
    sub.add_parser("purge", parents=[common], help="delete patterns past their retention")
    export = sub.add_parser(
        "export", parents=[common], help="write long-term records, as stored, to a JSONL file"
    )
    export.add_argument(
        "--namespace", default="*", help="the namespace to export (default: every one, '*')"
    )
    export.add_argument(
        "--out", help="the JSONL file (default: attune-export-<UTC time>.jsonl here)"
    )
    imported = sub.add_parser(
        "import", parents=[common], help="insert the records of an export (skips stored ids)"
    )
    imported.add_argument("file", help="the JSONL file export wrote (its manifest beside it)")

    reading = argparse.ArgumentParser(add_help=False, parents=[common])
    reading.add_argument("--namespace", help="the namespace to read ('*': every one)")
    reading.add_argument("--type", dest="pattern_type", help="only this pattern type")
    reading.add_argument("--classification", help="PUBLIC, INTERNAL or SENSITIVE")
    reading.add_argument("--created-by", help="only patterns this agent wrote")
    reading.add_argument("--since", help="created at or after this ISO 8601 time")
    reading.add_argument("--until", help="created before this ISO 8601 time")
    reading.add_argument("--limit", type=int, default=20, help="results per page (default 20)")
    reading.add_argument("--cursor", help="the next_cursor of the previous page")
    search = sub.add_parser("search", parents=[reading], help="ranked search of long-term patterns")
    search.add_argument("query", help='words to find; "quoted words" as a phrase')
    sub.add_parser("list", parents=[reading], help="long-term patterns, newest first")
    show = sub.add_parser("show", parents=[common], help="one long-term pattern, as JSON")
    show.add_argument("pattern_id")
    show.add_argument("--namespace", help="the namespace it is in ('*': any)")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    log_file = argparse.ArgumentParser(add_help=False, parents=[common])
    log_file.add_argument(
        "--log-file", help="audit log (default: ATTUNE_AUDIT_LOG or <storage>/audit.jsonl)"
    )
    audit.add_parser("verify", parents=[log_file], help="verify the audit log's hash chain")
    query = audit.add_parser("query", parents=[log_file], help="audit events as JSON lines")
    query.add_argument("--user", help="a user id: their events, by their audit pseudonym")
    query.add_argument("--event", help="an event name, e.g. pattern.store")
    query.add_argument("--outcome", help="an outcome, e.g. denied")
    query.add_argument("--target", help="a pattern or staged pattern id")
    query.add_argument("--since", help="at or after this ISO 8601 time")
    query.add_argument("--limit", type=int, help="only the most recent N events")

    erase = sub.add_parser(
        "erase-user", parents=[common], help="erase everything a user wrote (both tiers)"
    )
    erase.add_argument("user_id", help="the user (agent id) to forget")
    erase.add_argument("--yes", action="store_true", help="confirm: erasure cannot be undone")

    keys = sub.add_parser("keys", help="master keys").add_subparsers(dest="action", required=True)
    keys.add_parser("generate", help="print a new random master key (base64) for ATTUNE_MASTER_KEY")
    keys.add_parser(
        "rotate", parents=[common], help="activate a new master key and re-wrap data keys"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "storage_dir", None):
        os.environ["ATTUNE_STORAGE_DIR"] = args.storage_dir
    try:
        return _run(args)
    except AttuneError as exc:
        print(f"attune: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from attune import AccessTier, EmpathyOS

    if args.command == "demo":
        from attune.demo import run

        run()
        return 0
    if args.command == "health":
        with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.OBSERVER) as agent:
            report = agent.memory.health_check()
        print(json.dumps(report, indent=2))
        return 0 if report["short_term"]["available"] and report["long_term"]["available"] else 1
    if args.command == "purge":
        with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.STEWARD) as agent:
            print(json.dumps({"purged": agent.memory.purge_expired()}))
        return 0
    if args.command == "export":
        from datetime import UTC, datetime

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = args.out or f"attune-export-{stamp}.jsonl"
        with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.STEWARD) as agent:
            manifest = agent.memory.export_patterns(out, namespace=args.namespace)
        print(json.dumps({"file": out, **manifest}))
        return 0
    if args.command == "import":
        with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.STEWARD) as agent:
            print(json.dumps(agent.memory.import_patterns(args.file)))
        return 0
    if args.command in ("search", "list", "show"):
        return _read(args)
    if args.command == "audit":
        return _audit(args)
    if args.command == "erase-user":
        if not args.yes:
            print(
                "attune: erase-user deletes everything this user wrote and cannot be undone; "
                "run it again with --yes",
                file=sys.stderr,
            )
            return 2
        with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.STEWARD) as agent:
            print(json.dumps(agent.memory.erase_user(args.user_id)))
        return 0
    if args.command == "keys":
        if args.action == "generate":
            from attune.memory.security.crypto import generate_master_key

            print(generate_master_key())
            return 0
        with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.STEWARD) as agent:
            print(json.dumps(agent.memory.rotate_keys()))
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


def _audit(args: argparse.Namespace) -> int:
    """audit verify / query, on the configured log (or ``--log-file``)."""
    from attune import AccessTier, EmpathyOS
    from attune.memory.config import MemoryConfig
    from attune.memory.security.audit import AuditLogger

    path = args.log_file or MemoryConfig().audit_log_path
    log = AuditLogger(log_file=path)
    try:
        if args.action == "verify":
            result = log.verify()
            print(result)
            return 0 if result.ok else 1
        names: list[str | None] = [None]
        if args.user is not None:
            with EmpathyOS(user_id="attune-cli", access_tier=AccessTier.STEWARD) as agent:
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
        for event in events:
            print(json.dumps(event))
        return 0
    finally:
        log.close()


def _read(args: argparse.Namespace) -> int:
    """search / list / show: an OBSERVER of the namespace, a STEWARD to read another."""
    from attune import AccessTier, EmpathyOS

    own = args.namespace in (None, "*")
    tier = AccessTier.STEWARD if args.namespace == "*" else AccessTier.OBSERVER
    namespace = None if own else args.namespace
    with EmpathyOS(user_id="attune-cli", access_tier=tier, namespace=namespace) as agent:
        scope = "*" if args.namespace == "*" else None
        if args.command == "show":
            found = agent.memory.recall_pattern(args.pattern_id, namespace=scope)
            if found is None:
                print(f"attune: no pattern {args.pattern_id!r} here", file=sys.stderr)
                return 1
            print(json.dumps(found, indent=2))
            return 0
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
        for result in page:
            print(json.dumps(result))
        print(json.dumps({"next_cursor": page.next_cursor}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
