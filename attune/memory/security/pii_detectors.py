"""The built-in PII detectors: where each kind of personal data starts and ends in a text.

Design
------
* One detector per kind: a compiled regex for the shape and, where the format has one, a
  check in Python (Luhn for cards, mod-97 for IBANs, area/group/serial ranges for SSNs,
  octet ranges for IPv4). Labelled kinds (MRN, date of birth, SSN after "SSN") replace only
  the value and keep the label: ``"DOB: 01/02/1980"`` -> ``"DOB: [DOB]"``.
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
ten-digit run is not a phone number (it is usually an epoch or an id). Only ASCII digits
are recognised.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from attune.memory.security.pii_prefilter import _Hits


_Span = tuple[int, int, str]  # start, end, kind
# (text, folded text, where the detectors' literals are in it) -> matches
_Finder = Callable[[str, str, "_Hits"], Iterator[_Span]]

# Prefilters run on the folded text: ASCII digits 1-9 replaced by "0", nothing else changed.
_FOLDED_DIGITS: Final = "123456789"

# -- email: the domain is found from its '@'; the local part is read backwards from there ----
_EMAIL_DOMAIN = re.compile(r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,63}(?![\w-])")
# Read on the reversed text before the '@': one character more than a local part may have.
_EMAIL_LOCAL_REVERSED = re.compile(r"[\w.%+-]{1,65}")

# -- labelled values: MRN, date of birth, SSN --------------------------------------------------
# Between a label and its value: closing quotes, maybe then a bracket (``"dob": "...``,
# ``["MRN"] =``, escaped ``\"``; a bare ``]`` would read ``[MRN] 1234`` as a label), a
# separator (``:``, ``=``, ``#``, ``-``; in delimited rows ``,`` and ``|``; a tab is a blank)
# or a word (``is``), and an opening quote.
_SEP = (
    r"""(?:(?:\\?["'`]){1,2}\]?)?[ \t]{0,3}"""
    r"""(?:[:#=,|-]{1,2}[ \t]{0,3}|(?i:is|was|no\.?)[ \t]{1,3})?"""
    r"""(?:\\?["'`])?"""
)
_MRN_LABEL = (
    r"(?i:mrn|medical[ _-]record(?:[ _-](?:number|num|no\.?|id|\#))?"
    r"|patient[ _-]?(?:id|identifier|number|num|no\.?)|patient[ ]?\#)"
)
_MRN_VALUE = r"(?=[A-Za-z0-9-]{0,23}[0-9])[A-Za-z0-9][A-Za-z0-9-]{2,23}(?![\w-])"
_DOB_LABEL = r"(?i:dob|d\.o\.b\.?|date[ _-]of[ _-]birth|birth[ _-]?date|born(?:[ ]on)?)"
_MONTH = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"[0-9]{1,2}(?:st|nd|rd|th)?"
_DATE = (
    r"(?:[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
    r"|[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:[0-9]{4}|[0-9]{2})"
    rf"|{_MONTH}\.?[ ]{_DAY},?[ ][0-9]{{4}}"
    rf"|{_DAY}[ ](?:of[ ])?{_MONTH}\.?,?[ ][0-9]{{4}})(?![0-9])"
)
_SSN_LABEL = r"(?i:ssn|social[ _-]security(?:[ _-](?:number|num|no\.?|\#))?)"
_SSN_VALUE = r"[0-9]{3}(?P<ssn_sep>[ -]?)[0-9]{2}(?P=ssn_sep)[0-9]{4}(?![\w-]|\.[0-9])"
# Every label contains one of these words (lowercased), at most _LABEL_LEAD characters after
# its start ("date of birth"); label, separator and value end within _LABEL_REACH of that word.
# The regex's case folding also lets these letters stand for "i" and "s" in a label, which
# lowercasing does not; "İ" is even lengthened by it.
_CASE_FOLD_ODDITIES: Final = ("\u0130", "\u0131", "\u017f")
#: Each oddity as the letter the regex lets it stand for, one character for one, so that
#: label words are found where the regex will match them and offsets stay the text's.
_ODDITY_LETTERS: Final = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})
_LABEL_LEAD: Final = 8
_LABEL_REACH: Final = 72
_LABEL_HINTS: Final = (
    "mrn",
    "medical",
    "patient",
    "dob",
    "d.o.b",
    "birth",
    "born",
    "ssn",
    "social",
)
_LABELLED = re.compile(
    rf"\b(?:{_MRN_LABEL}(?![A-Za-z]){_SEP}(?P<mrn>{_MRN_VALUE})"
    rf"|{_DOB_LABEL}(?![A-Za-z]){_SEP}(?P<dob>{_DATE})"
    rf"|{_SSN_LABEL}(?![A-Za-z]){_SEP}(?P<ssn>{_SSN_VALUE}))"
)

