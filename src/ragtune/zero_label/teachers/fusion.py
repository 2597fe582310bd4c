"""`fusion`: the teacher for zero-label training (GPL-style pseudo-labels) that needs no download.

The teacher fuses the base model's cosine with BM25. A fixed fusion is no safe teacher: equal-
weight RRF beat both parts on SciFact and fell far below the base model where BM25 is weak. So the
BM25 weight is chosen per corpus from evidence the corpus gives: held-out ICT queries (sentences of
a passage) whose sentence is cut out of their source passage, ranked over the whole corpus.

Why those queries: a span copied from a passage that is still in the passage is found by BM25
through its rare words almost every time, so spans as evidence would always elect BM25. With the
sentence removed, the source must be found through what the rest of the passage says about the
same thing, which is what real queries ask of a retriever. The evidence is still lexically kind
(sentences of one abstract share vocabulary), so read the table, not only the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ragtune.config import SyntheticConfig
from ragtune.retrieval.bm25 import Bm25
from ragtune.retrieval.fusion import QUERY_CHUNK, WEIGHTS, fuse, fused_top, mode_name
from ragtune.retrieval.metrics import PRIMARY_METRIC
from ragtune.zero_label.synthetic import SyntheticSpec, generate_queries
from ragtune.zero_label.teachers.protocol import Evidence


def tie_averaged_rank(scores: np.ndarray, row: int) -> float:
    """1-based rank of `row`, ties sharing the mean rank (BM25 gives many passages exactly 0)."""
    own = scores[row]
    return 1 + float((scores > own).sum()) + float((scores == own).sum() - 1) / 2


def source_metrics(ranks: np.ndarray) -> dict[str, float]:
    """MRR@10, nDCG@10 and Recall@100 of one relevant passage per query at 1-based (maybe tie-averaged) `ranks`."""
    return {
        "mrr@10": float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0))),
        PRIMARY_METRIC: float(np.mean(np.where(ranks <= 10, 1.0 / np.log2(ranks + 1), 0.0))),
        "recall@100": float(np.mean(ranks <= 100)),
    }


@dataclass(frozen=True)
class TeacherChoice:
    """The chosen BM25 weight and the evidence for it (one row per candidate teacher)."""

    bm25_weight: float
    name: str
    evidence_queries: int
    evidence: list[dict]

    def as_dict(self) -> dict:
        return {
            "bm25_weight": self.bm25_weight,
            "name": self.name,
            "evidence_queries": self.evidence_queries,
            "evidence": self.evidence,
        }


def evidence_queries(corpus: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """One ICT query per passage for `count` random passages (fewer if fewer passages give one), its sentence
    always cut from the positive. The caller decides whether what it got is enough."""
    spec = SyntheticSpec(generators=("ict",), queries_per_passage=1, ict_remove_probability=1.0, seed=seed)
    queries, _ = generate_queries(corpus, spec)
    queries = queries[queries["query_removed"]]
    return queries.sample(n=min(count, len(queries)), random_state=seed).sort_index().reset_index(drop=True)


def evidence_documents(
    documents: list[str], corpus_ids: list[str], evidence: pd.DataFrame
) -> tuple[list[str], list[int]]:
    """The corpus with each evidence source replaced by its positive (the sentence cut out); and those rows.

    The caller re-encodes only those rows with the base model to get the evidence corpus embeddings.
    """
    row_of = {did: i for i, did in enumerate(corpus_ids)}
    rows = [row_of[pid] for pid in evidence["passage_id"]]
    changed = list(documents)
    for row, positive in zip(rows, evidence["positive"]):
        changed[row] = positive
    return changed, rows


def choose_teacher(
    queries: list[str],
    query_embeddings: np.ndarray,
    source_rows: list[int],
    documents: list[str],
    corpus_embeddings: np.ndarray,
    weights: tuple[float, ...] = WEIGHTS,
) -> TeacherChoice:
    """Rank every evidence query over the whole (evidence) corpus with each weight; best nDCG@10 wins.

    Ties go to the smaller BM25 weight (the order of `weights`). Exact: full-corpus scores, no pool.
    """
    bm25 = Bm25(documents)
    ranks = np.zeros((len(weights), len(queries)))
    for start in range(0, len(queries), QUERY_CHUNK):
        cosines = query_embeddings[start : start + QUERY_CHUNK] @ corpus_embeddings.T
        for offset, cosine in enumerate(cosines):
            i = start + offset
            lexical = bm25.corpus_scores(queries[i])
            best_cosine, best_bm25 = float(cosine.max()), float(lexical.max())
            for w, weight in enumerate(weights):
                scores = fuse(cosine, lexical, weight, best_cosine, best_bm25)
                ranks[w, i] = tie_averaged_rank(scores, source_rows[i])
    evidence = [{"teacher": mode_name(w), "bm25_weight": w, **source_metrics(r)} for w, r in zip(weights, ranks)]
    best = max(range(len(weights)), key=lambda w: (evidence[w][PRIMARY_METRIC], -w))
    return TeacherChoice(weights[best], mode_name(weights[best]), len(queries), evidence)


class FusionTeacher:
    """Teacher scores on the student's cosine scale: `retrieval.fusion.fuse` of the base cosine and BM25."""

    @staticmethod
    def check(settings: SyntheticConfig) -> None:
        """Nothing to check: the fusion teacher needs only the base model and the corpus."""

    @staticmethod
    def choose(settings: SyntheticConfig, evidence: Evidence) -> dict:
        """The BM25 weight from the held-out queries, ranked over the corpus with their sentences cut out."""
        from ragtune.retrieval.embeddings import encode

        corpus, batch = evidence.corpus, evidence.batch_size
        documents, rows = evidence_documents(corpus["document"].tolist(), corpus["id"].tolist(), evidence.queries)
        evidence_embeddings = evidence.corpus_embeddings.copy()
        evidence_embeddings[rows] = encode(evidence.encoder, [documents[r] for r in rows], batch, "document")
        queries = evidence.queries["query"].tolist()
        query_embeddings = encode(evidence.encoder, queries, batch, "query")
        return choose_teacher(queries, query_embeddings, rows, documents, evidence_embeddings).as_dict()

    @classmethod
    def from_record(cls, record: dict, documents, corpus_embeddings, device: str, batch_size: int) -> FusionTeacher:
        return cls(documents, corpus_embeddings, float(record["bm25_weight"]))

    @staticmethod
    def label(record: dict, model_name: str) -> str:
        return f"teacher: {mode_name(float(record['bm25_weight']))} over {model_name}"

    def __init__(self, documents: list[str], corpus_embeddings: np.ndarray, bm25_weight: float):
        self.bm25_weight = bm25_weight
        self.corpus_embeddings = corpus_embeddings
        self.bm25 = Bm25(documents) if bm25_weight > 0 else None
        self.references: dict[str, tuple[float, float]] = {}  # query -> its best cosine and BM25 in the corpus

    def _references(self, queries: list[str], query_embeddings: np.ndarray) -> list[tuple[float, float]]:
        """Each query's corpus-wide best cosine and best BM25 (fuse's scale), computed once per query text."""
        new = [i for i, query in enumerate(queries) if query not in self.references]
        for start in range(0, len(new), QUERY_CHUNK):
            chunk = new[start : start + QUERY_CHUNK]
            best_cosines = (query_embeddings[chunk] @ self.corpus_embeddings.T).max(axis=1)
            for i, best_cosine in zip(chunk, best_cosines):
                self.references[queries[i]] = (float(best_cosine), float(self.bm25.corpus_scores(queries[i]).max()))
        return [self.references[query] for query in queries]

    def score(
        self,
        queries: list[str],
        query_embeddings: np.ndarray,
        passages: list[list[str]],
        passage_embeddings: np.ndarray,
    ) -> np.ndarray:
        """(queries, k) scores of k passages per query; passage_embeddings is (queries, k, dim) from the base model."""
        cosine = np.einsum("qd,qkd->qk", query_embeddings, passage_embeddings).astype(np.float64)
        if self.bm25 is None:
            return cosine
        scores = np.empty_like(cosine)
        for i, (best_cosine, best_bm25) in enumerate(self._references(queries, query_embeddings)):
            lexical = self.bm25.text_scores(queries[i], passages[i])
            scores[i] = fuse(cosine[i], lexical, self.bm25_weight, best_cosine, best_bm25)
        return scores

    def rank_corpus(self, queries: list[str], query_embeddings: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k corpus rows per query by teacher score: the teacher as a retriever, for the baseline table."""
        ranked = []
        for start in range(0, len(queries), QUERY_CHUNK):
            cosines = query_embeddings[start : start + QUERY_CHUNK] @ self.corpus_embeddings.T
            for offset, cosine in enumerate(cosines):
                lexical = self.bm25.corpus_scores(queries[start + offset]) if self.bm25 is not None else None
                ranked.append(fused_top(cosine, lexical, self.bm25_weight, k))
        return ranked
