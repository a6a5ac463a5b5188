"""The development stand-in against a real Redis, through the public API.

Each scenario runs once on the real Redis (database 15) and once on the in-process
stand-in (``fakeredis``), each with a long-term store of its own, and records what every
call returned or which error it raised. The two records must be equal: a user who develops
on the stand-in and deploys on Redis sees the same results, the same typed errors for the
same inputs, the same TTL rules and the same staging outcomes. Each test also checks what
the record says against the documentation, so two equally wrong backends fail too.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from attune import AccessTier, AsyncEmpathyOS
from attune.errors import ConfigurationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.short_term import connect
from attune.memory.short_term.redis_store import RedisShortTermMemory

#: Long enough for a slow CI machine; a condition that holds returns at once.
DEADLINE_S = 10.0
MAX_TTL = 30 * 24 * 3600

Scenario = Callable[[MemoryConfig], Awaitable[list[tuple[str, str]]]]


# -- the harness -----------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    """A result as the record keeps it: ``repr`` (so -0.0, 1 and 1.0, True and 1 stay
    apart), with attune's random ids and the times of day left out."""
    text = repr(value)
    text = re.sub(r"(stg|pat)_[0-9a-f]{32}", r"\1_<id>", text)
    return re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)?", "<time>", text)


class Record:
    """What each call of a scenario returned, or the class of the error it raised."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    async def __call__(self, label: str, call: Awaitable[Any]) -> Any:
        try:
            value = await call
        except Exception as exc:  # the error's class is what must match
            self.lines.append((label, f"raises {type(exc).__name__}"))
            return exc
        self.lines.append((label, _shown(value)))
        return value

    def note(self, label: str, value: Any) -> None:
        self.lines.append((label, _shown(value)))


async def on_both(scenario: Scenario, configs: tuple[MemoryConfig, MemoryConfig]) -> dict[str, str]:
    """Run ``scenario`` on the real Redis, then on the stand-in; the records must match.
    Returns the record (as a dict: label -> result) for the test's own checks."""
    real, stand_in = configs
    on_redis = await scenario(real)
    on_stand_in = await scenario(stand_in)
    assert on_redis, "the scenario recorded nothing"
    assert on_stand_in == on_redis, "the stand-in differs from the real Redis"
    labels = [label for label, _ in on_redis]
    assert len(set(labels)) == len(labels), "labels must be unique"
    return dict(on_redis)


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never happened")
        await asyncio.sleep(0.01)


def _stand_in_keys(prefix: str) -> list[bytes]:
    client = fakeredis.FakeRedis(server=connect.shared_fake_server())
    return sorted(client.scan_iter(match=f"{prefix}:*", count=1000))


