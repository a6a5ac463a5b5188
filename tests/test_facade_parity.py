"""The blocking facades cannot drift from their async cores.

``UnifiedMemory`` and ``EmpathyOS`` are written out by hand, one line a method, so that
type checkers and editors see their signatures. This test is what keeps them exact:

* every public coroutine of the core (and ``aclose``/``__aenter__``/``__aexit__``,
  as ``close``/``__enter__``/``__exit__``) has a blocking twin with the same parameters
  (names, kinds, defaults, annotations) and the same return annotation -- an ``async
  def`` is annotated with what its awaitable gives;
* a twin's body is exactly ``return run_sync(self._core.<same name>(<its parameters, in
  order>))``: no other argument, no other method, no logic, no decorator, no docstring of
  its own (it shows the coroutine's: :func:`attune.memory.sync.docs_from`);
* an alias of the core (``delete = forget``) is the same alias on the facade;
* ``__init__`` takes the core's parameters and hands each, as is, to the core;
* every other member of the facade is a delegating property or listed below, with why.

The second half mutates the real facade sources (drops a parameter, changes a default,
adds logic, ...) and checks each mutant is caught.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import attune.empathy
import attune.memory.sync
from attune._runner import run_sync
from attune.empathy import AsyncEmpathyOS, EmpathyOS
from attune.memory.sync import ASYNC_NAMES, UnifiedMemory
from attune.memory.unified import AsyncUnifiedMemory

#: Facade members that are not twins of a coroutine: name -> the one statement allowed
#: as its body (None: any), and why it exists.
EXTRAS: dict[str, dict[str, tuple[str | None, str]]] = {
    "UnifiedMemory": {
        "wrap": (None, "builds a facade over an existing core (it checks the type)"),
        "async_memory": ("return self._core", "the core itself, for async code"),
    },
    "EmpathyOS": {
        "async_os": ("return self._core", "the core itself, for async code"),
        "short_term_memory": (None, "deprecated alias of .memory; warns like the core's"),
    },
}
#: Statements a facade ``__init__`` may hold besides building the core.
INIT_EXTRAS: dict[str, set[str]] = {
    "UnifiedMemory": set(),
    "EmpathyOS": {"self.memory = UnifiedMemory.wrap(self._core.memory)"},
}
#: Public attributes of a core that its facade does not offer, and why.
NOT_MIRRORED: dict[str, dict[str, str]] = {
    "AsyncUnifiedMemory": {
        "short_term": "an async store: reach it through .async_memory",
        "long_term": "an async store: reach it through .async_memory",
        "pipeline": "its audit calls are async: reach it through .async_memory",
    },
    "AsyncEmpathyOS": {},
}
#: The one statement of a twin: ``run_sync`` on the same-named core method.
_BODY = "return run_sync(self._core.{name}({args}))"
_BLOCKING_NAMES = {coroutine: blocking for blocking, coroutine in ASYNC_NAMES.items()}
_SYNC_ONLY_BODIES = {"__enter__": "return self", "__exit__": "self.close()"}


@dataclass(frozen=True)
class Face:
    """A facade class, the AST of its class statement and its module's namespace."""

    cls: type
    tree: ast.ClassDef
    namespace: Mapping[str, Any]

    @classmethod
    def of(cls, facade: type) -> Face:
        return cls(
            facade, _class_tree(inspect.getsource(facade)), vars(sys.modules[facade.__module__])
        )

    def functions(self) -> dict[str, ast.FunctionDef]:
        return {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}


def _class_tree(source: str, name: str | None = None) -> ast.ClassDef:
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        if isinstance(node, ast.ClassDef) and (name is None or node.name == name):
            return node
    raise AssertionError(f"no class {name} in the source")


def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "<none>"
    if isinstance(value, str):  # postponed annotations: normalise the spelling
        return ast.unparse(ast.parse(value, mode="eval"))
    return inspect.formatannotation(value)


