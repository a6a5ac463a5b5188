"""Two hosts, one memory: two OS processes sharing no directory, each running 8 agents
against the same PostgreSQL database and the same Redis (issue 16, item 8).

    .venv/bin/python benchmarks/multi_host.py --database-url postgresql://... \\
        --redis-url redis://127.0.0.1:6379/14 [--patterns 40] [--staged 4]

Each host is a process of its own (``worker`` below) with its own storage directory; both
share only ``ATTUNE_MASTER_KEY``, ``ATTUNE_DATABASE_URL`` and ``REDIS_URL``. Phase one, on
both hosts at once: each of 8 agents persists ``--patterns`` patterns (PUBLIC, INTERNAL and
SENSITIVE in turn, each with a word of its own) and stages ``--staged`` patterns; then
host ``a`` rotates the master keys and writes 8 SENSITIVE patterns under the new one. Phase
two, on both at once: each host recalls every pattern the *other* wrote, finds each by its
word with ``search_patterns``, and promotes the other's staged patterns (as a VALIDATOR).
Prints persists per second per phase and the cross-host recall and search p50;
``tests/test_multi_host.py`` runs the same scenario and asserts what it must show.
Timing only here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness import delete_matching

AGENTS = 8
LABELS = ("PUBLIC", "INTERNAL", "SENSITIVE")


def _word(host: str, agent: int, n: int) -> str:
    """A word only this pattern holds (letters only: the search normalisation keeps it)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    tag = agent * 10_000 + n
    suffix = "".join(letters[(tag // 26**k) % 26] for k in range(4))
    return f"zq{host}{suffix}"


async def _write(host: str, patterns: int, staged: int) -> dict[str, Any]:
    from attune.memory import AsyncUnifiedMemory

    # The host's agents share its stores, as agents of one process should: their writes
    # then share group commits (8 objects with a store each: ~200 persists/s, commits
    # queued on the audit chain's head; 8 tasks on one store: ~1,500/s).
    host_memory = AsyncUnifiedMemory(f"{host}-host", access_tier="CONTRIBUTOR")

    async def agent(a: int) -> tuple[list[dict[str, Any]], list[str]]:
        written, parked = [], []
        async with AsyncUnifiedMemory(
            f"{host}-agent-{a}",
            access_tier="CONTRIBUTOR",
            short_term=host_memory,
            long_term=host_memory,
        ) as mem:
            for n in range(patterns):
                word = _word(host, a, n)
                label = LABELS[n % 3]
                text = f"host {host} agent {a} learned {word} about retry budgets"
                result = await mem.persist_pattern(text, "practice", classification=label)
                written.append({"pattern_id": result["pattern_id"], "word": word, "text": text})
            for n in range(staged):
                parked.append(
                    await mem.stage_pattern(
                        {"content": f"staged by {host} agent {a} number {n}"}, "practice"
                    )
                )
        return written, parked

    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(agent(a) for a in range(AGENTS)))
    finally:
        elapsed = time.perf_counter() - started
        await host_memory.aclose()
    written = [p for done, _ in results for p in done]
    rotated = None
    if host == "a":  # a rotation here, then SENSITIVE writes under the new key
        async with AsyncUnifiedMemory(f"{host}-steward", access_tier="STEWARD") as mem:
            rotated = (await mem.rotate_keys())["key_id"]
            for n in range(AGENTS):
                word = _word(host, 99, n)
                text = f"after rotation host {host} wrote {word}"
                result = await mem.persist_pattern(text, "practice", classification="SENSITIVE")
                assert result["encrypted"]
                written.append({"pattern_id": result["pattern_id"], "word": word, "text": text})
    return {
        "patterns": written,
        "staged": [s for _, parked in results for s in parked],
        "persists_per_s": AGENTS * patterns / elapsed,
        "rotated_to": rotated,
    }


async def _read(host: str, other: dict[str, Any]) -> dict[str, Any]:
    from attune.memory import AsyncUnifiedMemory

    recall_ms: list[float] = []
    search_ms: list[float] = []
    recalled = found = promoted = 0
    async with AsyncUnifiedMemory(f"{host}-validator", access_tier="VALIDATOR") as mem:
        for pattern in other["patterns"]:
            start = time.perf_counter()
            got = await mem.recall_pattern(pattern["pattern_id"])
            recall_ms.append((time.perf_counter() - start) * 1000)
            recalled += got is not None and got["content"] == pattern["text"]
            start = time.perf_counter()
            hits = await mem.search_patterns(pattern["word"])
            search_ms.append((time.perf_counter() - start) * 1000)
            found += [h["pattern_id"] for h in hits] == [pattern["pattern_id"]]
        for staged_id in other["staged"]:
            result = await mem.promote_pattern(staged_id)
            promoted += result["staged_pattern_id"] == staged_id
    return {
        "recalled": recalled,
        "found": found,
        "promoted": promoted,
        "recall_p50_ms": statistics.median(recall_ms) if recall_ms else None,
        "search_p50_ms": statistics.median(search_ms) if search_ms else None,
    }


def worker(args: argparse.Namespace) -> None:
    if args.phase == "write":
        result = asyncio.run(_write(args.host, args.patterns, args.staged))
    else:
        result = asyncio.run(_read(args.host, json.loads(Path(args.other).read_text())))
    sys.stdout.write(json.dumps(result) + "\n")


# -- the driver: two hosts ------------------------------------------------------------------


def host_env(
    storage: Path, database_url: str, redis_url: str, master_key: str, key_prefix: str
) -> dict[str, str]:
    """A host's environment: its own storage directory, the shared services and key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNE_")}
    env.update(
        ATTUNE_STORAGE_DIR=str(storage),
        ATTUNE_DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ATTUNE_MASTER_KEY=master_key,
        ATTUNE_KEY_PREFIX=key_prefix,
        ATTUNE_ENV="staging",
    )
    env.pop("ATTUNE_REDIS_MOCK", None)
    return env


def run_phase(hosts: dict[str, dict[str, str]], argv: dict[str, list[str]]) -> dict[str, Any]:
    """One phase on every host at once (a process each); each host's JSON result."""
    procs = {
        host: subprocess.Popen(
            [sys.executable, __file__, "worker", "--host", host, *argv[host]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host, env in hosts.items()
    }
    results = {}
    for host, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"host {host} failed ({proc.returncode}):\n{err[-3000:]}")
        results[host] = json.loads(out.strip().splitlines()[-1])
    return results


def scenario(
    database_url: str, redis_url: str, patterns: int, staged: int, work: Path, key_prefix: str
) -> dict[str, Any]:
    """Both phases on hosts ``a`` and ``b`` (storage under ``work``, nothing shared)."""
    from attune.memory.security.crypto import generate_master_key

    key = generate_master_key()
    hosts = {}
    for host in ("a", "b"):
        (work / host).mkdir(parents=True)
        hosts[host] = host_env(work / host, database_url, redis_url, key, key_prefix)
    sizes = ["--patterns", str(patterns), "--staged", str(staged)]
    written = run_phase(hosts, {h: ["write", *sizes] for h in hosts})
    for host, result in written.items():
        (work / f"{host}.json").write_text(json.dumps(result))
    other = {"a": "b", "b": "a"}
    read = run_phase(hosts, {h: ["read", "--other", str(work / f"{other[h]}.json")] for h in hosts})
    return {"written": written, "read": read, "hosts": hosts}


def _main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker")
    w.add_argument("--host", required=True)
    w.add_argument("phase", choices=("write", "read"))
    w.add_argument("--patterns", type=int, default=40)
    w.add_argument("--staged", type=int, default=4)
    w.add_argument("--other")
    parser.add_argument("--database-url", default=os.environ.get("ATTUNE_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--patterns", type=int, default=40)
    parser.add_argument("--staged", type=int, default=4)
    args = parser.parse_args()
    if args.command == "worker":
        worker(args)
        return
    if not args.database_url or not args.redis_url:
        parser.error("give --database-url and --redis-url (the services both hosts share)")
    prefix = f"mh{uuid.uuid4().hex[:10]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = scenario(
                args.database_url, args.redis_url, args.patterns, args.staged, Path(tmp), prefix
            )
    finally:
        asyncio.run(delete_matching(args.redis_url, f"{prefix}:*"))
    for host in ("a", "b"):
        w_, r_ = result["written"][host], result["read"][host]
        print(
            f"host {host}: {w_['persists_per_s']:.0f} persists/s by {AGENTS} agents; read the "
            f"other's {r_['recalled']} patterns (recall p50 {r_['recall_p50_ms']:.2f} ms, "
            f"search p50 {r_['search_p50_ms']:.2f} ms, {r_['found']} found), "
            f"promoted {r_['promoted']}"
        )


if __name__ == "__main__":
    _main()
