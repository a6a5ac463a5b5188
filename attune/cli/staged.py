"""``attune staged list / show / add / promote / reject``: patterns awaiting review.

Staged patterns live in the short-term tier (Redis) until a VALIDATOR promotes them into
long-term memory or rejects them, or they expire. ``--namespace N`` acts in namespace N
(default: ATTUNE_NAMESPACE, else "default"); ``list --namespace '*'`` lists every
namespace, as a STEWARD.
"""

from __future__ import annotations

import argparse
from typing import Any

from attune.cli import identity
from attune.cli.output import OK, Output, show_one, staged_table
from attune.cli.working import standin_warning
from attune.memory.types import AccessTier
from attune.memory.validation import shown_id


def _memory(args: argparse.Namespace, default_tier: AccessTier, *, reading: bool = False) -> Any:
    """The acting agent, in ``--namespace``; a read of every namespace (``'*'``) as a
    STEWARD unless ``--tier`` says otherwise (the library then refuses a lower tier)."""
    if reading and args.namespace == "*":
        return identity.memory(args, AccessTier.STEWARD)
    return identity.memory(args, default_tier, args.namespace)


def _staged(memory: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    staged: list[dict[str, Any]] = memory.get_staged_patterns(
        namespace="*" if args.namespace == "*" else None
    )
    return staged


def list_staged(args: argparse.Namespace, out: Output) -> int:
    with _memory(args, AccessTier.OBSERVER, reading=True) as memory:
        staged = _staged(memory, args)
        if not staged:
            standin_warning(memory, out)
    if out.as_json:
        out.document({"staged": staged})
    elif staged:
        out.table(staged_table(staged))
    else:
        out.note("No staged patterns.")
    return OK


def show(args: argparse.Namespace, out: Output) -> int:
    with _memory(args, AccessTier.OBSERVER, reading=True) as memory:
        found = next((s for s in _staged(memory, args) if s["pattern_id"] == args.staged_id), None)
        if found is None:
            standin_warning(memory, out)
    missing = f"no staged pattern {shown_id(args.staged_id)} here (promoted, rejected or expired?)"
    return show_one(out, found, args.staged_id, missing)


def add(args: argparse.Namespace, out: Output) -> int:
    data = {**(args.data or {}), "content": args.content}
    with _memory(args, AccessTier.CONTRIBUTOR) as memory:
        staged_id = memory.stage_pattern(data, args.pattern_type, args.ttl_hours)
        standin_warning(memory, out)
    if out.as_json:
        out.document({"staged_pattern_id": staged_id})
    else:
        out.line(f"Staged {staged_id} for review (attune staged promote {staged_id}).")
    return OK


def promote(args: argparse.Namespace, out: Output) -> int:
    with _memory(args, AccessTier.VALIDATOR) as memory:
        result: dict[str, Any] = memory.promote_pattern(args.staged_id, args.classification)
    if out.as_json:
        out.document(result)
    else:
        out.line(
            f"Promoted {args.staged_id} to long-term pattern {result['pattern_id']} "
            f"({result['classification']})."
        )
    return OK


def reject(args: argparse.Namespace, out: Output) -> int:
    with _memory(args, AccessTier.VALIDATOR) as memory:
        memory.reject_pattern(args.staged_id, args.reason)
    if out.as_json:
        out.document({"rejected": True, "staged_pattern_id": args.staged_id})
    else:
        out.line(f"Rejected {args.staged_id}.")
    return OK
