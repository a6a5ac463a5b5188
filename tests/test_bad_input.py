"""Bad input never escapes the public API as a builtin exception, and writes nothing.

Issue 13, item 5: a lone surrogate in any string (key, agent id, value, content,
metadata, pattern data, ids, classification...) used to raise ``UnicodeEncodeError`` from
deep inside an encoder, a ``ttl_seconds=10**400`` an ``OverflowError``. Every public
method must raise only :class:`~attune.errors.AttuneError` subclasses for bad input, and
a call that raises must leave the stored data as it was.

The property test enumerates the public methods of the async and blocking classes, so a
method added later is covered (or, with a parameter this file has no valid value for,
flagged) without editing the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import reprlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attune import AsyncEmpathyOS, EmpathyOS
from attune.errors import AttuneError, ConfigurationError, SerializationError, ValidationError
from attune.memory import AsyncUnifiedMemory, MemoryConfig, UnifiedMemory
from attune.memory.security.pipeline import close_shared
from attune.memory.short_term.connect import shared_fake_server
from attune.memory.types import AccessTier, Classification

AGENT = "agent-7"
SURROGATE = "\ud800"

# -- stored state: what "nothing was written" means ------------------------------------------

#: A key that vanished between two snapshots is fine if it had at most this long to live:
#: a short TTL set by an earlier successful call ran out (TTL drift is ignored too).
_EXPIRY_SLACK_MS = 10_000


@dataclass(frozen=True)
class Snapshot:
    redis: dict[bytes, tuple[bytes, object, int]]  # key -> (type, value, pttl)
    patterns: tuple[tuple[object, ...], ...]  # every row of the patterns table


class Store:
    """Reads the Redis keys under the test's prefix and the long-term patterns table."""

    def __init__(self, config: MemoryConfig) -> None:
        self.prefix = config.key_prefix
        self.db = Path(config.storage_dir) / "patterns.db"
        self.client: Any = (
            fakeredis.FakeRedis(server=shared_fake_server())
            if config.short_term_backend == "mock"
            else redis.Redis.from_url(config.redis_url or "")
        )

    def snapshot(self) -> Snapshot:
        state: dict[bytes, tuple[bytes, object, int]] = {}
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            kind = self.client.type(key)
            value: object
            if kind == b"string":
                value = self.client.get(key)
            elif kind == b"zset":  # the staging index: member -> expiry (ms)
                # Entries about to expire may be dropped by any later call (cleanup).
                soon = time.time() * 1000 + _EXPIRY_SLACK_MS
                value = tuple(
                    (member, score)
                    for member, score in self.client.zrange(key, 0, -1, withscores=True)
                    if score > soon
                )
            elif kind == b"hash":
                value = tuple(sorted(self.client.hgetall(key).items()))
            elif kind == b"set":
                value = tuple(sorted(self.client.smembers(key)))
            elif kind == b"list":
                value = tuple(self.client.lrange(key, 0, -1))
            else:
                value = None
            pttl = self.client.pttl(key)
            # A short TTL (a successful stash with ttl_seconds=1, say) can run out between
            # SCAN and any of these reads: TYPE then says none, PTTL -2. Such a key is gone
            # (recording it with pttl -2 made its absence later look like a deletion).
            if kind != b"none" and pttl != -2:
                state[key] = (kind, value, pttl)
        rows: tuple[tuple[object, ...], ...] = ()
        if self.db.exists():
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            try:
                # The records as stored; their search rows are written in the background
                # (a flush interval after their insert), so search_rowid is left out.
                from attune.memory.long_term.sqlite_schema import COLUMNS

                rows = tuple(con.execute(f"SELECT {COLUMNS} FROM patterns ORDER BY pattern_id"))
            except sqlite3.OperationalError:  # the schema is not created yet
                rows = ()
            finally:
                con.close()
        return Snapshot(state, rows)

    def close(self) -> None:
        self.client.close()


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots, ignoring TTL drift and short TTLs running out."""
    found = []
    for key, (kind, value, _) in after.redis.items():
        if key not in before.redis:
            found.append(f"Redis key {key!r} was created")
        elif before.redis[key][:2] != (kind, value):
            found.append(f"Redis key {key!r} was changed")
    for key, (_, _, pttl) in before.redis.items():
        if key not in after.redis and not 0 <= pttl <= _EXPIRY_SLACK_MS:
            found.append(f"Redis key {key!r} was deleted")
    if before.patterns != after.patterns:
        ids_before = {row[0] for row in before.patterns}
        ids_after = {row[0] for row in after.patterns}
        found.append(
            f"long-term patterns changed: {len(before.patterns)} -> {len(after.patterns)} "
            f"rows, added {sorted(map(str, ids_after - ids_before))}, "
            f"removed {sorted(map(str, ids_before - ids_after))}"
        )
    return found


def describe(value: object) -> str:
    """A short, ASCII-only description of a (possibly huge, deep or hostile) value."""
    try:
        text = reprlib.repr(value)
    except Exception:  # e.g. an int beyond the str conversion limit
        text = f"<{type(value).__name__}>"
    return ascii(text)[1:-1][:120]


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


# -- bad input ------------------------------------------------------------------------------


class Poison:
    """Not JSON: a plain object."""


@dataclass(frozen=True)
class Mutation:
    """A bad value derived from the real valid one at call time (e.g. a real staged id with a
    surrogate spliced in), so the check it trips is the only thing wrong with the call."""

    label: str
    apply: Callable[[Any], Any]

    def __repr__(self) -> str:
        return f"Mutation({self.label})"


def _deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _deep_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _cycle() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_chars = st.one_of(
    surrogates,
    st.characters(max_codepoint=0x1F),
    st.sampled_from(["\x7f", "\x85", "\u2028", "\ufeff", "\ufffe", "\U0010ffff", "{", "}", " "]),
)
any_text = st.text(st.one_of(st.characters(), surrogates), max_size=12)
#: Text with at least one lone surrogate somewhere.
surrogate_text = st.builds(lambda a, s, b: a + s + b, any_text, surrogates, any_text)

#: Beyond int -> str conversion's default limit (so repr() of it raises): built, not
#: sampled, since hypothesis describes a sampled_from strategy by its elements' repr.
beyond_str_limit = st.builds(lambda sign: sign * 10**5000, st.sampled_from([1, -1]))
huge_numbers = (
    st.sampled_from(
        [
            10**400,
            -(10**400),
            2**63,
            -(2**63) - 1,
            2**64,
            float("nan"),
            float("inf"),
            float("-inf"),
            1e308,
            -1e308,
            5e-324,
            -0.0,
            0,
            -1,
            True,
            False,
            1j,
        ]
    )
    | beyond_str_limit
)
numbers = st.one_of(huge_numbers, st.integers(), st.floats())

deep_values = st.builds(
    lambda depth, kind: _deep_list(depth) if kind else _deep_dict(depth),
    st.sampled_from([10, 500, 900, 990, 1000, 2000, 10_000]),
    st.booleans(),
)

wrong_types = st.one_of(
    st.builds(bytes, st.binary(max_size=8)),
    st.builds(bytearray, st.binary(max_size=8)),
    st.builds(set, st.lists(st.integers(), max_size=3)),
    st.builds(frozenset, st.lists(st.integers(), max_size=3)),
    st.builds(Poison),
    st.builds(object),
    st.builds(_cycle),
    st.sampled_from(
        [None, (1, 2), 1j, Decimal("1.5"), Decimal("NaN"), Fraction(1, 3), Ellipsis, print]
    ),
    st.builds(list),
    st.builds(dict),
    st.builds(lambda: {1: 2}),
    st.builds(lambda: {(1, 2): 3}),
    st.builds(lambda: {None: 1}),
    st.builds(lambda: {float("nan"): 1}),
    st.builds(lambda: {10**5000: 1}),
    st.just(ValueError("not a value")),
    st.just(AccessTier.STEWARD),
    st.just(Classification.PUBLIC),
)

plain_strings = st.one_of(
    st.sampled_from(["", " ", "\t\n", "\x00", "a\x00b", "null", "None", "{}", "{x}", "a b"]),
    st.builds(lambda n: "x" * n, st.sampled_from([64, 65, 128, 129, 256, 257, 4097])),
    st.just("y" * 1_000_001),
    any_text,
    surrogate_text,
    st.text(odd_chars, min_size=1, max_size=5),
)

#: A JSON-like value with something JSON or UTF-8 cannot hold somewhere inside.
poison_leaves = st.one_of(surrogate_text, huge_numbers, wrong_types, deep_values)
poison_keys = st.one_of(
    surrogate_text,
    beyond_str_limit,
    st.sampled_from([None, 1.5, float("nan"), float("inf"), (1, 2), b"k", True]),
)
ok_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
json_with_poison = st.recursive(
    st.one_of(poison_leaves, ok_leaves),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=4), poison_keys), inner, max_size=3),
    ),
    max_leaves=6,
)


def _splice(ch: str, at: int) -> Callable[[Any], Any]:
    def apply(valid: Any) -> Any:
        text = str(valid)
        i = at % (len(text) + 1)
        return text[:i] + ch + text[i:]

    return apply


def _with_field(name: Any, leaf: Any) -> Callable[[Any], Any]:
    def apply(valid: Any) -> Any:
        base = dict(valid) if isinstance(valid, dict) else {}
        try:
            base[name] = leaf
        except TypeError:  # an unhashable key: nest the leaf instead
            base["nested"] = [leaf]
        return base

    return apply


spliced = st.builds(
    lambda ch, at: Mutation(f"splice {ch!a} at {at}", _splice(ch, at)),
    odd_chars,
    st.integers(0, 40),
)
extra_field = st.builds(
    lambda name, leaf: Mutation(
        f"field {describe(name)}={describe(leaf)}", _with_field(name, leaf)
    ),
    st.one_of(st.sampled_from(["content", "extra", "nested"]), poison_keys),
    json_with_poison,
)

#: Anything wrong, for any parameter.
anything_bad = st.one_of(plain_strings, numbers, wrong_types, deep_values, json_with_poison)


class Bad:
    """A drawn bad value; its repr is safe (hypothesis prints it for a failing example)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return describe(self.value)


