"""``attune patterns show / search / list / delete / purge / export / import``: long-term
memory. The old top-level ``search``, ``list``, ``show``, ``purge``, ``export`` and
``import`` are these same commands (the parser routes them here), for existing scripts.

Reads act as an OBSERVER of ``--namespace`` (default: ATTUNE_NAMESPACE, else "default"),
or as a STEWARD reading every namespace (``'*'``); delete, purge, export and import as a
STEWARD. ``--tier`` replaces those defaults, and the library refuses a tier too low.
"""

from __future__ import annotations

import argparse
from typing import Any

from attune.cli import identity
from attune.cli.output import NO, OK, Output, patterns_table, show_one
from attune.memory.types import AccessTier
from attune.memory.validation import shown_id


def _reader(args: argparse.Namespace) -> Any:
    if args.namespace == "*":
        return identity.memory(args, AccessTier.STEWARD)
    return identity.memory(args, AccessTier.OBSERVER, args.namespace)


def show(args: argparse.Namespace, out: Output) -> int:
    with _reader(args) as memory:
        scope = "*" if args.namespace == "*" else None
        found = memory.recall_pattern(args.pattern_id, namespace=scope)
    return show_one(out, found, args.pattern_id, f"no pattern {shown_id(args.pattern_id)} here")


def search_or_list(args: argparse.Namespace, out: Output) -> int:
    searching = args.action == "search"
    with _reader(args) as memory:
        filters = {
            "created_by": args.created_by,
            "since": args.since,
            "until": args.until,
            "metadata": args.metadata,
            "cursor": args.cursor,
            "namespace": "*" if args.namespace == "*" else None,
        }
        if searching:
            page = memory.search_patterns(
                args.query, args.pattern_type, args.classification, args.limit, **filters
            )
        else:
            page = memory.list_patterns(
                args.pattern_type, args.classification, args.limit, **filters
            )
    results = list(page)
    if out.as_json:
        out.document({"results": results, "next_cursor": page.next_cursor})
        return OK
    if results:
        out.table(patterns_table(results, scored=searching, width=out.out.width))
    else:
        out.note("No patterns match.")
    if page.next_cursor:
        out.note(f"More: run it again with --cursor {page.next_cursor}")
    return OK


def delete(args: argparse.Namespace, out: Output) -> int:
    with identity.memory(args, AccessTier.STEWARD) as memory:
        deleted = memory.delete_pattern(args.pattern_id)
    if out.as_json:
        out.document({"deleted": deleted, "pattern_id": args.pattern_id})
    elif deleted:
        out.line(f"Deleted pattern {args.pattern_id}.")
    if not deleted:
        out.error(f"no pattern {shown_id(args.pattern_id)}: nothing deleted")
        return NO
    return OK


def purge(args: argparse.Namespace, out: Output) -> int:
    """Expired patterns deleted batch by batch, with a progress bar past the threshold."""
    with identity.memory(args, AccessTier.STEWARD) as memory, out.progress("Purging") as bar:
        purged: int = memory.purge_expired(progress=bar)
    if out.as_json:
        out.document({"purged": purged})
    else:
        out.line(f"Purged {purged} expired pattern(s).")
    return OK


def export(args: argparse.Namespace, out: Output) -> int:
    """The export runs on a loop of its own (:func:`.identity.interruptible`): Ctrl-C
    leaves no temporary file. A path that is not a regular file is refused first."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out or f"attune-export-{stamp}.jsonl"
    _regular_file(path)

    async def write() -> dict[str, Any]:
        async with identity.async_memory(args, AccessTier.STEWARD) as memory:
            with out.progress("Exporting") as progress:
                result: dict[str, Any] = await memory.export_patterns(
                    path, namespace=args.namespace, progress=progress
                )
        return result

    manifest = identity.interruptible(write())
    if out.as_json:
        out.document({"file": path, **manifest})
        return OK
    counts = ", ".join(f"{n} {c}" for c, n in manifest["by_classification"].items())
    out.line(
        f"Exported {manifest['records']} record(s) ({counts}) of namespace "
        f"{manifest['namespace']!r} to {path} (manifest: {path}.manifest.json)."
    )
    return OK


def _regular_file(path: str) -> None:
    """Refuse an export path (or its manifest's) that is there but is not a regular file
    (:func:`~attune.memory.export_file.check_replaceable`), before a store is opened."""
    from pathlib import Path

    from attune.memory.export_file import check_replaceable

    check_replaceable(Path(path))


def import_(args: argparse.Namespace, out: Output) -> int:
    with (
        identity.memory(args, AccessTier.STEWARD) as memory,
        out.progress("Importing") as progress,
    ):
        result = memory.import_patterns(args.file, progress=progress)
    if out.as_json:
        out.document(result)
    else:
        out.line(
            f"Imported {result['imported']} record(s); skipped {result['skipped']} "
            f"already stored, {result['expired']} past their retention."
        )
    return OK
