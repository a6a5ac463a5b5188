"""The ``attune`` command: subcommands grouped by tier.

Working data (short-term, one agent's):
    attune stash KEY VALUE [--ttl S] [--string]
                                store VALUE under KEY: parsed as JSON when it is valid JSON
                                (42, true, null, [1, 2], {"a": 1}; '"42"' is the text 42),
                                else the text itself; --string keeps it text; - reads stdin
    attune get KEY [--agent ID] print it: a string as it is, anything else as JSON (exit 1:
                                none); --agent reads another agent's
    attune forget KEY           remove it (exit 1: there was none)
Staged patterns (awaiting review, in the short-term tier):
    attune staged list [--namespace N|'*']      staged patterns not yet expired
    attune staged show ID                       one, every field (exit 1: none)
    attune staged add CONTENT --type T [--data JSON] [--ttl-hours H]
    attune staged promote ID [--classification C]   into long-term memory (VALIDATOR)
    attune staged reject ID [--reason R]        drop it (VALIDATOR)
Long-term patterns:
    attune patterns list [filters]              newest first
    attune patterns search QUERY [filters]      ranked keyword search
    attune patterns show ID [--namespace N]     one pattern (exit 1: none)
    attune patterns delete ID                   (STEWARD; exit 1: none)
    attune patterns purge                       delete patterns past their retention
    attune patterns export [--namespace N] [--out FILE]   records as stored, JSON Lines,
                                and FILE.manifest.json; every namespace unless one is named
    attune patterns import FILE insert the records of an export (ids already stored skipped)
    filters: --namespace N ('*': every one, as a STEWARD), --type, --classification,
    --created-by, --since, --until, --metadata JSON, --limit, --cursor
    The earlier top-level search, list, show, purge, export and import are the same
    commands (same output), kept for scripts; the help lists them once, under patterns.
Administration:
    attune health               both tiers' and the audit log's health (exit 1: a tier down)
    attune erase-user ID --yes  everything a user wrote, both tiers, and their audit pseudonym
    attune keys generate | rotate | reroot
    attune audit verify [--checkpoint F] | query [--user ID] [--event E] [--outcome O]
                 [--target ID] [--since T] [--limit N] | tail [-n N] [--follow] | checkpoint
    attune db upgrade           bring the long-term schema to this version
    attune migrate --to URL     copy the SQLite store into PostgreSQL (resumable, verified)
Tools:
    attune demo                 the multi-agent workflow (in a temporary directory unless
                                --storage-dir is given)
    attune mcp [--http HOST:PORT]   an MCP server acting as --user at --tier (defaults
                                mcp-agent, CONTRIBUTOR)
    attune claude-memory show   the CLAUDE.md hierarchy for this directory

Global options, before or after the command (at any level): ``--storage-dir DIR``,
``--redis-url URL``, ``--env development|staging|production`` (each sets ATTUNE_STORAGE_DIR,
REDIS_URL, ATTUNE_ENV for this run only), ``--user ID`` (the agent the command acts as,
default ``attune-cli``), ``--tier TIER`` (replaces the command's own default tier: reads
OBSERVER, stash/forget/staged add CONTRIBUTOR, promote/reject VALIDATOR, delete, purge,
export, import, erase-user and keys rotate STEWARD; the library refuses a tier too low,
exit 2), ``--json``, and ``--version``. See :mod:`attune.cli.identity`.

Output. For people by default: tables and sentences (``rich``; colour only on a terminal),
progress bars on stderr for an export, import, purge, key rotation or migration of more than
a few hundred records (a spinner for erase-user: it reports no count) when stderr is a
terminal. For scripts, ``--json``: exactly one JSON document on stdout and nothing else
(messages go to stderr):

    stash               {"stored", "key", "agent_id", "ttl_seconds"}
    get                 {"key", "agent_id", "found", "value"}
    forget              {"forgotten", "key", "agent_id"}
    staged list         {"staged": [staged pattern, ...]}
    staged show         the staged pattern, or null (exit 1)
    staged add          {"staged_pattern_id"}
    staged promote      what persist_pattern returns, with "staged_pattern_id"
    staged reject       {"rejected": true, "staged_pattern_id"}
    patterns search, list   {"results": [pattern, ...], "next_cursor": "..." or null}
    patterns show       the pattern (an object), or null when there is none (exit 1)
    patterns delete     {"deleted", "pattern_id"}
    patterns purge      {"purged": N}
    patterns export     {"file", "format", "records", "sha256", "namespace", "exported_at",
                         "by_classification"}
    patterns import     {"imported", "skipped", "expired"}
    audit query, tail   [event, ...] (a list, oldest first; tail --follow: JSON lines)
    audit verify        {"ok", "lines_checked", "files", "file", "line", "reason", "head",
                         "table"}
    audit checkpoint    the signed checkpoint
    health              {"short_term", "long_term", "audit", "environment", "user_id",
                         "access_tier"}
    erase-user          {"user_id", "patterns", "staged_patterns", "working_data",
                         "pseudonym_erased"}
    keys generate       {"master_key": "..."}
    keys rotate         {"key_id", "rewrapped", "corrupt"}
    keys reroot         {"root_key_id", "keys"}
    db upgrade          {"backend", "where", "schema_version", "patterns"}
    migrate             the migration's report ({"imported", "skipped", "verified", ...})
    demo                {"staged", "promoted", "health"} (its story goes to stderr)
    claude-memory show  {"files": [{"path", "level", "bytes", "imported_by"}, ...],
                         "total_bytes", "text"}
    mcp                 (none: its stdout is the MCP protocol's)

Exit status: 0 success; 1 a negative answer (a tier down in ``health``, a tampered audit
log in ``audit verify``, or one whose events were deleted, nothing there for get, forget,
show, staged show, patterns delete); 2 a usage error (a command that only reads given a
``--storage-dir`` or ``ATTUNE_STORAGE_DIR`` that does not exist, which it never creates;
``audit verify`` of a path with no log, ``audit query`` or ``tail`` of a ``--log-file``
that is not there; an argument a terminal of another encoding garbled) or an attune error
(bad configuration, bad input, refused access), its message on stderr and nothing on
stdout; an argument error names the argument, never the value typed (:mod:`.arguments`),
and no message repeats a key or id typed (:mod:`.guards`); 141 stdout closed before
everything was written (``attune ... | head -1``: the rest is dropped, as a shell reports
a command ended by SIGPIPE); 130 interrupted (Ctrl-C: "attune: interrupted" on stderr, no
traceback; an interrupted ``patterns export`` or ``migrate`` removes its partial files
first, an interrupted import or purge is resumed by running it again). :func:`main`
returns it.

``keys rotate`` with ``ATTUNE_MASTER_KEY`` set (and the key file holding the ring) says on
stderr to set the variable to the new key: it decides the active key at every start.
"""

from __future__ import annotations

from collections.abc import Sequence

from attune.cli import commands, guards, identity, parser
from attune.cli.output import ERROR, INTERRUPTED, Output, closed_stdout, tolerate_unencodable
from attune.errors import AttuneError


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser.build().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (its message printed)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    tolerate_unencodable()
    out = Output(as_json=args.json)
    try:
        with identity.run_environment(args):
            return commands.run(args, out)
    except AttuneError as exc:  # never repeating a key or id typed (the library's neither)
        out.error(guards.hide_typed(str(exc), args))
        return ERROR
    except BrokenPipeError:  # stdout's reader went away (| head): not a negative answer
        return closed_stdout()
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback (see the epilog)
        out.error("interrupted")
        return INTERRUPTED
