"""`terms`: a few salient words (TF-IDF against the corpus) in the order the passage uses them, like a
keyword search."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator

from ragtune.zero_label.generators.crop import ATTEMPTS_PER_QUERY
from ragtune.zero_label.generators.spec import Generator, Passage, SyntheticSpec
from ragtune.zero_label.text import STOPWORDS, TOKEN, content_words

TERMS_POOL = 10  # a terms query samples from the passage's most salient words


def inverse_document_frequency(bodies: list[str]) -> dict[str, float]:
    """ln(1 + N / df) over passage bodies, for content words."""
    df: Counter[str] = Counter()
    for body in bodies:
        df.update(content_words(body))
    return {t: math.log(1 + len(bodies) / d) for t, d in df.items()}


class Terms(Generator):
    span = False  # its queries are terms_per_query words long

    def __init__(self, passages: list[Passage], spec: SyntheticSpec):
        super().__init__(passages, spec)
        self.idf = inverse_document_frequency([p.body for p in passages])

    def candidates(self, passage: Passage, rng: random.Random, count: int) -> Iterator[tuple[str, str, bool]]:
        """Weighted draws from the passage's most salient words (tf-idf), written in the passage's order."""
        first_seen: dict[str, tuple[int, str]] = {}
        tf: Counter[str] = Counter()
        for match in TOKEN.finditer(passage.body):
            token = match.group().lower()
            if token in STOPWORDS or token.isdigit():
                continue
            tf[token] += 1
            first_seen.setdefault(token, (match.start(), match.group()))
        salience = {t: (1 + math.log(c)) * self.idf.get(t, 0.0) for t, c in tf.items()}
        pool = sorted(salience, key=lambda t: (-salience[t], first_seen[t][0]))[:TERMS_POOL]
        low, high = self.spec.terms_per_query
        if len(pool) < low:
            return
        for _ in range(count * ATTEMPTS_PER_QUERY):
            k = rng.randint(low, min(high, len(pool)))
            remaining, weights, chosen = list(pool), [salience[t] + 1e-9 for t in pool], []
            for _ in range(k):
                i = rng.choices(range(len(remaining)), weights)[0]
                chosen.append(remaining.pop(i))
                weights.pop(i)
            chosen.sort(key=lambda t: first_seen[t][0])
            yield " ".join(first_seen[t][1] for t in chosen), passage.document, False