def _parameters(fn: Any) -> list[tuple[str, str, str, str]]:
    if fn is None:
        return []
    return [
        (
            p.name,
            p.kind.name,
            "<none>" if p.default is p.empty else repr(p.default),
            _annotation(p.annotation),
        )
        for p in inspect.signature(fn).parameters.values()
    ]


def _arguments(fn: Any) -> str:
    """How a twin passes its own parameters on: positionally, in order."""
    args = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            args.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            args.append(f"**{p.name}")
        elif p.kind is p.KEYWORD_ONLY:
            args.append(f"{p.name}={p.name}")
        else:
            args.append(p.name)
    return ", ".join(args)


def _only_statement(node: ast.FunctionDef) -> str:
    if len(node.body) != 1:
        return f"<{len(node.body)} statements>"
    return ast.unparse(node.body[0])


def _public_attributes(cls: type, tree: ast.ClassDef) -> set[str]:
    """The public members of ``cls`` and what its methods set on ``self``."""
    found = {n for n in vars(cls) if not n.startswith("_")}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and not node.attr.startswith("_")
        ):
            found.add(node.attr)
    return found


def drift(core: type, face: Face, core_tree: ast.ClassDef | None = None) -> list[str]:
    """Every way the facade ``face`` differs from its async ``core`` (empty: none)."""
    if core_tree is None:
        core_tree = _class_tree(inspect.getsource(core), core.__name__)
    problems: list[str] = []
    facade = face.cls
    where = facade.__name__
    functions = face.functions()
    own = vars(facade)
    if face.namespace.get("run_sync") is not run_sync:
        problems.append(f"{where}'s module does not use attune._runner.run_sync")
    covered = {"__init__", "__repr__"}

    # 1. Every coroutine of the core has a twin.
    for name, fn in inspect.getmembers(core, inspect.iscoroutinefunction):
        if name.startswith("_") and name not in ASYNC_NAMES.values():
            continue
        twin_name = _BLOCKING_NAMES.get(name, name)
        covered.add(twin_name)
        if fn.__name__ != name:  # an alias in the core: the same alias in the facade
            if twin_name not in own or own.get(twin_name) is not own.get(fn.__name__):
                problems.append(
                    f"{where}.{twin_name} is not an alias of {fn.__name__}, as in the core"
                )
            continue
        twin = own.get(twin_name)
        if twin is None:
            problems.append(f"{where} has no blocking twin of {core.__name__}.{name}")
            continue
        if not inspect.isfunction(twin) or inspect.iscoroutinefunction(twin):
            problems.append(f"{where}.{twin_name} is not a plain blocking method")
            continue
        if _parameters(twin) != _parameters(fn):
            problems.append(
                f"{where}.{twin_name} parameters {_parameters(twin)} differ from "
                f"{core.__name__}.{name} {_parameters(fn)}"
            )
        ours = _annotation(inspect.signature(twin).return_annotation)
        theirs = _annotation(inspect.signature(fn).return_annotation)
        if ours != theirs:
            problems.append(f"{where}.{twin_name} returns {ours}, {core.__name__}.{name} {theirs}")
        if twin.__doc__ != fn.__doc__:
            problems.append(f"{where}.{twin_name} does not show the docstring of {name}")
        node = functions.get(twin_name)
        if node is None:
            problems.append(f"{where}.{twin_name} is not defined in the class statement")
            continue
        if node.decorator_list:
            problems.append(f"{where}.{twin_name} is decorated")
        statement = _only_statement(node)
        if twin_name in _SYNC_ONLY_BODIES:
            expected = {_SYNC_ONLY_BODIES[twin_name]}
        else:
            call = _BODY.format(name=name, args=_arguments(fn))
            expected = {call}
            if theirs == "None":
                expected.add(call.removeprefix("return "))
        if statement not in expected:
            problems.append(f"{where}.{twin_name} runs `{statement}`, not `{sorted(expected)[-1]}`")

    # 2. __init__ takes the core's parameters and passes each on unchanged.
    init = functions.get("__init__")
    core_init = vars(core)["__init__"]
    facade_params, core_params = _parameters(vars(facade).get("__init__")), _parameters(core_init)
    if facade_params != core_params:
        problems.append(
            f"{where}.__init__ parameters {facade_params} differ from "
            f"{core.__name__}.__init__ {core_params}"
        )
    elif init is None:
        problems.append(f"{where}.__init__ is not defined in the class statement")
    else:
        params = list(inspect.signature(core_init).parameters.values())[1:]
        build = ast.unparse(init.body[0]) if init.body else ""
        passed = ", ".join(
            p.name if p.kind is p.POSITIONAL_OR_KEYWORD else f"{p.name}={p.name}" for p in params
        )
        if build != f"self._core = {core.__name__}({passed})":
            problems.append(
                f"{where}.__init__ builds `{build}`, not `self._core = {core.__name__}({passed})`"
            )
        rest = {ast.unparse(s) for s in init.body[1:]} - INIT_EXTRAS.get(where, set())
        if rest:
            problems.append(f"{where}.__init__ also runs {sorted(rest)}")

    # 3. Every other member of the facade delegates, or is listed in EXTRAS.
    extras = EXTRAS.get(where, {})
    for name, member in own.items():
        if name in covered or (name.startswith("__") and not inspect.isfunction(member)):
            continue
        if name in extras:
            allowed, _why = extras[name]
            if allowed is not None and isinstance(member, property):
                getter = functions.get(name)
                if getter is None or _only_statement(getter) != allowed:
                    problems.append(f"{where}.{name} does not just `{allowed}`")
            continue
        if isinstance(member, property):
            getter = functions.get(name)
            statement = _only_statement(getter) if getter is not None else "<missing>"
            if statement != f"return self._core.{name}":
                problems.append(
                    f"{where}.{name} runs `{statement}`, not `return self._core.{name}`"
                )
            continue
        problems.append(f"{where}.{name} has no async twin (a facade holds no logic of its own)")

    # 4. The core's public attributes are offered too, unless listed in NOT_MIRRORED.
    offered = _public_attributes(facade, face.tree)
    for name in sorted(_public_attributes(core, core_tree)):
        if inspect.iscoroutinefunction(getattr(core, name, None)):
            continue  # checked in 1.
        twin_name = _BLOCKING_NAMES.get(name, name)
        if twin_name not in offered and name not in NOT_MIRRORED.get(core.__name__, {}):
            problems.append(f"{where} does not offer {core.__name__}.{name}")
    return problems


