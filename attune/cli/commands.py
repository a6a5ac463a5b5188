"""The ``attune`` administration subcommands (demo, health, erase-user, db, migrate, keys,
claude-memory, mcp, audit) and the dispatch of every command: each returns its exit
status and prints through :class:`~attune.cli.output.Output` (one JSON document with
``--json``, tables otherwise). Working data, staged and long-term patterns have modules
of their own (:mod:`.working`, :mod:`.staged`, :mod:`.patterns`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from attune.cli import guards, identity
from attune.cli.output import (
    ERROR,
    NO,
    OK,
    Output,
    claude_files_table,
    fields_table,
)
from attune.memory.types import AccessTier


def run(args: argparse.Namespace, out: Output) -> int:
    """Run the command the parser chose (each subparser names its handler); one that only
    reads or removes (``needs_store``) not on a storage directory that is not there
    (:mod:`.guards`)."""
    handler: Callable[[argparse.Namespace, Output], int] = args.handler
    if getattr(args, "needs_store", False):
        guards.require_store(args)
    return handler(args, out)


def demo(args: argparse.Namespace, out: Output) -> int:
    """The demo, in a temporary storage directory unless one is given (``--storage-dir``
    or ``ATTUNE_STORAGE_DIR``): trying it leaves nothing in the user's data directory."""
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


def health(args: argparse.Namespace, out: Output) -> int:
    with identity.memory(args, AccessTier.OBSERVER) as memory:
        report = memory.health_check()
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


def erase_user(args: argparse.Namespace, out: Output) -> int:
    """erase-user ID --yes: STEWARD work, in both tiers and the audit pseudonyms."""
    if not args.yes:
        out.error(
            "erase-user deletes everything this user wrote and cannot be undone; "
            "run it again with --yes"
        )
        return ERROR
    with (
        identity.memory(args, AccessTier.STEWARD) as memory,
        out.status(f"Erasing {args.user_id}…"),
    ):
        result: dict[str, Any] = memory.erase_user(args.user_id)
    if out.as_json:
        out.document(result)
    else:
        out.line(
            f"Erased user {result['user_id']}: {result['patterns']} pattern(s), "
            f"{result['staged_patterns']} staged pattern(s), {result['working_data']} "
            "working-data key(s); audit pseudonym "
            + ("erased." if result["pseudonym_erased"] else "not found.")
        )
    return OK


def db_upgrade(args: argparse.Namespace, out: Output) -> int:
    """Open the configured long-term store, which applies its pending migrations (under
    the store's own lock: safe while other processes start), and report its schema."""
    identity.require_steward(args, "db_upgrade")
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


def migrate(args: argparse.Namespace, out: Output) -> int:
    """migrate --to URL: export, load, verify, each with its progress bar, on one loop
    (:func:`.identity.interruptible`): an interrupted migration leaves no export behind."""
    identity.require_steward(args, "migrate")
    if not args.to.startswith(("postgresql://", "postgres://")):
        from attune.errors import ValidationError

        raise ValidationError(  # the library would speak of database_url, not of --to
            "--to must name the PostgreSQL database to copy into: "
            "postgresql://user@host:5432/database (migrate copies the SQLite store there)"
        )
    from attune.memory.migration import Migration

    migration = Migration(args.to)

    async def copy() -> None:
        # One loop for the three steps: Ctrl-C at any point deletes the export (a copy of
        # every record that erasure and retention would not see) before the command ends.
        with out.progress("Exporting from SQLite") as progress:
            await migration.export(progress)
        with out.progress("Loading into PostgreSQL") as progress:
            await migration.load(progress)
        with out.progress("Verifying") as progress:
            await migration.verify(progress)

    identity.interruptible(copy())
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


def keys(args: argparse.Namespace, out: Output) -> int:
    if args.action == "generate":
        from attune.memory.security.crypto import generate_master_key

        key = generate_master_key()
        if out.as_json:
            out.document({"master_key": key})
        else:
            sys.stdout.write(key + "\n")  # the bare key, to paste or to pipe
        return OK
    if args.action == "reroot":
        identity.require_steward(args, "keys_reroot")
        return _reroot(out)
    with (
        identity.memory(args, AccessTier.STEWARD) as memory,
        out.progress("Re-wrapping data keys") as progress,
    ):
        result = memory.rotate_keys(progress=progress)
        ring = memory.async_memory.pipeline.cipher.ring
        # The variable names the active key at every start of a file-kept ring (a ring
        # kept in the database has it as its root key instead, which a rotation keeps).
        env_key = bool(os.environ.get("ATTUNE_MASTER_KEY")) and not ring.in_store
    if env_key:
        out.warning(
            f"ATTUNE_MASTER_KEY still names the previous master key, which becomes active "
            f"again when attune next starts: set ATTUNE_MASTER_KEY to the new key "
            f"{result['key_id']} (its base64 is in the key file {ring.key_file}), or unset it "
            "to use the key file; every key stays there, so nothing becomes unreadable"
        )
    if out.as_json:
        out.document(result)
    else:
        out.line(
            f"New master key {result['key_id']} active; "
            f"re-wrapped {result['rewrapped']} data key(s)."
        )
        if result["corrupt"]:
            out.line(
                f"{result['corrupt']} record(s) damaged outside attune were left as they are "
                "(see the audit log, outcome corrupt): restore them from a backup or delete them."
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


def claude_memory(args: argparse.Namespace, out: Output) -> int:
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


def mcp(args: argparse.Namespace, out: Output) -> int:
    """mcp: serve until the client goes (stdout is the protocol's: nothing else is
    printed there, --json included). --user and --tier default to mcp-agent and
    CONTRIBUTOR, the server's own defaults."""
    try:
        from attune import mcp_server
    except ImportError as exc:
        out.error(f"attune mcp needs the MCP SDK: pip install 'attune[mcp]' ({exc})")
        return ERROR
    mcp_server.serve(
        identity.user(args, mcp_server.DEFAULT_USER),
        identity.tier(args, mcp_server.DEFAULT_TIER),
        http=args.http,
    )
    return OK
