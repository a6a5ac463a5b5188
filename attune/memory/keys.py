"""The Redis key layout: the one place that decides what keys look like.

Every key starts with ``{key_prefix}:``. The part in braces is a Redis Cluster
*hash tag*: keys that one atomic operation touches together share it, so they
land in the same slot and MULTI/EXEC (one Redis) or a Lua script (Redis Cluster, see
:mod:`attune.memory.short_term.cluster`) stays valid.

    attune:{agent:<agent_id>}:stash:<key>     working data of one agent
    attune:{staging}:pattern:<staged_id>      one staged pattern (JSON, with TTL)
    attune:{staging}:index                    sorted set: staged_id -> expiry (ms)
    attune:{staging}:claim:<staged_id>        who is deciding its fate (a lease), then
                                              the fate ("promoted:<pattern_id>",
                                              "rejected" or "erased", then "@<namespace>")
                                              for the entry's remaining life
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str = "attune"

    def stash(self, agent_id: str, key: str) -> str:
        return f"{self.prefix}:{{agent:{agent_id}}}:stash:{key}"

    def agent_pattern(self, agent_id: str) -> str:
        """A SCAN ``MATCH`` pattern for every working-data key of one agent (glob
        characters in the id escaped): all of them share the agent's hash tag."""
        return f"{_glob_escaped(self.prefix)}:{{agent:{_glob_escaped(agent_id)}}}:*"

    def staged_pattern(self, staged_id: str) -> str:
        return f"{self.prefix}:{{staging}}:pattern:{staged_id}"

    def staging_index(self) -> str:
        return f"{self.prefix}:{{staging}}:index"

    def staging_claim(self, staged_id: str) -> str:
        return f"{self.prefix}:{{staging}}:claim:{staged_id}"


def _glob_escaped(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
