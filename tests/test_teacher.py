"""The teacher: a choice that follows the evidence, scores on the cosine scale."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from worlds import DOCUMENTS, lexical_world, unit

from ragtune.errors import UserError
from ragtune.zero_label.pipeline import flag_false_negatives
from ragtune.zero_label.teachers.cross_encoder import CrossEncoderTeacher
from ragtune.zero_label.teachers.fusion import (
    FusionTeacher,
    choose_teacher,
    evidence_documents,
    evidence_queries,
    source_metrics,
    tie_averaged_rank,
)


def test_tie_averaged_rank_and_source_metrics():
    assert tie_averaged_rank(np.zeros(5), 2) == 3.0
    assert tie_averaged_rank(np.array([0.9, 0.5, 0.5, 0.1]), 1) == 2.5
    metrics = source_metrics(np.array([1.0, 2.0, 11.0, 150.0]))
    assert metrics["mrr@10"] == pytest.approx((1 + 0.5) / 4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 4)
    assert metrics["recall@100"] == 0.75


def test_choice_is_dense_when_bm25_points_at_the_wrong_passage():
    n = 60
    queries, documents = lexical_world(n, 0)
    rng = np.random.default_rng(0)
    corpus_emb = unit(rng.normal(size=(n, 32)))
    sources = [(i + 1) % n for i in range(n)]  # the words of query i live in passage i, its source is i + 1
    query_emb = unit(corpus_emb[sources] + 0.05 * rng.normal(size=(n, 32)))  # dense finds the source
    choice = choose_teacher(queries, query_emb, sources, documents, corpus_emb)
    rows = {row["teacher"]: row for row in choice.evidence}
    assert choice.bm25_weight == 0.0 and choice.name == "dense"
    assert rows["dense"]["ndcg@10"] == 1.0
    assert rows["bm25"]["ndcg@10"] < 0.2
    assert choice.evidence_queries == n and len(choice.evidence) == 7


def test_choice_leans_on_bm25_when_dense_vectors_are_noise():
    n = 60
    queries, documents = lexical_world(n, 1)
    rng = np.random.default_rng(1)
    corpus_emb, query_emb = unit(rng.normal(size=(n, 32))), unit(rng.normal(size=(n, 32)))
    choice = choose_teacher(queries, query_emb, list(range(n)), documents, corpus_emb)
    rows = {row["teacher"]: row for row in choice.evidence}
    assert rows["bm25"]["ndcg@10"] == 1.0
    assert rows["dense"]["ndcg@10"] < 0.3
    assert choice.bm25_weight >= 0.5
    assert rows[choice.name]["ndcg@10"] == 1.0


def test_teacher_scores_agree_with_its_corpus_ranking():
    rng = np.random.default_rng(2)
    corpus_emb = unit(rng.normal(size=(len(DOCUMENTS), 16)))
    queries = ["insulin in the liver", "p53 cancer"]
    query_emb = unit(corpus_emb[[3, 1]] + 0.3 * rng.normal(size=(2, 16)))
    for weight in (0.0, 0.3, 1.0):
        teacher = FusionTeacher(DOCUMENTS, corpus_emb, weight)
        ranked = teacher.rank_corpus(queries, query_emb, k=len(DOCUMENTS))
        rows = np.array([[r for r, _ in hits] for hits in ranked])
        scores = teacher.score(queries, query_emb, [[DOCUMENTS[r] for r in row] for row in rows], corpus_emb[rows])
        np.testing.assert_allclose(scores, [[s for _, s in hits] for hits in ranked], rtol=1e-5, atol=1e-6)
        assert (np.diff(scores, axis=1) <= 1e-9).all()
    dense = FusionTeacher(DOCUMENTS, corpus_emb, 0.0).score(
        queries, query_emb, [DOCUMENTS[:2]] * 2, np.stack([corpus_emb[:2]] * 2)
    )
    np.testing.assert_allclose(dense, query_emb @ corpus_emb[:2].T, rtol=1e-6)


def test_a_record_names_its_teacher_and_older_records_still_build():
    """summary.json records `kind`; records written before it name the teacher by their fields."""
    from ragtune.zero_label.teachers import TEACHERS, build_teacher, kind_of, label

    corpus = unit(np.random.default_rng(0).normal(size=(len(DOCUMENTS), 8)))
    assert kind_of({"bm25_weight": 0.3}) == "fusion" and kind_of({"cross_encoder": "ce"}) == "cross-encoder"
    assert kind_of({"kind": "fusion", "bm25_weight": 0.3}) == "fusion" and set(TEACHERS) == {"fusion", "cross-encoder"}
    teacher = build_teacher({"bm25_weight": 0.3}, DOCUMENTS, corpus, "cpu", 8)
    assert isinstance(teacher, FusionTeacher) and teacher.bm25_weight == 0.3
    assert label({"bm25_weight": 0.0}, "base") == "teacher: dense over base"


def test_flag_false_negatives_at_or_above_the_positive():
    positive = np.array([0.6, 0.5])
    candidates = np.array([[0.7, 0.6, 0.59], [np.nan, 0.2, 0.5]])
    np.testing.assert_array_equal(
        flag_false_negatives(positive, candidates), [[True, True, False], [False, False, True]]
    )


def corpus_frame(texts: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "title": "", "text": texts})
    frame["source_id"], frame["document"] = frame["id"], frame["text"]
    return frame


def test_evidence_queries_are_cut_from_their_passages():
    rng = random.Random(3)
    texts = [
        " ".join(f"Sentence {j} of passage {i} has words {rng.random():.3f} here." for j in range(4)) for i in range(30)
    ]
    frame = corpus_frame(texts)
    evidence = evidence_queries(frame, 10, seed=0)
    assert len(evidence) == 10 and evidence["passage_id"].is_unique and evidence["query_removed"].all()
    documents, rows = evidence_documents(frame["document"].tolist(), frame["id"].tolist(), evidence)
    for row, query in zip(rows, evidence["query"]):
        assert query in texts[row] and query not in documents[row]
    untouched = set(range(30)) - set(rows)
    assert all(documents[i] == texts[i] for i in untouched)
    assert len(evidence_queries(frame, 31, seed=0)) == 30  # what the corpus gives; the caller decides


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    """A real cross-encoder: the bundled MiniLM's encoder under a fresh one-logit head (untrained: this tests the
    path, never its quality), saved as transformers saves one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ragtune.retrieval.models import resolve_model

    directory = tmp_path_factory.mktemp("cross-encoder")
    base = resolve_model("all-MiniLM-L6-v2")
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(directory)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    return directory


