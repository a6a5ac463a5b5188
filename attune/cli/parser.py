"""The ``attune`` command line: its global options, and the administration subcommands
(the memory tiers' commands are in :mod:`.parser_tiers`).

The global options (``--storage-dir``, ``--redis-url``, ``--env``, ``--user``, ``--tier``,
``--json``) go before the subcommand and after it, at any level (``attune --json audit
query`` and ``attune audit query --json`` are the same). The top-level parser holds their
defaults; every subparser declares them again with ``default=SUPPRESS``, so a subcommand
that does not see them leaves the top-level value.

Every subparser names its handler (``set_defaults(handler=...)``): a function
``(args, out) -> exit status``.
"""

from __future__ import annotations

import argparse

import attune
from attune.cli import arguments, audit, commands, identity, parser_tiers

DESCRIPTION = """\
Two-tier memory for AI agents.

working data (short-term, per agent):
  stash KEY VALUE          store working data (VALUE: JSON if it parses, else text)
  get KEY                  print it (--agent ID: another agent's)
  forget KEY               remove it
staged patterns (awaiting review):
  staged list | show ID | add CONTENT --type T | promote ID | reject ID
long-term patterns:
  patterns list | search QUERY | show ID | delete ID | purge | export | import FILE
administration:
  health                   both tiers' and the audit log's health
  erase-user ID --yes      erase everything a user wrote (right to be forgotten)
  keys generate | rotate | reroot
  audit verify | query | tail | checkpoint
  db upgrade               bring the long-term schema to this version
  migrate --to URL         copy the SQLite store into PostgreSQL
tools:
  demo                     the multi-agent workflow, in a temporary directory
  mcp                      serve this memory to MCP clients
  claude-memory show       the CLAUDE.md hierarchy attune loads

"attune COMMAND -h" tells more.
"""

EPILOG = """\
global options go before or after the command. The command acts as agent --user
(default attune-cli) at its own default access tier: reads OBSERVER; stash, forget
and staged add CONTRIBUTOR; staged promote/reject VALIDATOR; patterns delete, purge,
export, import, erase-user and keys rotate STEWARD. --tier replaces that tier; a
tier too low for the command is refused by the library (exit 2), before any write.
db upgrade, migrate and keys reroot run as the operator (no agent), but refuse an
explicit --tier below STEWARD too. demo, keys generate, claude-memory and audit act
as no agent (audit query --user names whose events to show).

exit status:
  0  success
  1  a negative answer: a tier is down (health), the audit log is tampered with or
     its events deleted (audit verify), nothing there (get, forget, show, staged
     show, patterns delete)
  2  a usage error: a command that only reads (get, staged list/show, patterns
     list/search/show/export, audit) given a --storage-dir or ATTUNE_STORAGE_DIR that does
     not exist (nothing is created there; commands that write start a new store),
     no audit log at the path (audit verify, or a --log-file of query and tail), an
     argument the terminal's encoding garbled; or an attune error (bad
     configuration, bad input, refused access). No message repeats a value, key or
     id typed (ids attune made, pat_... and stg_..., excepted)
  130  interrupted (Ctrl-C): an export or a migration first removes its partial
       files; run an import, a purge or a migration again to finish it
  141  stdout was closed before everything was written (attune ... | head -1)

--json prints exactly one JSON document on stdout (an object; a list for audit query
and audit tail; null for show of a missing pattern); messages go to stderr.

The earlier top-level search, list, show, purge, export and import still work: they
are patterns search, list, show, purge, export and import.
"""


def _global_options(parser: argparse.ArgumentParser, *, top: bool, user: bool = True) -> None:
    default: object = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--storage-dir",
        default=default,
        metavar="DIR",
        help="long-term storage directory (default: ATTUNE_STORAGE_DIR or the per-user data dir)",
    )
    group.add_argument(
        "--redis-url",
        default=default,
        metavar="URL",
        help="the short-term Redis (sets REDIS_URL for this run; without it, in development, "
        "an in-process stand-in that ends with the command)",
    )
    group.add_argument(
        "--env",
        default=default,
        choices=identity.ENVIRONMENTS,
        help="the deployment tier (sets ATTUNE_ENV for this run)",
    )
    if user:
        group.add_argument(
            "--user",
            default=default,
            type=identity.user_option,
            metavar="ID",
            help=f"the agent id the command acts as (default: {identity.DEFAULT_USER})",
        )
    group.add_argument(
        "--tier",
        default=default,
        type=identity.tier_option,
        metavar="TIER",
        help=f"the access tier it acts at ({identity.TIERS}; default: the command's own)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print one JSON document on stdout, for scripts (default: tables for people)",
    )


def build() -> argparse.ArgumentParser:
    # Its subparsers are of its class too: no error message repeats a value typed.
    parser: argparse.ArgumentParser = arguments.ArgumentParser(
        prog="attune",
        usage="attune [global options] COMMAND [options]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"attune {attune.__version__}")
    _global_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, top=False)
    # audit query's --user is whose events to show: the same option, by its own help.
    whose = argparse.ArgumentParser(add_help=False)
    _global_options(whose, top=False, user=False)

    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS, prog="attune"
    )
    parser_tiers.add(sub, common)
    _admin(sub, common, whose)
    return parser


