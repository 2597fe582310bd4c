"""A teacher for zero-label training (GPL-style pseudo-labels) that needs no download.

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
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune.errors import UserError
from ragtune.retrieval.bm25 import Bm25
from ragtune.retrieval.fusion import QUERY_CHUNK, WEIGHTS, fuse, fused_top, mode_name
from ragtune.retrieval.metrics import PRIMARY_METRIC
from ragtune.zero_label.synthetic import SyntheticSpec, generate_queries

RERANK_DEPTH = 100  # the cross-encoder teacher as a retriever reranks this many of the base model's hits


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


class CrossEncoderTeacher:
    """A local cross-encoder reads query and passage together: the stronger teacher when the user has one.

    Scores are its sigmoid, in [0, 1] like the student's cosine of related texts, so their differences
    serve as MarginMSE labels. As a retriever (the baseline row) it reranks the base model's top 100.
    """

    def __init__(self, model, documents: list[str], corpus_embeddings: np.ndarray, batch_size: int = 64):
        self.model, self.documents, self.corpus_embeddings = model, documents, corpus_embeddings
        self.batch_size = batch_size

    @staticmethod
    def load_model(path: str, device: str):
        """The CrossEncoder at `path`, or one line saying why that directory is not one."""
        import json

        import torch
        from sentence_transformers import CrossEncoder

        from ragtune.retrieval.models import pick_device

        where = f"synthetic.cross_encoder {path}"
        config = Path(path) / "config.json"
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError):
            raise UserError(f"{where}: no readable config.json; pass a local cross-encoder directory") from None
        if not any(name.endswith("ForSequenceClassification") for name in architectures):
            raise UserError(
                f"{where}: config.json names {architectures or 'no architecture'}, not a sequence classifier; "
                "pass a cross-encoder (e.g. one saved with sentence_transformers.CrossEncoder.save_pretrained)"
            )
        try:
            model = CrossEncoder(
                path, device=pick_device(device), local_files_only=True, activation_fn=torch.nn.Sigmoid()
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"{where}: cannot load it as a cross-encoder ({exc})") from None
        if model.num_labels != 1:
            raise UserError(f"{where}: {model.num_labels} output labels; a relevance cross-encoder has one")
        return model

    def score(self, queries: list[str], query_embeddings, passages: list[list[str]], passage_embeddings) -> np.ndarray:
        """(queries, k) scores of k passages per query; empty passages (padding) are not scored."""
        pairs = [(q, p) for q, row in zip(queries, passages) for p in row if p]
        flat = iter(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False) if pairs else [])
        return np.array([[float(next(flat)) if p else np.nan for p in row] for row in passages], dtype=np.float64)

    def rank_corpus(self, queries: list[str], query_embeddings: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """The base model's top RERANK_DEPTH per query, reordered by the cross-encoder; its top k."""
        ranked = []
        for start in range(0, len(queries), QUERY_CHUNK):
            cosines = query_embeddings[start : start + QUERY_CHUNK] @ self.corpus_embeddings.T
            tops = np.argsort(-cosines, axis=1, kind="stable")[:, :RERANK_DEPTH]
            chunk = queries[start : start + QUERY_CHUNK]
            scores = self.score(chunk, None, [[self.documents[r] for r in top] for top in tops], None)
            for top, row in zip(tops, scores):
                order = np.argsort(-row, kind="stable")[:k]
                ranked.append([(int(top[i]), float(row[i])) for i in order])
        return ranked


def flag_false_negatives(positive_scores: np.ndarray, candidate_scores: np.ndarray) -> np.ndarray:
    """True where the teacher scores a candidate negative at or above the query's positive.

    positive_scores (n,), candidate_scores (n, k); NaN (padding) is never flagged. The mining guard
    drops these and counts them as dropped_teacher_false_negative.
    """
    return np.asarray(candidate_scores) >= np.asarray(positive_scores)[:, None]


def margin_labels(positive_scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """MarginMSE labels: teacher(q, positive) - teacher(q, negative), on the student's cosine scale."""
    return np.asarray(positive_scores) - np.asarray(negative_scores)


def build_teacher(spec: dict, cross_encoder, documents: list[str], corpus_embeddings: np.ndarray, batch_size: int):
    """The one place a teacher is built, in prepare and in evaluate alike: the loaded cross-encoder when
    there is one, else the fusion of the base model and BM25 at the weight `spec` (summary.json) records."""
    if cross_encoder is not None:
        return CrossEncoderTeacher(cross_encoder, documents, corpus_embeddings, batch_size)
    return FusionTeacher(documents, corpus_embeddings, spec["bm25_weight"])
