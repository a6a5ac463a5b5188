"""Two faces over one implementation: facades generated from the async core.

The logic lives once, in the async classes. Every other face is *declared* from them,
one line a method, never written out again:

* :func:`blocking` makes the blocking twin of a coroutine method: it runs the
  same-named coroutine of the facade's core (``self._core``) through
  :func:`attune._runner.run_sync`;
* :func:`forwarded` makes a coroutine method that awaits the same-named coroutine of
  another object of its owner (``AsyncEmpathyOS.stash`` is its memory's ``stash``);
* :func:`built_from` makes a facade's ``__init__``: it takes the core's arguments
  and builds the core from them;
* :class:`Mirror` is a read-only attribute that is the same-named one of the core.

Each generated method carries the signature and docstring of the coroutine it runs
(``__wrapped__``), so ``inspect.signature``, ``help()``, type checkers and editors all
see the real ones: the ``ParamSpec`` typing hands the coroutine's parameters to the
generated method, and its return type is what the coroutine's awaitable gives.
``tests/test_facade_parity.py`` checks that every facade method is one of these.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from attune._runner import run_sync
from attune.errors import ValidationError

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C")
F = TypeVar("F")
CoreT = TypeVar("CoreT", bound="AsyncResource")

#: The coroutine method the blocking twin of ``name`` runs, where the two names differ.
ASYNC_NAMES = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}


#: Set on a generated method until the class that holds it names it after its place there.
_UNNAMED = "__attune_unnamed__"


def _name_twins(cls: type) -> None:
    """Name each method generated for ``cls`` after its place there (``UnifiedMemory.close``,
    not ``AsyncUnifiedMemory.aclose``), once: an alias (``delete = forget``), or a generated
    method reused by a subclass, keeps its first name."""
    for name, member in vars(cls).items():
        if inspect.isfunction(member) and vars(member).pop(_UNNAMED, False):
            member.__name__ = name
            member.__qualname__ = f"{cls.__qualname__}.{name}"
            member.__module__ = cls.__module__


class AsyncResource:
    """What holds connections: ``async with`` closes it through :meth:`aclose`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _name_twins(cls)

    async def aclose(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Mirror(Generic[T]):
    """A read-only attribute that is the same-named attribute of ``self.<of>``
    (``user_id = Mirror[str]()``: the core's ``user_id``)."""

    def __init__(self, of: str = "_core") -> None:
        self.of = of
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.__doc__ = f"``{self.of.lstrip('_')}.{name}``"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object, owner: type | None = None) -> T | Self:
        if obj is None:
            return self
        value: T = getattr(getattr(obj, self.of), self.name)
        return value

    def __set__(self, obj: object, value: T) -> None:
        raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only")


def _generated(twin: Callable[P, R], coroutine: Callable[..., Any]) -> Callable[P, R]:
    """``twin``, showing the signature and docstring of ``coroutine`` (its ``__wrapped__``)."""
    functools.update_wrapper(twin, coroutine)
    setattr(twin, _UNNAMED, True)
    return twin


def blocking(
    coroutine: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Any, P], R]:
    """The blocking twin of the coroutine method ``coroutine`` of a core class: called on
    a :class:`BlockingFacade`, it runs the same-named coroutine of the facade's core."""
    name = coroutine.__name__

    def twin(self: BlockingFacade[Any], /, *args: P.args, **kwargs: P.kwargs) -> R:
        method: Callable[P, Coroutine[Any, Any, R]] = getattr(self._core, name)
        return run_sync(method(*args, **kwargs))

    return _generated(twin, coroutine)


def forwarded(
    coroutine: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], *, to: str
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """A coroutine method that awaits the same-named coroutine of ``self.<to>``, an
    instance of the class that defines ``coroutine``."""
    name = coroutine.__name__

    async def twin(self: object, /, *args: P.args, **kwargs: P.kwargs) -> R:
        method: Callable[P, Coroutine[Any, Any, R]] = getattr(getattr(self, to), name)
        return await method(*args, **kwargs)

    return _generated(twin, coroutine)


def built_from(
    core_type: Callable[P, C],
) -> Callable[[Callable[[F, C], None]], Callable[Concatenate[F, P], None]]:
    """Decorator of a facade's ``__init__(self, core)``, which attaches a core (as
    :meth:`BlockingFacade.wrap` does): the ``__init__`` it makes takes the arguments of
    ``core_type`` instead, builds the core from them and attaches it."""

    def decorate(attach: Callable[[F, C], None]) -> Callable[Concatenate[F, P], None]:
        def __init__(self: F, /, *args: P.args, **kwargs: P.kwargs) -> None:
            attach(self, core_type(*args, **kwargs))

        vars(__init__).update(
            __signature__=inspect.signature(core_type.__init__),
            attach=attach,
            core_type=core_type,
            **{_UNNAMED: True},
        )
        __init__.__doc__ = f"Build the core ({core_type.__name__}) from these arguments; face it."
        return __init__

    return decorate


class BlockingFacade(Generic[CoreT]):
    """Base of a blocking face over an async core (``self._core``), whose ``__init__`` is
    made by :func:`built_from` and whose methods by :func:`blocking`.

    ``with`` closes it (``close``, the twin of the core's ``aclose``); its repr is the core's.
    """

    _core: CoreT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _name_twins(cls)

    @classmethod
    def _built_from(cls) -> Any:
        """The ``__init__`` made by :func:`built_from`: it knows the core's type and how to
        keep a core (a subclass may have an ``__init__`` of its own above it)."""
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if hasattr(init, "core_type"):
                return init
        raise TypeError(f"{cls.__name__} has no __init__ made by built_from")

    @classmethod
    def wrap(cls, core: CoreT) -> Self:
        """A blocking face over an existing async core (they share connections and state)."""
        made = cls._built_from()
        if not isinstance(core, made.core_type):
            raise ValidationError(
                f"{cls.__name__}.wrap needs an {made.core_type.__name__}, not {type(core).__name__}"
            )
        face = cls.__new__(cls)
        made.attach(face, core)
        return face

    close = blocking(AsyncResource.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._core).replace(type(self._core).__name__, type(self).__name__, 1)


_name_twins(BlockingFacade)  # its own close (a subclass's are named as it is made)
