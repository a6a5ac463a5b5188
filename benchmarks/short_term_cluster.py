"""stash / retrieve on a 3-master Redis Cluster: attune vs raw ``RedisCluster``, 64 tasks.

    .venv/bin/python benchmarks/short_term_cluster.py [--ops 16000] [--rounds 5] [--agents 64]

Starts a cluster of its own on loopback (``tests/topology_cluster.py``: three
``redis-server --cluster-enabled yes`` + ``redis-cli --cluster create``, stopped by pid at
the end) and measures, side by side in alternating rounds after a warm-up of each:

- ours: :class:`AsyncUnifiedMemory` ``stash`` / ``retrieve`` of a 200-byte JSON value by
  64 asyncio tasks, ``REDIS_URL=redis+cluster://...`` (only that differs from a single
  Redis); ``--agents`` agents (one memory each, one shared short-term store), so the keys'
  hash tags spread over the three masters;
- baseline: raw ``redis.asyncio.cluster.RedisCluster`` (default settings), 64 tasks doing
  the same compact-JSON encode + ``SET PX`` / ``GET`` + decode on keys of the same shape.

Prints ops/s of each side and the ratio (issue 16's target: >= 2x). Timing only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the cluster launcher the tests use

from redis.asyncio.cluster import ClusterNode, RedisCluster  # noqa: E402
from topology_cluster import local_cluster  # noqa: E402
from workloads import Side, compare, decode, encode, json_value  # noqa: E402

from attune.memory import AsyncUnifiedMemory, MemoryConfig  # noqa: E402
from attune.memory.keys import KeySpace  # noqa: E402
from attune.memory.security.pipeline import close_shared  # noqa: E402

TASKS = 64
TTL_S = 600
PREFIX = "bench-cluster"


async def measure(url: str, ports: list[int], ops: int, rounds: int, agents: int) -> None:
    value = json_value(200)
    names = [f"k{i}" for i in range(256)]
    tmp = Path(tempfile.mkdtemp(prefix="attune-bench-cluster-"))
    config = MemoryConfig(redis_url=url, storage_dir=tmp, key_prefix=PREFIX)
    first = AsyncUnifiedMemory("bench0", config)
    memories = [first] + [
        AsyncUnifiedMemory(f"bench{a}", config, short_term=first) for a in range(1, agents)
    ]
    keys = KeySpace(PREFIX)
    raw_names = [
        [keys.stash(f"raw{a}", k) for k in names] for a in range(agents)
    ]  # same shape and length as attune's keys
    raw = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports])
    try:

        async def ours_stash(i: int) -> None:
            await memories[i % agents].stash(names[i % len(names)], value, ttl_seconds=TTL_S)

        async def ours_retrieve(i: int) -> None:
            await memories[i % agents].retrieve(names[i % len(names)])

        async def raw_stash(i: int) -> None:
            await raw.set(raw_names[i % agents][i % len(names)], encode(value), px=TTL_S * 1000)

        async def raw_retrieve(i: int) -> None:
            decode(await raw.get(raw_names[i % agents][i % len(names)]))

        for i in range(agents * len(names)):
            await ours_stash(i)
            await raw_stash(i)
        last = agents * len(names) - 1  # the last write: its agent reads its value back
        if await memories[last % agents].retrieve(names[last % len(names)]) != value:
            raise RuntimeError("retrieve did not return the stashed value")
        print(f"{'figure':<42} {'ours ops/s':>12} {'raw ops/s':>12} {'ratio':>7}")
        for verb, ours, base in (
            ("stash", ours_stash, raw_stash),
            ("retrieve", ours_retrieve, raw_retrieve),
        ):
            comp = await compare(Side(ours, ops, TASKS), Side(base, ops, TASKS), rounds)
            o, b = statistics.median(comp.ours), statistics.median(comp.baseline)
            label = f"cluster {verb}, {TASKS} tasks vs raw RedisCluster"
            print(f"{label:<42} {o:>12.0f} {b:>12.0f} {o / b:>6.2f}x", flush=True)
    finally:
        for memory in memories:
            await memory.aclose()
        await raw.aclose()
        close_shared()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=16_000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--agents", type=int, default=64)
    args = parser.parse_args()
    with local_cluster() as cluster:
        print(f"3-master Redis Cluster on ports {cluster.ports}")
        asyncio.run(measure(cluster.url, cluster.ports, args.ops, args.rounds, args.agents))


if __name__ == "__main__":
    main()
