"""Words as the query generators and their filters see them: content words, a normal form, the title cut."""

from __future__ import annotations

import re

TOKEN = re.compile(r"\b\w\w+\b")  # bm25s' default token pattern
_SEPARATOR = re.compile(r"[\s.:;,|\-\u2013\u2014]*")
STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below between both "
    "but by can could did do does doing down during each few for from further had has have having he her here hers "
    "herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on "
    "once only or other our ours ourselves out over own same she should so some such than that the their theirs "
    "them themselves then there these they this those through to too under until up very was we were what when "
    "where which while who whom why will with would you your yours yourself yourselves".split()
)


def normalise(text: str) -> str:
    """The form compared for duplicates: lowercase words, punctuation as single spaces."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def content_words(text: str) -> set[str]:
    return {t for t in TOKEN.findall(text.lower()) if t not in STOPWORDS}


def split_title(document: str, title: str) -> tuple[str, str]:
    """(prefix, body): a leading copy of the title (and the punctuation after it) goes to the prefix."""
    n = len(title.split())
    if n == 0:
        return "", document
    match = re.match(r"\s*" + r"\S+\s+" * (n - 1) + r"\S+", document)
    if match is None or normalise(match.group()) != normalise(title):
        return "", document
    cut = match.end()
    cut += _SEPARATOR.match(document, cut).end() - cut
    return document[:cut], document[cut:]


def cap_words(text: str, max_words: int) -> str:
    return " ".join(text.split()[:max_words])