def bad_values(param: str) -> st.SearchStrategy[Bad]:
    """Bad values for ``param``: anything, plus near-misses of its valid value."""
    if param in ("value", "pattern_data", "metadata"):
        near_misses = [extra_field, json_with_poison]
    elif param in ("ttl_seconds", "ttl_hours", "batch_size"):
        near_misses = [huge_numbers, numbers]
    elif param in ("config", "auto_classify"):
        near_misses = []
    else:
        near_misses = [spliced, surrogate_text, plain_strings]
    # A branch first, then a value: one_of would flatten ``anything_bad`` into its many
    # branches and leave the near-misses of the valid value a few draws in a hundred.
    branches = [anything_bad, *near_misses]
    return st.sampled_from(branches).flatmap(lambda branch: branch.map(Bad))


# -- valid arguments ------------------------------------------------------------------------


class Harness:
    """One STEWARD agent (so no access check hides a validation) on one backend, driven
    through the async or the blocking API; builds valid arguments and checks calls."""

    #: Parameter name -> a valid value; callables get the harness (they may write).
    VALID: dict[str, Any] = {
        "key": "k",
        "value": {"n": 1, "s": "text"},
        "ttl_seconds": 600,
        "agent_id": AGENT,
        "pattern_data": {"content": "Retry with backoff", "source": "test"},
        "pattern_type": "note",
        "ttl_hours": 1,
        "staged_pattern_id": lambda h: h.fresh_staged_id(),
        "classification": "INTERNAL",
        "reason": "not useful",
        "content": "Prefer idempotent writes",
        "auto_classify": True,
        "metadata": {"source": "test"},
        "pattern_id": lambda h: h.fresh_pattern_id(),
        "batch_size": 10,
        "query": "idempotent writes",
        "limit": 5,
        "created_by": AGENT,
        "since": "2020-01-01T00:00:00+00:00",
        "until": "2100-01-01T00:00:00+00:00",
        "cursor": None,
        "namespace": None,
        # A fresh export (export_patterns replaces it; import_patterns reads it back).
        "path": lambda h: h.fresh_export(),
        # A user who wrote nothing (erase_user, audit_pseudonym).
        "user_id": "someone-else",
        # No callback (a callable one is tested in test_export_import and test_cli).
        "progress": None,
    }

    def __init__(self, config: MemoryConfig, *, blocking: bool) -> None:
        self.config = config
        self.blocking = blocking
        self.store = Store(config)
        self.runner: asyncio.Runner | None = None
        self.targets: dict[str, Any]
        if blocking:
            memory = UnifiedMemory(AGENT, config, access_tier="STEWARD")
            agent = EmpathyOS(AGENT, access_tier="STEWARD", config=config)
            self.targets = {"UnifiedMemory": memory, "EmpathyOS": agent}
        else:
            self.runner = asyncio.Runner()
            memory_a = AsyncUnifiedMemory(AGENT, config, access_tier="STEWARD")
            agent_a = AsyncEmpathyOS(AGENT, access_tier="STEWARD", config=config)
            self.targets = {"AsyncUnifiedMemory": memory_a, "AsyncEmpathyOS": agent_a}
        self.memory = next(iter(self.targets.values()))
        self.run(self.memory.stash("k", {"n": 0}, 3600))

    def run(self, result: Any) -> Any:
        if self.runner is not None and inspect.isawaitable(result):
            return self.runner.run(_awaited(result))
        return result

    def fresh_staged_id(self) -> str:
        staged_id = self.run(self.memory.stage_pattern({"content": "Cache for 5 min"}, "note"))
        assert isinstance(staged_id, str)
        return staged_id

    def fresh_export(self) -> str:
        exports = Path(self.config.storage_dir).parent / "exports"
        exports.mkdir(exist_ok=True)
        path = exports / f"export-{len(list(exports.iterdir()))}.jsonl"
        self.run(self.memory.export_patterns(path))
        return str(path)

    def fresh_pattern_id(self) -> str:
        result = self.run(self.memory.persist_pattern("Log the request id", "note"))
        assert isinstance(result["pattern_id"], str)
        return result["pattern_id"]

    def methods(self) -> list[tuple[str, str, list[str]]]:
        """(class, method, parameter names) of every public method that takes arguments."""
        found = []
        for owner, target in self.targets.items():
            for name, fn in inspect.getmembers(type(target), inspect.isfunction):
                if name.startswith("_") or name in ("close", "aclose"):
                    continue
                params = [p for p in inspect.signature(fn).parameters if p != "self"]
                if params:
                    found.append((owner, name, params))
        return found

    def check(self, owner: str, method: str, param: str, drawn: Bad) -> None:
        """Call ``owner.method`` with the bad value as ``param`` (the rest valid) and assert
        only an AttuneError escapes, with nothing written and no surrogate in its message."""
        bad = drawn.value
        target = self.targets[owner]
        fn = getattr(target, method)
        kwargs: dict[str, Any] = {}
        valid_of_param: Any = None
        for name in inspect.signature(fn).parameters:
            if name not in self.VALID:
                pytest.fail(
                    f"{owner}.{method} has a parameter {name!r} this test has no valid value "
                    "for: add one to Harness.VALID"
                )
            valid = self.VALID[name]
            if name == param and not isinstance(bad, Mutation):
                continue  # no need to build (or write) a valid value that is replaced
            kwargs[name] = valid(self) if callable(valid) else valid
            if name == param:
                valid_of_param = kwargs[name]
        kwargs[param] = bad.apply(valid_of_param) if isinstance(bad, Mutation) else bad
        call = f"{owner}.{method}({param}={describe(kwargs[param])})"
        before = self.store.snapshot()
        try:
            self.run(fn(**kwargs))
        except AttuneError as exc:
            assert not has_surrogate(str(exc)), f"{call}: the message echoes a surrogate"
            diff = changes(before, self.store.snapshot())
            assert not diff, f"{call} raised {type(exc).__name__} but wrote: {diff}"
        except Exception as exc:
            pytest.fail(
                f"{call} raised {type(exc).__name__}, not an AttuneError subclass",
                pytrace=False,
            )

    def close(self) -> None:
        for target in self.targets.values():
            self.run(target.aclose() if self.runner is not None else target.close())
        if self.runner is not None:
            self.runner.close()
        self.store.close()