# -- IBAN: two letters, two check digits, 11-30 more in groups of four -------------------------
_IBAN = re.compile(
    r"[A-Z](?<!\w[A-Z])[A-Z][0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?!\w)"
)
_IBAN_CHECK_DIGITS = re.compile(r"0(?<=[A-Z]{2}0)(?=0)")  # two places after an IBAN's start

# -- cards: maximal runs of digit groups joined by one space or dash; windows are tried later --
_CARD_RUN = re.compile(
    r"[0-9](?<![\w+][0-9])(?<![0-9][.][0-9])(?<![A-Za-z0-9_]-[0-9])[0-9]*+(?:[ -][0-9]++)*+"
)
_DIGIT_GROUP = re.compile(r"[0-9]+")
# A run shorter than 13 characters holds no card, nor does one starting inside it (it ends
# where the outer run ends), so only starts with 12 more digits, spaces or dashes are tried.
_CARD_START = re.compile(r"0(?<![\w+]0)(?=[0 -]{12})")

# -- SSN: 123-45-6789 or 123 45 6789 (ranges checked in Python) -------------------------------
_SSN = re.compile(r"([0-9](?<![\w.+-][0-9])[0-9]{2})([ -])([0-9]{2})\2([0-9]{4})(?![\w-]|\.[0-9])")
_SSN_NEEDLES: Final = ("0-00-0000", "0 00 0000")  # two characters after the start

# -- IP addresses -----------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4_BODY = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV4_SHAPE = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\w|\.\w)")
_IPV4_FIRST_DOT = re.compile(r"\.0(?=0{0,2}\.0{1,3}\.0)")  # one to three after the start
_VERSION_MARK = re.compile(
    r"(?:(?<![\w.@-])(?i:v|ver|version|release|build|rev|revision)\.?|[=<>!~]=|[\^~])"
    r"[ \t]{0,2}[:=]?[ \t]{0,2}\Z"
)
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_IPV6_GROUPS = rf"{_HEX4}(?::{_HEX4}){{0,6}}"
_IPV6 = re.compile(
    rf"(?<![\w:.])(?:{_HEX4}(?::{_HEX4}){{7}}"  # full form, or compressed with "::"
    rf"|(?:{_IPV6_GROUPS})?::(?:(?:{_HEX4}:){{0,5}}{_IPV4_BODY}|{_IPV6_GROUPS})?)"
    r"(?![\w:]|\.\w)"
)
# Every match has two colons at most four hex digits apart, the first at most four characters
# after its start.
_IPV6_COLON = re.compile(r":(?=[0-9A-Fa-f]{0,4}:)")

# -- phones: grouped E.164 (+447911123456, +49 30 901820) or US formats ------------------------
_E164 = re.compile(r"\+(?<![\w+]\+)[1-9](?:[ -]?[0-9]){6,14}(?![\w-]|\.[0-9])")
# The US form starts at "(" or the area code; a "+1 " / "1-" before it is added in Python.
_US_PHONE = re.compile(
    r"[(0-9](?<![\w+][(0-9])(?:(?<=\()[0-9]{3}\)[ ]?|(?<=[0-9])[0-9]{2}(?P<sep>[ .-]))"
    r"[0-9]{3}(?(sep)(?P=sep)|[ .-])[0-9]{4}(?![\w-]|\.[0-9])"
)
# The last seven digits, four to six characters after the start: (555) 123-4567, 555.123.4567
_US_PHONE_NEEDLES: Final = ("000-0000", "000.0000", "000 0000")
_US_COUNTRY = re.compile(r"(?<![\w+.-])\+?1[ .-]?\Z")

