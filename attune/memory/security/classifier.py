"""Classification of long-term patterns: PUBLIC, INTERNAL or SENSITIVE.

An explicit classification always wins. Otherwise, with auto-classification on
(the default), the rule table below is read top to bottom and the first rule
with a matching term decides; nothing matching means PUBLIC. With
auto-classification off and no explicit choice, the pattern is INTERNAL: a
pattern nobody looked at is not assumed to be shareable.

Terms match whole words and phrases, case-insensitively, in the content, the
pattern type (``clinical_protocol`` reads as "clinical protocol") and the
string values of the metadata. So "phi" does not fire on "philosophy", nor
"internal" on "internally-linked list".

| rule               | classification | terms (whole words / phrases)                           |
|--------------------|----------------|---------------------------------------------------------|
| health             | SENSITIVE      | hipaa, phi, patient(s), clinical, diagnosis, medical    |
|                    |                | record, ehr, emr, prescription, treatment plan, ...     |
| personal-data      | SENSITIVE      | pii, personal data, ssn, social security number, date   |
|                    |                | of birth, gdpr special category, biometric, ...         |
| security           | INTERNAL       | security, auth, authentication, authorization, jwt,     |
|                    |                | oauth, credential(s), token(s), password(s), secret(s), |
|                    |                | encryption, vulnerability, access control, ...          |
| proprietary        | INTERNAL       | proprietary, internal, confidential, trade secret,      |
|                    |                | customer list, pricing strategy, ...                    |
| default            | PUBLIC         | (no rule matched)                                       |

Each decision names the rule that fired (``rule``) so the audit log can say why.

With the hyperscan engine (:mod:`.scan_engine`), ASCII texts are not split into words:
one scan finds the table's words where the characters around them are those the split
would have cut at (the same words, so the same decisions).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attune.memory.security.scan_engine import fold_oddities, has_oddity, resolve, shared
from attune.memory.types import Classification


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    classification: Classification
    terms: tuple[str, ...]


#: Read top to bottom; the first rule with a matching term decides.
RULES: tuple[Rule, ...] = (
    Rule(
        "health",
        Classification.SENSITIVE,
        (
            "hipaa",
            "phi",
            "protected health information",
            "patient",
            "patients",
            "clinical",
            "clinician",
            "diagnosis",
            "diagnoses",
            "medical record",
            "medical records",
            "medical",
            "ehr",
            "emr",
            "health record",
            "health records",
            "prescription",
            "prescriptions",
            "treatment plan",
            "lab result",
            "lab results",
            "mrn",
            "healthcare",
            "health care",
        ),
    ),
    Rule(
        "personal-data",
        Classification.SENSITIVE,
        (
            "pii",
            "personal data",
            "personally identifiable",
            "ssn",
            "social security number",
            "date of birth",
            "biometric",
            "biometrics",
            "credit card number",
            "special category data",
        ),
    ),
    Rule(
        "security",
        Classification.INTERNAL,
        (
            "security",
            "auth",
            "authentication",
            "authorization",
            "authn",
            "authz",
            "jwt",
            "oauth",
            "oidc",
            "saml",
            "sso",
            "credential",
            "credentials",
            "token",
            "tokens",
            "password",
            "passwords",
            "secret",
            "secrets",
            "encryption",
            "decryption",
            "vulnerability",
            "vulnerabilities",
            "exploit",
            "cve",
            "access control",
            "api key",
            "api keys",
            "private key",
            "private keys",
            "session hijacking",
            "xss",
            "csrf",
            "sql injection",
            "sanitize",
            "sanitise",
        ),
    ),
    Rule(
        "proprietary",
        Classification.INTERNAL,
        (
            "proprietary",
            "internal",
            "confidential",
            "trade secret",
            "trade secrets",
            "customer list",
            "pricing strategy",
            "roadmap",
            "not for distribution",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class ClassificationDecision:
    """A classification and why: ``rule`` is ``explicit``, ``default``, ``unclassified``
    (auto-classification off) or the name of the rule that fired, ``term`` the
    matching term (a fixed word of the rule table, never caller data)."""

    classification: Classification
    rule: str
    term: str | None = None


_SEPARATORS = re.compile(r"[\W_]+")
_ASCII_SEPARATORS = str.maketrans(dict.fromkeys(string.punctuation + string.whitespace, " "))


@dataclass(frozen=True, slots=True)
class _Phrase:
    term: str
    first_word: str
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    words: frozenset[str]
    phrases: tuple[_Phrase, ...]


def _compile(rule: Rule) -> _Compiled:
    words = frozenset(t for t in rule.terms if " " not in t)
    phrases = tuple(
        _Phrase(t, t.split()[0], re.compile(r"(?<!\S)" + r"\s+".join(t.split()) + r"(?!\S)"))
        for t in rule.terms
        if " " in t
    )
    return _Compiled(rule, words, phrases)


_COMPILED: tuple[_Compiled, ...] = tuple(_compile(r) for r in RULES)


def _texts(content: str, pattern_type: str, metadata: Mapping[str, Any]) -> list[str]:
    texts = [content, pattern_type]
    stack: list[Any] = [metadata]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, Mapping):  # keys too: {"diagnosis": ...} names its data
            stack.extend(item.values())
            stack.extend(key for key in item if isinstance(key, str))
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return texts


def _spaced(text: str) -> str:
    """Lower-case text in which every non-letter, non-digit (``-`` and ``_`` included) is a
    space, so terms match whole words only. ASCII takes a fast path (``str.translate``).
    Letters the detectors' regexes take for ASCII ones (``d\\u0131agnosis``) are read as those
    (:func:`~.scan_engine.fold_oddities`), as the secrets and PII detectors read them."""
    low = fold_oddities(text) if has_oddity(text) else text.lower()
    return low.translate(_ASCII_SEPARATORS) if low.isascii() else _SEPARATORS.sub(" ", low)


#: Every word the table asks about: its one-word terms and its phrases' first words.
_VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        {t for c in _COMPILED for t in c.words}
        | {p.first_word for c in _COMPILED for p in c.phrases}
    )
)
#: What ``_spaced`` then ``str.split`` cut an ASCII text at (``split`` also at \x1c-\x1f).
_VOCABULARY_SET = frozenset(_VOCABULARY)
_CUTS = frozenset(string.punctuation + string.whitespace + "\x1c\x1d\x1e\x1f")
_CUT = "[" + "".join(f"\\x{ord(c):02x}" for c in sorted(_CUTS)) + "]"
#: One hyperscan gate per word: it opens where the word stands between cuts (any case).
_WORD_GATES = tuple((w, f"(?:^|{_CUT})(?i:{w})(?:{_CUT}|$)") for w in _VOCABULARY)


def _vocabulary_words(texts: list[str], engine: str) -> set[str]:
    """The words of :data:`_VOCABULARY` that the texts hold as whole words: one scan of the
    ASCII texts joined by a cut, each word reported once (10 KB: 100 us to split it into
    words, 10 us to scan it reporting every occurrence, 5 us reporting each word once)."""
    scanner = shared((), engine=engine, gates=_WORD_GATES)
    words: set[str] = set()
    for text in texts:
        if not text.isascii():  # lower() and the separators are Unicode's: split it
            words.update(w for w in _spaced(text).split() if w in _VOCABULARY_SET)
    _, opened = scanner.find_with_gates("\n".join(t for t in texts if t.isascii()))
    return words | opened


def classify(
    content: str,
    pattern_type: str = "",
    metadata: Mapping[str, Any] | None = None,
    *,
    engine: str | None = None,
) -> ClassificationDecision:
    """Auto-classify from content, pattern type and metadata by the rule table (``engine``:
    the word scan's, see :mod:`.scan_engine`; ``None``: ``ATTUNE_SCAN_ENGINE``)."""
    texts = _texts(content, pattern_type, metadata or {})
    chosen = resolve(engine)
    spaced: list[str] | None = None
    if chosen == "re":
        spaced = [_spaced(t) for t in texts]
        words: set[str] = set()
        for text in spaced:
            words.update(text.split())
    else:
        words = _vocabulary_words(texts, chosen)
    for compiled in _COMPILED:
        term: str | None = None
        for p in compiled.phrases:  # phrases first: "medical record" over "medical"
            if p.first_word in words:
                if spaced is None:
                    spaced = [_spaced(t) for t in texts]
                if any(p.pattern.search(t) for t in spaced):
                    term = p.term
                    break
        if term is None and not compiled.words.isdisjoint(words):
            term = next(t for t in compiled.rule.terms if t in words)
        if term is not None:
            return ClassificationDecision(compiled.rule.classification, compiled.rule.name, term)
    return ClassificationDecision(Classification.PUBLIC, "default")


def decide(
    explicit: Classification | None,
    content: str,
    pattern_type: str,
    metadata: Mapping[str, Any],
    *,
    auto_classify: bool = True,
    engine: str | None = None,
) -> ClassificationDecision:
    """The classification a write gets: explicit, else auto-detected, else INTERNAL."""
    if explicit is not None:
        return ClassificationDecision(Classification.parse(explicit), "explicit")
    if not auto_classify:
        return ClassificationDecision(Classification.INTERNAL, "unclassified")
    return classify(content, pattern_type, metadata, engine=engine)
