"""The detectors' literal prefilters: every occurrence of a set of ASCII literals, in one pass.

The detectors (:mod:`.secrets`, :mod:`.pii_detectors`, :mod:`.classifier`) first look for
short literals (``sk-``, ``password``, ``patient``, ``000-0000`` on digit-folded text ...)
and run their regexes and checks only where one occurs. :class:`Literals` finds all of a
detector's literals at once, with one of two engines:

* ``hyperscan`` (the ``attune[fast-scan]`` extra; Intel Hyperscan, Linux x86_64 wheels): one
  scan of the text for the whole set, whatever its size;
* ``re`` (the standard library, always there): one ``bytes.find`` loop per literal.

Both give the same occurrences, in the same order: the text is encoded to ASCII with every
other character as ``?`` (one byte per character, so offsets are character offsets, and no
ASCII literal can match across a non-ASCII character), lower-cased byte-wise (ASCII only)
for a caseless set, and every occurrence is reported, overlapping ones included.

Which engine: ``ATTUNE_SCAN_ENGINE`` = ``auto`` (the default: ``hyperscan`` when it can be
imported, else ``re``), ``re`` (force the fallback) or ``hyperscan`` (require it). It is read
once, on the first detector built; a detector can also be given an engine explicitly.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from attune.errors import ConfigurationError

ENV: Final = "ATTUNE_SCAN_ENGINE"
ENGINES: Final = ("re", "hyperscan")

_hs: Any
try:  # the optional extra, attune[fast-scan] (imported by name: no stubs needed without it)
    _hs = importlib.import_module("hyperscan")
except ImportError:  # pragma: no cover - depends on the installation
    _hs = None

_default: str | None = None

#: Letters that Python's case-insensitive regexes (the detectors' rules) match for an ASCII
#: letter, and that a caseless literal scan here (ASCII only) or ``str.lower`` does not
#: turn into it: dotted capital I and dotless i for "i", long s for "s", the Kelvin sign for
#: "k". A detector folds them (:func:`fold_oddities`) before looking for its literals, so
#: a keyword spelled with one ("credent\u0131als", "pa\u017f\u017fword") is found where
#: its regex matches.
CASE_FOLD_ODDITIES: Final = ("\u0130", "\u0131", "\u017f", "\u212a")
_AS_ASCII: Final = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def has_oddity(text: str) -> bool:
    """Whether ``text`` holds one of :data:`CASE_FOLD_ODDITIES` (O(1) for ASCII text)."""
    return any(char in text for char in CASE_FOLD_ODDITIES)


def fold_oddities(text: str) -> str:
    """``text`` lower-cased, each of :data:`CASE_FOLD_ODDITIES` first replaced by its ASCII
    letter: one character for one ("\u0130".lower() alone is two), so offsets hold (unless
    another letter lengthens: callers compare the lengths)."""
    return text.translate(_AS_ASCII).lower()


def available() -> tuple[str, ...]:
    """The engines that can run here (``re`` always)."""
    return ENGINES if _hs is not None else ("re",)


def default_engine() -> str:
    """The engine chosen by ``ATTUNE_SCAN_ENGINE`` (read on the first call)."""
    global _default
    if _default is None:
        _default = resolve(os.environ.get(ENV, "auto"))
    return _default


def resolve(name: str | None) -> str:
    """An engine name checked: ``auto``/``None`` -> the best available."""
    if name is None:
        return default_engine()
    choice = name.strip().lower()
    if choice in ("", "auto"):
        return "hyperscan" if _hs is not None else "re"
    if choice not in ENGINES:
        raise ConfigurationError(
            f"{ENV} must be 'auto', 're' or 'hyperscan', not {name[:32]!r}; "
            "unset it to pick the fastest engine installed"
        )
    if choice == "hyperscan" and _hs is None:
        raise ConfigurationError(
            f"{ENV}=hyperscan but the hyperscan package is not installed; install "
            "attune[fast-scan] (Linux x86_64) or set it to 'auto' or 're'"
        )
    return choice


def _ascii(text: str, caseless: bool) -> bytes:
    data = text.encode("ascii", "replace")  # one byte per character: offsets are kept
    return data.lower() if caseless else data


class Literals:
    """Finds every occurrence of ``literals`` (ASCII, non-empty) in a text.

    ``caseless``: ASCII letters match in either case (other characters never match a
    literal). ``gates`` (name -> a regex of ASCII classes, literals and bounded repeats,
    case-sensitive) say, in the same pass, whether a shape a detector needs occurs at all,
    so that it can skip its own scans (:meth:`find_with_gates`). Immutable after
    construction; safe to share between threads.
    """

    def __init__(
        self,
        literals: Sequence[str],
        *,
        caseless: bool = False,
        engine: str | None = None,
        gates: Mapping[str, str] | None = None,
    ) -> None:
        if not all(lit and lit.isascii() and "?" not in lit for lit in literals):
            # "?" stands for every non-ASCII character in the scanned bytes
            raise ConfigurationError("scan literals must be non-empty ASCII strings without '?'")
        self.literals = tuple(literals)
        self.caseless = caseless
        self.engine = resolve(engine)
        self._bytes = tuple(lit.lower().encode() if caseless else lit.encode() for lit in literals)
        self._strs = tuple(b.decode() for b in self._bytes)
        self._lengths = tuple(len(b) for b in self._bytes)
        self.gates = dict(gates or {})
        self._all_gates = frozenset(self.gates)
        self._dbs: dict[int, Any] = {}  # hyperscan flags -> database, built on first use
        self._lock = threading.Lock()
        self._local = threading.local()  # a scan needs scratch space of its own thread

    def find(self, text: str) -> list[tuple[int, int]]:
        """``(start, index of the literal)`` of every occurrence, sorted."""
        if not self.literals or not text:
            return []
        found: list[tuple[int, int]] = []
        count = len(self._bytes)
        if self.engine == "re":
            data, literals = self._fallback_view(text)
            for i, lit in enumerate(literals):
                at = data.find(lit)  # type: ignore[arg-type]  # both str or both bytes
                while at >= 0:
                    found.append((at, i))
                    at = data.find(lit, at + 1)  # type: ignore[arg-type]
        else:
            data = _ascii(text, False)  # hyperscan: CASELESS
            lengths = self._lengths

            def hit(i: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
                if i < count:  # not a gate
                    found.append((to - lengths[i], i))

            self._scan(0, data, hit)
        found.sort()
        return found

    def find_with_gates(self, text: str) -> tuple[list[tuple[int, int]], frozenset[str]]:
        """What :meth:`find` returns, and the gates that open: those whose regex matches
        (``re``: all of them, as telling would cost a scan each; a gate only lets a
        detector skip a scan that would find nothing, so the results are the same)."""
        if self.engine == "re":
            return self.find(text), self._all_gates
        data = _ascii(text, False)  # hyperscan: CASELESS
        found: list[tuple[int, int]] = []
        opened: set[str] = set()
        lengths, count, names = self._lengths, len(self._bytes), tuple(self.gates)

        def hit(i: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            if i < count:
                found.append((to - lengths[i], i))
            else:
                opened.add(names[i - count])

        self._scan(0, data, hit)
        found.sort()
        return found, frozenset(opened)

    def present(self, text: str) -> set[str]:
        """The literals that occur in ``text``."""
        if not self.literals or not text:
            return set()
        literals = self.literals
        if self.engine == "re":
            data, own = self._fallback_view(text)
            return {literals[i] for i, lit in enumerate(own) if lit in data}  # type: ignore[operator]
        data = _ascii(text, False)  # hyperscan: CASELESS
        found: set[str] = set()

        def hit(i: int, _from: int, _to: int, _flags: int, _ctx: object) -> None:
            found.add(literals[i])

        assert _hs is not None
        self._scan(_hs.HS_FLAG_SINGLEMATCH, data, hit)  # each literal reported once
        return found

    def _fallback_view(self, text: str) -> tuple[str | bytes, tuple[str, ...] | tuple[bytes, ...]]:
        """The text and the literals as the ``re`` engine compares them: an ASCII text as it
        is (encoding 10 KB to search 15 needles cost more than the searches), else as bytes
        with ``?`` for every other character; lower-cased if caseless (ASCII only)."""
        if text.isascii():
            return (text.lower() if self.caseless else text), self._strs
        return _ascii(text, self.caseless), self._bytes

    def _scan(self, flags: int, data: bytes, hit: Any) -> None:
        db = self._dbs.get(flags)
        if db is None:
            db = self._compile(flags)
        scratches: dict[int, Any] = self._local.__dict__.setdefault("scratch", {})
        scratch = scratches.get(flags)
        if scratch is None:
            assert _hs is not None
            scratch = scratches[flags] = _hs.Scratch(db)
        db.scan(data, match_event_handler=hit, scratch=scratch)

    def _compile(self, flags: int) -> Any:
        assert _hs is not None
        with self._lock:
            db = self._dbs.get(flags)
            if db is None:
                literal = flags | (_hs.HS_FLAG_CASELESS if self.caseless else 0)
                expressions = [b"".join(b"\\x%02x" % c for c in lit) for lit in self._bytes]
                each = [literal] * len(expressions)
                if flags == 0:  # the database of find(), which reports the gates too
                    expressions += [gate.encode() for gate in self.gates.values()]
                    each += [_hs.HS_FLAG_SINGLEMATCH] * len(self.gates)
                db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
                db.compile(
                    expressions=expressions,
                    ids=list(range(len(expressions))),
                    elements=len(expressions),
                    flags=each,
                )
                self._dbs[flags] = db
            return db


@functools.lru_cache(maxsize=64)
def shared(
    literals: tuple[str, ...],
    *,
    caseless: bool = False,
    engine: str | None = None,
    gates: tuple[tuple[str, str], ...] = (),
) -> Literals:
    """The process's one :class:`Literals` for these arguments: hyperscan compiles a
    database on first use (a secrets detector's took 1 ms per detector built)."""
    return Literals(literals, caseless=caseless, engine=resolve(engine), gates=dict(gates))