async def _awaited(result: Awaitable[Any]) -> Any:
    return await result


@pytest.fixture
def async_harness(
    config: MemoryConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    monkeypatch.chdir(tmp_path)  # a bad relative path= exports into the test's directory
    harness = Harness(config, blocking=False)
    yield harness
    harness.close()


@pytest.fixture
def blocking_harness(
    config: MemoryConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    monkeypatch.chdir(tmp_path)  # a bad relative path= exports into the test's directory
    harness = Harness(config, blocking=True)
    yield harness
    harness.close()


def _calls(harness: Harness) -> st.SearchStrategy[tuple[str, str, str, Bad]]:
    methods = harness.methods()
    return st.sampled_from(methods).flatmap(
        lambda m: st.sampled_from(m[2]).flatmap(
            lambda param: st.tuples(st.just(m[0]), st.just(m[1]), st.just(param), bad_values(param))
        )
    )


_PROPERTY = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# -- the property ---------------------------------------------------------------------------


def test_every_async_method_refuses_bad_input_cleanly(async_harness: Harness) -> None:
    """Every public coroutine method of AsyncUnifiedMemory and AsyncEmpathyOS, bad input in
    each argument position: only AttuneError escapes, and an error writes nothing."""
    enumerated = {(owner, name) for owner, name, _ in async_harness.methods()}
    assert ("AsyncUnifiedMemory", "rotate_keys") in enumerated  # the enumeration works

    @settings(_PROPERTY, max_examples=500)
    @given(call=_calls(async_harness))
    def check(call: tuple[str, str, str, Bad]) -> None:
        async_harness.check(*call)

    check()


def test_blocking_api_refuses_bad_input_cleanly(blocking_harness: Harness) -> None:
    """A smaller sample through the blocking UnifiedMemory and EmpathyOS."""

    @settings(_PROPERTY, max_examples=120)
    @given(call=_calls(blocking_harness))
    def check(call: tuple[str, str, str, Bad]) -> None:
        blocking_harness.check(*call)

    check()


_CONSTRUCTORS: list[type[Any]] = [AsyncUnifiedMemory, UnifiedMemory, AsyncEmpathyOS, EmpathyOS]


def test_constructors_refuse_bad_input_cleanly(mock_config: MemoryConfig) -> None:
    store = Store(mock_config)
    runner = asyncio.Runner()

    @settings(_PROPERTY, max_examples=150)
    @given(
        cls=st.sampled_from(_CONSTRUCTORS),
        param=st.sampled_from(["user_id", "access_tier", "config"]),
        data=st.data(),
    )
    def check(cls: type[Any], param: str, data: st.DataObject) -> None:
        bad = data.draw(bad_values(param)).value
        if bad is None and param == "config":
            return  # the default configuration: valid
        kwargs: dict[str, Any] = {"access_tier": "STEWARD", "config": mock_config}
        if isinstance(bad, Mutation):
            valid = AGENT if param == "user_id" else kwargs[param]
            bad = bad.apply(valid)
        user_id = bad if param == "user_id" else AGENT
        if param != "user_id":
            kwargs[param] = bad
        call = f"{cls.__name__}({param}={describe(bad)})"
        before = store.snapshot()
        try:
            made = cls(user_id, **kwargs)
        except AttuneError as exc:
            assert not has_surrogate(str(exc)), f"{call}: the message echoes a surrogate"
            assert not changes(before, store.snapshot()), f"{call} raised but wrote"
            return
        except Exception as exc:
            pytest.fail(f"{call} raised {type(exc).__name__}, not an AttuneError subclass")
        if hasattr(made, "aclose"):
            runner.run(made.aclose())
        else:
            made.close()

    try:
        check()
    finally:
        runner.close()
        store.close()


#: Fields whose accepted values are only constructed, never used: paths (a relative one
#: would write into the working directory), the user's Claude memory, the Redis URL.
_CONSTRUCT_ONLY = {
    "storage_dir",
    "audit_log_file",
    "master_key_file",
    "load_claude_memory",
    "redis_url",
}


def config_values(field: str) -> st.SearchStrategy[Bad]:
    annotation = str(MemoryConfig.model_fields[field].annotation)
    if "dict" in annotation:
        near_misses = [st.dictionaries(any_text, any_text, max_size=2), json_with_poison]
    elif "tuple" in annotation:
        near_misses = [st.lists(any_text, max_size=3).map(tuple), st.lists(wrong_types)]
    elif "int" in annotation or "float" in annotation:
        near_misses = [huge_numbers, numbers]
    else:
        near_misses = [plain_strings, surrogate_text]
    branches = [anything_bad, *near_misses]
    return st.sampled_from(branches).flatmap(lambda branch: branch.map(Bad))


async def _use(config: MemoryConfig) -> None:
    """Construct an agent on ``config`` and write through every path; AttuneError is fine."""
    async with AsyncUnifiedMemory(AGENT, config, access_tier="STEWARD") as memory:
        for call in (
            lambda: memory.stash("k", {"n": 1}),
            lambda: memory.persist_pattern("Log the request id", "note", "SENSITIVE"),
            lambda: memory.stage_pattern({"content": "Cache for 5 min"}, "note"),
        ):
            with contextlib.suppress(AttuneError):
                await call()


def test_config_fields_refuse_bad_values_cleanly(storage_dir: Path, key_prefix: str) -> None:
    """Every MemoryConfig field, bad values: ConfigurationError at construction, or, if
    the value is accepted, only AttuneError from an agent that uses it (on the stand-in)."""
    runner = asyncio.Runner()

    @settings(_PROPERTY, max_examples=200)
    @given(field=st.sampled_from(sorted(MemoryConfig.model_fields)), data=st.data())
    def check(field: str, data: st.DataObject) -> None:
        bad = data.draw(config_values(field)).value
        kwargs = {"redis_mock": True, "storage_dir": storage_dir, "key_prefix": key_prefix}
        call = f"MemoryConfig({field}={describe(bad)})"
        try:
            config = MemoryConfig(**{**kwargs, field: bad})
        except AttuneError as exc:
            assert not has_surrogate(str(exc)), f"{call}: the message echoes a surrogate"
            return
        except Exception as exc:
            pytest.fail(f"{call} raised {type(exc).__name__}, not an AttuneError subclass")
        if field in _CONSTRUCT_ONLY:
            return
        try:
            runner.run(_use(config))
        except AttuneError:
            pass
        except Exception as exc:
            pytest.fail(f"an agent on {call} raised {type(exc).__name__}, not an AttuneError")

    try:
        check()
    finally:
        runner.close()


# -- the issue's exact cases ----------------------------------------------------------------


@pytest.fixture
async def steward(config: MemoryConfig) -> Any:
    async with AsyncUnifiedMemory(AGENT, config, access_tier="STEWARD") as memory:
        await memory.stash("k", {"n": 0})
        yield memory


async def _refused(
    store: Store,
    call: Awaitable[Any],
    error: type[AttuneError] | tuple[type[AttuneError], ...] = ValidationError,
) -> AttuneError:
    before = store.snapshot()
    with pytest.raises(error) as info:
        await call
    assert not has_surrogate(str(info.value))
    assert SURROGATE.encode("unicode_escape").decode() not in str(info.value)
    assert not changes(before, store.snapshot())
    return info.value


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("stash", {"key": "k" + SURROGATE, "value": 1}),
        ("stash", {"key": "k", "value": "v" + SURROGATE}),
        ("stash", {"key": "k", "value": {"a": [{"b": ["x", SURROGATE]}]}}),
        ("stash", {"key": "k", "value": {"a": {SURROGATE: 1}}}),
        ("stash", {"key": "k", "value": 1, "ttl_seconds": 10**400}),
        ("stash", {"key": "k", "value": 1, "ttl_seconds": -(10**400)}),
        ("retrieve", {"key": "k" + SURROGATE}),
        ("retrieve", {"key": "k", "agent_id": "a" + SURROGATE}),
        ("ttl", {"key": "k" + SURROGATE}),
        ("ttl", {"key": "k", "agent_id": "a" + SURROGATE}),
        ("forget", {"key": "k" + SURROGATE}),
        ("stage_pattern", {"pattern_data": {"content": "c" + SURROGATE}, "pattern_type": "n"}),
        (
            "stage_pattern",
            {"pattern_data": {"content": "c", "x": [SURROGATE]}, "pattern_type": "n"},
        ),
        ("stage_pattern", {"pattern_data": {"content": "c", SURROGATE: 1}, "pattern_type": "n"}),
        ("stage_pattern", {"pattern_data": {"content": "c"}, "pattern_type": "n" + SURROGATE}),
        (
            "stage_pattern",
            {"pattern_data": {"content": "c"}, "pattern_type": "n", "ttl_hours": 10**400},
        ),
        ("persist_pattern", {"content": "c" + SURROGATE, "pattern_type": "n"}),
        ("persist_pattern", {"content": "c", "pattern_type": "n" + SURROGATE}),
        (
            "persist_pattern",
            {"content": "c", "pattern_type": "n", "classification": "PUBLIC" + SURROGATE},
        ),
        ("persist_pattern", {"content": "c", "pattern_type": "n", "metadata": {"m": SURROGATE}}),
        ("persist_pattern", {"content": "c", "pattern_type": "n", "metadata": {SURROGATE: "m"}}),
        ("recall_pattern", {"pattern_id": "pat_" + SURROGATE}),
        ("delete_pattern", {"pattern_id": "pat_" + SURROGATE}),
        ("rotate_keys", {"batch_size": 10**400}),
    ],
    ids=[
        "stash-key",
        "stash-value",
        "stash-nested-value",
        "stash-dict-key",
        "stash-ttl-huge",
        "stash-ttl-huge-negative",
        "retrieve-key",
        "retrieve-agent_id",
        "ttl-key",
        "ttl-agent_id",
        "forget-key",
        "stage-content",
        "stage-field",
        "stage-field-name",
        "stage-pattern_type",
        "stage-ttl_hours-huge",
        "persist-content",
        "persist-pattern_type",
        "persist-classification",
        "persist-metadata-value",
        "persist-metadata-key",
        "recall-pattern_id",
        "delete-pattern_id",
        "rotate-batch_size-huge",
    ],
)
async def test_issue_cases_raise_validation_error(
    steward: AsyncUnifiedMemory, config: MemoryConfig, method: str, kwargs: dict[str, Any]
) -> None:
    await _refused(Store(config), getattr(steward, method)(**kwargs))


