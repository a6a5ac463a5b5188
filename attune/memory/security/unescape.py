"""Escaped text, decoded for scanning, with the way back to the original positions.

Secrets and PII hide behind escapes: a PEM block in a JSON string has ``\\n`` where its line
breaks were, a connection string in a query string is ``postgres%3A%2F%2Fuser%3Apw%40host``,
a JSON document inside a JSON string doubles every backslash. :func:`decoded_layers` undoes
JSON/JavaScript backslash escapes (``\\n \\t \\r \\" \\' \\\\ \\/ \\b \\f \\uXXXX``) and URL
``%XX`` escapes, layer by layer (at most :data:`MAX_LAYERS`), and each :class:`Decoded` maps
a span of its text back to the span of the original text it came from, so a finding in the
decoded text replaces or reports exactly the escaped characters.

``%XX`` decodes to the character of that byte (``%C3%A9`` gives two characters, not "é"):
enough to scan ASCII secrets and PII, and one decoded character per escape.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Final

MAX_LAYERS: Final = 3

#: A Windows environment reference (``%DB_PASSWORD%``) standing as a value of its own (after
#: a blank, ``=``, ``:``, a quote or a bracket, and before one or the end): its ``%DB`` is
#: not an escape (decoded, ``\xdb_PASSWORD%`` read as a random secret). A name holds a
#: letter past F or an ``_``, which URL escapes between words (``%2Fpath%20``) do not end in.
_WINDOWS_REFERENCE = r"""(?<![^\s=:"'(,])%[A-Za-z0-9_]*[G-Zg-z_][A-Za-z0-9_]*%(?![^\s"'),;&])"""
_ESCAPE = re.compile(
    r"""\\(?:u(?P<u>[0-9A-Fa-f]{4})|(?P<c>[ntr"'\\/bf]))"""
    rf"""|(?!{_WINDOWS_REFERENCE})%(?P<x>[0-9A-Fa-f]{{2}})"""
)
_SIMPLE: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


class Decoded:
    """``text`` decoded from ``source``, and the way back (:meth:`span`).

    The map is built on first use (findings are rare): pieces are literal runs (one
    character for one) or escapes (one character for several); ``starts[i]`` is where piece
    ``i`` begins in ``text``, ``origins[i]`` where it begins in ``source``, ``widths[i]`` its
    width there (0: a literal run).
    """

    __slots__ = ("_below", "_pieces", "source", "text")

    def __init__(self, text: str, source: str, below: Decoded | None = None) -> None:
        self.text = text
        self.source = source  # what ``span`` maps to: the original text
        self._below = below  # the layer this one was decoded from, if any
        self._pieces: tuple[list[int], list[int], list[int]] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of ``source`` that ``text[start:end]`` (non-empty) was decoded from."""
        lo, hi = self._origin(start, False), self._origin(end - 1, True)
        return (lo, hi) if self._below is None else self._below.span(lo, hi)

    def _origin(self, at: int, end: bool) -> int:
        if self._pieces is None:
            self._pieces = _pieces(self._below.text if self._below else self.source)
        starts, origins, widths = self._pieces
        i = bisect_right(starts, at) - 1
        if widths[i] == 0:  # literal run
            return origins[i] + at - starts[i] + (1 if end else 0)
        return origins[i] + (widths[i] if end else 0)


def _char(m: re.Match[str]) -> str:
    if m["u"] is not None:
        return chr(int(m["u"], 16))
    if m["x"] is not None:
        return chr(int(m["x"], 16))
    return _SIMPLE.get(m["c"], m["c"])


def _pieces(source: str) -> tuple[list[int], list[int], list[int]]:
    """The pieces of ``source`` decoded (see :class:`Decoded`)."""
    starts: list[int] = []
    origins: list[int] = []
    widths: list[int] = []
    at = out = 0
    for m in _ESCAPE.finditer(source):
        if m.start() > at:
            starts.append(out)
            origins.append(at)
            widths.append(0)
            out += m.start() - at
        starts.append(out)
        origins.append(m.start())
        widths.append(m.end() - m.start())
        out += 1
        at = m.end()
    starts.append(out)  # the rest (possibly empty: never looked up then)
    origins.append(at)
    widths.append(0)
    return starts, origins, widths


def decode(source: str, below: Decoded | None = None) -> Decoded | None:
    """``source`` with its escapes decoded, or ``None`` when it holds none (``below``: the
    layer ``source`` is the text of, so that spans map through it)."""
    if "\\" not in source and "%" not in source:
        return None
    text = _ESCAPE.sub(_char, source)
    if text == source:
        return None  # no escape, or only ones that decode to themselves (none do)
    return Decoded(text, below.source if below else source, below)


def decoded_layers(source: str) -> list[Decoded]:
    """Each layer of escapes undone in turn: the first decodes ``source``, the next decodes
    the first's text, and so on; every layer maps its spans back to ``source``."""
    layers: list[Decoded] = []
    text = source
    for _ in range(MAX_LAYERS):
        layer = decode(text, layers[-1] if layers else None)
        if layer is None:
            break
        layers.append(layer)
        text = layer.text
    return layers
