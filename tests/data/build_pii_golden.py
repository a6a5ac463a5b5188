"""ONE-OFF: build tests/data/pii_golden.jsonl from the frozen reference scrubber.

Kept in history only: it needs tests/data/pii_reference.py, which is deleted right after the
golden file is committed. Inputs come from the generators of tests/test_security_pii.py, drawn
with fixed hypothesis seeds and a fixed random.Random, so the corpus is a plain data file.

    PYTHONPATH=. python tests/data/build_pii_golden.py
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


t = _load("test_security_pii", HERE.parent / "test_security_pii.py")
golden = _load("regen_pii_golden", HERE / "regen_pii_golden.py")
reference = t.reference


def draw(strategy: st.SearchStrategy[Any], n: int, key: int) -> list[Any]:
    out: list[Any] = []

    @seed(key)
    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        out.append(value)

    run()
    return out


def main() -> None:
    inputs: list[tuple[str, str]] = []  # (why, input)
    positives = {p[0] for p in t.POSITIVES}
    negatives = set(t.NEGATIVES)
    for text in t._strings_in_this_file():
        if text in positives:
            kinds = ", ".join(sorted(dict(t.POSITIVES[[p[0] for p in t.POSITIVES].index(text)][2])))
            why = f"unit-test positive ({kinds})"
        elif text in negatives:
            why = "unit-test near-miss: must come through untouched"
        else:
            why = "string literal of test_security_pii.py (label, word, fragment or example)"
        inputs.append((why, text))

    big_names = ["bench200", "bench10k", "dense", "sparse0", "sparse1", "sparse2", "sparse3", "odd"]
    big_whys = {
        "bench200": "benchmark text, 200 characters",
        "bench10k": "benchmark text, 10 KB",
        "dense": "10 KB of dense PII of every kind, many scan windows",
        "odd": "an İ far from a dotless-i label: that label stays, as in the reference",
    }
    for name, text in zip(big_names, t.BIG_TEXTS, strict=True):
        why = big_whys.get(name, "PII far apart, gaps around the scan-window reach (72 + 256)")
        inputs.append((f"big text {name}: {why}", text))

    # Slices: hypothesis-biased (edges, small lengths) and uniform ones.
    slice_args = draw(
        st.tuples(
            st.integers(0, len(t.BIG_TEXTS) - 1), st.integers(0, 10240), st.integers(1, 1500)
        ),
        75,
        1401,
    )
    rng = random.Random(1402)
    slice_args += [
        (rng.randrange(len(t.BIG_TEXTS)), rng.randint(0, 10240), rng.randint(1, 1500))
        for _ in range(75)
    ]
    for which, start, length in slice_args:
        text = t.BIG_TEXTS[which]
        start %= len(text)
        piece = text[start : start + length]
        inputs.append(
            (f"slice [{start}:{start + length}] of big text {big_names[which]}: cut values", piece)
        )

    singles: list[tuple[str, st.SearchStrategy[str], int]] = [
        ("email", t.emails, 25),
        ("email, 60+ character local part", t.long_emails, 10),
        ("ssn", t.ssns, 25),
        ("credit_card (Luhn-valid, plain/spaced/dashed)", t.cards(), 40),
        ("phone", t.phones, 40),
        ("iban", t.ibans, 4),
        ("ip (v4 with octets up to 300, v6)", t.ips, 40),
        ("address", t.addresses, 40),
        ("labelled value (mrn, dob, ssn; odd-case labels)", t.labelled, 60),
        ("noise", t.noise, 30),
    ]
    for key, (what, strategy, n) in enumerate(singles, start=1410):
        for value in draw(strategy, n, key):
            inputs.append((f"generated {what}, alone", value))
            inputs.append((f"generated {what}, in a sentence", f"see {value}, then stop."))

    for parts, sep in draw(
        st.tuples(t.mixed, st.sampled_from(["", " ", "  ", "\n", ", "])), 300, 1430
    ):
        inputs.append(("generated mix of values, labels and noise, joined", sep.join(parts)))

    for parts in draw(
        st.lists(
            st.one_of(
                t.pii_items.map(lambda item: item[1]),
                st.text(alphabet=" .,;:-+()[]@#/_\nab9Z", max_size=4),
                st.sampled_from(
                    ["SSN ", "DOB: 01/02/1980", "version ", "[EMAIL]", "::1", "10.0.0.1"]
                ),
            ),
            max_size=10,
        ),
        100,
        1431,
    ):
        inputs.append(("generated values glued to punctuation and labels", "".join(parts)))

    # IBANs among noise and other values (the mixes above draw few of them).
    for before, iban, after, sep in draw(
        st.tuples(
            st.lists(st.one_of(t.noise, t.emails, t.labelled), max_size=4),
            t.ibans,
            st.lists(st.one_of(t.noise, t.cards(), t.ips), max_size=4),
            st.sampled_from(["", " ", "\n", ", "]),
        ),
        80,
        1432,
    ):
        inputs.append(("generated iban among noise and values", sep.join([*before, iban, *after])))

    # The custom patterns of the no_ip_phone+custom configuration (ticket T-dddd, SHOUT words
    # of four capitals or more): matches, near-misses, and their rank after the built-in kinds.
    custom_examples = [
        "ticket T-1234 is open",
        "T-1234,T-5678;T-0000",
        "T-123 and T-12345 and xT-1234 and t-1234",
        "URGENT: call 555-123-4567 about T-4321",
        "NOTE the card 4111 1111 1111 1111 and TODO",
        "ABC is short, ABCD is not, ABCDEFGH neither, AbCD is mixed",
        "IBAN GB82WEST12345698765432 WEST",
        "SSN 123-45-6789 SSNS",
        "123 MAIN Street and 42 Baker STREET",
        "MRN: T-1234 and DOB: 01/02/1980 HELLO",
        "ÉCOLE and STRASSE and ΑΒΓΔ",
        "[SHOUT] [TICKET] already",
        "host 10.0.0.1 and ::1 LOUD",
    ]
    for text in custom_examples:
        inputs.append(("custom patterns: ticket and shout, matches and near-misses", text))
    for parts in draw(
        st.lists(
            st.one_of(
                st.sampled_from(["URGENT", "NOTE", "TODO", "ABCD", "ABC", "FOO_BAR", "T-1234"]),
                st.sampled_from(["T-99999", "XT-1234", "T-12", "HTTP", "Ünï"]),
                t.pii_items.map(lambda item: item[1]),
                t.ibans,
                t.noise,
            ),
            min_size=1,
            max_size=8,
        ),
        80,
        1433,
    ):
        inputs.append(("generated mix with custom-pattern words", " ".join(parts)))

    ref = golden.scrubbers(reference.PIIScrubber)
    cases = []
    seen: set[str] = set()
    for why, text in inputs:
        if text not in seen:
            seen.add(text)
            cases.append(golden.Case(why, text, golden.expected_of(ref, text)))
    golden.write(golden.GOLDEN, cases)
    print(f"{len(cases)} cases written to {golden.GOLDEN}")


if __name__ == "__main__":
    main()
