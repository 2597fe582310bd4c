"""The one fusion: the cosine scale kept, exact rankings, RRF as a reference, a weight chosen on evidence."""

from __future__ import annotations

import numpy as np
import pytest
from worlds import lexical_world, unit

from ragtune.retrieval.bm25 import Bm25
from ragtune.retrieval.fusion import (
    SYNTHETIC_WEIGHT_CAP,
    FusionChoice,
    bm25_rankings,
    choose_weight,
    fuse,
    hybrid_rankings,
    rrf,
    weight_evidence,
)
from ragtune.retrieval.metrics import DECIDING_QUERIES, dense_rankings


def test_fuse_keeps_the_cosine_scale():
    cosine, bm25 = np.array([0.8, 0.4, 0.1]), np.array([12.0, 3.0, 0.0])
    np.testing.assert_array_equal(fuse(cosine, bm25, 0.0, 0.8, 12.0), cosine)
    np.testing.assert_allclose(fuse(cosine, bm25, 1.0, 0.8, 12.0), [0.8, 0.2, 0.0])
    np.testing.assert_allclose(fuse(cosine, bm25, 0.5, 0.8, 12.0), [0.8, 0.3, 0.05])
    np.testing.assert_array_equal(fuse(cosine, np.zeros(3), 1.0, 0.8, 0.0), np.zeros(3))


def test_hybrid_rankings_are_dense_at_zero_and_bm25_at_one():
    n = 40
    queries, documents = lexical_world(n, 0)
    rng = np.random.default_rng(0)
    corpus, query_emb = unit(rng.normal(size=(n, 16))), unit(rng.normal(size=(n, 16)))
    ids = [f"d{i}" for i in range(n)]
    qids = [f"q{i}" for i in range(n)]
    bm25 = Bm25(documents)
    rankings = hybrid_rankings(queries, query_emb, corpus, bm25, (0.0, 0.5, 1.0), qids, ids, k=10)
    dense = dense_rankings(query_emb, corpus, qids, ids)
    for qid in qids:
        assert [d for d, _ in rankings[0.0][qid]] == [d for d, _ in dense[qid][:10]]
        lexical = bm25_rankings(bm25, queries, qids, ids)[qid]
        assert [d for d, _ in rankings[1.0][qid][: len(lexical)]] == [d for d, _ in lexical][:10]
    for i, qid in enumerate(qids):  # w = 0.5: the corpus-wide fusion of both parts, in score order
        cosine, words = corpus @ query_emb[i], bm25.corpus_scores(queries[i])
        expected = fuse(cosine, words, 0.5, cosine.max(), words.max())
        top = np.argsort(-expected, kind="stable")[:10]
        assert [d for d, _ in rankings[0.5][qid]] == [ids[r] for r in top]
        np.testing.assert_allclose([s for _, s in rankings[0.5][qid]], expected[top], rtol=1e-6)


def test_rrf_sums_reciprocal_ranks():
    first = {"q": [("a", 0.9), ("b", 0.5)]}
    second = {"q": [("b", 7.0), ("c", 3.0)]}
    fused = dict(rrf(first, second, k=60)["q"])
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["a"] == pytest.approx(1 / 61) and fused["c"] == pytest.approx(1 / 62)
    assert [d for d, _ in rrf(first, second)["q"]] == ["b", "a", "c"]


def rows(dense: float, best_weight: float, best: float) -> list[dict]:
    return [
        {"bm25_weight": 0.0, "ndcg@10": dense},
        {"bm25_weight": best_weight, "ndcg@10": best},
        {"bm25_weight": 1.0, "ndcg@10": 0.1},
    ]


def test_hybrid_is_chosen_only_when_it_beats_dense_on_enough_queries():
    chosen = choose_weight(rows(0.60, 0.3, 0.65), 100, "real", "test")
    assert (chosen.mode, chosen.bm25_weight, chosen.name) == ("hybrid", 0.3, "dense+bm25 (w=0.3)")
    assert "+0.0500" in chosen.why
    assert choose_weight(rows(0.60, 0.3, 0.60), 100, "real", "test").mode == "dense"  # a tie is no gain
    assert choose_weight(rows(0.60, 0.3, 0.55), 100, "real", "test").mode == "dense"
    few = choose_weight(rows(0.60, 0.3, 0.90), DECIDING_QUERIES - 1, "real", "test")
    assert few.mode == "dense" and "too few" in few.why
    assert FusionChoice.from_dict(chosen.as_dict()) == chosen
    assert FusionChoice.from_dict(None).mode == "dense"  # a run recorded before fusion existed serves dense


def test_synthetic_evidence_chooses_no_weight_above_the_cap():
    """Synthetic queries share their passage's words and favour BM25: their choice stays at or below the cap."""
    evidence = [{"bm25_weight": w, "ndcg@10": 0.5 + w / 10} for w in (0.0, 0.3, SYNTHETIC_WEIGHT_CAP, 0.7, 1.0)]
    assert choose_weight(evidence, 100, "real", "").bm25_weight == 1.0
    synthetic = choose_weight(evidence, 100, "synthetic", "")
    assert synthetic.bm25_weight == SYNTHETIC_WEIGHT_CAP < 0.7 and "w <= " in synthetic.why


def test_weight_evidence_follows_the_stronger_signal():
    n = 60
    queries, documents = lexical_world(n, 1)
    rng = np.random.default_rng(1)
    ids, qids = [f"d{i}" for i in range(n)], [f"q{i}" for i in range(n)]
    qrels = {f"q{i}": {f"d{i}": 1.0} for i in range(n)}
    corpus = unit(rng.normal(size=(n, 32)))
    noise = weight_evidence(queries, unit(rng.normal(size=(n, 32))), corpus, documents, qrels, qids, ids)
    assert choose_weight(noise, n, "real", "").bm25_weight >= 0.5  # dense vectors are noise, words are not
    wrong = [(i + 1) % n for i in range(n)]  # the words of query i point at passage i, its judged passage is i + 1
    qrels = {f"q{i}": {f"d{wrong[i]}": 1.0} for i in range(n)}
    exact = unit(corpus[wrong] + 0.05 * rng.normal(size=(n, 32)))
    evidence = weight_evidence(queries, exact, corpus, documents, qrels, qids, ids)
    assert [row["bm25_weight"] for row in evidence][0] == 0.0 and evidence[0]["ndcg@10"] == 1.0
    assert choose_weight(evidence, n, "real", "").mode == "dense"
