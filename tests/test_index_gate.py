"""The never-serve-worse gate of serving/index.py compares models as they are served."""

from __future__ import annotations

from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.fusion import choose_weight
from ragtune.serving.index import scores_of


def run(tuned: float, fusion_rows: list[dict] | None) -> RunMetrics:
    fusion = choose_weight(fusion_rows, 100, "real", "qrels/dev").as_dict() if fusion_rows else {}
    return RunMetrics(base={"ndcg@10": 0.60}, tuned={"ndcg@10": tuned}, eval_set="e", base_weights="b", fusion=fusion)


def test_a_model_served_hybrid_is_judged_by_its_fusion_score_and_its_base_by_dense():
    rows = [{"bm25_weight": 0.0, "ndcg@10": 0.65}, {"bm25_weight": 0.3, "ndcg@10": 0.70}]
    hybrid = run(0.65, rows)
    assert scores_of("m", hybrid, "m") == {"e": 0.70}
    assert scores_of("b", hybrid, "m") == {"e": 0.60}
    dense = run(0.65, [{"bm25_weight": 0.0, "ndcg@10": 0.65}, {"bm25_weight": 0.3, "ndcg@10": 0.64}])
    assert scores_of("m", dense, "m") == {"e": 0.65}
    assert scores_of("m", run(0.65, None), "m") == {"e": 0.65}  # a run recorded before fusion existed
    assert scores_of("other", hybrid, "m") == {} and scores_of("m", None, "m") == {}
