"""Synthetic training queries from passages alone, with no model download.

The generators (generators/: ict, crop, terms, llm; chosen by name) propose (query, positive) pairs;
this module keeps those that pass the same filters for every generator and audits what it dropped.

Queries come from the passage body: a title the document starts with is cut off first, and a
query whose content words all appear in the title is dropped, so title-prefixed wiki chunks never
yield title -> passage pairs (string overlap that teaches nothing about real questions).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field

import pandas as pd

from ragtune.zero_label.generators import GENERATORS, Passage, SyntheticSpec, check_spec
from ragtune.zero_label.text import content_words, normalise, split_title

QUERY_COLUMNS = ["query_id", "query", "passage_id", "generator", "positive", "query_removed"]


@dataclass
class SyntheticAudit:
    """What was made and what was dropped, by reason; `kept` counts queries per generator."""

    passages: int = 0
    passages_used: int = 0
    candidates: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    ict_removed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _take(candidates, span: bool, count: int, spec: SyntheticSpec, title_words: set, seen: set, dropped) -> list:
    """Up to `count` candidates that pass the filters, as (query, positive, removed, key); counts the rest.

    Returns the kept ones and how many were proposed."""
    taken, proposed = [], 0
    for query, positive, removed in candidates:
        proposed += 1
        key = normalise(query)
        words = content_words(query)
        if span and len(query.split()) < spec.min_query_words:
            dropped["query_too_short"] += 1
        elif not words or words <= title_words:
            dropped["only_title_words"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            taken.append((query, positive, removed, key))
            if len(taken) == count:
                break
    return taken, proposed


def generate_queries(corpus: pd.DataFrame, spec: SyntheticSpec) -> tuple[pd.DataFrame, SyntheticAudit]:
    """Queries (QUERY_COLUMNS) for the corpus frame of `ragtune.data`, deterministic for `spec.seed`.

    Each passage draws from its own random stream (seed, passage id), so a passage's queries do
    not change when other passages are added. A query made twice for one passage is kept once; a
    query made for several passages is dropped everywhere, since it would point at all of them.
    """
    check_spec(spec)
    audit = SyntheticAudit(passages=len(corpus))
    audit.candidates = dict.fromkeys(spec.generators, 0)
    dropped: Counter[str] = Counter()
    passages = [
        Passage(pid, title, document, *split_title(document, title))
        for pid, title, document in zip(corpus["id"], corpus["title"], corpus["document"])
    ]
    generators = {name: GENERATORS[name](passages, spec) for name in spec.generators if spec.share(name)}
    rows = []
    for passage in passages:
        if len(passage.body.split()) < spec.min_passage_words:
            dropped["passage_too_short"] += 1
            continue
        title_words, seen, made = content_words(passage.title), set(), 0
        for name, generator in generators.items():
            rng = random.Random(f"{spec.seed}\x1f{name}\x1f{passage.id}")
            candidates = generator.candidates(passage, rng, spec.share(name))
            taken, proposed = _take(candidates, generator.span, spec.share(name), spec, title_words, seen, dropped)
            audit.candidates[name] += proposed
            for query, positive, removed, key in taken:
                rows.append((f"{name}:{passage.id}:{made}", query, passage.id, name, positive, removed, key))
                made += 1
            if not taken:
                dropped[f"{name}_passage_yielded_none"] += 1
        audit.passages_used += made > 0
    frame = pd.DataFrame(rows, columns=[*QUERY_COLUMNS, "key"])
    ambiguous = frame.groupby("key")["passage_id"].transform("nunique") > 1
    if ambiguous.any():
        dropped["duplicate_across_passages"] += int(ambiguous.sum())
    frame = frame[~ambiguous].drop(columns="key").reset_index(drop=True)
    audit.kept = {name: int((frame["generator"] == name).sum()) for name in spec.generators}
    audit.ict_removed = int(frame["query_removed"].sum())
    audit.dropped = dict(sorted(dropped.items()))
    return frame, audit
