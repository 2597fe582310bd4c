"""False-negative-aware hard-negative mining over precomputed embeddings.

sentence-transformers' `mine_hard_negatives` excludes a query's own positives and applies margins,
but it cannot keep sibling passages of the same source out, cannot report why candidates were
dropped, and re-encodes on every call. This module works on embeddings the caller already has
(shared with evaluation and re-mining) and applies the guard rules in a fixed order, counting each
rejected candidate under the first rule it breaks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ragtune.retrieval.embeddings import top_k


@dataclass(frozen=True)
class MiningParams:
    """The guard and window shared by `prepare` and re-mining during training."""

    range_min: int
    range_max: int
    min_score: float
    relative_margin: float
    num_negatives: int

    @classmethod
    def of(cls, mining, num_negatives: int) -> MiningParams:
        """The guard of a `mining:` config section, mining `num_negatives` per pair."""
        return cls(mining.range_min, mining.range_max, mining.min_score, mining.relative_margin, num_negatives)


@dataclass
class MiningAudit:
    pairs: int = 0
    candidates_seen: int = 0
    dropped_labelled_positive: int = 0
    dropped_same_source: int = 0
    dropped_below_min_score: int = 0
    dropped_above_relative_margin: int = 0
    dropped_teacher_false_negative: int = 0  # zero-label input: the teacher scores it at or above the positive
    kept: int = 0
    selected: int = 0
    pairs_without_negative: int = 0
    # pairs left without a negative, by the rule that removed their last candidate (rules apply in order)
    without_negative_by: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def count_emptied(self, rule: str, pairs: int = 1) -> None:
        self.without_negative_by[rule] = self.without_negative_by.get(rule, 0) + pairs


def mine(
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    pairs: list[tuple[int, int]],
    positives: dict[int, set[int]],
    sources: np.ndarray,
    params: MiningParams,
) -> tuple[list[list[int]], MiningAudit]:
    """Hardest admissible negatives for each (query row, positive row) pair, best first.

    Candidates are the corpus ranks [range_min, range_max) for the pair's query. A candidate is
    dropped if it is a labelled positive of the query, shares a source with any of them, scores
    below `min_score`, or scores above `relative_margin` x the positive's score (TopK-PercPos).
    `sources` holds an integer source code per corpus row.
    """
    audit = MiningAudit(pairs=len(pairs))
    negatives: list[list[int]] = [[] for _ in pairs]
    if not pairs or params.num_negatives == 0:
        audit.pairs_without_negative = len(pairs)
        return negatives, audit
    query_rows = sorted({q for q, _ in pairs})
    row_of = {q: i for i, q in enumerate(query_rows)}
    scores, ranked = top_k(query_embeddings[query_rows], corpus_embeddings, params.range_max)
    window_scores, window = scores[:, params.range_min :], ranked[:, params.range_min :]

    for pair_index, (query, positive) in enumerate(pairs):
        row = row_of[query]
        candidates, candidate_scores = window[row], window_scores[row]
        labelled = np.fromiter(positives[query], dtype=np.int64)
        is_positive = np.isin(candidates, labelled)
        same_source = ~is_positive & np.isin(sources[candidates], sources[labelled])
        remaining = ~is_positive & ~same_source
        below = remaining & (candidate_scores < params.min_score)
        remaining &= ~below
        positive_score = float(query_embeddings[query] @ corpus_embeddings[positive])
        above = remaining & (candidate_scores > params.relative_margin * positive_score)
        remaining &= ~above

        audit.candidates_seen += len(candidates)
        audit.dropped_labelled_positive += int(is_positive.sum())
        audit.dropped_same_source += int(same_source.sum())
        audit.dropped_below_min_score += int(below.sum())
        audit.dropped_above_relative_margin += int(above.sum())
        audit.kept += int(remaining.sum())
        chosen = candidates[remaining][: params.num_negatives].tolist()
        negatives[pair_index] = chosen
        audit.selected += len(chosen)
        audit.pairs_without_negative += not chosen
        if not chosen:
            audit.count_emptied(emptied_by(len(candidates), is_positive, same_source, below, above))
    return negatives, audit


RULES = ("labelled_positive", "same_source", "below_min_score", "above_relative_margin")


def emptied_by(window: int, *dropped: np.ndarray) -> str:
    """The rule that removed a pair's last candidate: the first at which none is left (`dropped` in RULES order)."""
    if window == 0:
        return "empty_window"  # range_min at or past the corpus size: no candidate to begin with
    removed = np.cumsum([int(mask.sum()) for mask in dropped])
    return RULES[int(np.argmax(removed >= window))]


def draw_random_negative(
    positives: set[int], sources: np.ndarray, rng: np.random.Generator, max_tries: int = 100
) -> int | None:
    """A uniformly drawn passage that is neither a positive nor from a positive's source."""
    banned_sources = set(sources[list(positives)].tolist())
    for _ in range(max_tries):
        candidate = int(rng.integers(len(sources)))
        if candidate not in positives and sources[candidate] not in banned_sources:
            return candidate
    return None


def random_negatives(
    pairs: list[tuple[int, int]],
    positives: dict[int, set[int]],
    sources: np.ndarray,
    ratio: float,
    rng: np.random.Generator,
) -> list[tuple[int, int]]:
    """round(ratio x pairs) (pair index, corpus row) draws, never a positive or same-source passage."""
    count = round(ratio * len(pairs))
    if count == 0:
        return []
    chosen_pairs = rng.choice(len(pairs), size=count, replace=count > len(pairs))
    draws = []
    for pair_index in sorted(chosen_pairs.tolist()):
        negative = draw_random_negative(positives[pairs[pair_index][0]], sources, rng)
        if negative is not None:
            draws.append((pair_index, negative))
    return draws
