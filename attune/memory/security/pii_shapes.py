"""What each kind of personal data looks like: the PII detectors' regexes, the prefilters
that tell where a match may start, and the format checks a match must pass (Luhn for
cards, mod-97 for IBANs, area/group/serial ranges for SSNs, plausible IPv6).

How the detectors use them (where they look, what they yield) is :mod:`.pii_detectors`'s;
the names a detector needs are public here, the parts they are built from private.
"""

from __future__ import annotations

import re
from typing import Final

# Prefilters run on the folded text: ASCII digits 1-9 replaced by "0", nothing else changed.
FOLDED_DIGITS: Final = "123456789"

# -- email: the domain is found from its '@'; the local part is read backwards from there ----
EMAIL_DOMAIN = re.compile(r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,63}(?![\w-])")
# Read on the reversed text before the '@': one character more than a local part may have.
# An apostrophe between two word characters is one too (sean.o'brien@...).
EMAIL_LOCAL_REVERSED = re.compile(r"(?:[\w.%+-]|(?<=\w)'(?=\w)){1,65}")

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
_DOB_LABEL = r"(?i:dob|d\.o\.b\.?|date[ _-]?of[ _-]?birth|birth[ _-]?date|born(?:[ ]on)?)"
_MONTH = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"[0-9]{1,2}(?:st|nd|rd|th)?"
_DATE = (
    r"(?:[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
    r"|[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:[0-9]{4}|[0-9]{2})"
    rf"|{_MONTH}\.?[ ]{_DAY},?[ ][0-9]{{4}}"
    rf"|{_DAY}[ ](?:of[ ])?{_MONTH}\.?,?[ ][0-9]{{4}}"
    rf"|[0-9]{{1,2}}[-/]{_MONTH}[-/][0-9]{{4}}"  # 05-Jan-1980
    r"|(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]))(?![0-9])"  # 19800105
)
_SSN_LABEL = r"(?i:ssn|social[ _-]security(?:[ _-](?:number|num|no\.?|\#))?)"
_SSN_VALUE = r"[0-9]{3}(?P<ssn_sep>[ -]?)[0-9]{2}(?P=ssn_sep)[0-9]{4}(?![\w-]|\.[0-9])"
# Every label contains one of these words (lowercased), at most LABEL_LEAD characters after
# its start ("date of birth"); label, separator and value end within LABEL_REACH of that word.
# The regex's case folding also lets some letters stand for "i" and "s" in a label, which
# lowercasing does not (scan_engine.CASE_FOLD_ODDITIES).
LABEL_LEAD: Final = 8
LABEL_REACH: Final = 72
LABEL_HINTS: Final = (
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
# A label starts a word, or a part of a name: user_ssn, patientDob, customerSSN.
_LABEL_START = r"(?:\b|(?<=_)|(?<=[a-z])(?=[A-Z]))"
LABELLED = re.compile(
    rf"{_LABEL_START}(?:{_MRN_LABEL}(?![A-Za-z]){_SEP}(?P<mrn>{_MRN_VALUE})"
    rf"|{_DOB_LABEL}(?![A-Za-z]){_SEP}(?P<dob>{_DATE})"
    rf"|{_SSN_LABEL}(?![A-Za-z]){_SEP}(?P<ssn>{_SSN_VALUE}))"
)

# -- IBAN: two letters, two check digits, 11-30 more in groups of four -------------------------
IBAN = re.compile(
    r"[A-Z](?<!\w[A-Z])[A-Z][0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?!\w)"
)
IBAN_CHECK_DIGITS = re.compile(r"0(?<=[A-Z]{2}0)(?=0)")  # two places after an IBAN's start

# -- cards: maximal runs of digit groups joined by one space or dash; windows are tried later --
CARD_RUN = re.compile(
    r"[0-9](?<![\w+][0-9])(?<![0-9][.][0-9])(?<![A-Za-z0-9_]-[0-9])[0-9]*+(?:[ -][0-9]++)*+"
)
DIGIT_GROUP = re.compile(r"[0-9]+")
# A run shorter than 13 characters holds no card, nor does one starting inside it (it ends
# where the outer run ends), so only starts with 12 more digits, spaces or dashes are tried.
CARD_START = re.compile(r"0(?<![\w+]0)(?=[0 -]{12})")

# -- SSN: 123-45-6789 or 123 45 6789 (ranges checked in Python) -------------------------------
SSN = re.compile(r"([0-9](?<![\w.+-][0-9])[0-9]{2})([ -])([0-9]{2})\2([0-9]{4})(?![\w-]|\.[0-9])")
SSN_NEEDLES: Final = ("0-00-0000", "0 00 0000")  # two characters after the start

# -- IP addresses -----------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4_BODY = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
IPV4_SHAPE = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\w|\.\w)")
IPV4_FIRST_DOT = re.compile(r"\.0(?=0{0,2}\.0{1,3}\.0)")  # one to three after the start
VERSION_MARK = re.compile(
    r"(?:(?<![\w.@-])(?i:v|ver|version|release|build|rev|revision)\.?|[=<>!~]=|[\^~])"
    r"[ \t]{0,2}[:=]?[ \t]{0,2}\Z"
)
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_IPV6_GROUPS = rf"{_HEX4}(?::{_HEX4}){{0,6}}"
IPV6 = re.compile(
    rf"(?<![\w:.])(?:{_HEX4}(?::{_HEX4}){{7}}"  # full form, or compressed with "::"
    rf"|(?:{_IPV6_GROUPS})?::(?:(?:{_HEX4}:){{0,5}}{_IPV4_BODY}|{_IPV6_GROUPS})?)"
    r"(?![\w:]|\.\w)"
)
# Every match has two colons at most four hex digits apart, the first at most four characters
# after its start.
IPV6_COLON = re.compile(r":(?=[0-9A-Fa-f]{0,4}:)")