@pytest.mark.parametrize("method", ["promote_pattern", "reject_pattern"])
async def test_surrogate_in_staged_id_is_a_validation_error(
    steward: AsyncUnifiedMemory, config: MemoryConfig, method: str
) -> None:
    staged_id = await steward.stage_pattern({"content": "Cache for 5 min"}, "note")
    await _refused(Store(config), getattr(steward, method)(staged_id + SURROGATE))
    assert [p["pattern_id"] for p in await steward.get_staged_patterns()] == [staged_id]


@pytest.mark.parametrize("method", ["promote_pattern", "reject_pattern"])
@pytest.mark.parametrize(
    "bad_id",
    ["stg_" + "a" * 5000, "stg_\x00abc", "pat_0123", "stg_x\ny"],
    ids=["overlong", "nul", "wrong-prefix", "newline"],
)
async def test_a_staged_id_that_cannot_exist_is_not_found_without_echo(
    steward: AsyncUnifiedMemory, config: MemoryConfig, method: str, bad_id: str
) -> None:
    """Not a message naming the audit log's internals, and never the id echoed back."""
    from attune.errors import PatternNotFoundError

    staged_id = await steward.stage_pattern({"content": "Cache for 5 min"}, "note")
    error = await _refused(Store(config), getattr(steward, method)(bad_id), PatternNotFoundError)
    assert "audit" not in str(error) and bad_id not in str(error) and len(str(error)) < 300
    assert [p["pattern_id"] for p in await steward.get_staged_patterns()] == [staged_id]


