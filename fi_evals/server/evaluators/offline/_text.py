"""Plain-text helpers of the offline evaluators: sentences, content words, numbers, negation.

Pure Python and cheap: they run on every item before (and next to) the embedding model.
"""

from __future__ import annotations

import re

__all__ = ["content_words", "has_negation", "numbers", "sentences", "windows"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_CLAUSE = re.compile(r"\s*[,;:()]\s*|\s+(?:and|but|or|so|while|because)\s+")
_NEGATIONS = frozenset("not no never cannot without none nothing neither nor".split())
_NUMBER_WORDS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "fifteen": "15", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "ninety": "90",
    "hundred": "100", "thousand": "1000", "twice": "2",
}
# "one" is left out on purpose: "no one", "one of them" are rarely quantities.
_STOPWORDS = frozenset("""
a an the and or but if then so of to in on at by for with from into onto about as is are was
were be been being am do does did done have has had having it its it's this that these those
there here their they them you your yours we our ours i me my he him his she her hers what
which who whom whose when where why how can could will would shall should may might must just
also very too than up down out over under again further once all any both each few more most
other some such only own same s t don now yes ok okay please thanks thank hi hello let lets
get got go goes going make makes made take takes one
""".split())


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ? before a capital or digit, and at newlines)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s and s.strip()]


def windows(text: str, size: int) -> list[str]:
    """Spans of ``text`` to match a short phrase against: its sentences, its clauses, and word
    windows of ``size`` words (half-overlapping), without duplicates."""
    spans: dict[str, None] = {}  # spans without end punctuation: "X." and "X" embed alike
    for sentence in sentences(text) or [text]:
        spans[sentence.strip(" .!?")] = None
        for clause in _CLAUSE.split(sentence):
            if clause.strip():
                spans[clause.strip(" .!?")] = None
        words = sentence.split()
        step = max(1, size // 2)
        for start in range(0, max(1, len(words) - size + step), step):
            spans[" ".join(words[start:start + size]).strip(" .,;:!?")] = None
    return [s for s in spans if s]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:6]


def content_words(text: str) -> set[str]:
    """Stemmed, lower-cased words of ``text`` without stop words (numbers kept)."""
    words = _WORD.findall(text.lower().replace("'", ""))
    return {_stem(w) if not w[0].isdigit() else w for w in words if w not in _STOPWORDS}


def numbers(text: str, *, spelled: bool = True) -> set[str]:
    """The numbers of ``text``, normalised ("1,000" -> "1000"; "seven" -> "7" when spelled)."""
    found = {d.replace(",", "").rstrip(".") for d in _DIGITS.findall(text)}
    found = {f.removesuffix(".0") for f in found}
    if spelled:
        found |= {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower())
                  if w in _NUMBER_WORDS}
    return found


def has_negation(text: str) -> bool:
    """Whether ``text`` says not / no / never / cannot / n't ..."""
    lowered = text.lower()
    return "n't" in lowered or any(w in _NEGATIONS for w in re.findall(r"[a-z]+", lowered))
