"""The compact JSON encoder built once must write what json.dumps writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attune.memory.compact_json import compact_encoder

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("ensure_ascii", [True, False])
@given(value=_values)
def test_it_writes_what_json_dumps_writes(ensure_ascii: bool, value: Any) -> None:
    encode = compact_encoder(ensure_ascii=ensure_ascii)
    expected = json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False)
    assert encode(value) == expected
    assert encode(value) == expected  # no state kept from the call before


@pytest.mark.parametrize("bad", [float("nan"), float("-inf"), object(), {1j: 1}])
def test_it_refuses_what_json_cannot_hold(bad: object) -> None:
    encode = compact_encoder(ensure_ascii=False)
    with pytest.raises((ValueError, TypeError)):
        encode({"x": [bad]})
    assert encode({"x": [1]}) == '{"x":[1]}'  # and stays usable


def test_a_cycle_is_a_recursion_error_and_the_encoder_stays_usable() -> None:
    encode = compact_encoder(ensure_ascii=True)
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(RecursionError):
        encode(loop)
    assert encode({"é": [True, None]}) == '{"\\u00e9":[true,null]}'


def test_default_handles_what_json_cannot_hold() -> None:
    encode = compact_encoder(ensure_ascii=False, default=lambda value: f"<{type(value).__name__}>")
    assert encode({"when": object()}) == '{"when":"<object>"}'
