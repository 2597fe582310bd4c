"""`crop`: independent cropping (Izacard et al. 2022, Contriever). A random span is the query and
another random span of 10-50% of the passage is the positive."""

from __future__ import annotations

import random
from collections.abc import Iterator

from ragtune.zero_label.generators.spec import Generator, Passage

CROP_POSITIVE_FRACTION = (0.1, 0.5)  # Contriever's crop ratio range
ATTEMPTS_PER_QUERY = 4  # retries when a draw repeats an earlier query


class Crop(Generator):
    def candidates(self, passage: Passage, rng: random.Random, count: int) -> Iterator[tuple[str, str, bool]]:
        spec, words = self.spec, passage.body.split()
        n = len(words)
        longest_query = min(spec.max_query_words, n // 2)
        if longest_query < spec.min_query_words:
            return
        low, high = (max(spec.min_query_words, round(f * n)) for f in CROP_POSITIVE_FRACTION)
        for _ in range(count * ATTEMPTS_PER_QUERY):
            q_len = rng.randint(spec.min_query_words, longest_query)
            p_len = rng.randint(low, max(low, high))
            q_start, p_start = rng.randint(0, n - q_len), rng.randint(0, n - p_len)
            yield " ".join(words[q_start : q_start + q_len]), " ".join(words[p_start : p_start + p_len]), False