PAIRS = [(AsyncUnifiedMemory, UnifiedMemory), (AsyncEmpathyOS, EmpathyOS)]


@pytest.mark.parametrize(("core", "facade"), PAIRS, ids=lambda c: c.__name__)
def test_the_facade_is_an_exact_twin_of_its_core(core: type, facade: type) -> None:
    problems = drift(core, Face.of(facade))
    assert not problems, f"{facade.__name__} drifted from {core.__name__}:\n" + "\n".join(problems)


def test_the_facade_methods_show_the_coroutines_docstrings() -> None:
    assert UnifiedMemory.stash.__doc__ == AsyncUnifiedMemory.stash.__doc__
    assert UnifiedMemory.close.__doc__ == AsyncUnifiedMemory.aclose.__doc__
    assert EmpathyOS.persist_pattern.__doc__ == AsyncUnifiedMemory.persist_pattern.__doc__


# -- the checker catches drift: mutants of the real facade sources --------------------------

STASH = "def stash(self, key: str, value: Any, ttl_seconds: float | None = None) -> bool:\n"
SYNC_MUTANTS = {
    "a parameter dropped": (
        STASH + "        return run_sync(self._core.stash(key, value, ttl_seconds))",
        "def stash(self, key: str, value: Any) -> bool:\n"
        "        return run_sync(self._core.stash(key, value))",
        "UnifiedMemory.stash parameters",
    ),
    "another default": ("batch_size: int = 500", "batch_size: int = 100", "rotate_keys parameters"),
    "a parameter made keyword-only": (
        "def ttl(self, key: str, agent_id: str | None = None) -> float | None:\n"
        "        return run_sync(self._core.ttl(key, agent_id))",
        "def ttl(self, key: str, *, agent_id: str | None = None) -> float | None:\n"
        "        return run_sync(self._core.ttl(key, agent_id=agent_id))",
        "UnifiedMemory.ttl parameters",
    ),
    "another annotation": (
        "def forget(self, key: str) -> bool:",
        "def forget(self, key: object) -> bool:",
        "forget parameters",
    ),
    "another return annotation": (
        "def get_staged_patterns(self) -> list[dict[str, Any]]:",
        "def get_staged_patterns(self) -> list[Any]:",
        "get_staged_patterns returns list[Any]",
    ),
    "an argument not passed on": (
        "self._core.retrieve(key, agent_id)",
        "self._core.retrieve(key, None)",
        "UnifiedMemory.retrieve runs `return run_sync(self._core.retrieve(key, None))`",
    ),
    "another core method called": (
        "self._core.ttl(key, agent_id)",
        "self._core.retrieve(key, agent_id)",
        "UnifiedMemory.ttl runs",
    ),
    "logic added": (
        "return run_sync(self._core.forget(key))",
        "return bool(run_sync(self._core.forget(key)))",
        "UnifiedMemory.forget runs",
    ),
    "a statement added": (
        "return run_sync(self._core.purge_expired())",
        "print('purging')\n        return run_sync(self._core.purge_expired())",
        "purge_expired runs `<2 statements>`",
    ),
    "a method missing": (
        "    def purge_expired(self) -> int:\n"
        "        return run_sync(self._core.purge_expired())\n",
        "",
        "UnifiedMemory has no blocking twin of AsyncUnifiedMemory.purge_expired",
    ),
    "an alias missing": (
        "    delete = forget\n",
        "",
        "UnifiedMemory.delete is not an alias of forget",
    ),
    "a method of its own": (
        "    def close(self) -> None:",
        "    def peek(self) -> None:\n        return None\n\n    def close(self) -> None:",
        "UnifiedMemory.peek has no async twin",
    ),
    "a property with logic": (
        "return self._core.user_id",
        "return self._core.user_id.lower()",
        "UnifiedMemory.user_id runs",
    ),
    # The drift this test was written for: __init__ lacked long_term and pipeline.
    "__init__ missing parameters": (
        "        long_term: LongTermStore | Sharer | None = None,\n"
        "        pipeline: SecurityPipeline | None = None,\n"
        "    ) -> None:",
        "    ) -> None:",
        "UnifiedMemory.__init__ parameters",
    ),
    "__init__ not passing a parameter on": (
        "pipeline=pipeline,",
        "pipeline=None,",
        "UnifiedMemory.__init__ builds",
    ),
    "a docstring of its own": (
        "def recall_pattern(self, pattern_id: str) -> dict[str, Any] | None:\n",
        "def recall_pattern(self, pattern_id: str) -> dict[str, Any] | None:\n"
        '        """Recall."""\n',
        "recall_pattern does not show the docstring",
    ),
}
EMPATHY_MUTANTS = {
    "the core grew a parameter": (
        "    async def recall_pattern(self, pattern_id: str) -> dict[str, Any] | None:\n"
        "        return await self.memory.recall_pattern(pattern_id)",
        "    async def recall_pattern(\n"
        "        self, pattern_id: str, strict: bool = False\n"
        "    ) -> dict[str, Any] | None:\n"
        "        return await self.memory.recall_pattern(pattern_id)",
        "EmpathyOS.recall_pattern parameters",
    ),
    "the core grew a method": (
        "    async def aclose(self) -> None:\n        await self.memory.aclose()",
        "    async def forget(self, key: str) -> bool:\n"
        "        return await self.memory.forget(key)\n\n"
        "    async def aclose(self) -> None:\n        await self.memory.aclose()",
        "EmpathyOS has no blocking twin of AsyncEmpathyOS.forget",
    ),
    "__init__ drops a parameter": (
        "user_id, access_tier=access_tier, config=config, short_term_memory=short_term_memory",
        "user_id, access_tier=access_tier, config=config",
        "EmpathyOS.__init__ builds",
    ),
    "close calls the wrong thing": (
        "run_sync(self._core.aclose())",
        "run_sync(self._core.memory.aclose())",
        "EmpathyOS.close runs",
    ),
    "__exit__ does not close": (
        "        self.close()\n",
        "        pass\n",
        "EmpathyOS.__exit__ runs `pass`",
    ),
}


