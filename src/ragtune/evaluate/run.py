"""Honest retrieval evaluation: exact search over the full corpus, the metrics everyone reports.

The numbers match sentence-transformers' InformationRetrievalEvaluator on binary qrels (a test
checks it); with graded qrels nDCG uses the grades as gains (as trec_eval does), where the
evaluator would count every relevant document as 1.
"""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import UserError
from ragtune.io.data import Dataset, evaluation_qrels
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.bm25 import Bm25
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.fusion import RRF_K, FusionChoice, bm25_rankings, hybrid_rankings, rrf
from ragtune.retrieval.metrics import CUTOFF, Rankings, dense_rankings, retrieval_metrics
from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model
from ragtune.zero_label import teachers


def teacher_of(prepared_dir: str) -> dict:
    """The zero-label teacher `prepare` used, as its summary.json records it."""
    import json

    summary = Path(prepared_dir) / "summary.json"
    try:
        teacher = json.loads(summary.read_text(encoding="utf-8"))["teacher"]
        teachers.label(teacher, "")  # a record of a known teacher with its fields
        return teacher
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(
            f"--baseline teacher: {summary} names no teacher; pass --teacher-of a directory `ragtune prepare` "
            "made from passages only"
        ) from None


def evaluate(dataset: Dataset, e, model) -> dict[str, dict[str, float]]:
    """Metrics per system on split `e.split`: baselines first, then each model of the `eval:` section, in order.

    A model whose run chose a fusion with BM25 gets a second row, as it is served; RRF of the last model
    and BM25 is a reference row. The teacher row ranks with the first model (the base), as `prepare` chose it."""
    from ragtune.retrieval.models import cache_dir

    qrels = evaluation_qrels(dataset, e.split)
    query_ids = sorted(qrels)
    query_texts = [dataset.queries[q] for q in query_ids]
    doc_ids, documents = dataset.corpus["id"].tolist(), dataset.corpus["document"].tolist()
    unknown = [b for b in e.baselines if b not in ("bm25", "teacher", "none")]
    if unknown:
        raise UserError(f"--baseline {unknown[0]}: unknown baseline; use bm25, teacher or none")
    teacher = teacher_of(e.teacher_of) if "teacher" in e.baselines else None
    models = [] if e.via_feast else e.models or [model.name]
    model_paths = {name: resolve_model(name) for name in models}  # fail before any slow work
    bm25 = Bm25(documents)
    lexical = bm25_rankings(bm25, query_texts, query_ids, doc_ids)
    results: dict[str, dict[str, float]] = {}
    if "bm25" in e.baselines:
        results["bm25"] = retrieval_metrics(lexical, qrels)
    dense: Rankings = {}
    encoded_key = None  # one model's embeddings held at a time; a run that shipped the base follows the base
    for index, name in enumerate(models):
        key = model_fingerprint(model_paths[name])
        if key != encoded_key:
            encoder = load_model(name, model.device, model.backend)
            corpus_emb = encode_corpus_cached(encoder, key, documents, model.encode_batch_size, cache_dir(model))
            query_emb = encode(encoder, query_texts, model.encode_batch_size, "query", "encode queries")
            encoded_key = key
        if index == 0 and teacher is not None:
            ranker = teachers.build_teacher(teacher, documents, corpus_emb, model.device, model.encode_batch_size)
            ranked = ranker.rank_corpus(query_texts, query_emb, CUTOFF)
            rankings = {q: [(doc_ids[r], s) for r, s in hits] for q, hits in zip(query_ids, ranked)}
            results[teachers.label(teacher, name)] = retrieval_metrics(rankings, qrels)
        dense = dense_rankings(query_emb, corpus_emb, query_ids, doc_ids)
        results[name] = retrieval_metrics(dense, qrels)
        fusion = FusionChoice.from_dict(getattr(RunMetrics.of_model(model_paths[name]), "fusion", None))
        if fusion.mode == "hybrid":  # the model as its run chose to serve it
            w = fusion.bm25_weight
            hybrid = hybrid_rankings(query_texts, query_emb, corpus_emb, bm25, (w,), query_ids, doc_ids)[w]
            results[f"{name} {fusion.name}"] = retrieval_metrics(hybrid, qrels)
    if models and "bm25" in e.baselines:
        results[f"{models[-1]} RRF with bm25 (k={RRF_K}, reference)"] = retrieval_metrics(rrf(dense, lexical), qrels)
    return results