def test_a_path_that_is_no_cross_encoder_is_one_line(tmp_path):
    from ragtune.retrieval.models import resolve_model

    with pytest.raises(UserError, match="no readable config.json"):
        CrossEncoderTeacher.load_model(str(tmp_path / "nowhere"), "cpu")
    with pytest.raises(UserError, match="not a sequence classifier"):  # a bi-encoder is not a cross-encoder
        CrossEncoderTeacher.load_model(str(resolve_model("all-MiniLM-L6-v2")), "cpu")


def test_cross_encoder_teacher_scores_reranks_and_skips_padding(cross_encoder_dir):
    model = CrossEncoderTeacher.load_model(str(cross_encoder_dir), "cpu")
    corpus = np.eye(len(DOCUMENTS), dtype=np.float32)
    teacher = CrossEncoderTeacher(model, DOCUMENTS, corpus)
    scores = teacher.score(
        ["insulin in the liver"] * 2, None, [[DOCUMENTS[0], "", DOCUMENTS[3]], [DOCUMENTS[1]] * 3], None
    )
    assert scores.shape == (2, 3) and np.isnan(scores[0, 1]) and np.isnan(scores).sum() == 1
    assert ((0 < scores[~np.isnan(scores)]) & (scores[~np.isnan(scores)] < 1)).all()  # the sigmoid: cosine-like
    direct = model.predict([("insulin in the liver", DOCUMENTS[0]), ("insulin in the liver", DOCUMENTS[3])])
    assert np.allclose(scores[0, [0, 2]], direct, atol=1e-6)
    query = corpus[[0, 1, 2, 3]].sum(axis=0, keepdims=True)  # the base model's top 4 are passages 0-3
    ranked = teacher.rank_corpus(["insulin in the liver"], query, k=3)[0]
    expected = model.predict([("insulin in the liver", DOCUMENTS[r]) for r in range(4)])  # passage 4 is empty
    assert [r for r, _ in ranked] == list(np.argsort(-expected, kind="stable")[:3])


@pytest.mark.slow
def test_prepare_and_evaluate_with_a_cross_encoder_teacher(cross_encoder_dir, tmp_path, scifact_slice):
    """Passages only, the cross-encoder as teacher: its margins label the negatives, its rerank is a baseline."""
    import json
    import shutil
    from pathlib import Path

    from ragtune import api
    from ragtune import config as cfg

    rows = pd.read_json(Path(__file__).parents[1] / "data" / "scifact-passages.jsonl.gz", lines=True).iloc[:150]
    rows.to_parquet(tmp_path / "passages.parquet")
    prepared = tmp_path / "prepared"
    config = cfg.load(
        None,
        {
            "data.path": str(tmp_path / "passages.parquet"),
            "data.output": str(prepared),
            "mining.range_min": 0,
            "mining.min_score": 0.1,
            "synthetic.teacher": "cross-encoder",
            "synthetic.cross_encoder": str(cross_encoder_dir),
            "synthetic.passages": 30,
        },
    )
    api.prepare(config)
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["teacher"] == {
        "kind": "cross-encoder",
        "name": f"cross-encoder {cross_encoder_dir}",
        "cross_encoder": str(cross_encoder_dir),
    }
    samples = pd.read_parquet(prepared / "train.parquet")
    hard = samples[samples["kind"] == "hard_negative"]
    assert len(hard) and (hard["label"] > 0).all() and (hard["label"] < 1).all()  # sigmoid margins, vetoed >= 0
    few = tmp_path / "few-queries"  # the slice with 5 of its test queries: 500 cross-encoder pairs to rerank
    shutil.copytree(scifact_slice, few)
    qrels = (few / "qrels" / "test.tsv").read_text().splitlines()
    (few / "qrels" / "test.tsv").write_text("\n".join(qrels[:6]) + "\n")
    judged = {
        "data.path": str(few),
        "eval.baselines": ["teacher"],
        "eval.teacher_of": str(prepared),
        "eval.output": str(tmp_path / "eval"),
    }
    results = api.evaluate(cfg.load(None, judged))
    assert list(results) == ["teacher: cross-encoder reranking all-MiniLM-L6-v2's top 100", "all-MiniLM-L6-v2"]
