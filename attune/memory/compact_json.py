"""Compact JSON text (no spaces, no NaN) with the C encoder built once.

``json.dumps`` and ``JSONEncoder.encode`` build the C encoder again on every call, about
a third of the cost of encoding a small value; every stash, persist and audit event
encodes at least one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def compact_encoder(
    *, ensure_ascii: bool, default: Callable[[Any], Any] | None = None
) -> Callable[[Any], str]:
    """``JSONEncoder(ensure_ascii=..., separators=(",", ":"), allow_nan=False).encode``
    with its C encoder made once.

    The encoder keeps no state between calls, so it is safe from any thread; it has no
    circular-reference check, so a cyclic value raises :class:`RecursionError` rather than
    ``ValueError``. ``default`` is called for objects JSON cannot hold (the encoder's own,
    raising :class:`TypeError`, if None).
    """
    generic = json.JSONEncoder(
        ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False, default=default
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python): the generic encoder
        return generic.encode
    strings = (
        json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    )
    # markers, default, string encoder, indent, key / item separators, sort_keys, skipkeys,
    # allow_nan
    chunks = make(None, generic.default, strings, None, ":", ",", False, False, False)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode
