"""The ``attune`` command line: its subcommands and options.

``--storage-dir`` and ``--json`` are global: accepted before the subcommand and after
it (at any level: ``attune --json audit query`` and ``attune audit query --json`` are the
same). The top-level parser holds their defaults; every subparser declares them again with
``default=SUPPRESS``, so a subcommand that does not see them leaves the top-level value.
"""

from __future__ import annotations

import argparse

import attune

EPILOG = """\
exit status:
  0  success
  1  a negative answer: a tier is down (health), the audit log is tampered with
     (audit verify), no such pattern (show)
  2  a usage error, or an attune error (bad configuration, bad input, refused access)

--json prints exactly one JSON document on stdout (an object; a list for audit query;
null for show of a missing pattern); messages go to stderr.
"""


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--storage-dir",
        default=default,
        help="long-term storage directory (default: ATTUNE_STORAGE_DIR or the per-user data dir)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print one JSON document on stdout, for scripts (default: tables for people)",
    )


def build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attune",
        description="Two-tier memory for AI agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"attune {attune.__version__}")
    _global_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, top=False)

    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", parents=[common], help="run the multi-agent knowledge-building workflow")
    sub.add_parser("health", parents=[common], help="both memory tiers' and the audit's health")
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
    show = sub.add_parser("show", parents=[common], help="one long-term pattern, every field")
    show.add_argument("pattern_id")
    show.add_argument("--namespace", help="the namespace it is in ('*': any)")

    audit = sub.add_parser("audit", parents=[common], help="the audit log").add_subparsers(
        dest="action", required=True
    )
    log_file = argparse.ArgumentParser(add_help=False, parents=[common])
    log_file.add_argument(
        "--log-file",
        help="audit log file (default: the database's audit_events table with "
        "ATTUNE_DATABASE_URL, else ATTUNE_AUDIT_LOG or <storage>/audit.jsonl)",
    )
    verify = audit.add_parser(
        "verify", parents=[log_file], help="verify the audit log's hash chain"
    )
    verify.add_argument(
        "--checkpoint", help="a file of `audit checkpoint`: the chain must still hold its head"
    )
    checkpoint = audit.add_parser(
        "checkpoint",
        parents=[log_file],
        help="verify, then print a checkpoint of the chain head signed with the master key",
    )
    checkpoint.add_argument("--out", help="write it to this file instead of stdout")
    query = audit.add_parser("query", parents=[log_file], help="audit events, oldest first")
    query.add_argument("--user", help="a user id: their events, by their audit pseudonym")
    query.add_argument("--event", help="an event name, e.g. pattern.store")
    query.add_argument("--outcome", help="an outcome, e.g. denied")
    query.add_argument("--target", help="a pattern or staged pattern id")
    query.add_argument("--since", help="at or after this ISO 8601 time")
    query.add_argument("--limit", type=int, help="only the most recent N events")
    tail = audit.add_parser("tail", parents=[log_file], help="the last events; --follow for more")
    tail.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10)")
    tail.add_argument(
        "--follow", action="store_true", help="then print new events as they come (Ctrl-C ends)"
    )

    erase = sub.add_parser(
        "erase-user", parents=[common], help="erase everything a user wrote (both tiers)"
    )
    erase.add_argument("user_id", help="the user (agent id) to forget")
    erase.add_argument("--yes", action="store_true", help="confirm: erasure cannot be undone")

    db = sub.add_parser("db", parents=[common], help="the long-term database").add_subparsers(
        dest="action", required=True
    )
    db.add_parser(
        "upgrade",
        parents=[common],
        help="bring the long-term store's schema to this version (also done on first use)",
    )

    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy the SQLite long-term store into PostgreSQL (resumable, verified)",
        description="Copies every live record as stored (encrypted records stay encrypted) "
        "from <storage>/patterns.db into the PostgreSQL database of --to, then reads each "
        "back and compares it. Run it again to resume an interrupted copy. The source is "
        "left as it is; switch over by setting ATTUNE_DATABASE_URL.",
    )
    migrate.add_argument(
        "--to", required=True, metavar="URL", help="the target: postgresql://user@host/db"
    )

    keys = sub.add_parser("keys", parents=[common], help="master keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser(
        "generate",
        parents=[common],
        help="print a new random master key (base64) for ATTUNE_MASTER_KEY",
    )
    keys.add_parser(
        "rotate", parents=[common], help="activate a new master key and re-wrap data keys"
    )
    keys.add_parser(
        "reroot",
        parents=[common],
        help="move the key ring kept in the database under the root key in "
        "ATTUNE_NEW_MASTER_KEY (PostgreSQL)",
    )

    claude = sub.add_parser(
        "claude-memory", parents=[common], help="the CLAUDE.md hierarchy attune loads"
    ).add_subparsers(dest="action", required=True)
    claude.add_parser(
        "show",
        parents=[common],
        help="the files (with their level) and the combined text, for this directory",
    )
    mcp = sub.add_parser(
        "mcp",
        parents=[common],
        help="serve this memory to MCP clients (stdio; needs the 'mcp' extra)",
        description="An MCP server acting as one agent: --user and --tier are fixed for "
        "every client (no tool changes them).",
    )
    mcp.add_argument("--user", default="mcp-agent", help="the agent id (default: mcp-agent)")
    mcp.add_argument(
        "--tier",
        default="CONTRIBUTOR",
        help="OBSERVER, CONTRIBUTOR, VALIDATOR or STEWARD (default: CONTRIBUTOR)",
    )
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (no "
        "authentication: whoever reaches it acts as --user; bind to 127.0.0.1)",
    )
    return parser
