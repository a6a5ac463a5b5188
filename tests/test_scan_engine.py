"""The scan engines (attune.memory.security.scan_engine) give identical results.

With hyperscan installed (the dev extra installs it on Linux x86_64), every text is run
through the secrets detector, the PII scrubber and the classifier once per engine, and the
findings (kinds and spans), the scrubbed text and counts, and the decisions must be equal:
on the generated corpus over fresh seeds (printed on failure; ``DETECTION_SEED`` replays
one), on the fixtures of the secrets and PII tests, and on texts made to probe where the
engines could part: non-ASCII characters next to literals (the engines read them as
``?``), the Kelvin sign and dotted I that lower-case to ASCII, case, and the separators
that cut words for the classifier. Without hyperscan only the engine choice is tested.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import string
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import detection_corpus as dc
import pytest

from attune.errors import ConfigurationError
from attune.memory.security import scan_engine
from attune.memory.security.classifier import RULES, classify
from attune.memory.security.pii import PIIScrubber
from attune.memory.security.scan_engine import Literals
from attune.memory.security.secrets import SecretsDetector

DATA = Path(__file__).parent / "data"
HYPERSCAN = "hyperscan" in scan_engine.available()
needs_hyperscan = pytest.mark.skipif(not HYPERSCAN, reason="hyperscan is not installed")

_env_seed = os.environ.get("DETECTION_SEED")
SEEDS = (
    [int(_env_seed)]
    if _env_seed
    else [random.SystemRandom().randrange(2**32) for _ in range(3)]  # fresh every run
)

# -- the engine choice ---------------------------------------------------------------------------


def test_auto_picks_the_fastest_installed_engine() -> None:
    assert scan_engine.resolve("auto") == ("hyperscan" if HYPERSCAN else "re")
    assert scan_engine.resolve("") == scan_engine.resolve("auto")
    assert scan_engine.resolve(" RE ") == "re"


def test_an_unknown_engine_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ATTUNE_SCAN_ENGINE must be"):
        scan_engine.resolve("pcre")
    with pytest.raises(ConfigurationError):
        SecretsDetector(engine="pcre")
    with pytest.raises(ConfigurationError):
        PIIScrubber(engine="pcre")


@pytest.mark.skipif(HYPERSCAN, reason="hyperscan is installed")
def test_requiring_a_missing_hyperscan_says_how_to_get_it() -> None:
    with pytest.raises(ConfigurationError, match=r"attune\[fast-scan\]"):
        scan_engine.resolve("hyperscan")


def test_the_environment_variable_forces_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_engine, "_default", None)
    monkeypatch.setenv(scan_engine.ENV, "re")
    assert SecretsDetector().engine == "re"
    assert PIIScrubber().engine == "re"
    monkeypatch.setattr(scan_engine, "_default", None)
    monkeypatch.setenv(scan_engine.ENV, "bogus")
    with pytest.raises(ConfigurationError):
        SecretsDetector()


def test_literals_must_be_ascii_without_question_marks() -> None:
    for bad in ([""], ["caf\u00e9"], ["a?b"]):
        with pytest.raises(ConfigurationError):
            Literals(bad, engine="re")


@pytest.mark.parametrize("engine", scan_engine.available())
def test_literals_report_every_occurrence(engine: str) -> None:
    scan = Literals(["ab", "b", "Key"], caseless=True, engine=engine)
    text = "xxABab key \u00c4Key \u212aey"
    assert scan.find(text) == [(2, 0), (3, 1), (4, 0), (5, 1), (7, 2), (12, 2)]
    assert scan.present(text) == {"ab", "b", "Key"}
    assert scan.find("") == [] and scan.present("") == set()
    assert Literals(["ab"], engine=engine).find("AB") == []


def test_gates_open_on_their_shape_with_hyperscan_and_always_with_re() -> None:
    gates = {"number": r"0[0 ]{2}", "upper": r"[A-Z]{2}"}
    for engine in scan_engine.available():
        scan = Literals(["ab"], caseless=True, engine=engine, gates=gates)
        shut = engine == "hyperscan"
        assert scan.find_with_gates("xx ab 0 0") == (
            [(3, 0)],
            frozenset({"number"} if shut else gates),
        )
        assert scan.find_with_gates("AB 0") == ([(0, 0)], frozenset({"upper"} if shut else gates))
        assert scan.find_with_gates("") == ([], frozenset(() if shut else gates))
        assert scan.find("xx AB 0 0") == [(3, 0)]  # find() reports no gate


# -- identical results -----------------------------------------------------------------------------


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _fixture_texts() -> list[str]:
    corpus = _load("secrets_corpus")
    texts = [p.text for p in corpus.POSITIVES] + list(corpus.NEGATIVES)
    with (DATA / "pii_golden.jsonl").open(encoding="utf-8") as lines:
        texts += [json.loads(line)["input"] for line in lines]
    return texts


def _probes(rng: random.Random) -> list[str]:
    """Texts around the engines' literals with the characters where they could part."""
    words = sorted({t for rule in RULES for t in rule.terms})
    literals = ["password", "secret", "token", "api_key", "sk-", "PRIVATE KEY", "eyJ", "gh"]
    literals += ["patient", "dob", "ssn", "social", "000-0000", "123-45-6789", "555 123 4567"]
    oddities = ["\u212a", "\u0130", "\u0131", "\u00e9", "\u00a0", "\x1c", "\x00", "?", "_", "-"]
    cuts = list(string.punctuation + string.whitespace) + oddities
    texts = []
    for _ in range(400):
        parts = []
        for _ in range(rng.randrange(1, 6)):
            word = rng.choice(words + literals)
            word = "".join(c.upper() if rng.random() < 0.3 else c for c in word)
            if rng.random() < 0.2:  # a non-ASCII letter inside or next to a word
                at = rng.randrange(len(word) + 1)
                word = word[:at] + rng.choice(oddities) + word[at:]
            parts += [word, "".join(rng.choices(cuts, k=rng.randrange(0, 3)))]
        parts.append(rng.choice(["", " = 'Xk9#mQ2$vL7pR4zT'", ": 4111 1111 1111 1111", " 1980"]))
        texts.append("".join(parts))
    return texts


