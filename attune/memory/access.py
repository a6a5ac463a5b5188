"""Who may do what: the access-tier table, checked by the core before any I/O."""

from __future__ import annotations

from attune.errors import AccessDeniedError
from attune.memory.types import AccessTier

#: action -> the lowest tier allowed to perform it.
REQUIRED_TIER: dict[str, AccessTier] = {
    "retrieve": AccessTier.OBSERVER,
    "recall_pattern": AccessTier.OBSERVER,
    "search_patterns": AccessTier.OBSERVER,
    "list_patterns": AccessTier.OBSERVER,
    "count_patterns": AccessTier.OBSERVER,
    "get_staged_patterns": AccessTier.OBSERVER,
    "stash": AccessTier.CONTRIBUTOR,
    "forget": AccessTier.CONTRIBUTOR,
    "stage_pattern": AccessTier.CONTRIBUTOR,
    "persist_pattern": AccessTier.CONTRIBUTOR,
    "promote_pattern": AccessTier.VALIDATOR,
    "reject_pattern": AccessTier.VALIDATOR,
    "delete_pattern": AccessTier.STEWARD,
    "purge_expired": AccessTier.STEWARD,
    "rotate_keys": AccessTier.STEWARD,
    "export_patterns": AccessTier.STEWARD,
    "import_patterns": AccessTier.STEWARD,
    "erase_user": AccessTier.STEWARD,
    "audit_pseudonym": AccessTier.OBSERVER,
    "audit_pseudonym_of_other": AccessTier.STEWARD,
    # Reading a namespace other than the agent's own (namespace= on a read).
    "read_other_namespace": AccessTier.STEWARD,
}


#: Working-data actions: checked on every call but audited only when denied, so the
#: short-term hot path (stash/retrieve) never touches the audit log.
WORKING_DATA: frozenset[str] = frozenset({"stash", "retrieve", "forget"})


def is_allowed(tier: AccessTier, action: str) -> bool:
    return tier >= REQUIRED_TIER[action]


def audit_when_allowed(action: str) -> bool:
    """Whether an *allowed* check gets an ``access.check`` event of its own.

    Denials are always audited. Allowed writes and privileged actions are too; allowed
    reads are recorded by the read's own event (``pattern.retrieve``, ``staging.list``,
    with the actor's tier), and working data not at all.
    """
    return action not in WORKING_DATA and REQUIRED_TIER[action] > AccessTier.OBSERVER


def require(tier: AccessTier, action: str) -> None:
    """Raise :class:`AccessDeniedError` unless ``tier`` may perform ``action``."""
    needed = REQUIRED_TIER[action]
    if tier < needed:
        raise AccessDeniedError(action, tier.name, needed.name)
