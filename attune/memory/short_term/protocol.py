"""What the core needs from a short-term backend, and nothing more.

Values arrive already encoded (and already through the security pipeline), so
a backend only moves bytes. A second backend (Redis Cluster, another store)
is a new module implementing this protocol.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable


class StagedEntry(NamedTuple):
    """One staged pattern as listed: its id, its stored bytes and its expiry."""

    staged_id: str
    payload: bytes
    expires_at_ms: int


class StagedClaim(NamedTuple):
    """What :meth:`ShortTermStore.claim_staged` found, read atomically with the claim."""

    #: True if this caller now holds the claim.
    won: bool
    #: The claim's value: the caller's own if won, else the holder's or the fate marker.
    holder: bytes | None
    #: The staged entry, or None if it is gone (expired, promoted, rejected).
    payload: bytes | None
    #: Its expiry as indexed, or None if it is not in the index.
    expires_at_ms: int | None
    #: True if the entry's key holds another Redis type (``payload`` is None then).
    wrong_type: bool = False


@runtime_checkable
class ShortTermStore(Protocol):
    #: A short name for health reports, e.g. "redis" or "fakeredis".
    backend: str

    async def stash(self, agent_id: str, key: str, payload: bytes, ttl_ms: int) -> None: ...

    async def retrieve(self, agent_id: str, key: str) -> bytes | None: ...

    async def forget(self, agent_id: str, key: str) -> bool: ...

    async def ttl_ms(self, agent_id: str, key: str) -> int | None:
        """Milliseconds left, -1 for no expiry, None when the key does not exist."""
        ...

    async def erase_agent(self, agent_id: str) -> int:
        """Delete every working-data key of ``agent_id`` (its own keys only: never a whole
        keyspace's worth); returns how many."""
        ...

    async def stage(self, staged_id: str, payload: bytes, expires_at_ms: int) -> None:
        """Store a staged pattern and index it, atomically; it expires at ``expires_at_ms``."""
        ...

    async def list_staged(self, now_ms: int) -> list[StagedEntry]:
        """Every staged pattern not yet expired, oldest expiry first, without a keyspace scan."""
        ...

    async def get_staged(self, staged_id: str) -> bytes | None: ...

    async def claim_staged(self, staged_id: str, claim: str, lease_ms: int) -> StagedClaim:
        """Set the entry's claim to ``claim`` for ``lease_ms`` unless a claim or fate is set,
        and read the claim, the entry and its expiry, all atomically."""
        ...

    async def staged_claim(self, staged_id: str) -> bytes | None:
        """The entry's claim or fate marker, or None."""
        ...

    async def release_staged_claim(self, staged_id: str, claim: str) -> bool:
        """Delete the claim only if it still is ``claim``; True if it was deleted."""
        ...

    async def settle_staged(
        self, staged_id: str, fate: str, keep_until_ms: int, claim: str | None = None
    ) -> bool:
        """Remove the entry and replace its claim by ``fate`` (kept until ``keep_until_ms``),
        atomically; with ``claim``, only if the claim still is that (else False)."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
