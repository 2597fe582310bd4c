"""What every query generator is given: the options, and each passage with its title cut off."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ragtune.config import SyntheticConfig


@dataclass(frozen=True)
class SyntheticSpec:
    """Options of the `synthetic:` config section; queries_per_passage is shared round-robin by the generators.

    `options` is the whole section, for a generator with settings of its own (llm's endpoint)."""

    generators: tuple[str, ...] = ("ict", "crop", "terms")
    queries_per_passage: int = 4  # as SyntheticConfig
    max_query_words: int = 32
    min_query_words: int = 4
    min_passage_words: int = 16
    ict_remove_probability: float = 0.9
    terms_per_query: tuple[int, int] = (3, 6)
    seed: int = 42
    options: SyntheticConfig | None = None
    cache_dir: Path | None = None

    def share(self, generator: str) -> int:
        """Queries per passage of one generator: the total round-robin, 10 over 3 generators gives 4, 3, 3."""
        i, n = self.generators.index(generator), len(self.generators)
        return self.queries_per_passage // n + (i < self.queries_per_passage % n)


class Passage(NamedTuple):
    id: str
    title: str
    document: str  # the passage as it is indexed
    prefix: str  # a leading copy of the title, cut off the body (text.split_title)
    body: str  # what queries are made from


class Generator:
    """A query generator: `candidates` proposes (query, positive, sentence removed) for one passage;
    synthetic.generate_queries keeps those that pass its filters (min_query_words only where `span`)."""

    span = True

    @staticmethod
    def check(spec: SyntheticSpec) -> None:
        """Refuse settings this generator cannot work with, in one line, before any slow work."""

    def __init__(self, passages: list[Passage], spec: SyntheticSpec):
        """Corpus-wide work, once (terms' idf, llm's answers)."""
        self.spec = spec

    def candidates(self, passage: Passage, rng: random.Random, count: int) -> Iterator[tuple[str, str, bool]]:
        raise NotImplementedError
