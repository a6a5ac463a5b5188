"""The ``attune`` command.

    attune demo                 the documented multi-agent workflow on the embedded default
    attune health               both tiers' and the audit log's health (exit 1 if a tier is down)
    attune audit verify         check the audit log's hash chain (exit 1 if tampered)
    attune audit query [--user ID] [--event E] [--outcome O] [--target ID] [--since T]
                       [--limit N]
                                audit events, oldest first; ``--user`` finds a user's
                                events by their pseudonym
    attune audit tail [-n N] [--follow]
                                the last N events (10); --follow prints new ones as they
                                are written (JSON lines with --json), until Ctrl-C
    attune keys generate        print a new master key for ATTUNE_MASTER_KEY
    attune keys rotate          new master key; re-wrap every record's data key under it
    attune keys reroot          move the key ring kept in PostgreSQL under the root key in
                                ATTUNE_NEW_MASTER_KEY (then give every host that key)
    attune db upgrade           bring the long-term store's schema to this version (SQLite
                                or PostgreSQL; also done on first use, under a lock)
    attune purge                delete long-term patterns past their retention
    attune export [--namespace N] [--out FILE]
                                write long-term records, as stored, to FILE (JSON Lines)
                                and FILE.manifest.json; every namespace unless one is named
    attune import FILE          insert the records of an export (ids already stored skipped)
    attune search QUERY [filters]   ranked keyword search of long-term patterns
    attune list [filters]       long-term patterns, newest first
    attune show ID              one long-term pattern (exit 1 if there is none)
    attune claude-memory show   the CLAUDE.md hierarchy for this directory: its files, with
                                their level, then the combined text
    attune mcp [--user ID] [--tier TIER] [--http HOST:PORT]
                                an MCP server (stdio; streamable HTTP with --http) acting
                                as one agent at one tier (defaults mcp-agent, CONTRIBUTOR)
    attune erase-user ID --yes  erase everything a user wrote, in both tiers, and the secret
                                of their audit pseudonym (right to be forgotten)

``search`` and ``list`` read as an OBSERVER in ``--namespace`` (default: ATTUNE_NAMESPACE,
else "default"; ``*`` for every namespace reads as a STEWARD); filters: ``--type``,
``--classification``, ``--created-by``, ``--since``, ``--until``, ``--limit``; ``--cursor``
asks for the next page.

Output. For people by default: tables and sentences (``rich``; colour only on a terminal),
and progress bars on stderr for an export, import or key rotation of more than a few hundred
records (spinners for purge and erase-user) when stderr is a terminal. For scripts,
``--json``: exactly one JSON document on stdout and nothing else (messages go to stderr):

    search, list        {"results": [pattern, ...], "next_cursor": "..." or null}
    show                the pattern (an object), or null when there is none (exit 1)
    audit query         [event, ...] (a list, oldest first)
    audit verify        {"ok", "lines_checked", "files", "file", "line", "reason", "head"}
    health              {"short_term", "long_term", "audit", "environment", "user_id",
                         "access_tier"}
    purge               {"purged": N}
    export              {"file", "format", "records", "sha256", "namespace", "exported_at",
                         "by_classification"}
    import              {"imported", "skipped", "expired"}
    erase-user          {"user_id", "patterns", "staged_patterns", "working_data",
                         "pseudonym_erased"}
    keys generate       {"master_key": "..."}
    keys rotate         {"key_id", "rewrapped"}
    keys reroot         {"root_key_id", "keys"}
    db upgrade          {"backend", "where", "schema_version", "patterns"}
    demo                {"staged", "promoted", "health"} (its story goes to stderr)
    claude-memory show  {"files": [{"path", "level", "bytes", "imported_by"}, ...],
                         "total_bytes", "text"}

Exit status: 0 success; 1 a negative answer (a tier down in ``health``, a tampered audit
log in ``audit verify``, no such pattern in ``show``); 2 a usage error or an attune error
(bad configuration, bad input, refused access), its message on stderr and nothing on stdout.

``--storage-dir`` (overrides ``ATTUNE_STORAGE_DIR``) and ``--json`` go before or after the
subcommand. Every command reads the usual environment (``ATTUNE_*``, ``REDIS_URL``).
"""

from __future__ import annotations

from collections.abc import Sequence

from attune.cli import commands, identity, parser
from attune.cli.output import Output
from attune.errors import AttuneError


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser.build().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (its message printed)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    out = Output(as_json=args.json)
    try:
        with identity.run_environment(args):
            return commands.run(args, out)
    except AttuneError as exc:
        out.error(str(exc))
        return commands.ERROR
