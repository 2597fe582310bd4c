"""The one fusion of dense and BM25 scores, and the choice of its weight on evidence.

`fuse` is (1 - w) * cosine + w * BM25 rescaled so that the query's best BM25 in the corpus equals its
best cosine: both parts then run from about 0 to the same top and the result stays on the cosine
scale (the teacher's margins need that). The references are corpus-wide per query, so a passage's
score does not depend on which others were scored with it: the teacher, `evaluate` and the served
index give the same number for the same query and passage.

Fusion does not always help: on corpora where BM25 is weak it lowers nDCG@10 at any weight. So the
weight is chosen on evidence (judged queries), w = 0 (dense) is always a candidate, and hybrid wins
only by beating dense. Reciprocal rank fusion is only a reference row.

Synthetic queries are cut from their passage and share its words, so they favour BM25: on synthetic
evidence the weight is capped at SYNTHETIC_WEIGHT_CAP (benchmarks/bench_fusion.py measures the choice
against the real test queries; docs/benchmarks.md has the numbers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ragtune.io.qrels import Qrels
from ragtune.retrieval.bm25 import Bm25
from ragtune.retrieval.metrics import CUTOFF, DECIDING_QUERIES, PRIMARY_METRIC, Rankings, retrieval_metrics

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
QUERY_CHUNK = 256
RRF_K = 60
SYNTHETIC_WEIGHT_CAP = 0.5


def fuse(cosine: np.ndarray, bm25: np.ndarray, bm25_weight: float, best_cosine: float, best_bm25: float) -> np.ndarray:
    """(1 - w) * cosine + w * BM25 * (best_cosine / best_bm25); w = 0 is the cosine itself."""
    scale = best_cosine / best_bm25 if best_bm25 > 0 else 0.0
    return (1 - bm25_weight) * cosine + bm25_weight * scale * bm25


def mode_name(bm25_weight: float) -> str:
    if bm25_weight == 0:
        return "dense"
    return "bm25" if bm25_weight == 1 else f"dense+bm25 (w={bm25_weight:g})"


def fused_top(cosine: np.ndarray, lexical: np.ndarray, bm25_weight: float, k: int) -> list[tuple[int, float]]:
    """The k best rows of one query's corpus-wide cosine and BM25 scores, best first (ties by row)."""
    scores = cosine.astype(np.float64)
    if bm25_weight > 0:
        scores = fuse(scores, lexical, bm25_weight, float(cosine.max()), float(lexical.max()))
    top = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [(int(r), float(scores[r])) for r in top]


def hybrid_rankings(
    queries: list[str],
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    bm25: Bm25,
    weights: tuple[float, ...],
    query_ids: list[str],
    doc_ids: list[str],
    k: int = CUTOFF,
) -> dict[float, Rankings]:
    """Exact full-corpus rankings of every query at each weight (one cosine and one BM25 pass per query)."""
    rankings: dict[float, Rankings] = {w: {} for w in weights}
    for start in range(0, len(queries), QUERY_CHUNK):
        cosines = query_embeddings[start : start + QUERY_CHUNK] @ corpus_embeddings.T
        for offset, cosine in enumerate(cosines):
            i = start + offset
            lexical = bm25.corpus_scores(queries[i]) if any(weights) else None
            for w in weights:
                rankings[w][query_ids[i]] = [(doc_ids[r], s) for r, s in fused_top(cosine, lexical, w, k)]
    return rankings


def bm25_rankings(bm25: Bm25, queries: list[str], query_ids: list[str], doc_ids: list[str]) -> Rankings:
    """BM25 alone (the baseline row): passages with a score above 0, best first."""
    return {qid: [(doc_ids[r], s) for r, s in bm25.top(query, CUTOFF)] for qid, query in zip(query_ids, queries)}


def rrf(first: Rankings, second: Rankings, k: int = RRF_K) -> Rankings:
    """Reciprocal rank fusion (Cormack et al. 2009) of two rankings per query: sum of 1 / (k + rank)."""
    fused: Rankings = {}
    for qid in first.keys() | second.keys():
        scores: dict[str, float] = {}
        for ranking in (first.get(qid, []), second.get(qid, [])):
            ordered = sorted(ranking, key=lambda hit: (-hit[1], hit[0]))
            for rank, (did, _) in enumerate(ordered, start=1):
                scores[did] = scores.get(did, 0.0) + 1.0 / (k + rank)
        fused[qid] = sorted(scores.items(), key=lambda hit: (-hit[1], hit[0]))[:CUTOFF]
    return fused


@dataclass(frozen=True)
class FusionChoice:
    """What the model serves by (dense, or dense+BM25 at a weight) and the evidence that chose it."""

    bm25_weight: float = 0.0
    queries: int = 0  # judged queries that decided
    kind: str = "real"  # real or synthetic evidence
    source: str = ""
    why: str = ""
    rows: list[dict] = field(default_factory=list)  # {"bm25_weight": w, metrics...} per candidate

    @property
    def mode(self) -> str:
        return "hybrid" if self.bm25_weight > 0 else "dense"

    @property
    def name(self) -> str:
        return mode_name(self.bm25_weight)

    def evidence_score(self) -> float | None:
        """nDCG@10 of the chosen weight on the evidence (None for a choice recorded without rows)."""
        chosen = [row for row in self.rows if row["bm25_weight"] == self.bm25_weight]
        return chosen[0][PRIMARY_METRIC] if chosen else None

    def as_dict(self) -> dict:
        return {"mode": self.mode, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict | None) -> FusionChoice:
        data = data or {}
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def choose_weight(rows: list[dict], queries: int, kind: str, source: str) -> FusionChoice:
    """The best weight by nDCG@10 on the evidence (ties to the smaller weight); dense unless hybrid beats it.

    With fewer than DECIDING_QUERIES judged queries the gain is noise: dense is kept and `why` says so.
    Synthetic evidence chooses among weights up to SYNTHETIC_WEIGHT_CAP.
    """
    cap = SYNTHETIC_WEIGHT_CAP if kind == "synthetic" else 1.0
    dense = next(row for row in rows if row["bm25_weight"] == 0)
    allowed = [row for row in rows if row["bm25_weight"] <= cap]
    best = max(allowed, key=lambda row: (row[PRIMARY_METRIC], -row["bm25_weight"]))
    gain = best[PRIMARY_METRIC] - dense[PRIMARY_METRIC]
    if queries < DECIDING_QUERIES:
        weight, why = 0.0, f"{queries} judged queries are too few to choose a fusion ({DECIDING_QUERIES} or more)"
    elif best["bm25_weight"] == 0 or gain <= 0:
        weight, why = 0.0, "no BM25 weight beat dense on the evidence"
    else:
        weight = best["bm25_weight"]
        capped = f" (synthetic evidence: w <= {cap:g})" if cap < 1 else ""
        why = f"{mode_name(weight)} beat dense by {gain:+.4f} nDCG@10 on the evidence{capped}"
    return FusionChoice(weight, queries, kind, source, why, rows)


def weight_evidence(
    queries: list[str],
    query_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray,
    documents: list[str],
    qrels: Qrels,
    query_ids: list[str],
    doc_ids: list[str],
    weights: tuple[float, ...] = WEIGHTS,
) -> list[dict]:
    """One row per weight: the retrieval metrics of the fusion at that weight on the judged queries."""
    rankings = hybrid_rankings(
        queries, query_embeddings, corpus_embeddings, Bm25(documents), weights, query_ids, doc_ids
    )
    return [{"bm25_weight": w, **retrieval_metrics(rankings[w], qrels)} for w in weights]