# -- US street addresses: number, name, suffix, optional unit and "City, ST 12345" ------------
_WORD = r"[A-Z][A-Za-z'-]{0,19}"
_STREET_SUFFIX = (
    r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl"
    r"|terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|plaza|plz)"
)
_UNIT = r"(?:(?i:apt|apartment|suite|ste|unit|room|rm|floor|fl)\.?[ ]{0,2}\#?|\#[ ]?)"
_ADDRESS = re.compile(
    r"[0-9](?<![\w.$-][0-9])[0-9]{0,5}(?:-[0-9]{1,4})?[A-Za-z]?[ ]{1,2}"
    r"(?:(?:[NSEW]\.?|North|South|East|West)[ ]{1,2})?"
    rf"(?:{_WORD}|[0-9]{{1,3}}(?:st|nd|rd|th))(?:[ ]{{1,2}}{_WORD}){{0,2}}"
    rf"[ ]{{1,2}}{_STREET_SUFFIX}\b(?:[ ]{{1,2}}(?:[NS][EW]?|[EW])\b)?"
    rf"(?:\.?,?[ ]{{1,2}}{_UNIT}[A-Za-z0-9-]{{1,8}}(?![\w-]))?"
    rf"(?:\.?,[ ]{{0,2}}(?:{_WORD}[ ]){{0,2}}{_WORD},?[ ]{{1,2}}[A-Z]{{2}}[ ]{{1,2}}"
    r"[0-9]{5}(?:-[0-9]{4})?(?![0-9-]))?"
)
# The number, then a direction, a capitalised word or an ordinal.
_ADDRESS_START = re.compile(r"0(?<![\w.$-]0)(?=0{0,5}(?:-0{1,4})?[A-Za-z]?[ ]{1,2}[A-Z0])")


@dataclass(frozen=True, slots=True)
class _Detector:
    kinds: frozenset[str]
    find: _Finder
    needs_digit: bool  # True: only ever matches in a text with an ASCII digit


