import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from ragtune import config as cfg
from ragtune.errors import UserError
from ragtune.evaluate.run import evaluate
from ragtune.io.data import load_dataset
from ragtune.retrieval.embeddings import encode
from ragtune.retrieval.metrics import METRICS, dense_rankings, retrieval_metrics


@pytest.mark.slow
def test_metrics_equal_sentence_transformers_evaluator(scifact_slice, model):
    dataset = load_dataset(scifact_slice)
    qrels = dataset.positives("test")
    query_ids = sorted(qrels)
    corpus = dict(zip(dataset.corpus["id"], dataset.corpus["document"]))
    queries = {q: dataset.queries[q] for q in query_ids}
    reference = InformationRetrievalEvaluator(
        queries,
        corpus,
        {q: set(d) for q, d in qrels.items()},
        precision_recall_at_k=[10, 100],
        show_progress_bar=False,
        batch_size=64,
    )(model)
    section = cfg.EvalConfig(split="test", models=["all-MiniLM-L6-v2"], baselines=[])
    ours = evaluate(dataset, section, cfg.ModelConfig(device="cpu"))["all-MiniLM-L6-v2"]
    for metric, key in [
        ("ndcg@10", "ndcg@10"),
        ("mrr@10", "mrr@10"),
        ("recall@10", "recall@10"),
        ("recall@100", "recall@100"),
        ("map@100", "map@100"),
    ]:
        assert ours[metric] == pytest.approx(reference[f"cosine_{key}"], abs=1e-6), metric


def test_graded_ndcg_uses_grades_as_gains():
    rankings = {"q": [("a", 0.9), ("b", 0.8), ("c", 0.7)]}
    qrels = {"q": {"b": 2, "a": 1}}
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert retrieval_metrics(rankings, qrels)["ndcg@10"] == pytest.approx(dcg / ideal)


def test_ties_break_by_document_id_like_the_evaluator():
    rankings = {"q": [("z", 0.5), ("a", 0.5)]}
    assert retrieval_metrics(rankings, {"q": {"a": 1}})["mrr@10"] == 1.0


ids = st.sampled_from([f"d{i}" for i in range(30)])


@given(
    ranked=st.lists(ids, unique=True, max_size=30),
    relevant=st.dictionaries(ids, st.integers(1, 3), min_size=1, max_size=5),
)
def test_metrics_are_bounded_and_perfect_ranking_scores_one(ranked, relevant):
    rankings = {"q": [(d, 1.0 - i / 100) for i, d in enumerate(ranked)]}
    metrics = retrieval_metrics(rankings, {"q": relevant})
    assert all(0.0 <= metrics[m] <= 1.0 + 1e-9 for m in METRICS)
    perfect = sorted(relevant, key=lambda d: -relevant[d])
    best = retrieval_metrics({"q": [(d, 1.0 - i / 100) for i, d in enumerate(perfect)]}, {"q": relevant})
    assert best["ndcg@10"] == pytest.approx(1.0) and best["recall@100"] == 1.0 and best["mrr@10"] == 1.0


@pytest.mark.slow
def test_dense_ranking_is_exact_search(scifact_slice, model):
    dataset = load_dataset(scifact_slice)
    docs = dataset.corpus["document"].tolist()
    corpus_emb = encode(model, docs, 64)
    query_emb = encode(model, ["vitamin D and bone density"], 64, "query")
    ranking = dense_rankings(query_emb, corpus_emb, ["q"], dataset.corpus["id"].tolist())["q"]
    scores = corpus_emb @ query_emb[0]
    assert [d for d, _ in ranking[:10]] == [dataset.corpus["id"][i] for i in (-scores).argsort()[:10]]
    assert len(ranking) == 100