# -- phones: grouped E.164 (+447911123456, +49 30 901820) or US formats ------------------------
# Digits with blanks or dashes, or with an area code in brackets: +44 (0)20 7946 0958.
E164 = re.compile(
    r"\+(?<![\w+]\+)[1-9]"
    r"(?:(?:[ -]?[0-9]){6,14}|[0-9]{0,2}[ -]?\([0-9]{1,4}\)(?:[ -]?[0-9]){4,12})"
    r"(?![\w-]|\.[0-9])"
)
# The US form starts at "(" or the area code; a "+1 " / "1-" before it is added in Python.
US_PHONE = re.compile(
    r"[(0-9](?<![\w+][(0-9])(?:(?<=\()[0-9]{3}\)[ ]?|(?<=[0-9])[0-9]{2}(?P<sep>[ .-]))"
    r"[0-9]{3}(?(sep)(?P=sep)|[ .-])[0-9]{4}(?![\w-]|\.[0-9])"
)
# The last seven digits, four to six characters after the start: (555) 123-4567, 555.123.4567
US_PHONE_NEEDLES: Final = ("000-0000", "000.0000", "000 0000")
US_COUNTRY = re.compile(r"(?<![\w+.-])\+?1[ .-]?\Z")

# -- US street addresses: number, name, suffix, optional unit and "City, ST 12345" ------------
_WORD = r"[A-Z][A-Za-z'-]{0,19}"


def _one_of(words: str) -> str:
    """An alternation of ``words`` ("a|b|...") grouped by first letter, each group in the
    given order: the same matches, but a failing suffix costs a few tests, not one a word
    (10 KB dense with addresses: 770 -> 600 us)."""
    groups: dict[str, list[str]] = {}
    for word in words.split("|"):
        groups.setdefault(word[0], []).append(word[1:])
    return "|".join(
        f"{first}(?:{'|'.join(rest)})" if len(rest) > 1 else first + rest[0]
        for first, rest in groups.items()
    )


_STREET_SUFFIX = _one_of(
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl"
    "|terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|plaza|plz"
)
# More USPS standard suffixes (Publication 28, appendix C1) and their abbreviations. Each is
# a common word too, so it counts only capitalised (Loop, LOOP; not "2 loop iterations"),
# and the detector checks the match (see street_like). Left out as too often the end of a
# capitalised phrase after a count or a year: Run, Walk, Row, Park, Path, Pass, Key, View,
# Center, Station, Landing, Summit, Valley, Village, Harbor, Haven, Bypass, Commons, Hill.
_MORE_STREET_SUFFIXES: Final = (
    "alley|aly|causeway|cswy|cove|creek|crk|crescent|cres|crossing|xing|expressway|expy"
    "|freeway|fwy|glen|gln|grove|grv|heights|hts|hills|hls|hollow|holw|junction|jct|knoll|knl"
    "|loop|manor|mnr|meadows|mdws|mews|pike|point|pt|ridge|rdg|turnpike|tpke"
)
_MORE_SUFFIX = rf"(?P<more>(?=[A-Z])(?i:{_one_of(_MORE_STREET_SUFFIXES)}))"
_UNIT = r"(?:(?i:apt|apartment|suite|ste|unit|room|rm|floor|fl)\.?[ ]{0,2}\#?|\#[ ]?)"


