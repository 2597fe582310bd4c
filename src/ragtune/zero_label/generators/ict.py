"""`ict`: the Inverse Cloze Task (Lee et al. 2019).

A sentence (or a short run of them, when one is too short) is the query; with `ict_remove_probability`
it is cut out of the positive, so the model learns what a passage is about rather than string overlap.
sentences.py finds the sentences in text as users have it (lowercase, spaced punctuation, hard wraps,
bullets) and cuts text without them (transcripts) into word windows instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from ragtune.zero_label.generators.spec import Generator, Passage
from ragtune.zero_label.sentences import query_spans
from ragtune.zero_label.text import cap_words


class Ict(Generator):
    def candidates(self, passage: Passage, rng: random.Random, count: int) -> Iterator[tuple[str, str, bool]]:
        """(query, positive, sentence removed) from distinct sentences, extended by the next ones when too short."""
        spec, body = self.spec, passage.body
        spans = query_spans(body, spec.min_query_words, spec.max_query_words)
        if len(spans) < 2:
            return
        order = list(range(len(spans)))
        rng.shuffle(order)
        for first in order[:count]:
            last = first
            while len(body[spans[first][0] : spans[last][1]].split()) < spec.min_query_words and last + 1 < len(spans):
                last += 1
            start, end = spans[first][0], spans[last][1]
            query = cap_words(body[start:end], spec.max_query_words)
            if rng.random() < spec.ict_remove_probability:
                rest = (body[:start] + " " + body[end:]).split()
                if rest:
                    yield query, " ".join((passage.prefix + " " + " ".join(rest)).split()), True
                    continue
            yield query, passage.document, False
