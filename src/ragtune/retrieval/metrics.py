"""The retrieval metrics everyone reports, on rankings from any retriever: one definition for the
held-out evaluation, `ragtune evaluate`, the teacher's evidence and the served index.

The numbers match sentence-transformers' InformationRetrievalEvaluator on binary qrels (a test
checks it); with graded qrels nDCG uses the grades as gains (as trec_eval does).
"""

from __future__ import annotations

import math

import numpy as np

from ragtune.io.qrels import Qrels
from ragtune.retrieval.embeddings import top_k

CUTOFF = 100  # deepest rank any metric looks at
METRICS = ["ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100"]
PRIMARY_METRIC = METRICS[0]  # what picks the best epoch, the teacher and the served model
DECIDING_QUERIES = 30  # fewer judged queries than this pick a model or a fusion weight by chance as often as by merit
Rankings = dict[str, list[tuple[str, float]]]  # query id -> [(doc id, score)] best first


def retrieval_metrics(rankings: Rankings, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10, MRR@10, Recall@10/100 and MAP@100 over the queries in `qrels` (scores > 0)."""
    totals = dict.fromkeys(METRICS, 0.0)
    for qid, relevant in qrels.items():
        ranked = [did for did, _ in sorted(rankings.get(qid, []), key=lambda hit: (-hit[1], hit[0]))][:CUTOFF]
        hits = [relevant.get(did, 0) for did in ranked]
        dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(hits[:10]))
        ideal = sorted(relevant.values(), reverse=True)[:10]
        totals["ndcg@10"] += dcg / sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
        first = next((rank for rank, gain in enumerate(hits[:10]) if gain > 0), None)
        totals["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
        totals["recall@10"] += sum(g > 0 for g in hits[:10]) / len(relevant)
        totals["recall@100"] += sum(g > 0 for g in hits[:100]) / len(relevant)
        found, precision_sum = 0, 0.0
        for rank, gain in enumerate(hits[:100]):
            if gain > 0:
                found += 1
                precision_sum += found / (rank + 1)
        totals["map@100"] += precision_sum / min(100, len(relevant))
    return {name: value / len(qrels) for name, value in totals.items()}


def dense_rankings(
    query_embeddings: np.ndarray, corpus_embeddings: np.ndarray, query_ids: list[str], doc_ids: list[str]
) -> Rankings:
    scores, indices = top_k(query_embeddings, corpus_embeddings, CUTOFF)
    return {
        qid: [(doc_ids[i], float(s)) for i, s in zip(row_idx, row_scores)]
        for qid, row_idx, row_scores in zip(query_ids, indices, scores)
    }