@pytest.mark.parametrize("method", ["delete_pattern", "recall_pattern"])
async def test_a_pattern_id_that_cannot_exist_is_refused_before_the_store(
    steward: AsyncUnifiedMemory, config: MemoryConfig, method: str
) -> None:
    """An overlong id used to reach the delete and fail only at its audit event, after
    the store ran; now it is refused first, naming the limit and not the audit log."""
    stored = await steward.persist_pattern("Cache for 5 min", "note")
    error = await _refused(Store(config), getattr(steward, method)("pat_" + "0" * 300))
    assert "audit" not in str(error) and "256" in str(error)
    assert await steward.recall_pattern(stored["pattern_id"]) is not None


@pytest.mark.parametrize(
    "classification",
    ["PUBLIC" + SURROGATE, 42, b"PUBLIC", _deep_list(5000)],
    ids=["surrogate", "int", "bytes", "deep-list"],
)
async def test_bad_classification_on_promote(
    steward: AsyncUnifiedMemory, config: MemoryConfig, classification: Any
) -> None:
    staged_id = await steward.stage_pattern({"content": "Cache for 5 min"}, "note")
    await _refused(Store(config), steward.promote_pattern(staged_id, classification))
    assert [p["pattern_id"] for p in await steward.get_staged_patterns()] == [staged_id]


