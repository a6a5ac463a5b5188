"""The memory tiers' subcommands: working data (``stash``, ``get``, ``forget``), staged
patterns (``staged ...``) and long-term patterns (``patterns ...``).

The earlier top-level ``search``, ``list``, ``show``, ``purge``, ``export`` and ``import``
are kept for existing scripts: the same parsers registered again at the top level, without
help (so the command list shows them once, under ``patterns``) and routed to the same
handlers, so their output is identical.

The commands that only read or remove (``get``, ``forget``, ``staged list`` and ``show``,
``patterns search``, ``list``, ``show``, ``export``, ``delete`` and ``purge``) set
``needs_store``: a storage directory chosen that does not exist is refused before they run
(:func:`.guards.require_store`), never created empty (a removal there would report nothing
removed, as if the data were gone).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from attune.cli import arguments, identity, patterns, staged, working
from attune.cli.output import Output

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
#: The ``patterns`` commands that were top-level commands before, and still are.
ALIASES = ("search", "list", "show", "purge", "export", "import")
#: The ``patterns`` commands that only read or remove (export writes only its own file):
#: they refuse a storage directory that is not there (:func:`.guards.require_store`), as
#: ``get``, ``forget``, ``staged list`` and ``show`` do.
_NEED_STORE = ("search", "list", "show", "export", "delete", "purge")


def add(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    _working(sub, common)
    _staged(sub, common)
    tree = sub.add_parser(
        "patterns",
        parents=[common],
        help="long-term patterns",
        description="Long-term patterns. Reads act as an OBSERVER of --namespace (default: "
        "ATTUNE_NAMESPACE, else 'default'), or as a STEWARD of every namespace ('*'); "
        "delete, purge, export and import as a STEWARD.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    _patterns(tree, common, alias=False)
    _patterns(sub, common, alias=True)


def _working(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    stash = sub.add_parser(
        "stash",
        parents=[common],
        help="store working data under KEY",
        description="Store VALUE under KEY in this agent's working data. VALUE is parsed "
        'as JSON when it is valid JSON (42, true, null, [1, 2], {"a": 1}), else stored as '
        "the text itself (so '\"42\"' stores the text 42); --string keeps it text; - reads "
        "it from stdin.",
    )
    stash.add_argument("key")
    stash.add_argument(
        "value",
        help="JSON if it parses as JSON, else the text; - reads it from stdin",
    )
    stash.add_argument(
        "--ttl",
        type=arguments.number,
        metavar="S",
        help="seconds to keep it (default: the configured default_ttl_seconds, 3600)",
    )
    stash.add_argument(
        "--string", action="store_true", help="store VALUE as text even if it reads as JSON"
    )
    stash.set_defaults(handler=working.stash)
    get = sub.add_parser("get", parents=[common], help="print the working data under KEY")
    get.add_argument("key")
    get.add_argument("--agent", type=identity.user_option, help="another agent's (default: mine)")
    get.set_defaults(handler=working.get, needs_store=True)
    forget = sub.add_parser("forget", parents=[common], help="remove the working data under KEY")
    forget.add_argument("key")
    forget.set_defaults(handler=working.forget, needs_store=True)


def _staged(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    tree = sub.add_parser(
        "staged",
        parents=[common],
        help="patterns awaiting review",
        description="Staged patterns wait in the short-term tier until a VALIDATOR promotes "
        "them into long-term memory or rejects them, or they expire.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    scoped = argparse.ArgumentParser(add_help=False, parents=[common])
    scoped.add_argument("--namespace", help="act in this namespace (list and show: '*' for all)")

    tree.add_parser("list", parents=[scoped], help="staged patterns not yet expired").set_defaults(
        handler=staged.list_staged, needs_store=True
    )
    show = tree.add_parser("show", parents=[scoped], help="one staged pattern, every field")
    show.add_argument("staged_id", metavar="ID")
    show.set_defaults(handler=staged.show, needs_store=True)
    add = tree.add_parser("add", parents=[scoped], help="stage a pattern for review")
    add.add_argument("content", help="the pattern's text")
    add.add_argument("--type", dest="pattern_type", required=True, help="its pattern type")
    add.add_argument(
        "--data",
        type=identity.json_object_option,
        metavar="JSON",
        help='more fields to keep with it, a JSON object: \'{"source": "review"}\'',
    )
    add.add_argument(
        "--ttl-hours",
        type=arguments.number,
        metavar="H",
        help="expire after H hours unless promoted",
    )
    add.set_defaults(handler=staged.add)
    promote = tree.add_parser(
        "promote", parents=[scoped], help="move it into long-term memory (VALIDATOR)"
    )
    promote.add_argument("staged_id", metavar="ID")
    promote.add_argument(
        "--classification",
        type=identity.classification_option,
        help="force PUBLIC, INTERNAL or SENSITIVE (default: classified from its content)",
    )
    promote.set_defaults(handler=staged.promote)
    reject = tree.add_parser("reject", parents=[scoped], help="drop it unpromoted (VALIDATOR)")
    reject.add_argument("staged_id", metavar="ID")
    reject.add_argument("--reason", help="for your records (the audit log keeps no text)")
    reject.set_defaults(handler=staged.reject)


def _patterns(sub: Subparsers, common: argparse.ArgumentParser, *, alias: bool) -> None:
    def command(
        name: str,
        help: str,
        handler: Callable[[argparse.Namespace, Output], int],
        parents: list[argparse.ArgumentParser],
    ) -> argparse.ArgumentParser | None:
        if alias and name not in ALIASES:
            return None
        # An alias has no help: argparse then leaves it out of the command list.
        if alias:
            parser = sub.add_parser(name, parents=parents, description=help)
        else:
            parser = sub.add_parser(name, parents=parents, description=help, help=help)
        parser.set_defaults(
            command="patterns", action=name, handler=handler, needs_store=name in _NEED_STORE
        )
        return parser

    reading = argparse.ArgumentParser(add_help=False, parents=[common])
    reading.add_argument("--namespace", help="the namespace to read ('*': every one)")
    reading.add_argument("--type", dest="pattern_type", help="only this pattern type")
    reading.add_argument("--classification", help="PUBLIC, INTERNAL or SENSITIVE")
    reading.add_argument("--created-by", help="only patterns this agent wrote")
    reading.add_argument("--since", help="created at or after this ISO 8601 time")
    reading.add_argument("--until", help="created before this ISO 8601 time")
    reading.add_argument(
        "--metadata",
        type=identity.json_object_option,
        metavar="JSON",
        help='only patterns whose metadata holds these fields: \'{"team": "core"}\'',
    )
    reading.add_argument(
        "--limit", type=arguments.whole_number, default=20, help="results per page (default 20)"
    )
    reading.add_argument("--cursor", help="the next_cursor of the previous page")

    search = command(
        "search", "ranked search of long-term patterns", patterns.search_or_list, [reading]
    )
    if search is not None:
        search.add_argument("query", help='words to find; "quoted words" as a phrase')
    command("list", "long-term patterns, newest first", patterns.search_or_list, [reading])
    show = command("show", "one long-term pattern, every field", patterns.show, [common])
    if show is not None:
        show.add_argument("pattern_id")
        show.add_argument("--namespace", help="the namespace it is in ('*': any)")
    delete = command("delete", "delete one long-term pattern (STEWARD)", patterns.delete, [common])
    if delete is not None:
        delete.add_argument("pattern_id")
    command("purge", "delete patterns past their retention", patterns.purge, [common])
    export = command(
        "export", "write long-term records, as stored, to a JSONL file", patterns.export, [common]
    )
    if export is not None:
        export.add_argument(
            "--namespace", default="*", help="the namespace to export (default: every one, '*')"
        )
        export.add_argument(
            "--out",
            help="the JSONL file (default: attune-export-<UTC time>.jsonl here); a new or "
            "regular file, never a link, device or pipe (it is replaced)",
        )
    imported = command(
        "import", "insert the records of an export (skips stored ids)", patterns.import_, [common]
    )
    if imported is not None:
        imported.add_argument("file", help="the JSONL file export wrote (its manifest beside it)")
