"""Working data in the short-term tier: stash, retrieve, forget, ttl (a mixin of
``AsyncUnifiedMemory``).

Each checks the agent's tier (:meth:`_require`), validates the key, TTL and value, then
makes one call on the short-term store. Values are JSON: what :meth:`retrieve` gets back
that is not (written past attune) is a :class:`~attune.errors.CorruptRecordError`.
"""

from __future__ import annotations

import json
from typing import Any

from attune.errors import CorruptRecordError
from attune.memory import validation
from attune.memory.core_parts import CoreParts


class WorkingData(CoreParts):
    """The core's working-data operations (a mixin of ``AsyncUnifiedMemory``)."""

    def _agent(self, agent_id: str | None) -> str:
        if agent_id is None:
            return self.user_id
        return validation.check_agent_id(agent_id, "agent_id")

    async def stash(self, key: str, value: Any, ttl_seconds: float | None = None) -> bool:
        """Store ``value`` (anything JSON can hold) under ``key`` for ``ttl_seconds``
        (default: ``config.default_ttl_seconds``). Returns True."""
        await self._require("stash")
        key = validation.check_key(key, self.config.max_key_length)
        ttl = self.config.default_ttl_seconds if ttl_seconds is None else ttl_seconds
        ttl_ms = validation.ttl_to_ms(ttl, self.config.max_ttl_seconds)
        payload = validation.encode_json(value, self.config.max_value_bytes)
        await self.short_term.stash(self.user_id, key, payload, ttl_ms)
        return True

    async def retrieve(self, key: str, agent_id: str | None = None) -> Any:
        """The value stashed under ``key`` (by this agent, or by ``agent_id``), or None."""
        await self._require("retrieve")
        key = validation.check_key(key, self.config.max_key_length)
        agent = self._agent(agent_id)
        payload = await self.short_term.retrieve(agent, key)
        if payload is None:
            return None
        try:
            return json.loads(payload)
        except (ValueError, TypeError, RecursionError):  # written past attune: not its JSON
            raise CorruptRecordError(
                key,
                "the value stashed under this key is not valid JSON",
                shown="(the key given, not shown)",
            ) from None

    async def forget(self, key: str) -> bool:
        """Remove this agent's value under ``key``; True if it existed."""
        await self._require("forget")
        key = validation.check_key(key, self.config.max_key_length)
        return await self.short_term.forget(self.user_id, key)

    delete = forget

    async def ttl(self, key: str, agent_id: str | None = None) -> float | None:
        """Seconds until ``key`` expires; None if it does not exist."""
        await self._require("retrieve")
        key = validation.check_key(key, self.config.max_key_length)
        left = await self.short_term.ttl_ms(self._agent(agent_id), key)
        if left is None:
            return None
        return left / 1000 if left >= 0 else float("inf")