def _address(suffix: str) -> re.Pattern[str]:
    return re.compile(
        r"[0-9](?<![\w.$-][0-9])[0-9]{0,5}(?:-[0-9]{1,4})?[A-Za-z]?[ ]{1,2}"
        r"(?:(?:[NSEW]\.?|North|South|East|West)[ ]{1,2})?"
        rf"(?P<name>(?:{_WORD}|[0-9]{{1,3}}(?:st|nd|rd|th))(?:[ ]{{1,2}}{_WORD}){{0,2}})"
        rf"[ ]{{1,2}}{suffix}\b(?:[ ]{{1,2}}(?:[NS][EW]?|[EW])\b)?"
        rf"(?P<unit>\.?,?[ ]{{1,2}}{_UNIT}[A-Za-z0-9-]{{1,8}}(?![\w-]))?"
        rf"(?P<city>\.?,[ ]{{0,2}}(?:{_WORD}[ ]){{0,2}}{_WORD},?[ ]{{1,2}}[A-Z]{{2}}[ ]{{1,2}}"
        r"[0-9]{5}(?:-[0-9]{4})?(?![0-9-]))?"
    )


ADDRESS = _address(rf"(?:(?i:{_STREET_SUFFIX})|{_MORE_SUFFIX})")
# The same with the first suffixes only: what is left of a match whose further suffix fails.
ADDRESS_FIRST_SUFFIXES = _address(rf"(?i:{_STREET_SUFFIX})")
# The number, then a direction, a capitalised word or an ordinal.
ADDRESS_START = re.compile(r"0(?<![\w.$-]0)(?=0{0,5}(?:-0{1,4})?[A-Za-z]?[ ]{1,2}[A-Z0])")
# A capitalised word or a Markdown heading mark right before the number makes it a numbered
# title (Step 3, Chapter 2, Python 3, "## 3"), not a house number ...
_NUMBERED_BY = re.compile(r"(?<!\S)(?:(?P<word>[A-Z][a-z][A-Za-z]{0,18})|\#{1,6})[ \t]{1,3}\Z")
# ... unless it is one of these (a sentence may start "At 1 Infinite Loop").
_ADDRESS_LEADS: Final = frozenset(
    {"at", "to", "from", "on", "in", "near", "via", "visit", "and", "or"}
)
# Names that make a further suffix a common noun: Access Point, Event Loop, Border Crossing.
_COMMON_COMPOUND_WORDS = (
    "access back blind boiling border bowling break breaking bullet check closed control "
    "dark data decimal end entry event exit feedback fixed floating focal for freezing "
    "game inner key level main match melting mount new open outer pain pedestrian power "
    "price railroad railway render save set starting talking tipping tornado turning "
    "vantage while zebra"
)
_COMMON_COMPOUNDS: Final = frozenset(_COMMON_COMPOUND_WORDS.split())
_A_DIGIT = re.compile("[0-9]")


def street_like(text: str, match: re.Match[str], after: int) -> bool:
    """Whether an :data:`ADDRESS` match that ends in one of the further suffixes is taken;
    ``after``: where the address found before it ends (-1: none).

    With a "City, ST 12345" or a numbered unit (``Apt 4``; "units" reads as unit "s") after
    it, always. Otherwise not after a common noun's first word (``4 Access Point units``),
    nor right after a numbered title's word (``Step 3 Event Loop``, ``Python 3``) other
    than the end of another address. Only a word of letters, capitalised and not in capitals
    (``Step``, not ``HQ``), counts, after blanks: no value of another built-in kind ends in
    one (custom patterns always get another pass), so replacing a value there never changes
    the answer, and a scrub's output stays a fixed point.
    """
    unit = match["unit"]
    if match["city"] is not None or (unit is not None and _A_DIGIT.search(unit) is not None):
        return True
    if match["name"].split()[-1].lower() in _COMMON_COMPOUNDS:
        return False
    start = match.start()
    before = _NUMBERED_BY.search(text, max(0, start - 24), start)
    if before is None:
        return True
    word = before["word"]
    return word is not None and (word.lower() in _ADDRESS_LEADS or before.end("word") == after)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    first = digits[0]
    issuer_ok = first in "2345689" or (first == "1" and len(digits) == 15)  # 15: UATP
    return issuer_ok and _luhn_ok(digits)


def iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def plausible_ipv6(address: str) -> bool:
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
