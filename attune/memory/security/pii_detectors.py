"""The built-in PII detectors: where each kind of personal data starts and ends in a text.

Design
------
* One detector per kind: a compiled regex for the shape and, where the format has one, a
  check in Python (Luhn for cards, mod-97 for IBANs, area/group/serial ranges for SSNs,
  octet ranges for IPv4); the regexes, prefilters and checks are :mod:`.pii_shapes`'s,
  where to look and what to yield is here. Labelled kinds (MRN, date of birth, SSN after
  "SSN") replace only the value and keep the label: ``"DOB: 01/02/1980"`` -> ``"DOB: [DOB]"``.
* Cheap gates: a detector never scans the whole text with its full regex. It gets the
  positions where one of its matches may start from a prefilter that begins with a literal
  character (which the regex engine finds at memchr-like speed), tries its regex only there,
  and skips positions inside the previous match, which is exactly what ``finditer`` over the
  whole text would return. Digit-anchored prefilters run on a *folded* copy of the text in
  which every ASCII digit is ``0``, so "a digit" is a literal there. Email starts at an
  ``@``; IPv6 at most four characters before a colon that another one follows within five,
  and only in texts with ``::`` or seven colons; labelled values near a label word. Every
  kind but email and IPv6 needs a digit, so a text without one skips those detectors. All
  quantifiers are bounded or possessive. The label words and the SSN and phone needles of
  all detectors are found in one pass, with hyperscan's gates telling which other shapes
  occur at all (:mod:`.pii_prefilter`).
* A detector yields ``(start, end, kind)`` spans, possibly overlapping; choosing among them
  (precedence, placeholders, another pass) is :class:`~.pii.PIIScrubber`'s. The order of
  :data:`_BUILTIN_DETECTORS` is their rank.

Delimited data: commas, tabs, pipes and quotes are boundaries, digits are not, so a card or an
SSN between two CSV fields is found (``63249,4204 8701 4039 6047,11/29``). Only a ``.``
between digits joins them into one number (a decimal); a comma never does, so thousands
groups (three digits) are too short for a card and ``1,234 Main St`` scrubs ``234 Main St``.
Labels may be spelled as keys (``patient_id``, ``"dob": "..."``, ``date_of_birth=``, a
``mrn,<value>`` row).

Deliberate false-positive trade-offs: a dotted quad with valid octets is an IP unless a
version marker (``version``, ``v``, ``==``...) precedes it or all four parts are single
digits (``1.2.3.4`` reads as a version; such IPs are public resolvers like ``8.8.8.8``, not
personal data). Card numbers must start with 2-6, 8 or 9 (or be 15-digit UATP numbers
starting with 1), which keeps millisecond timestamps and zero-padded ids out. A bare
ten-digit run is not a phone number (it is usually an epoch or an id). An address must end
in a street type: the common ones in any case (``12 Elm St``), more USPS ones (Loop, Point,
Crossing, Alley ...) only capitalised and not in a numbered title or a common noun (``Step
3 Event Loop``, ``4 Access Point units``; :func:`~.pii_shapes.street_like`). Only ASCII
digits are recognised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from attune.memory.security.pii_shapes import (
    ADDRESS,
    ADDRESS_FIRST_SUFFIXES,
    ADDRESS_START,
    CARD_RUN,
    CARD_START,
    DIGIT_GROUP,
    E164,
    EMAIL_DOMAIN,
    EMAIL_LOCAL_REVERSED,
    FOLDED_DIGITS,
    IBAN,
    IBAN_CHECK_DIGITS,
    IPV4_FIRST_DOT,
    IPV4_SHAPE,
    IPV6,
    IPV6_COLON,
    LABEL_HINTS,
    LABEL_LEAD,
    LABEL_REACH,
    LABELLED,
    SSN,
    US_COUNTRY,
    US_PHONE,
    VERSION_MARK,
    iban_ok,
    is_card_number,
    plausible_ipv6,
    ssn_ok,
    street_like,
)
from attune.memory.security.scan_engine import fold_oddities, has_oddity

if TYPE_CHECKING:
    from attune.memory.security.pii_prefilter import _Hits


_Span = tuple[int, int, str]  # start, end, kind
# (text, folded text, where the detectors' literals are in it) -> matches
_Finder = Callable[[str, str, "_Hits"], Iterator[_Span]]


@dataclass(frozen=True, slots=True)
class _Detector:
    kinds: frozenset[str]
    find: _Finder
    needs_digit: bool  # True: only ever matches in a text with an ASCII digit


def _fold_digits(text: str) -> str:
    for digit in FOLDED_DIGITS:
        text = text.replace(digit, "0")
    return text


def _matches_at(
    pattern: re.Pattern[str], text: str, starts: Iterable[int]
) -> Iterator[re.Match[str]]:
    """What ``pattern.finditer(text)`` yields, given (in ascending order) every position where
    a match may start: the match there, unless a previous match covers it."""
    end = 0
    for start in starts:
        if start >= end and (m := pattern.match(text, start)):
            end = m.end()
            yield m


def _starts(prefilter: re.Pattern[str], folded: str, offsets: range = range(1)) -> list[int]:
    """Positions ``offsets`` before a match of ``prefilter`` in the folded text, ascending."""
    if offsets == range(1):  # finditer's starts are ascending and distinct already
        return [m.start() for m in prefilter.finditer(folded)]
    return _ascending((m.start() for m in prefilter.finditer(folded)), offsets)


def _needle_starts(anchors: list[int], offsets: range) -> list[int]:
    """Positions ``offsets`` before an occurrence of a needle in the folded text, ascending."""
    return _ascending(anchors, offsets)


def _ascending(anchors: Iterable[int], offsets: range) -> list[int]:
    return sorted({at - offset for at in anchors for offset in offsets if at >= offset})


def _continues_token(text: str, end: int) -> bool:
    """True when the digits ending at ``end`` are glued to a word or a decimal part."""
    nxt = text[end : end + 1]
    return nxt.isalnum() or nxt == "_" or (nxt == "." and text[end + 1 : end + 2].isdigit())


# -- detectors -----------------------------------------------------------------------------------


def _find_emails(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "@" not in text:
        return
    for m in EMAIL_DOMAIN.finditer(text):
        # The local part: all the local-part characters that end at the '@', if they are
        # 1 to 64 (read on the reversed text; inline, as it runs for every e-mail).
        at = m.start()
        run = EMAIL_LOCAL_REVERSED.match(text[max(0, at - 65) : at][::-1])
        if run is not None and run.end() <= 64:
            yield at - run.end(), m.end(), "email"


def _find_labelled(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if not has_oddity(text):
        # Every match starts at most LABEL_LEAD characters before a label word.
        hints = set(found.labels)
        starts = sorted({s for at in hints for s in range(max(0, at - LABEL_LEAD), at + 1)})
        yield from _labelled_values(text, _matches_at(LABELLED, text, starts))
        return
    # A label may be spelled with an oddity ("pat\u0131ent id"), which the regex matches
    # but the prefilter's label words do not: the regions are found on a copy with each
    # oddity as its letter (before, such a label was found only inside the region of another
    # label word, so a second scrub could find what the first had not).
    for r_lo, r_hi in _label_regions(text, 0, len(text)):
        yield from _labelled_values(text, LABELLED.finditer(text, r_lo, r_hi))


def _label_regions(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of ``text[lo:hi]`` that can hold a label and its value, in order."""
    window = fold_oddities(text[lo:hi])
    if len(window) != hi - lo:  # lowercasing changed the length (rare letters): scan it all
        return [(lo, hi)]
    regions: list[tuple[int, int]] = []
    for at in sorted(lo + at for hint in LABEL_HINTS for at in _find_all(window, hint)):
        r_lo, r_hi = max(lo, at - LABEL_LEAD), min(hi, at + LABEL_REACH)
        if regions and r_lo <= regions[-1][1]:
            regions[-1] = (regions[-1][0], r_hi)
        else:
            regions.append((r_lo, r_hi))
    return regions


