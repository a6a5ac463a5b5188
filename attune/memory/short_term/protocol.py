"""What the core needs from a short-term backend, and nothing more.

Values arrive already encoded (and already through the security pipeline), so
a backend only moves bytes. A second backend (Redis Cluster, another store)
is a new module implementing this protocol.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


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

    async def stage(self, staged_id: str, payload: bytes, expires_at_ms: int) -> None:
        """Store a staged pattern and index it, atomically; it expires at ``expires_at_ms``."""
        ...

    async def list_staged(self, now_ms: int) -> list[bytes]:
        """Every staged pattern not yet expired, oldest expiry first, without a keyspace scan."""
        ...

    async def get_staged(self, staged_id: str) -> bytes | None: ...

    async def unstage(self, staged_id: str) -> bool:
        """Remove a staged pattern; True only for the one caller that removed it."""
        ...

    async def health(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