def _admin(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    whose: argparse.ArgumentParser,
) -> None:
    sub.add_parser(
        "health", parents=[common], help="both memory tiers' and the audit's health"
    ).set_defaults(handler=commands.health)
    erase = sub.add_parser(
        "erase-user", parents=[common], help="erase everything a user wrote (both tiers)"
    )
    erase.add_argument("user_id", help="the user (agent id) to forget")
    erase.add_argument("--yes", action="store_true", help="confirm: erasure cannot be undone")
    erase.set_defaults(handler=commands.erase_user, needs_store=True)
    _audit(sub, common, whose)

    db = sub.add_parser("db", parents=[common], help="the long-term database").add_subparsers(
        dest="action", required=True
    )
    db.add_parser(
        "upgrade",
        parents=[common],
        help="bring the long-term store's schema to this version (also done on first use)",
    ).set_defaults(handler=commands.db_upgrade)

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
    migrate.set_defaults(handler=commands.migrate)

    keys = sub.add_parser("keys", parents=[common], help="master keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser(
        "generate",
        parents=[common],
        help="print a new random master key (base64) for ATTUNE_MASTER_KEY",
    ).set_defaults(handler=commands.keys)
    keys.add_parser(
        "rotate", parents=[common], help="activate a new master key and re-wrap data keys"
    ).set_defaults(handler=commands.keys)
    keys.add_parser(
        "reroot",
        parents=[common],
        help="move the key ring kept in the database under the root key in "
        "ATTUNE_NEW_MASTER_KEY (PostgreSQL)",
    ).set_defaults(handler=commands.keys)

    sub.add_parser(
        "demo", parents=[common], help="run the multi-agent knowledge-building workflow"
    ).set_defaults(handler=commands.demo)
    mcp = sub.add_parser(
        "mcp",
        parents=[common],
        help="serve this memory to MCP clients (stdio; needs the 'mcp' extra)",
        description="An MCP server acting as one agent: --user and --tier (here defaulting "
        "to mcp-agent and CONTRIBUTOR) are fixed for every client (no tool changes them). "
        "Its stdout is the protocol's: --json changes nothing.",
    )
    mcp.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio; clients must "
        "send 'Authorization: Bearer $ATTUNE_MCP_TOKEN' when that is set, and without it only "
        "a loopback HOST is accepted",
    )
    mcp.set_defaults(handler=commands.mcp)
    claude = sub.add_parser(
        "claude-memory", parents=[common], help="the CLAUDE.md hierarchy attune loads"
    ).add_subparsers(dest="action", required=True)
    claude.add_parser(
        "show",
        parents=[common],
        help="the files (with their level) and the combined text, for this directory",
    ).set_defaults(handler=commands.claude_memory)


def _audit(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    whose: argparse.ArgumentParser,
) -> None:
    tree = sub.add_parser("audit", parents=[common], help="the audit log").add_subparsers(
        dest="action", required=True
    )

    def log_file(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--log-file",
            help="audit log file (default: the database's audit_events table with "
            "ATTUNE_DATABASE_URL, else ATTUNE_AUDIT_LOG or <storage>/audit.jsonl)",
        )
        parser.set_defaults(handler=audit.run)
        return parser

    verify = log_file(
        tree.add_parser(
            "verify",
            parents=[common],
            help="verify the audit log's hash chain",
            description="Verify the audit log's hash chain. Exit 1 when it was tampered "
            "with, also when the store's own log is missing or empty although the store's "
            "records (or --checkpoint) show it held events, or when rotated files remain "
            "without the current one; exit 2 when there is no log at the path at all.",
        )
    )
    verify.add_argument(
        "--checkpoint", help="a file of `audit checkpoint`: the chain must still hold its head"
    )
    checkpoint = log_file(
        tree.add_parser(
            "checkpoint",
            parents=[common],
            help="verify, then print a checkpoint of the chain head signed with the master key",
        )
    )
    checkpoint.add_argument("--out", help="write it to this file instead of stdout")
    query = log_file(
        tree.add_parser(
            "query",
            parents=[whose],
            help="audit events, oldest first",
            description="Audit events, oldest first. Here --user (before or after the "
            "command) names whose events: found by their audit pseudonym.",
        )
    )
    query.add_argument(
        "--user",
        default=argparse.SUPPRESS,
        type=identity.user_option,
        metavar="ID",
        help="a user id: their events, by their audit pseudonym",
    )
    query.add_argument("--event", help="an event name, e.g. pattern.store")
    query.add_argument("--outcome", help="an outcome, e.g. denied")
    query.add_argument("--target", help="a pattern or staged pattern id")
    query.add_argument("--since", help="at or after this ISO 8601 time")
    query.add_argument("--limit", type=arguments.whole_number, help="only the most recent N events")
    tail = log_file(
        tree.add_parser("tail", parents=[common], help="the last events; --follow for more")
    )
    tail.add_argument(
        "-n", "--lines", type=arguments.whole_number, default=10, help="how many (default 10)"
    )
    tail.add_argument(
        "--follow", action="store_true", help="then print new events as they come (Ctrl-C ends)"
    )
