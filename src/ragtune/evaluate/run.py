"""Honest retrieval evaluation: exact search over the full corpus, the metrics everyone reports.

The numbers match sentence-transformers' InformationRetrievalEvaluator on binary qrels (a test
checks it); with graded qrels nDCG uses the grades as gains (as trec_eval does), where the
evaluator would count every relevant document as 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ragtune.errors import UserError
from ragtune.io.data import Dataset, evaluation_qrels
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.metrics import CUTOFF, METRICS, Rankings, dense_rankings, retrieval_metrics
from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model


def bm25_rankings(queries: list[str], query_ids: list[str], documents: list[str], doc_ids: list[str]) -> Rankings:
    """Okapi BM25 (k1=1.2, b=0.75, English stopwords) over title + text."""
    import bm25s

    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(bm25s.tokenize(documents, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
    indices, scores = retriever.retrieve(tokens, k=min(CUTOFF, len(documents)), show_progress=False, n_threads=1)
    return {
        qid: [(doc_ids[i], float(s)) for i, s in zip(row_idx, row_scores) if s > 0]
        for qid, row_idx, row_scores in zip(query_ids, indices, scores)
    }


def teacher_of(prepared_dir: str) -> dict:
    """The zero-label teacher `prepare` used: {"bm25_weight": w} (fusion) or {"cross_encoder": path}."""
    import json

    summary = Path(prepared_dir) / "summary.json"
    try:
        teacher = json.loads(summary.read_text(encoding="utf-8"))["teacher"]
        if "cross_encoder" in teacher:
            return {"cross_encoder": str(teacher["cross_encoder"])}
        return {"bm25_weight": float(teacher["bm25_weight"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"--baseline teacher: {summary} names no teacher; pass --teacher-of a directory `ragtune prepare` "
            "made from passages only"
        ) from None


def evaluate(dataset: Dataset, e, model) -> dict[str, dict[str, float]]:
    """Metrics per system on split `e.split`: baselines first, then each model of the `eval:` section, in order.

    The teacher row ranks with the first model (the base) fused with BM25, as `prepare` chose it."""
    from ragtune.retrieval.models import cache_dir

    qrels = evaluation_qrels(dataset, e.split)
    query_ids = sorted(qrels)
    query_texts = [dataset.queries[q] for q in query_ids]
    doc_ids, documents = dataset.corpus["id"].tolist(), dataset.corpus["document"].tolist()
    unknown = [b for b in e.baselines if b not in ("bm25", "teacher", "none")]
    if unknown:
        raise UserError(f"--baseline {unknown[0]}: unknown baseline; use bm25, teacher or none")
    teacher = teacher_of(e.teacher_of) if "teacher" in e.baselines else None
    cross_encoder = None
    if teacher and "cross_encoder" in teacher:
        from ragtune.zero_label.teacher import CrossEncoderTeacher

        cross_encoder = CrossEncoderTeacher.load_model(teacher["cross_encoder"], model.device)
    models = [] if e.via_feast else e.models or [model.name]
    model_paths = {name: resolve_model(name) for name in models}  # fail before any slow work
    results: dict[str, dict[str, float]] = {}
    if "bm25" in e.baselines:
        results["bm25"] = retrieval_metrics(bm25_rankings(query_texts, query_ids, documents, doc_ids), qrels)
    for index, name in enumerate(models):
        encoder = load_model(name, model.device, model.backend)
        key = model_fingerprint(model_paths[name])
        corpus_emb = encode_corpus_cached(encoder, key, documents, model.encode_batch_size, cache_dir(model))
        query_emb = encode(encoder, query_texts, model.encode_batch_size, "query", "encode queries")
        if index == 0 and teacher is not None:
            from ragtune.zero_label.teacher import RERANK_DEPTH, build_teacher, teacher_name

            ranker = build_teacher(teacher, cross_encoder, documents, corpus_emb, model.encode_batch_size)
            if cross_encoder is not None:
                label = f"teacher: cross-encoder reranking {name}'s top {RERANK_DEPTH}"
            else:
                label = f"teacher: {teacher_name(teacher['bm25_weight'])} over {name}"
            ranked = ranker.rank_corpus(query_texts, query_emb, CUTOFF)
            rankings = {q: [(doc_ids[r], s) for r, s in hits] for q, hits in zip(query_ids, ranked)}
            results[label] = retrieval_metrics(rankings, qrels)
        results[name] = retrieval_metrics(dense_rankings(query_emb, corpus_emb, query_ids, doc_ids), qrels)
    return results


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for system, metrics in results.items():
        lines.append(f"| {system} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: dict[str, dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(results), 1)
    positions = np.arange(len(METRICS))
    for i, (system, metrics) in enumerate(results.items()):
        bars = ax.bar(
            positions + i * width, [metrics[m] for m in METRICS], width, label="/".join(Path(system).parts[-2:])
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(positions + width * (len(results) - 1) / 2, METRICS)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