def _fold_digits(text: str) -> str:
    for digit in _FOLDED_DIGITS:
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


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card_number(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    first = digits[0]
    issuer_ok = first in "2345689" or (first == "1" and len(digits) == 15)  # 15: UATP
    return issuer_ok and _luhn_ok(digits)


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _plausible_ipv6(address: str) -> bool:
    """Reject what only looks like IPv6: MAC-style EUI-64 (eight 2-digit groups), too many
    groups, and short "::" forms such as slices and paths (``1::2``, ``A::B``, ``d::``).
    ``::1`` is kept; other two-group forms need a full 4-digit group (``fe80::1``)."""
    if "::" not in address:
        return any(len(group) != 2 for group in address.split(":"))
    head, _, tail = address.partition("::")
    groups = [g for g in (*head.split(":"), *tail.split(":")) if g]
    size = len(groups) + (1 if "." in address else 0)  # an IPv4 tail takes two groups
    if size == 2:
        return any(len(group) == 4 for group in groups)
    return address == "::1" or 3 <= size <= 7


def _continues_token(text: str, end: int) -> bool:
    """True when the digits ending at ``end`` are glued to a word or a decimal part."""
    nxt = text[end : end + 1]
    return nxt.isalnum() or nxt == "_" or (nxt == "." and text[end + 1 : end + 2].isdigit())


# -- detectors -----------------------------------------------------------------------------------


def _find_emails(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "@" not in text:
        return
    for m in _EMAIL_DOMAIN.finditer(text):
        # The local part: all the local-part characters that end at the '@', if they are
        # 1 to 64 (read on the reversed text; inline, as it runs for every e-mail).
        at = m.start()
        run = _EMAIL_LOCAL_REVERSED.match(text[max(0, at - 65) : at][::-1])
        if run is not None and run.end() <= 64:
            yield at - run.end(), m.end(), "email"


def _find_labelled(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if not any(char in text for char in _CASE_FOLD_ODDITIES):
        # Every match starts at most _LABEL_LEAD characters before a label word.
        hints = set(found.labels)
        starts = sorted({s for at in hints for s in range(max(0, at - _LABEL_LEAD), at + 1)})
        yield from _labelled_values(text, _matches_at(_LABELLED, text, starts))
        return
    # A label may be spelled with an oddity ("pat\u0131ent id"), which the regex matches
    # but the prefilter's label words do not: the regions are found on a copy with each
    # oddity as its letter (before, such a label was found only inside the region of another
    # label word, so a second scrub could find what the first had not).
    for r_lo, r_hi in _label_regions(text, 0, len(text)):
        yield from _labelled_values(text, _LABELLED.finditer(text, r_lo, r_hi))


def _label_regions(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of ``text[lo:hi]`` that can hold a label and its value, in order."""
    window = text[lo:hi].translate(_ODDITY_LETTERS).lower()
    if len(window) != hi - lo:  # lowercasing changed the length (rare letters): scan it all
        return [(lo, hi)]
    regions: list[tuple[int, int]] = []
    for at in sorted(lo + at for hint in _LABEL_HINTS for at in _find_all(window, hint)):
        r_lo, r_hi = max(lo, at - _LABEL_LEAD), min(hi, at + _LABEL_REACH)
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
            if not _ssn_ok(digits[:3], digits[3:5], digits[5:]):
                continue
        yield m.start(kind), m.end(kind), kind


def _find_ibans(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "iban" not in found.gates:
        return
    end = 0
    for start in _starts(_IBAN_CHECK_DIGITS, folded, range(2, 3)):
        if start < end or not (m := _IBAN.match(text, start)):
            continue
        parts = m.group().split(" ")
        # A spaced IBAN may have swallowed a short word, or the groups of a second IBAN,
        # after it: drop trailing parts, and search on from where the valid one ends.
        for count in range(len(parts), 0, -1):
            if _iban_ok("".join(parts[:count])):
                end = m.start() + len(" ".join(parts[:count]))
                yield m.start(), end, "iban"
                break


def _find_cards(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "card" not in found.gates:
        return
    for run in _matches_at(_CARD_RUN, text, _starts(_CARD_START, folded)):
        if run.end() - run.start() < 13:
            continue
        groups = [g.span() for g in _DIGIT_GROUP.finditer(text, run.start(), run.end())]
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
        return i if _is_card_number(text[start:end]) else None
    digits, last, separator = text[start:end], None, text[end : end + 1]
    for j in range(i + 1, len(groups)):
        g_start, g_end = groups[j]
        if not 3 <= g_end - g_start <= 6 or text[g_start - 1] != separator:
            break
        digits += text[g_start:g_end]
        if len(digits) > 19:
            break
        if _is_card_number(digits):
            last = j
    return last


def _find_ssns(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    for m in _matches_at(_SSN, text, _needle_starts(found.ssn, range(2, 3))):
        if _ssn_ok(m[1], m[3], m[4]):
            yield m.start(), m.end(), "ssn"


def _find_ipv4(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "ipv4" not in found.gates:
        return
    for m in _matches_at(_IPV4_SHAPE, text, _starts(_IPV4_FIRST_DOT, folded, range(1, 4))):
        octets = m.group().split(".")
        if not all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in octets):
            continue
        if all(len(o) == 1 for o in octets):  # 1.2.3.4, 4.0.1.2: a version, not a person's IP
            continue
        if not _VERSION_MARK.search(text, max(0, m.start() - 24), m.start()):
            yield m.start(), m.end(), "ip"


def _find_ipv6(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    colons = text.count(":")
    if colons < 2 or (colons < 7 and "::" not in text):
        return
    for m in _matches_at(_IPV6, text, _ipv6_starts(text)):
        if _plausible_ipv6(m.group()):
            yield m.start(), m.end(), "ip"


def _ipv6_starts(text: str) -> Iterator[int]:
    after = 0
    for colon in _IPV6_COLON.finditer(text):
        yield from range(max(after, colon.start() - 4), colon.start() + 1)
        after = colon.start() + 1


def _find_phones(text: str, folded: str, found: _Hits) -> Iterator[_Span]:
    if "e164" in found.gates:
        for m in _E164.finditer(text):
            yield m.start(), m.end(), "phone"
    starts = _needle_starts(found.phone, range(4, 7))
    for m in _matches_at(_US_PHONE, text, starts):
        country = _US_COUNTRY.search(text, max(0, m.start() - 3), m.start())
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
    for m in _matches_at(_ADDRESS, text, _starts(_ADDRESS_START, folded)):
        yield m.start(), m.end(), "address"


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
