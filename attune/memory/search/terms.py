"""Words as search sees them: one normalisation for what is indexed and what is asked.

A text becomes *terms*: Unicode words (letters and digits; ``_`` and punctuation separate
them, as SQLite's ``unicode61`` tokenizer does), compatibility-decomposed, stripped of
accents and case-folded, so ``Café``, ``CAFE`` and ``café`` are one term. Stop-words
(``the``, ``and``, ...) are left out of both sides. A term is at most
:data:`MAX_TERM_CHARS` characters (longer words are cut there, on both sides alike).

A query is words and ``"quoted phrases"``; everything else in it is text, never syntax:
FTS operators (``AND``, ``NEAR``, ``*``, ``:``, parentheses) are just more words or
separators here, and the store builds its own MATCH expression from the parsed terms.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from attune.errors import ValidationError

#: Longest term kept; longer words are cut to this many characters.
MAX_TERM_CHARS = 64
#: Longest query accepted, in characters.
MAX_QUERY_CHARS = 1_000
#: Most terms one query may hold (words and phrase words together).
MAX_QUERY_TERMS = 32

_WORD = re.compile(r"[^\W_]+")

#: Common English function words: never indexed, never searched for.
_STOP_WORDS_TEXT = """
    a an and are as at be been but by can could did do does for from had has have he her
    his i if in into is it its me my no nor not of on or our she so than that the their
    them then there these they this those to too us was we were what when where which who
    why will with would you your
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def fold(word: str) -> str:
    """One word as a term: decomposed, without accents, case-folded, cut to length."""
    decomposed = unicodedata.normalize("NFKD", word)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.casefold()[:MAX_TERM_CHARS]


def terms(text: str) -> list[str]:
    """The terms of ``text``, in order, stop-words left out (repeats kept: they count)."""
    if text.isascii():  # nothing to decompose; lower() is casefold() here
        return [
            word[:MAX_TERM_CHARS] for word in _WORD.findall(text.lower()) if word not in STOP_WORDS
        ]
    out: list[str] = []
    for match in _WORD.finditer(text):
        # A word may fold into several (a ligature, an ``ß``): split again after folding.
        for term in _WORD.findall(fold(match.group())):
            if term not in STOP_WORDS:
                out.append(term[:MAX_TERM_CHARS])
    return out


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search query: its phrases, each a tuple of terms (a lone word is a phrase
    of one). A record matches if it holds any of them; holding more ranks higher."""

    phrases: tuple[tuple[str, ...], ...]

    @property
    def term_count(self) -> int:
        return sum(len(phrase) for phrase in self.phrases)


def parse_query(query: object) -> Query:
    """Parse a user's query; a :class:`ValidationError` for anything unusable.

    Words outside quotes are searched each on its own; words inside a pair of double
    quotes as a phrase (in that order, side by side). An unclosed quote runs to the end.
    The error never echoes the query (it may hold personal data).
    """
    if not isinstance(query, str):
        raise ValidationError(f"query must be a string (got {type(query).__name__})")
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationError(f"query is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in query:
        raise ValidationError("query must not contain NUL characters")
    phrases: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for n, part in enumerate(query.split('"')):
        quoted = n % 2 == 1
        words = terms(part)
        groups = [tuple(words)] if quoted else [(word,) for word in words]
        for group in groups:
            if group and group not in seen:
                seen.add(group)
                phrases.append(group)
    parsed = Query(tuple(phrases))
    if not parsed.phrases:
        raise ValidationError(
            "query has no words to search for (stop-words such as 'the' or 'and' are "
            "ignored); give at least one other word"
        )
    if parsed.term_count > MAX_QUERY_TERMS:
        raise ValidationError(f"query has more than {MAX_QUERY_TERMS} words")
    return parsed