async def test_surrogate_reason_on_reject(
    steward: AsyncUnifiedMemory, config: MemoryConfig
) -> None:
    staged_id = await steward.stage_pattern({"content": "Cache for 5 min"}, "note")
    await _refused(Store(config), steward.reject_pattern(staged_id, "why" + SURROGATE))
    assert [p["pattern_id"] for p in await steward.get_staged_patterns()] == [staged_id]


@pytest.mark.parametrize("depth", [101, 500, 980])
@pytest.mark.parametrize("method", ["persist_pattern", "stage_pattern"])
async def test_deep_nesting_is_a_validation_error(
    steward: AsyncUnifiedMemory, config: MemoryConfig, method: str, depth: int
) -> None:
    """Deep pattern data or metadata used to reach the pipeline's recursive walk and fail
    there (SecurityPipelineError), or pass, depending on the caller's stack depth."""
    deep = _deep_list(depth)
    call = (
        steward.persist_pattern("c", "note", metadata={"m": deep})
        if method == "persist_pattern"
        else steward.stage_pattern({"content": "c", "m": deep}, "note")
    )
    # Deeper than the JSON encoder can go, it is the encoder's SerializationError.
    error = await _refused(Store(config), call, (ValidationError, SerializationError))
    assert "nested" in str(error)


async def test_nesting_within_the_limit_is_stored(steward: AsyncUnifiedMemory) -> None:
    result = await steward.persist_pattern("c", "note", metadata={"m": _deep_list(98)})
    assert (await steward.recall_pattern(result["pattern_id"]) or {})["metadata"] == {
        "m": _deep_list(98)
    }


def _shared(levels: int) -> list[Any]:
    """2**levels references to one string in ``levels`` small lists (tiny in memory, huge
    as JSON: every reference is written out)."""
    value: list[Any] = ["x"]
    for _ in range(levels):
        value = [value, value]
    return value


@pytest.mark.parametrize("data", ["shared", "cycle"])
async def test_stage_refuses_huge_or_circular_data_before_the_pipeline(
    config: MemoryConfig, monkeypatch: pytest.MonkeyPatch, data: str
) -> None:
    """What cannot be stored fails before the pipeline walks it: a value with shared
    sub-objects used to be encoded (and PII-scrubbed) in full, 2**levels elements."""
    small = config.model_copy(update={"max_value_bytes": 65_536})
    async with AsyncUnifiedMemory(AGENT, small, access_tier="STEWARD") as memory:

        def entered(*args: object, **kwargs: object) -> None:
            raise AssertionError("the pipeline ran on data that cannot be stored")

        monkeypatch.setattr(memory.pipeline, "prepare_staged", entered)
        value = _shared(20) if data == "shared" else _cycle()
        with pytest.raises((ValidationError, SerializationError)):
            await memory.stage_pattern({"content": "c", "m": value}, "note")