def _real_keys(url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()


@pytest.fixture
def configs(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> Iterator[tuple[MemoryConfig, MemoryConfig]]:
    """(real Redis, stand-in): one key prefix, a long-term store each."""
    real = MemoryConfig(redis_url=redis_url, storage_dir=tmp_path / "real", key_prefix=key_prefix)
    stand_in = MemoryConfig(
        redis_mock=True, storage_dir=tmp_path / "stand-in", key_prefix=key_prefix
    )
    yield real, stand_in
    keys = _stand_in_keys(key_prefix)  # the real Redis's: the key_prefix fixture
    if keys:
        fakeredis.FakeRedis(server=connect.shared_fake_server()).delete(*keys)


def _validator(config: MemoryConfig, name: str = "lead", **kw: Any) -> AsyncUnifiedMemory:
    return AsyncUnifiedMemory(name, config, access_tier=AccessTier.VALIDATOR, **kw)


# -- working data: values --------------------------------------------------------------------------

VALUES: dict[str, Any] = {
    "nested": {"a": [1, {"b": [None, True, False, 1.5, "x"]}], "c": {"d": {"e": {}}}},
    "unicode": "héllo ✓ 𝄞 \u0000 \u2028 \ufeff مرحبا 日本",
    "empty_dict": {},
    "empty_list": [],
    "empty_string": "",
    "float_max": 1e308,
    "float_min": 5e-324,
    "negative_zero": -0.0,
    "big_int": 10**40,
    "big_negative_int": -(2**64),
    "int_vs_float": [1, 1.0, True],
    "tuple": (1, "two"),
    "int_dict_key": {1: "a", None: "b", 2.5: "c"},
    "none": None,
    "deep": json.loads("[" * 90 + "]" * 90),
}


async def test_every_json_value_round_trips_alike(
    configs: tuple[MemoryConfig, MemoryConfig],
) -> None:
    limit = configs[0].max_value_bytes

    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        async with AsyncUnifiedMemory("agent_a", config) as mem:
            for name, value in VALUES.items():
                await rec(f"stash {name}", mem.stash(name, value))
                await rec(f"retrieve {name}", mem.retrieve(name))
            at_limit = "x" * (limit - 2)  # its two quotes make it exactly the limit
            await rec("stash at the limit", mem.stash("large", at_limit))
            rec.note("large is intact", await mem.retrieve("large") == at_limit)
            await rec("stash one byte over", mem.stash("large", at_limit + "x"))
            await rec("multi-byte over", mem.stash("large", "é" * (limit // 2)))
            rec.note("large is still intact", await mem.retrieve("large") == at_limit)
            for name, bad in {
                "nan": math.nan,
                "infinity": [math.inf],
                "set": {1, 2},
                "bytes": b"raw",
                "decimal": Decimal("1.5"),
                "lone surrogate": "\ud800",
            }.items():
                await rec(f"stash {name}", mem.stash("nested", bad))
            await rec("nested untouched", mem.retrieve("nested"))
            # Working data keeps JSON's rule for keys JSON spells alike (the last one wins);
            # only pattern data and metadata refuse them (docs/api.md).
            await rec("stash colliding keys", mem.stash("colliding", {1: "a", "1": "b"}))
            await rec("retrieve colliding keys", mem.retrieve("colliding"))
        return rec.lines

    record = await on_both(scenario, configs)
    for name, value in VALUES.items():
        assert record[f"retrieve {name}"] == repr(json.loads(json.dumps(value))), name
    assert record["retrieve negative_zero"] == "-0.0"
    assert record["stash one byte over"] == "raises ValueTooLargeError"
    assert record["large is still intact"] == "True"
    assert record["stash nan"] == record["stash set"] == "raises SerializationError"
    assert record["nested untouched"] == repr(json.loads(json.dumps(VALUES["nested"])))


# -- working data: TTLs ----------------------------------------------------------------------------


async def test_ttl_rules_and_expiry_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        async with AsyncUnifiedMemory("agent_a", config) as mem:
            await mem.stash("kept", "original", ttl_seconds=600)
            for ttl in (1, 1.5, 59.999, 3600, MAX_TTL, float(MAX_TTL), None):
                await rec(f"stash ttl {ttl!r}", mem.stash("k", 1, ttl_seconds=ttl))
                left = await mem.ttl("k")
                expected = 3600 if ttl is None else ttl
                rec.note(f"ttl {ttl!r} within it", left is not None and 0 < left <= expected)
                rec.note(f"ttl {ttl!r} close", left is not None and left > expected - 5)
            invalid: list[Any] = [0, 0.0, -0.0, -1, -1e-9, True, False, MAX_TTL + 1]
            invalid += [MAX_TTL + 0.001, 10**400, math.inf, -math.inf, math.nan, "60", [60]]
            invalid += [Decimal(60)]
            for ttl in invalid:
                await rec(f"stash kept ttl {ttl!r}", mem.stash("kept", "new", ttl_seconds=ttl))
            await rec("kept untouched", mem.retrieve("kept"))
            rec.note("kept ttl untouched", 590 < (await mem.ttl("kept") or 0) <= 600)
            # Overwriting replaces the value and the TTL, longer or shorter.
            await mem.stash("over", "a", ttl_seconds=100)
            await mem.stash("over", "b", ttl_seconds=1000)
            rec.note("overwrite longer", 100 < (await mem.ttl("over") or 0) <= 1000)
            await mem.stash("over", "c", ttl_seconds=10)
            rec.note("overwrite shorter", 0 < (await mem.ttl("over") or 0) <= 10)
            await rec("overwritten", mem.retrieve("over"))
            # Expiry: a tiny TTL (1 ms) and a short one, waited for with a deadline.
            await rec("stash tiny", mem.stash("tiny", 1, ttl_seconds=1e-9))
            await rec("stash short", mem.stash("short", {"v": 1}, ttl_seconds=0.3))

            async def gone() -> bool:
                return await mem.ttl("short") is None and await mem.ttl("tiny") is None

            await eventually(gone, "expiry")
            for key in ("short", "tiny"):
                await rec(f"retrieve expired {key}", mem.retrieve(key))
                await rec(f"forget expired {key}", mem.forget(key))
            await rec("stash again after expiry", mem.stash("short", 2, ttl_seconds=60))
            await rec("retrieve again", mem.retrieve("short"))
            await rec("forget it", mem.forget("short"))
            await rec("forget it twice", mem.forget("short"))
            await rec("forget never stashed", mem.forget("never"))
            await rec("never-stashed ttl", mem.ttl("never"))
            await rec("delete alias", mem.delete("kept"))
        return rec.lines

    record = await on_both(scenario, configs)
    checks = [k for k in record if k.startswith(("ttl ", "kept ttl", "overwrite "))]
    assert len(checks) == 17 and all(record[k] == "True" for k in checks), record
    assert all(
        v == "raises ValidationError" for k, v in record.items() if k.startswith("stash kept ttl")
    )
    assert record["kept untouched"] == "'original'"
    assert record["retrieve expired short"] == "None"
    assert record["forget expired tiny"] == "False"
    assert record["forget it twice"] == "False"


# -- working data: keys ----------------------------------------------------------------------------

#: Keys attune keeps apart: it normalises none of them (no Unicode normalisation, no case
#: folding, no trimming), and a brace or colon in a key is just a character.
KEYS = [
    "{x}",
    "{agent:agent_b}:stash:k",
    "}:stash:k",
    "a:b:c",
    ":",
    "*",
    "a?b",
    "[ab]",
    "\\",
    "ключ",
    "é",  # NFC
    "e\u0301",  # NFD of the same
    "Key",
    "key",
    "\uff4b\uff45\uff59",  # "key" in fullwidth letters
    "key ",
    " key",
    "k\u200bey",
    "𝄞" * 256,  # the longest key, 1 KiB of UTF-8
    "k" * 256,
    "\U0010ffff",
]
BAD_KEYS: list[Any] = ["", "k" * 257, "a\x00b", "a\nb", "\x7f", "\x85", "\ud800", 5, b"key", None]


async def test_keys_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        async with (
            AsyncUnifiedMemory("agent_a", config) as mem,
            AsyncEmpathyOS("agent_b", config=config) as other,
        ):
            for i, key in enumerate(KEYS):
                await rec(f"stash key {i}", mem.stash(key, i))
            for i, key in enumerate(KEYS):
                await rec(f"retrieve key {i}", mem.retrieve(key))
            await rec("other agent's own k", other.retrieve("k"))
            await rec("other agent reads a's", other.memory.retrieve("{x}", agent_id="agent_a"))
            for i, key in enumerate(BAD_KEYS):
                await rec(f"stash bad key {i}", mem.stash(key, "x"))
                await rec(f"retrieve bad key {i}", mem.retrieve(key))
                await rec(f"forget bad key {i}", mem.forget(key))
            await rec("bad agent id", mem.retrieve("k", agent_id="a b"))
        return rec.lines

    record = await on_both(scenario, configs)
    assert [record[f"retrieve key {i}"] for i in range(len(KEYS))] == [
        repr(i) for i in range(len(KEYS))
    ]
    assert record["other agent's own k"] == "None"
    assert record["other agent reads a's"] == "0"
    assert {v for k, v in record.items() if "bad" in k} == {"raises ValidationError"}
    # The same Redis keys, byte for byte, on both.
    real, stand_in = configs
    assert real.redis_url is not None
    assert _real_keys(real.redis_url, real.key_prefix) == _stand_in_keys(stand_in.key_prefix)


# -- staging ---------------------------------------------------------------------------------------


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A listed entry without its times, and its lifetime in seconds."""
    staged_at = datetime.fromisoformat(entry["staged_at"])
    expires_at = datetime.fromisoformat(entry["expires_at"])
    kept = {k: v for k, v in entry.items() if k not in ("staged_at", "expires_at")}
    return {**kept, "lifetime_s": (expires_at - staged_at).total_seconds()}


async def test_staging_workflow_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        async with (
            AsyncUnifiedMemory("scout", config) as scout,
            _validator(config) as lead,
            AsyncUnifiedMemory("reader", config, access_tier=AccessTier.OBSERVER) as reader,
        ):
            ids = []
            for n, hours in enumerate((3, 1, 2, 720, 0.5)):
                staged = await rec(
                    f"stage {hours}",
                    scout.stage_pattern({"content": f"pattern {n}", "n": n}, "ops", hours),
                )
                ids.append(staged)
            await rec(
                "stage with personal data",
                scout.stage_pattern(
                    {"content": "mail john.doe@example.com", "who": "jane@example.org"}, "ops"
                ),
            )
            secret = "sk-proj-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"
            await rec("stage a secret", scout.stage_pattern({"content": f"key {secret}"}, "ops"))
            await rec(
                "stage a secret field",
                scout.stage_pattern({"content": "ok", "note": f"key {secret}"}, "ops"),
            )
            bad: dict[str, Any] = {
                "no content": {"other": 1},
                "empty content": {"content": "  "},
                "reserved field": {"content": "x", "pattern_id": "mine"},
                "not a dict": ["content"],
                "nan": {"content": "x", "v": math.nan},
                "too long": {"content": "x" * 1_000_001},
            }
            for name, data in bad.items():
                await rec(f"stage {name}", scout.stage_pattern(data, "ops"))
            for hours in (0, -1, True, 721, math.nan, "1", 10**400):
                await rec(
                    f"stage ttl {hours!r}", scout.stage_pattern({"content": "x"}, "ops", hours)
                )
            await rec("stage bad type", scout.stage_pattern({"content": "x"}, ""))
            await rec("observer stages", reader.stage_pattern({"content": "x"}, "ops"))
            listed = await lead.get_staged_patterns()
            rec.note("listed", [_entry(e) for e in listed])
            rec.note(
                "order", [ids.index(e["pattern_id"]) for e in listed if e["pattern_id"] in ids]
            )
            await rec("observer lists", reader.get_staged_patterns())
            await rec("contributor promotes", scout.promote_pattern(ids[0]))
            promoted = await rec("promote", lead.promote_pattern(ids[0], "internal"))
            if isinstance(promoted, dict):
                await rec("recall promoted", lead.recall_pattern(promoted["pattern_id"]))
            await rec("promote again", lead.promote_pattern(ids[0]))
            await rec("reject the promoted", lead.reject_pattern(ids[0]))
            await rec("reject", lead.reject_pattern(ids[1], reason="duplicate"))
            await rec("promote the rejected", lead.promote_pattern(ids[1]))
            await rec("reject again", lead.reject_pattern(ids[1]))
            unknown = "stg_" + "0" * 32
            for name, sid in {"unknown": unknown, "malformed": "stg_x", "number": 7}.items():
                await rec(f"promote {name}", lead.promote_pattern(sid))
                await rec(f"reject {name}", lead.reject_pattern(sid))
            await rec("bad classification", lead.promote_pattern(ids[2], "TOP-SECRET"))
            await rec("left", lead.get_staged_patterns())
        return rec.lines

    record = await on_both(scenario, configs)
    assert record["order"] == "[4, 1, 2, 0, 3]"  # soonest expiry first
    assert "'lifetime_s': 10800.0" in record["listed"]
    assert "'lifetime_s': 2592000.0" in record["listed"]
    assert "'who': '[EMAIL]'" in record["listed"] and "example" not in record["listed"]
    assert record["stage a secret"] == record["stage a secret field"]
    assert record["stage a secret"] == "raises SecretsDetectedError"
    assert record["promote again"] == "raises PatternNotFoundError"
    assert record["reject"] == "True"
    assert record["bad classification"] == "raises ValidationError"


async def test_staged_entry_expires_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        async with AsyncUnifiedMemory("scout", config) as scout, _validator(config) as lead:
            short = await scout.stage_pattern({"content": "short-lived"}, "ops", 0.3 / 3600)
            long = await scout.stage_pattern({"content": "long-lived"}, "ops")

            async def expired() -> bool:
                listed = await lead.get_staged_patterns()
                return short not in [e["pattern_id"] for e in listed]

            await eventually(expired, "the staged entry's expiry")
            rec.note("listed", [e["content"] for e in await lead.get_staged_patterns()])
            await rec("promote expired", lead.promote_pattern(short))
            await rec("reject expired", lead.reject_pattern(short))
            await rec("reject live", lead.reject_pattern(long))
        return rec.lines

    record = await on_both(scenario, configs)
    assert record["listed"] == "['long-lived']"
    assert record["promote expired"] == "raises PatternNotFoundError"
    assert record["reject live"] == "True"


async def test_concurrent_validators_decide_once_alike(
    configs: tuple[MemoryConfig, MemoryConfig],
) -> None:
    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        scout = AsyncUnifiedMemory("scout", config)
        leads = [_validator(config, f"lead{n}") for n in range(6)]
        ids = [await scout.stage_pattern({"content": f"race {n}"}, "ops") for n in range(4)]
        for n, sid in enumerate(ids):
            calls = [
                lead.reject_pattern(sid) if i % 3 == 0 else lead.promote_pattern(sid)
                for i, lead in enumerate(leads)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            won = [r for r in results if not isinstance(r, Exception)]
            rec.note(f"winners {n}", len(won))
            rec.note(f"losers {n}", sorted({type(r).__name__ for r in results if r not in won}))
            # Which action wins is the race's; what must hold is that its fate stands.
            recalled = await leads[0].recall_pattern("pat_" + sid.removeprefix("stg_"))
            promoted = bool(won) and isinstance(won[0], dict)
            rec.note(f"fate stands {n}", (recalled is not None) == promoted)
        await rec("left", leads[0].get_staged_patterns())
        for m in (scout, *leads):
            await m.aclose()
        return rec.lines

    record = await on_both(scenario, configs)
    for n in range(4):
        assert record[f"winners {n}"] == "1"
        assert record[f"losers {n}"] == "['PatternNotFoundError']"
        assert record[f"fate stands {n}"] == "True"
    assert record["left"] == "[]"


async def test_namespaces_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        async with (
            AsyncUnifiedMemory("scout_b", config, namespace="team-b") as scout_b,
            _validator(config, "lead_b", namespace="team-b") as lead_b,
            _validator(config, "lead_a") as lead_a,
            AsyncUnifiedMemory("st", config, access_tier=AccessTier.STEWARD) as steward,
        ):
            sid = await scout_b.stage_pattern({"content": "team b's"}, "ops")
            await scout_b.stash("k", "b's")
            rec.note("team-b lists", len(await lead_b.get_staged_patterns()))
            rec.note("default lists", len(await lead_a.get_staged_patterns()))
            rec.note("steward, all", len(await steward.get_staged_patterns(namespace="*")))
            await rec("validator names team-b", lead_a.get_staged_patterns(namespace="team-b"))
            await rec("bad namespace", steward.get_staged_patterns(namespace="a b"))
            await rec("other namespace promotes", lead_a.promote_pattern(sid))
            await rec("other namespace rejects", lead_a.reject_pattern(sid))
            await rec("own namespace promotes", lead_b.promote_pattern(sid))
            await rec("other namespace after", lead_a.promote_pattern(sid))
            await rec("own namespace after", lead_b.promote_pattern(sid))
            await rec("working data across", lead_a.retrieve("k", agent_id="scout_b"))
        return rec.lines

    record = await on_both(scenario, configs)
    assert (record["team-b lists"], record["default lists"]) == ("1", "0")
    assert record["validator names team-b"] == "raises AccessDeniedError"
    assert record["other namespace after"] == "raises PatternNotFoundError"


async def test_a_stale_claim_loses_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    """The claim steps under a lapsed lease. (A real Redis also aborts a WATCH/EXEC whose
    watched key merely expired in between; the stand-in does not. attune never relies on it:
    it reads the claim after WATCH, and a new claimer's SET aborts the EXEC on both.)"""

    async def scenario(config: MemoryConfig) -> list[tuple[str, str]]:
        rec = Record()
        store = RedisShortTermMemory(config)
        sid = "stg_" + "ab" * 16
        expires = int(time.time() * 1000) + 60_000
        await store.stage(sid, b'{"x": 1}', expires)
        first = await store.claim_staged(sid, "promote:one", 200)
        rec.note("first wins", first.won)

        async def lapsed() -> bool:
            return await store.staged_claim(sid) is None

        await eventually(lapsed, "the lease's end")
        second = await store.claim_staged(sid, "reject:two", 60_000)
        rec.note("second wins", second.won)
        await rec("stale release", store.release_staged_claim(sid, "promote:one"))
        await rec("stale settle", store.settle_staged(sid, "promoted:x", expires, "promote:one"))
        await rec("holder", store.staged_claim(sid))
        await rec("settle", store.settle_staged(sid, "rejected", expires, "reject:two"))
        await rec("listed", store.list_staged(0))
        await store.aclose()
        return rec.lines

    record = await on_both(scenario, configs)
    assert record["stale settle"] == record["stale release"] == "False"
    assert record["holder"] == "b'reject:two'"
    assert record["settle"] == "True"


# -- the stand-in itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"environment": "production"},
        {"environment": "staging"},
        {"environment": "production", "redis_mock": True},
    ],
)
async def test_the_stand_in_is_refused_outside_development(
    settings: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match=r"REDIS_URL|stand-in"):
        config = MemoryConfig(storage_dir=tmp_path, **settings)
        AsyncUnifiedMemory("agent", config)


async def test_memory_objects_share_the_stand_in(mock_config: MemoryConfig, tmp_path: Path) -> None:
    """As documented: agents of one process share the stand-in's data, whatever object,
    config, event loop or thread they use."""
    other = MemoryConfig(key_prefix=mock_config.key_prefix, storage_dir=tmp_path / "other")
    assert other.short_term_backend == "mock"  # development without REDIS_URL
    async with (
        AsyncUnifiedMemory("alice", mock_config) as alice,
        _validator(other, "bob") as bob,
    ):
        await alice.stash("handoff", {"ticket": 42})
        assert await bob.retrieve("handoff", agent_id="alice") == {"ticket": 42}
        staged = await alice.stage_pattern({"content": "shared staging"}, "ops")
        assert [e["pattern_id"] for e in await bob.get_staged_patterns()] == [staged]

        seen: dict[str, Any] = {}

        def in_a_thread() -> None:
            with UnifiedMemory("carol", mock_config) as carol:
                seen["handoff"] = carol.retrieve("handoff", agent_id="alice")
                carol.stash("reply", "from carol")

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join(DEADLINE_S)
        assert seen == {"handoff": {"ticket": 42}}
        assert await alice.retrieve("reply", agent_id="carol") == "from carol"
        health = await bob.health_check()
    report = health["short_term"]
    assert report["backend"] == "fakeredis" and report["url"] == "in-process"
    assert report["available"] is True and report["shared_across_processes"] is False


async def test_health_check_reports_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    reports = []
    for config in configs:
        async with AsyncUnifiedMemory("agent", config) as mem:
            reports.append((await mem.health_check())["short_term"])
    real, stand_in = reports
    assert real.keys() == stand_in.keys()
    assert real["available"] is stand_in["available"] is True
    assert (real["shared_across_processes"], stand_in["shared_across_processes"]) == (True, False)


def _child(agent: UnifiedMemory, results: Any) -> None:
    try:
        agent.stash("child-key", {"from": "child"})
        results.put((agent.retrieve("parent-key"), agent.retrieve("child-key")))
    except BaseException as exc:  # the parent reports it
        results.put(("failed", type(exc).__name__))
    finally:
        agent.close()


def _fork_while_a_command_runs(config: MemoryConfig) -> tuple[Any, ...]:
    """Fork while another thread is inside a stand-in command (holding its lock)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    server = connect.shared_fake_server()
    with UnifiedMemory("parent", config) as agent:
        agent.stash("parent-key", 1)
        holding, done = threading.Event(), threading.Event()

        def mid_command() -> None:
            with server.lock:
                holding.set()
                done.wait(DEADLINE_S)

        thread = threading.Thread(target=mid_command)
        thread.start()
        assert holding.wait(DEADLINE_S)
        try:
            child = context.Process(target=_child, args=(agent, results))
            child.start()
        finally:
            done.set()
            thread.join(DEADLINE_S)
        child.join(DEADLINE_S * 3)
        if child.exitcode is None:
            child.kill()
            child.join()
            pytest.fail("the forked child hung on its first command")
        assert agent.retrieve("parent-key") == 1  # the parent goes on
        return tuple(results.get(timeout=5))


def test_a_forked_child_works_alike(configs: tuple[MemoryConfig, MemoryConfig]) -> None:
    """An agent made before fork() works in the child: on a real Redis, and on the stand-in
    even when another thread of the parent was inside a stand-in command at the fork (its
    lock stayed held in the child, which hung). The child's stand-in is its own, empty:
    another process never sees a stand-in's data (not even a stale copy of it)."""
    real, stand_in = configs
    assert _fork_while_a_command_runs(real) == (1, {"from": "child"})
    # The one documented difference: the stand-in is per process (docs/deployment.md).
    assert _fork_while_a_command_runs(stand_in) == (None, {"from": "child"})
