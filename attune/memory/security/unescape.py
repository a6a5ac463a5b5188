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
from dataclasses import dataclass
from typing import Final

MAX_LAYERS: Final = 3

_ESCAPE = re.compile(r"""\\(?:u(?P<u>[0-9A-Fa-f]{4})|(?P<c>[ntr"'\\/bf]))|%(?P<x>[0-9A-Fa-f]{2})""")
_SIMPLE: Final = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


@dataclass(frozen=True, slots=True)
class Decoded:
    """``text`` decoded from ``source``. Pieces are literal runs (one character for one) or
    escapes (one character for several): ``starts[i]`` is where piece ``i`` begins in ``text``,
    ``origins[i]`` where it begins in ``source``, ``widths[i]`` its width there (0: literal)."""

    text: str
    source: str
    starts: tuple[int, ...]
    origins: tuple[int, ...]
    widths: tuple[int, ...]

    def _origin(self, at: int, end: bool) -> int:
        i = bisect_right(self.starts, at) - 1
        offset = at - self.starts[i]
        if self.widths[i] == 0:  # literal run
            return self.origins[i] + offset + (1 if end else 0)
        return self.origins[i] + (self.widths[i] if end else 0)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of ``source`` that ``text[start:end]`` (non-empty) was decoded from."""
        return self._origin(start, False), self._origin(end - 1, True)


def decode(source: str) -> Decoded | None:
    """``source`` with its escapes decoded, or ``None`` when it holds none."""
    if "\\" not in source and "%" not in source:
        return None
    parts: list[str] = []
    starts: list[int] = []
    origins: list[int] = []
    widths: list[int] = []
    at = out = 0
    for m in _ESCAPE.finditer(source):
        if m.start() > at:
            starts.append(out)
            origins.append(at)
            widths.append(0)
            parts.append(source[at : m.start()])
            out += m.start() - at
        if m["u"] is not None:
            char = chr(int(m["u"], 16))
        elif m["x"] is not None:
            char = chr(int(m["x"], 16))
        else:
            char = _SIMPLE.get(m["c"], m["c"])
        starts.append(out)
        origins.append(m.start())
        widths.append(m.end() - m.start())
        parts.append(char)
        out += 1
        at = m.end()
    if not widths or all(w == 0 for w in widths):
        return None
    if at < len(source):
        starts.append(out)
        origins.append(at)
        widths.append(0)
        parts.append(source[at:])
    return Decoded("".join(parts), source, tuple(starts), tuple(origins), tuple(widths))


def decoded_layers(source: str) -> list[Decoded]:
    """Each layer of escapes undone in turn: the first decodes ``source``, the next decodes
    the first's text, and so on; every layer maps its spans back to ``source``."""
    layers: list[Decoded] = []
    text = source
    for _ in range(MAX_LAYERS):
        layer = decode(text)
        if layer is None:
            break
        if layers:  # compose: this layer's pieces map to the previous text, not to source
            layer = _composed(layer, layers[-1])
        layers.append(layer)
        text = layer.text
    return layers


def _composed(layer: Decoded, below: Decoded) -> Decoded:
    """``layer`` (decoded from ``below.text``) with its pieces mapped through ``below`` to
    ``below.source``: every character of ``layer.text`` becomes its own piece."""
    starts: list[int] = []
    origins: list[int] = []
    widths: list[int] = []
    for i in range(len(layer.text)):
        lo, hi = layer.span(i, i + 1)
        src_lo, src_hi = below.span(lo, hi)
        starts.append(i)
        origins.append(src_lo)
        widths.append(src_hi - src_lo)
    return Decoded(layer.text, below.source, tuple(starts), tuple(origins), tuple(widths))