@pytest.mark.parametrize(
    "batch_size",
    [10**400, 2**63, True, 2.0, float("nan"), "10", 0],
    ids=["huge", "2**63", "bool", "float", "nan", "str", "zero"],
)
async def test_rotate_keys_batch_size(
    steward: AsyncUnifiedMemory, config: MemoryConfig, batch_size: Any
) -> None:
    await _refused(Store(config), steward.rotate_keys(batch_size))


@pytest.mark.parametrize(
    "garbage",
    ["PUBLIC" + SURROGATE, 10**5000, _deep_list(5000), None, b"x"],
    ids=["surrogate", "huge-int", "deep-list", "none", "bytes"],
)
def test_parse_garbage_is_a_validation_error(garbage: Any) -> None:
    for parse in (Classification.parse, AccessTier.parse):
        with pytest.raises(ValidationError) as info:
            parse(garbage)
        assert not has_surrogate(str(info.value))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"user_id": "a" + SURROGATE}, ValidationError),
        ({"access_tier": "STEWARD" + SURROGATE}, ValidationError),
        ({"access_tier": 10**5000}, ValidationError),
        ({"config": "redis://localhost"}, ConfigurationError),
        ({"config": {"redis_mock": True}}, ConfigurationError),
    ],
    ids=["user-surrogate", "tier-surrogate", "tier-huge-int", "config-str", "config-dict"],
)
@pytest.mark.parametrize("cls", _CONSTRUCTORS)
def test_constructor_bad_arguments(
    mock_config: MemoryConfig, cls: type[Any], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {"access_tier": "STEWARD", "config": mock_config, **kwargs}
    user_id = args.pop("user_id", AGENT)
    with pytest.raises(error) as info:
        cls(user_id, **args)
    assert not has_surrogate(str(info.value))


def test_snapshot_sees_writes(config: MemoryConfig) -> None:
    """The snapshot helper sees a write (so 'unchanged' means something)."""
    store = Store(config)
    before = store.snapshot()
    with UnifiedMemory(AGENT, config, access_tier="STEWARD") as memory:
        memory.stash("k", 1)
        memory.persist_pattern("Log the request id", "note")
    assert len(changes(before, store.snapshot())) == 2
    store.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"short_term": "redis://localhost"},
        {"long_term": object()},
        {"pipeline": {}},
    ],
    ids=["short_term", "long_term", "pipeline"],
)
def test_wrong_store_types_fail_at_construction(
    mock_config: MemoryConfig, kwargs: dict[str, Any]
) -> None:
    """They used to be accepted and fail on first use with AttributeError. A store that
    is not one is a ValidationError (issue 13 item 12); a wrong pipeline is configuration."""
    expected = ConfigurationError if "pipeline" in kwargs else ValidationError
    with pytest.raises(expected):
        AsyncUnifiedMemory(AGENT, mock_config, **kwargs)
    if "short_term" in kwargs:
        with pytest.raises(ValidationError):
            EmpathyOS(AGENT, config=mock_config, short_term_memory=kwargs["short_term"])
        with pytest.raises(ValidationError):
            UnifiedMemory(AGENT, mock_config, short_term=kwargs["short_term"])


@pytest.mark.parametrize(
    "field",
    [
        {"storage_dir": "/tmp/attune-" + SURROGATE},
        {"audit_log_file": "/tmp/audit-" + SURROGATE},
        {"master_key_file": "/tmp/key-" + SURROGATE},
        {"redis_url": "redis://h" + SURROGATE + ":6379/0"},
        {"retention_days_public": 10**400},
        {"retention_days_internal": 10**10},
        {"retention_days_sensitive": 10**15},
        {"max_ttl_seconds": 10**400},
        {"default_ttl_seconds": 10**400},
        {"staging_ttl_hours": float("inf")},
        {"staging_ttl_hours": 1e300},
    ],
    ids=[
        "storage_dir",
        "audit_log_file",
        "master_key_file",
        "redis_url",
        "retention-huge",
        "retention-past-year-9999",
        "retention-past-sqlite-int",
        "max_ttl-huge",
        "default_ttl-huge",
        "staging_ttl-inf",
        "staging_ttl-huge",
    ],
)
def test_config_values_that_failed_later_are_configuration_errors(
    storage_dir: Path, field: dict[str, Any]
) -> None:
    """Each was accepted, then failed on first use with UnicodeEncodeError, OverflowError
    or ValueError (year out of range), or echoed a surrogate in an error message."""
    with pytest.raises(ConfigurationError) as info:
        MemoryConfig(**{"redis_mock": True, "storage_dir": storage_dir, **field})
    assert not has_surrogate(str(info.value))


def test_a_redis_url_with_an_unknown_option_is_refused_at_construction() -> None:
    """redis-py accepted it and raised TypeError at the first command."""
    from attune.memory.short_term.redis_store import RedisShortTermMemory

    with pytest.raises(ConfigurationError, match=r"does not accept \(foo\)") as info:
        RedisShortTermMemory(MemoryConfig(redis_url="redis://u:hunter2@127.0.0.1:1/0?foo=1"))
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError):
        AsyncUnifiedMemory(AGENT, MemoryConfig(redis_url="redis://127.0.0.1:1/0?foo=1"))


