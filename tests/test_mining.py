import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from ragtune.io.data import load_dataset
from ragtune.negatives.mining import MiningParams, mine, random_negatives
from ragtune.retrieval.embeddings import encode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def passages(model):
    """Chunked SciFact passages: sibling chunks of one paper are the false negatives to avoid."""
    dataset = load_dataset(REPO / "data" / "scifact-passages.jsonl.gz")
    corpus = dataset.corpus.iloc[:300].reset_index(drop=True)
    sources = pd.factorize(corpus["source_id"])[0]
    by_source = {s: set(np.flatnonzero(sources == s).tolist()) for s in set(sources.tolist())}
    titles = corpus.groupby(sources)["title"].first()
    query_rows = sorted(by_source)
    queries = encode(model, [titles[s] for s in query_rows], 64, "query")
    corpus_emb = encode(model, corpus["document"].tolist(), 64)
    pairs = [(q, p) for q, s in enumerate(query_rows) for p in sorted(by_source[s])]
    positives = {q: by_source[s] for q, s in enumerate(query_rows)}
    return queries, corpus_emb, pairs, positives, sources


def test_guard_never_returns_a_positive_or_a_sibling(passages):
    queries, corpus_emb, pairs, positives, sources = passages
    negatives, audit = mine(queries, corpus_emb, pairs, positives, sources, MiningParams(0, 30, 0.0, 0.95, 3))
    assert audit.selected > 0
    for (query, _), chosen in zip(pairs, negatives):
        own_sources = {sources[p] for p in positives[query]}
        assert not set(chosen) & positives[query]
        assert not {sources[c] for c in chosen} & own_sources
    # With the window starting at rank 0, siblings of chunked passages are the first thing the guard meets.
    assert audit.dropped_same_source > 0 or audit.dropped_labelled_positive > 0


def test_audit_accounts_for_every_candidate_and_rules_bite(passages):
    queries, corpus_emb, pairs, positives, sources = passages
    negatives, audit = mine(queries, corpus_emb, pairs, positives, sources, MiningParams(0, 30, 0.3, 0.9, 2))
    dropped = (
        audit.dropped_labelled_positive
        + audit.dropped_same_source
        + audit.dropped_below_min_score
        + audit.dropped_above_relative_margin
    )
    assert audit.candidates_seen == len(pairs) * 30 == dropped + audit.kept
    assert audit.selected == sum(map(len, negatives)) <= 2 * len(pairs)
    assert audit.pairs_without_negative == sum(not n for n in negatives)
    assert audit.dropped_labelled_positive > 0 and audit.dropped_below_min_score > 0
    assert audit.dropped_above_relative_margin > 0


def test_selected_negatives_respect_floor_margin_and_window(passages):
    queries, corpus_emb, pairs, positives, sources = passages
    negatives, _ = mine(queries, corpus_emb, pairs, positives, sources, MiningParams(5, 20, 0.2, 0.95, 3))
    for (query, positive), chosen in zip(pairs, negatives):
        scores = corpus_emb @ queries[query]
        ranks = np.argsort(-scores)
        positive_score = scores[positive]
        for c in chosen:
            assert 0.2 <= scores[c] <= 0.95 * positive_score + 1e-6
            assert 5 <= int(np.flatnonzero(ranks == c)[0]) < 20 + 1  # +1: float ties at the window edge
        assert list(chosen) == sorted(chosen, key=lambda c: -scores[c])  # hardest first


def test_no_negatives_requested_is_a_clean_no_op(passages):
    queries, corpus_emb, pairs, positives, sources = passages
    negatives, audit = mine(queries, corpus_emb, pairs, positives, sources, MiningParams(0, 10, 0.0, 1.0, 0))
    assert all(n == [] for n in negatives) and audit.pairs_without_negative == len(pairs)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0, 2.0])
def test_random_negative_ratio_holds_and_is_guarded(passages, ratio):
    _, _, pairs, positives, sources = passages
    draws = random_negatives(pairs, positives, sources, ratio, np.random.default_rng(0))
    assert len(draws) == round(ratio * len(pairs))
    for pair_index, doc in draws:
        query = pairs[pair_index][0]
        assert doc not in positives[query]
        assert sources[doc] not in {sources[p] for p in positives[query]}
