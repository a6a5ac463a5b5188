"""Secrets detection: step 1 of the security pipeline; any finding blocks the write.

Design:

* A small table of rules, each a compiled regex plus a *locator* that validates a match
  and returns the span of the secret (or ``None`` to reject it). Rules are scanned two ways,
  both cheap on ordinary text:

  - *pattern* rules (provider formats: ``sk-proj-``, ``ghp_``, ``AKIA`` ...) start with a
    literal, which the regex engine searches fast; they run only when one of their literal
    *needles* occurs in the text, and word boundaries are checked outside the regex (a
    leading look-behind would disable the literal search);
  - *keyword* rules (``password = ...``, ``Bearer ...``) find their keywords in the
    lower-cased text with plain substring search, then match the regex anchored there,
    instead of running a slow case-insensitive search over the whole text.

* Quantifiers are bounded and mostly possessive, so no rule backtracks catastrophically.
* Locators reject what only looks like a secret: placeholders (``sk-...``,
  ``YOUR_API_KEY_HERE``, ``xxxxxxxx``, ``AKIA...EXAMPLE``), references (``${VAR}``,
  ``$DB_PASS``, ``%(name)s``, ``@Microsoft.KeyVault(...)``, ``os.environ[...]``,
  ``settings.API_KEY``, ``get_token()``; a value that merely starts with ``$``, ``@`` or
  ``%`` is none: :mod:`.secrets_values`) and wrong formats (a JWT header must decode to
  JSON with ``alg``; AWS key ids use base32; lengths are checked).
* A generic assignment (``password``, ``token``, ``secret``, ``api_key`` ... ``= value``)
  blocks only when the value looks like a credential: 8+ characters, no spaces, a digit
  or a symbol (letters only is a word or an identifier: ``NextToken``), two character
  classes, Shannon entropy >= 2.5 bits per character, and no word such as ``example``
  or ``token``. Names of non-credential tokens (``NextToken``, ``idempotency_token``)
  and path segments (``AWS::IAM::AccessKey``) do not count.
* Well-known default passwords (``changeme``, ``password123``, ``postgres`` ...) are
  deliberately *not* reported, in assignments and in connection strings: they fill
  documentation and examples, and reveal nothing a wordlist does not.
* Names are matched in any case and spelling: ``APIKEY``, ``api-key``, ``x_api_key``,
  ``ClientSecret``, ``os.environ["APIKEY"] = ...``; in delimited data a comma, tab or pipe
  separates a name from its value (``db_password,<value>``, ``| api_key | <value> |``).
  An unquoted value runs to a space, quote or delimiter; an ``&`` inside it is part of it
  (``API_SECRET=ab&...``) unless a query string's next ``name=`` starts there.
* Secrets in prose and log lines ("the database password for staging: <value>") and in a
  YAML list under a secret's name (``api_keys:`` then ``- <value>``) are found from a
  context word before them (:mod:`.secrets_context`).
* Escaped text is scanned again decoded (:mod:`.unescape`): a PEM block with ``\\n`` line
  breaks in a JSON string, a URL-encoded connection string; findings are mapped back to
  the escaped characters.
* Overlapping hits keep the most specific rule (provider format > connection string
  password > extra pattern > generic assignment > prose context). A finding holds the
  kind and the span, never the value.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from attune.memory.security.scan_engine import fold_oddities, has_oddity, resolve, shared
from attune.memory.security.secrets_context import context_secrets
from attune.memory.security.secrets_rules import _RULES, _extra_rule, _Rule
from attune.memory.security.unescape import decoded_layers

_RANK_CONTEXT = 0  # below every rule of the table


@dataclass(frozen=True, slots=True)
class SecretFinding:
    """One secret: its kind and where it is in the text (never the value itself)."""

    kind: str
    start: int
    end: int


# -- scanning ------------------------------------------------------------------------------------


def _searched(rule: _Rule, text: str) -> Iterator[re.Match[str]]:
    """Every match of the pattern not glued to a preceding word character."""
    for m in rule.pattern.finditer(text):
        start = m.start()
        if start == 0 or text[start - 1] not in rule.boundary:
            yield m


def _anchored(rule: _Rule, text: str, folded: str) -> Iterator[re.Match[str]]:
    """Matches of the pattern anchored at each keyword of ``folded`` (``text`` lower-cased,
    position for position): a few substring searches instead of a slow case-insensitive one."""
    for keyword in rule.keywords:
        pos = folded.find(keyword)
        while pos >= 0:
            if rule.tail is None or rule.tail.match(folded, pos + len(keyword)):
                m = rule.pattern.match(text, pos)
                if m is not None:
                    yield m
            pos = folded.find(keyword, pos + 1)


def _non_overlapping(candidates: list[tuple[int, SecretFinding]]) -> list[SecretFinding]:
    """Keep the most specific, then the longest, of overlapping findings; sorted by start."""
    candidates.sort(key=lambda c: (-c[0], c[1].start - c[1].end, c[1].start))
    kept: list[SecretFinding] = []
    starts: list[int] = []
    for _, finding in candidates:
        i = bisect.bisect_right(starts, finding.start)
        if i > 0 and kept[i - 1].end > finding.start:
            continue
        if i < len(kept) and kept[i].start < finding.end:
            continue
        kept.insert(i, finding)
        starts.insert(i, finding.start)
    return kept


class SecretsDetector:
    """Finds credentials in text. Immutable after construction; safe to share between threads.

    ``extra_patterns`` maps more kinds (snake_case) to regexes; their whole match is a secret.
    An invalid name or regex raises :class:`~attune.errors.ConfigurationError`. ``engine``:
    the literal scan's engine (:mod:`.scan_engine`; ``None``: ``ATTUNE_SCAN_ENGINE``).
    """

    def __init__(
        self, extra_patterns: Mapping[str, str] | None = None, *, engine: str | None = None
    ) -> None:
        extra = tuple(_extra_rule(k, v) for k, v in (extra_patterns or {}).items())
        self._rules = _RULES + extra
        # All needles in one scan of the text, all keywords in one of the folded text: at
        # 10 KB, 16 substring searches took 100 us, a hyperscan pass takes 3 us.
        self.engine = resolve(engine)
        needles = tuple(sorted({n for r in self._rules for n in r.needles}))
        keywords = tuple(sorted({k for r in self._rules for k in r.keywords}))
        self._needles = shared(needles, engine=self.engine)
        self._keywords = shared(keywords, caseless=True, engine=self.engine)

    def _candidates(self, text: str) -> Iterator[tuple[int, SecretFinding]]:
        # The text as written, then each layer of its JSON and URL escapes decoded (a PEM
        # block with "\\n" line breaks, an encoded connection string), mapped back to it.
        yield from self._scanned(text)
        for layer in decoded_layers(text):
            for rank, found in self._scanned(layer.text):
                start, end = layer.span(found.start, found.end)
                yield rank, SecretFinding(found.kind, start, end)

    def _scanned(self, text: str) -> Iterator[tuple[int, SecretFinding]]:
        # One scan for the needles, one for the keywords, then only the rules whose literals
        # occur run. Keywords are sought case-blind in the text itself, lower-cased only
        # when one occurs (10 KB: 5 us saved); a text with a letter the rules' regexes take
        # for an ASCII one ("credent\u0131als") is folded first (scan_engine.fold_oddities),
        # so such a keyword is found where its rule matches. Keyword positions in the folded
        # text are valid in ``text`` only if folding kept every character's length.
        needles = self._needles.present(text)
        aligned = True
        if not has_oddity(text):
            keywords = self._keywords.present(text)
            folded = text.lower() if keywords else text
        elif len(folded := fold_oddities(text)) == len(text):
            keywords = self._keywords.present(folded)
        else:  # positions would not hold: every keyword rule searches the whole text
            aligned, keywords, folded = False, set(), text
        for rule in self._rules:
            if rule.keywords and aligned:
                if keywords.isdisjoint(rule.keywords):
                    continue
                matches = _anchored(rule, text, folded)
            elif rule.needles and needles.isdisjoint(rule.needles):
                continue
            else:
                matches = _searched(rule, text)
            for m in matches:
                span = rule.locate(m)
                if span is not None:
                    yield rule.rank, SecretFinding(rule.kind, *span)
        if keywords:  # every context word contains a keyword of the generic rule
            for kind, start, end in context_secrets(text, folded):
                yield _RANK_CONTEXT, SecretFinding(kind, start, end)

    def detect(self, text: str) -> list[SecretFinding]:
        """Every secret in ``text``: sorted by start, non-overlapping."""
        return _non_overlapping(list(self._candidates(text)))

    def kinds(self, text: str) -> dict[str, int]:
        """How many secrets of each kind ``text`` contains (kind -> count)."""
        return dict(Counter(f.kind for f in self.detect(text)))

    def contains_secrets(self, text: str) -> bool:
        """Whether ``text`` contains at least one secret (stops at the first)."""
        return next(self._candidates(text), None) is not None
