"""Long-term records for tests that drive a store directly (shared by several test files)."""

from __future__ import annotations

from attune.memory.long_term import PatternRecord


def pattern_record(pattern_id: str) -> PatternRecord:
    """A plain PUBLIC record (unencrypted, no expiry) whose content names its id."""
    return PatternRecord(
        pattern_id=pattern_id,
        pattern_type="style",
        classification="PUBLIC",
        created_by="agent",
        created_at_ms=1,
        expires_at_ms=None,
        metadata_json="{}",
        content=f"body of {pattern_id}".encode(),
    )
