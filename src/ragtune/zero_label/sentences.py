"""Sentences of a passage as users have it, as character spans; word windows where there are none.

A sentence ends at . ! or ? (also spaced off, as in "the wing . the results") followed by whitespace
and any next word, lowercase too; not after an abbreviation ("e.g.", "et al.", "Fig. 2") or a single
letter (initials, "E. coli"), and never inside a number ("3.5"). A blank line ends a paragraph and
a bullet line ("- ", "* ", "• ", "1. ") starts a sentence of its own; any other line break is a hard
wrap (OCR, PDF extraction) and reads as a space. Text without sentences (speech transcripts, stripped
punctuation) is cut into word windows instead, so it still yields ict queries.
"""

from __future__ import annotations

import math
import re

WINDOW_WORDS = 20  # the longest fallback window; windows are even, so at least half of this
_SENTENCE_END = re.compile(r"([.!?]+[\"'\u2019\u201d)\]]*)\s+(?=\S)")
_BREAK = re.compile(r"\n[ \t]*\n\s*|^[ \t]*(?:[-*\u2022\u2023\u25e6\u25aa]|\d{1,2}[.)])[ \t]+(?=\S)", re.M)
_WORD = re.compile(r"\S+")
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]|[a-z]", re.I)  # e.g, i.e, U.S; a single letter is an initial
ABBREVIATIONS = frozenset(
    "al approx ca cf dr eq eqs fig figs inc jr mr mrs ms no nos pp prof ref refs sp spp ssp sr st var vol vs".split()
)


def _after_abbreviation(body: str, end: re.Match) -> bool:
    """Whether the full stop of `end` closes an abbreviation rather than a sentence."""
    if end.group(1).rstrip("\"'\u2019\u201d)]") != ".":
        return False
    before = body[max(0, end.start() - 24) : end.start()].split()
    word = before[-1].lstrip("([\"'\u2018\u201c") if before else ""
    return word.lower() in ABBREVIATIONS or _DOTTED.fullmatch(word) is not None


def _trim(body: str, start: int, end: int) -> tuple[int, int]:
    text = body[start:end]
    return start + len(text) - len(text.lstrip()), start + len(text.rstrip())


def sentence_spans(body: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (and bullet items) of `body`, whitespace trimmed."""
    cuts = [(m.end(1), m.end()) for m in _SENTENCE_END.finditer(body) if not _after_abbreviation(body, m)]
    cuts += [(m.start(), m.end()) for m in _BREAK.finditer(body)]  # the bullet marker belongs to neither side
    spans, start = [], 0
    for end, next_start in sorted(cuts) + [(len(body), len(body))]:
        if end > start:
            spans.append(_trim(body, start, end))
        start = max(start, next_start)
    return [(s, e) for s, e in spans if any(c.isalnum() for c in body[s:e])]


def word_windows(body: str, most: int) -> list[tuple[int, int]]:
    """Consecutive windows of even length (at most `most` words, at least two windows) as character spans."""
    words = [m.span() for m in _WORD.finditer(body)]
    count = max(2, math.ceil(len(words) / most))
    bounds = [round(i * len(words) / count) for i in range(count + 1)]
    return [(words[a][0], words[b - 1][1]) for a, b in zip(bounds, bounds[1:]) if b > a]


def query_spans(body: str, least: int, most: int) -> list[tuple[int, int]]:
    """The sentences, when two or more have `least` to `most` words; else word windows of
    max(least, min(WINDOW_WORDS, most)) words at most (none when the body is shorter than two of `least`)."""
    spans = sentence_spans(body)
    if sum(least <= len(body[s:e].split()) <= most for s, e in spans) >= 2:
        return spans
    if len(body.split()) < 2 * least:
        return []
    return word_windows(body, max(least, min(WINDOW_WORDS, most)))
