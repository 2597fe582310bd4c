"""The guard, rule by rule, on synthetic unit vectors whose ranking is known by construction (milliseconds)."""

import numpy as np
import pytest

from ragtune.negatives.mining import MiningParams, mine


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def corpus_at(scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A query e0 and one passage per score, each with exactly that cosine to the query."""
    scores = np.asarray(scores, dtype=np.float32)
    corpus = np.zeros((len(scores), len(scores) + 1), dtype=np.float32)
    corpus[:, 0] = scores
    corpus[np.arange(len(scores)), np.arange(1, len(scores) + 1)] = np.sqrt(1 - scores**2)
    query = np.zeros((1, len(scores) + 1), dtype=np.float32)
    query[0, 0] = 1
    return query, corpus


def params(**changes) -> MiningParams:
    values = dict(range_min=0, range_max=10, min_score=0.0, relative_margin=1.0, num_negatives=3)
    return MiningParams(**{**values, **changes})


def test_sibling_of_a_positive_is_never_a_negative_even_when_unlabelled():
    """Passage 1 shares passage 0's source but is not labelled: it is a false negative, not a negative."""
    query, corpus = corpus_at([0.9, 0.85, 0.8, 0.7, 0.6])
    sources = np.array([0, 0, 1, 2, 3])
    negatives, audit = mine(query, corpus, [(0, 0)], {0: {0}}, sources, params(num_negatives=2))
    assert negatives == [[2, 3]]
    assert audit.dropped_labelled_positive == 1 and audit.dropped_same_source == 1


def test_each_rule_drops_and_counts_under_the_first_rule_broken():
    # 0 the positive (0.8), 1 another labelled positive, 2 a sibling, 3 above the margin (0.79 > 0.95 x 0.8),
    # 4 and 5 kept, 6 below the floor
    query, corpus = corpus_at([0.8, 0.9, 0.85, 0.79, 0.7, 0.6, 0.1])
    sources = np.array([0, 1, 1, 2, 3, 4, 5])
    negatives, audit = mine(query, corpus, [(0, 0)], {0: {0, 1}}, sources, params(min_score=0.3, relative_margin=0.95))
    assert negatives == [[4, 5]]  # hardest first
    assert (audit.dropped_labelled_positive, audit.dropped_same_source) == (2, 1)
    assert (audit.dropped_above_relative_margin, audit.dropped_below_min_score) == (1, 1)
    assert audit.candidates_seen == 7 == 2 + 1 + 1 + 1 + audit.kept and audit.selected == 2


def test_window_bounds_the_candidates():
    query, corpus = corpus_at([0.99, 0.9, 0.8, 0.7, 0.6, 0.5])
    negatives, audit = mine(query, corpus, [(0, 0)], {0: {0}}, np.arange(6), params(range_min=2, range_max=4))
    assert negatives == [[2, 3]] and audit.candidates_seen == 2


@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_negatives_or_as_many_as_survive(k):
    query, corpus = corpus_at([0.95, 0.6, 0.5, 0.4])
    negatives, audit = mine(query, corpus, [(0, 0)], {0: {0}}, np.arange(4), params(num_negatives=k))
    assert negatives == [[1, 2, 3][:k]]
    assert audit.pairs_without_negative == 0 and audit.selected == min(k, 3)


def test_pairs_of_one_query_share_candidates_but_each_positive_sets_its_margin():
    query, corpus = corpus_at([0.9, 0.5, 0.7, 0.45])
    negatives, _ = mine(query, corpus, [(0, 0), (0, 1)], {0: {0, 1}}, np.arange(4), params(relative_margin=0.95))
    assert negatives == [[2, 3], [3]]  # 0.7 > 0.95 x 0.5 is too close to the weaker positive


def test_random_corpus_audit_adds_up():
    rng = np.random.default_rng(0)
    corpus, queries = unit(rng.normal(size=(300, 16))), unit(rng.normal(size=(20, 16)))
    sources = rng.integers(0, 100, size=300)
    pairs = [(q, int(rng.integers(300))) for q in range(20)]
    positives = {q: {p for qq, p in pairs if qq == q} for q in range(20)}
    negatives, audit = mine(
        queries, corpus, pairs, positives, sources, params(range_max=40, min_score=0.1, relative_margin=0.9)
    )
    dropped = (
        audit.dropped_labelled_positive
        + audit.dropped_same_source
        + audit.dropped_below_min_score
        + audit.dropped_above_relative_margin
    )
    assert audit.candidates_seen == 20 * 40 == dropped + audit.kept
    for (q, _), chosen in zip(pairs, negatives):
        banned = {sources[p] for p in positives[q]}
        assert not set(chosen) & positives[q] and not {sources[c] for c in chosen} & banned


@pytest.mark.parametrize(
    ("scores", "sources", "labelled", "changes", "rule"),
    [
        ([0.9, 0.8], [0, 1], {0, 1}, {}, "labelled_positive"),  # every candidate is a labelled positive
        ([0.9, 0.8, 0.7], [0, 0, 0], {0}, {}, "same_source"),  # the rest are siblings
        ([0.9, 0.2, 0.1], [0, 1, 2], {0}, {"min_score": 0.5}, "below_min_score"),
        ([0.8, 0.79, 0.5], [0, 1, 2], {0}, {"min_score": 0.6, "relative_margin": 0.95}, "above_relative_margin"),
        ([0.9, 0.8], [0, 1], {0}, {"range_min": 5}, "empty_window"),
    ],
)
def test_a_pair_without_a_negative_is_counted_under_the_rule_that_removed_its_last_candidate(
    scores, sources, labelled, changes, rule
):
    """The audit says why a pair trains without a hard negative (#31: half the pairs of a real corpus had none)."""
    query, corpus = corpus_at(scores)
    negatives, audit = mine(query, corpus, [(0, 0)], {0: labelled}, np.array(sources), params(**changes))
    assert negatives == [[]] and audit.pairs_without_negative == 1
    assert audit.without_negative_by == {rule: 1}