@pytest.mark.slow
def test_teacher_baseline_row_is_the_chosen_fusion(scifact_slice, tmp_path):
    """The zero-label teacher as a retriever beside BM25 and the base; at BM25 weight 0 it is the base exactly."""
    dataset = load_dataset(scifact_slice)
    rows = {}
    for weight in (0.0, 0.5):
        prepared = tmp_path / str(weight)
        prepared.mkdir()
        (prepared / "summary.json").write_text(json.dumps({"teacher": {"bm25_weight": weight}}))
        section = cfg.EvalConfig(split="test", baselines=["bm25", "teacher"], teacher_of=str(prepared))
        rows[weight] = evaluate(dataset, section, cfg.ModelConfig(device="cpu"))
    assert list(rows[0.5]) == [
        "bm25",
        "teacher: dense+bm25 (w=0.5) over all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2 RRF with bm25 (k=60, reference)",
    ]
    assert rows[0.0]["teacher: dense over all-MiniLM-L6-v2"] == pytest.approx(rows[0.0]["all-MiniLM-L6-v2"])
    assert rows[0.5]["teacher: dense+bm25 (w=0.5) over all-MiniLM-L6-v2"] != rows[0.5]["all-MiniLM-L6-v2"]
    with pytest.raises(UserError, match="names no teacher"):
        evaluate(dataset, cfg.EvalConfig(baselines=["teacher"], teacher_of=str(tmp_path)), cfg.ModelConfig())


@pytest.mark.slow
def test_a_model_whose_run_chose_hybrid_gets_its_served_row(scifact_slice, tmp_path, monkeypatch):
    """The served row is the fusion at the recorded weight, the teacher's fusion over the same model and BM25; a
    model without a recorded fusion (the bundled one) has its dense row only. BM25 is bm25s' own ranking. A run
    that shipped the base weights (the never-ship-worse gate) is not encoded a second time."""
    import shutil

    import bm25s

    from ragtune.io.data import evaluation_qrels
    from ragtune.io.runinfo import RunMetrics
    from ragtune.retrieval.models import resolve_model

    dataset = load_dataset(scifact_slice)
    run = tmp_path / "run"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), run / "model")
    RunMetrics(tuned={"ndcg@10": 0.5}, eval_set="x", fusion={"bm25_weight": 0.5, "queries": 50}).write(run)
    teacher = tmp_path / "prepared"
    teacher.mkdir()
    (teacher / "summary.json").write_text(json.dumps({"teacher": {"bm25_weight": 0.5}}))
    section = cfg.EvalConfig(
        split="test",
        models=["all-MiniLM-L6-v2", str(run / "model")],
        baselines=["bm25", "teacher"],
        teacher_of=str(teacher),
    )
    from ragtune.evaluate import run as evaluate_run

    encoded = []
    monkeypatch.setattr(evaluate_run, "encode", lambda *a, **k: encoded.append(a[1]) or encode(*a, **k))
    rows = evaluate(dataset, section, cfg.ModelConfig(device="cpu"))
    assert len(encoded) == 1  # the queries, once: both models have the same weights
    assert rows[str(run / "model")] == rows["all-MiniLM-L6-v2"]
    served = f"{run / 'model'} dense+bm25 (w=0.5)"
    assert served in rows and rows[served] == pytest.approx(rows["teacher: dense+bm25 (w=0.5) over all-MiniLM-L6-v2"])
    assert rows[served] != rows[str(run / "model")]
    qrels = evaluation_qrels(dataset, "test")
    query_ids = sorted(qrels)
    reference = bm25s.BM25(k1=1.2, b=0.75)
    documents, doc_ids = dataset.corpus["document"].tolist(), dataset.corpus["id"].tolist()
    reference.index(bm25s.tokenize(documents, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([dataset.queries[q] for q in query_ids], stopwords="en", show_progress=False)
    found, scores = reference.retrieve(tokens, k=100, show_progress=False, n_threads=1)
    lexical = {q: [(doc_ids[i], float(s)) for i, s in zip(r, c) if s > 0] for q, r, c in zip(query_ids, found, scores)}
    assert rows["bm25"] == pytest.approx(retrieval_metrics(lexical, qrels), abs=1e-9)