def _mutant(module: ModuleType, old: str, new: str) -> dict[str, Any]:
    """Execute ``module``'s source with ``old`` replaced by ``new`` (``old`` in the
    facade class only, exactly once); return its namespace (with the mutated source)."""
    source = Path(module.__file__ or "").read_text(encoding="utf-8")
    facade_at = source.index(
        "\nclass " + ("EmpathyOS" if module is attune.empathy else "UnifiedMemory")
    )
    core_part, facade_part = source[:facade_at], source[facade_at:]
    if old in facade_part:
        assert facade_part.count(old) == 1, f"ambiguous mutation: {old!r}"
        source = core_part + facade_part.replace(old, new)
    else:  # a mutation of the core (empathy.py holds both)
        assert core_part.count(old) == 1, f"the mutation no longer applies: update {old!r}"
        source = core_part.replace(old, new) + facade_part
    namespace: dict[str, Any] = {"__name__": f"{module.__name__}_mutant", "__source__": source}
    exec(compile(source, f"<mutant of {module.__name__}>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(("old", "new", "caught"), SYNC_MUTANTS.values(), ids=SYNC_MUTANTS)
def test_drift_of_unified_memory_is_caught(old: str, new: str, caught: str) -> None:
    namespace = _mutant(attune.memory.sync, old, new)
    face = Face(
        namespace["UnifiedMemory"], _class_tree(namespace["__source__"], "UnifiedMemory"), namespace
    )
    problems = drift(AsyncUnifiedMemory, face)
    assert any(caught in p for p in problems), problems


@pytest.mark.parametrize(("old", "new", "caught"), EMPATHY_MUTANTS.values(), ids=EMPATHY_MUTANTS)
def test_drift_of_empathy_os_is_caught(old: str, new: str, caught: str) -> None:
    namespace = _mutant(attune.empathy, old, new)
    face = Face(
        namespace["EmpathyOS"], _class_tree(namespace["__source__"], "EmpathyOS"), namespace
    )
    core_tree = _class_tree(namespace["__source__"], "AsyncEmpathyOS")
    problems = drift(namespace["AsyncEmpathyOS"], face, core_tree)
    assert any(caught in p for p in problems), problems


def test_an_unmutated_copy_passes() -> None:
    """The mutants fail for their mutation, not for being executed copies."""
    namespace = _mutant(attune.memory.sync, "    delete = forget\n", "    delete = forget\n")
    face = Face(
        namespace["UnifiedMemory"], _class_tree(namespace["__source__"], "UnifiedMemory"), namespace
    )
    assert drift(AsyncUnifiedMemory, face) == []
    namespace = _mutant(attune.empathy, "        self.close()\n", "        self.close()\n")
    face = Face(
        namespace["EmpathyOS"], _class_tree(namespace["__source__"], "EmpathyOS"), namespace
    )
    core_tree = _class_tree(namespace["__source__"], "AsyncEmpathyOS")
    assert drift(namespace["AsyncEmpathyOS"], face, core_tree) == []