def _find_all(text: str, needle: str) -> Iterator[int]:
    at = text.find(needle)
    while at != -1:
        yield at
        at = text.find(needle, at + 1)


def _labelled_values(text: str, matches: Iterable[re.Match[str]]) -> Iterator[_Span]:
    for m in matches:
        kind = next(k for k in ("mrn", "dob", "ssn") if m.group(k) is not None)
        if kind == "ssn":
            digits = re.sub("[ -]", "", m["ssn"])
            if not ssn_ok(digits[:3], digits[3:5], digits[5:]):
                continue
        yield m.start(kind), m.end(kind), kind


def _find_ibans(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "iban" not in found.gates:
        return
    end = 0
    for start in _starts(IBAN_CHECK_DIGITS, folded, range(2, 3)):
        if start < end or not (m := IBAN.match(text, start)):
            continue
        parts = m.group().split(" ")
        # A spaced IBAN may have swallowed a short word, or the groups of a second IBAN,
        # after it: drop trailing parts, and search on from where the valid one ends.
        for count in range(len(parts), 0, -1):
            if iban_ok("".join(parts[:count])):
                end = m.start() + len(" ".join(parts[:count]))
                yield m.start(), end, "iban"
                break


def _find_cards(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "card" not in found.gates:
        return
    for run in _matches_at(CARD_RUN, text, _starts(CARD_START, folded)):
        if run.end() - run.start() < 13:
            continue
        groups = [g.span() for g in DIGIT_GROUP.finditer(text, run.start(), run.end())]
        if _continues_token(text, run.end()):
            groups.pop()
        yield from _card_windows(text, groups)


def _card_windows(text: str, groups: list[tuple[int, int]]) -> Iterator[_Span]:
    """The cards among a run's digit groups, left to right (a card followed by a CVV, say)."""
    i = 0
    while i < len(groups):
        last = _card_end(text, groups, i)
        if last is None:
            i += 1
        else:
            yield groups[i][0], groups[last][1], "credit_card"
            i = last + 1


def _card_end(text: str, groups: list[tuple[int, int]], i: int) -> int | None:
    """Last group of the longest card starting at group ``i``, if there is one.

    A card is one group of 13-19 digits, or a group of four followed by groups of three to
    six digits (4-4-4-4, 4-6-5, ...) all joined by the same separator.
    """
    start, end = groups[i]
    if end - start != 4:
        return i if is_card_number(text[start:end]) else None
    digits, last, separator = text[start:end], None, text[end : end + 1]
    for j in range(i + 1, len(groups)):
        g_start, g_end = groups[j]
        if not 3 <= g_end - g_start <= 6 or text[g_start - 1] != separator:
            break
        digits += text[g_start:g_end]
        if len(digits) > 19:
            break
        if is_card_number(digits):
            last = j
    return last


def _find_ssns(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    for m in _matches_at(SSN, text, _needle_starts(found.ssn, range(2, 3))):
        if ssn_ok(m[1], m[3], m[4]):
            yield m.start(), m.end(), "ssn"


def _find_ipv4(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "ipv4" not in found.gates:
        return
    for m in _matches_at(IPV4_SHAPE, text, _starts(IPV4_FIRST_DOT, folded, range(1, 4))):
        octets = m.group().split(".")
        if not all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in octets):
            continue
        if all(len(o) == 1 for o in octets):  # 1.2.3.4, 4.0.1.2: a version, not a person's IP
            continue
        if not VERSION_MARK.search(text, max(0, m.start() - 24), m.start()):
            yield m.start(), m.end(), "ip"


def _find_ipv6(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    colons = text.count(":")
    if colons < 2 or (colons < 7 and "::" not in text):
        return
    for m in _matches_at(IPV6, text, _ipv6_starts(text)):
        if plausible_ipv6(m.group()):
            yield m.start(), m.end(), "ip"


def _ipv6_starts(text: str) -> Iterator[int]:
    after = 0
    for colon in IPV6_COLON.finditer(text):
        yield from range(max(after, colon.start() - 4), colon.start() + 1)
        after = colon.start() + 1


def _find_phones(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "e164" in found.gates:
        for m in E164.finditer(text):
            yield m.start(), m.end(), "phone"
    starts = _needle_starts(found.phone, range(4, 7))
    for m in _matches_at(US_PHONE, text, starts):
        country = US_COUNTRY.search(text, max(0, m.start() - 3), m.start())
        if country:
            yield country.start(), m.end(), "phone"
        elif text[m.start() - 1 : m.start()] not in ("-", "."):  # part of a longer number
            yield m.start(), m.end(), "phone"


def _find_custom(
    pattern: re.Pattern[str], kind: str, text: str, folded: str, found: _Hits
) -> Iterator[_Span]:
    for m in pattern.finditer(text):
        if m.end() > m.start():  # a custom regex may match the empty string
            yield m.start(), m.end(), kind


def _find_addresses(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "address" not in found.gates:
        return
    end = -1
    for start in _starts(ADDRESS_START, folded):
        if start < end or not (m := ADDRESS.match(text, start)):
            continue
        if m["more"] is not None and not street_like(text, m, end):
            # what the first suffixes alone find there (4 Elm Street Loop: 4 Elm Street)
            m = ADDRESS_FIRST_SUFFIXES.match(text, start)
            if m is None:
                continue
        end = m.end()
        yield start, end, "address"


_BUILTIN_DETECTORS: Final = (
    _Detector(frozenset({"email"}), _find_emails, False),
    _Detector(frozenset({"mrn", "dob", "ssn"}), _find_labelled, True),
    _Detector(frozenset({"iban"}), _find_ibans, True),
    _Detector(frozenset({"credit_card"}), _find_cards, True),
    _Detector(frozenset({"ssn"}), _find_ssns, True),
    _Detector(frozenset({"ip"}), _find_ipv6, False),
    _Detector(frozenset({"ip"}), _find_ipv4, True),
    _Detector(frozenset({"phone"}), _find_phones, True),
    _Detector(frozenset({"address"}), _find_addresses, True),
)