@pytest.mark.parametrize("core", [object(), "memory", None])
def test_wrap_refuses_what_is_not_an_async_core(core: Any) -> None:
    """It used to accept anything and fail at the first call with AttributeError."""
    with pytest.raises(ValidationError):
        UnifiedMemory.wrap(core)


@pytest.mark.parametrize("field", ["environment", "redis_url", "pii_custom_patterns"])
def test_a_config_value_nested_thousands_deep_is_a_configuration_error(field: str) -> None:
    """pydantic cannot describe such a value (RecursionError): still a clear, typed error."""
    deep: dict[str, object] = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    with pytest.raises(ConfigurationError) as raised:
        MemoryConfig(**{field: deep})
    assert "{'a'" not in str(raised.value)  # the value is not echoed


def test_a_key_that_expires_while_the_snapshot_reads_it_is_not_a_deletion(
    redis_config: MemoryConfig,
) -> None:
    """The harness's own race (a flake seen once in CI): a key with a short TTL, set by a
    call that succeeded, ran out between the snapshot's GET and PTTL; recorded with pttl -2,
    its absence from the next snapshot was reported as a deletion by an unrelated call."""
    store = Store(redis_config)
    key = f"{redis_config.key_prefix}:short"
    store.client.set(key, b"v", px=60_000)
    real_pttl = store.client.pttl
    store.client.pttl = lambda name: (store.client.delete(name), real_pttl(name))[1]
    try:
        before = store.snapshot()  # the key is read, then "expires" before its PTTL
        assert key.encode() not in before.redis
        store.client.pttl = real_pttl
        assert not changes(before, store.snapshot())
        # A real deletion is still seen: a key read whole and then gone.
        store.client.set(key, b"v")
        before = store.snapshot()
        assert key.encode() in before.redis
        store.client.delete(key)
        assert changes(before, store.snapshot()) == [f"Redis key {key.encode()!r} was deleted"]
    finally:
        store.client.delete(key)
        store.close()


# -- ids a caller made up are neither logged nor repeated -------------------------------------

_EMAIL_ID = "john.doe@example.com"
_KEY_ID = "stg_sk-proj-Xq7Lm2Vt9Rk4Wz8Np3Hs6Jd1Fb5Gc0Ye2Ua7Ti4Oe9Pw3Qa6Sx"


async def test_an_id_a_caller_made_up_is_neither_logged_nor_repeated(
    mock_config: MemoryConfig,
) -> None:
    """An id is written to the audit log (append-only: erasure cannot clean it) or named
    in an error only if it has the shape of the ids attune makes; an email passed as a
    pattern id, or a key pasted as a staged id, is neither."""
    from attune.errors import AccessDeniedError, PatternNotFoundError

    async with (
        AsyncUnifiedMemory("v", mock_config, access_tier="VALIDATOR") as validator,
        AsyncUnifiedMemory("s", mock_config, access_tier="STEWARD") as steward,
    ):
        with pytest.raises(AccessDeniedError) as denied:
            await validator.delete_pattern(_EMAIL_ID)
        assert await steward.delete_pattern(_EMAIL_ID) is False
        assert await steward.recall_pattern(_EMAIL_ID) is None
        for call in (validator.promote_pattern, validator.reject_pattern):
            with pytest.raises(PatternNotFoundError) as missing:
                await call(_KEY_ID)
            assert "sk-proj" not in str(missing.value)
        assert _EMAIL_ID not in str(denied.value)
        # An id of attune's shape is still named, where it helps.
        own = "stg_" + "0" * 32
        with pytest.raises(PatternNotFoundError, match=own):
            await validator.promote_pattern(own)
    close_shared()
    log = (mock_config.storage_dir / "audit.jsonl").read_text()
    assert own in log
    assert _EMAIL_ID not in log
    assert "sk-proj" not in log


@pytest.mark.parametrize(
    "data",
    [
        {"content": "note", "extra": {1: "a", "1": "b"}},
        {"content": "note", "rows": [{None: 1, "null": 2}]},
        {"content": "note", "flags": {True: 1, "true": 0}},
    ],
)
async def test_dict_keys_that_json_spells_the_same_are_refused(
    mock_config: MemoryConfig, data: dict[Any, Any]
) -> None:
    """JSON keys are strings: ``{1: "a", "1": "b"}`` in pattern data or metadata was stored
    as ``{"1": "b"}``, a value silently lost. Such a dict is refused at any depth, nothing
    is stored; a key that is not a string but spelled apart (``{1: "a"}``) is kept as JSON
    spells it, as before."""
    from attune.errors import SerializationError

    async with AsyncUnifiedMemory("agent", mock_config) as mem:
        with pytest.raises(SerializationError, match="JSON spells the same"):
            await mem.stage_pattern(data, "note")
        with pytest.raises(SerializationError, match="JSON spells the same"):
            await mem.persist_pattern(
                "note", "note", metadata={k: v for k, v in data.items() if k != "content"}
            )
        assert await mem.get_staged_patterns() == []
        assert await mem.count_patterns() == 0
        kept = await mem.persist_pattern("note", "note", metadata={"extra": {1: "a"}})
        recalled = await mem.recall_pattern(kept["pattern_id"])
        assert recalled is not None and recalled["metadata"] == {"extra": {"1": "a"}}