def _results(engine: str, texts: list[str]) -> list[tuple[Any, ...]]:
    detector = SecretsDetector(engine=engine)
    scrubber = PIIScrubber(engine=engine)
    custom = PIIScrubber(
        disabled=("ip", "phone"), custom_patterns={"emp": r"EMP-\d{6}"}, engine=engine
    )
    out = []
    for text in texts:
        scrubbed = scrubber.scrub(text)
        out.append(
            (
                detector.detect(text),
                detector.contains_secrets(text),
                scrubbed.text,
                scrubbed.counts,
                custom.scrub(text),
                classify(text, "best_practice", {"note": text[:40]}, engine=engine),
                classify("", text, {}, engine=engine),
            )
        )
    return out


def _assert_same(texts: list[str], where: str) -> None:
    fallback, fast = _results("re", texts), _results("hyperscan", texts)
    differ = [i for i, (a, b) in enumerate(zip(fallback, fast, strict=True)) if a != b]
    assert not differ, f"{where}: the engines differ on {len(differ)} texts, first #{differ[0]}"


@needs_hyperscan
@pytest.mark.parametrize("seed", SEEDS)
def test_engines_agree_on_the_generated_corpus(seed: int) -> None:
    texts = [case.text for case in dc.generate(seed, per_cell=3)]
    # and blocks of 25 cases: texts of a few KB with many literals in them
    texts += ["\n".join(texts[i : i + 25]) for i in range(0, len(texts), 25)]
    _assert_same(texts, f"seed {seed} (replay: DETECTION_SEED={seed})")


@needs_hyperscan
def test_engines_agree_on_the_fixtures() -> None:
    _assert_same(_fixture_texts(), "fixtures")


@needs_hyperscan
@pytest.mark.parametrize("seed", SEEDS)
def test_engines_agree_on_probes_of_their_edges(seed: int) -> None:
    _assert_same(_probes(random.Random(seed)), f"probes, seed {seed}")


@pytest.mark.parametrize("engine", scan_engine.available())
def test_documented_examples_are_exact_with_every_engine(engine: str) -> None:
    # the docs' example: persisting "API key: sk-proj-abc123..." is blocked
    assert SecretsDetector(engine=engine).kinds("API key: sk-proj-abc123...") == {
        "openai_api_key": 1
    }
    scrubbed = PIIScrubber(engine=engine).scrub(
        "User john@example.com reported issue with SSN 123-45-6789"
    )
    assert scrubbed.text == "User [EMAIL] reported issue with SSN [SSN]"
    assert scrubbed.counts == {"email": 1, "ssn": 1}
    decision = classify("Patient diagnosis notes", engine=engine)
    assert (decision.rule, decision.term) == ("health", "patient")


@needs_hyperscan
def test_one_detector_shared_by_threads_gives_the_same_results() -> None:
    """Each thread scans with scratch space of its own: many at once change nothing."""
    texts = [case.text for case in dc.generate(SEEDS[0], per_cell=1)]
    texts += ["\n".join(texts[i : i + 25]) for i in range(0, len(texts), 25)]
    detector, scrubber = SecretsDetector(engine="hyperscan"), PIIScrubber(engine="hyperscan")

    def run(text: str) -> tuple[Any, ...]:
        return detector.detect(text), scrubber.scrub(text), classify(text, engine="hyperscan")

    alone = [run(text) for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(run, texts))
    assert together == alone, f"seed {SEEDS[0]}"
