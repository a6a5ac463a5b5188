"""One "host" of the key ring tests: a process of its own, configured by its environment
alone (``ATTUNE_DATABASE_URL``, ``ATTUNE_STORAGE_DIR``, ``ATTUNE_MASTER_KEY``), that runs
commands read from stdin, one JSON list a line, and answers each with one JSON line on
stdout: ``{"ok": result}`` or ``{"error": type name, "message": text}``. It stays up
between commands, so what it learns of the ring it learns without a restart.

Commands: ``persist content classification`` -> {pattern_id, key_id}; ``recall id`` ->
content or None; ``search text`` -> ids; ``rotate`` -> key id; ``active`` -> the active
key id of its ring; ``wait_active key_id`` -> whether its ring made that key active
within 20 s (without a read that would teach it); ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from attune.errors import AttuneError
from attune.memory import AsyncUnifiedMemory, MemoryConfig


async def _run(mem: AsyncUnifiedMemory, command: list[Any]) -> Any:
    name, *args = command
    if name == "persist":
        stored = await mem.persist_pattern(args[0], "note", classification=args[1])
        record = await mem.long_term.get(stored["pattern_id"], 0)
        assert record is not None
        return {"pattern_id": stored["pattern_id"], "key_id": record.key_id}
    if name == "recall":
        found = await mem.recall_pattern(args[0])
        return None if found is None else found["content"]
    if name == "search":
        return [r["pattern_id"] for r in await mem.search_patterns(args[0])]
    if name == "rotate":
        return (await mem.rotate_keys())["key_id"]
    if name == "active":
        return mem.pipeline.cipher.ring.active_key_id
    if name == "wait_active":
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # What a write does first: read the ring again if the store said it changed.
            await mem.pipeline.keys_ready(mem.long_term)
            if mem.pipeline.cipher.ring.active_key_id == args[0]:
                return True
            await asyncio.sleep(0.02)
        return False
    raise ValueError(f"unknown command {name!r}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    async with AsyncUnifiedMemory(
        "host-agent", MemoryConfig(redis_mock=True), access_tier="STEWARD"
    ) as mem:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            if command == ["quit"]:
                return
            try:
                answer: dict[str, Any] = {"ok": await _run(mem, command)}
            except AttuneError as exc:
                answer = {"error": type(exc).__name__, "message": str(exc)}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
