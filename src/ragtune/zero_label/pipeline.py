"""Passages in, training data out: what `prepare` does when the input has no real queries.

Synthetic queries (synthetic.py, generators/) train, real titles among them; a held-out set of ICT
queries, their sentence cut out of the source passage, never trains. Those held-out queries choose
the teacher's settings (teachers/fusion.py: how much BM25 to mix into the base model's cosine) and,
unless --eval-data brings real queries, measure each epoch, labelled synthetic.
The teacher then checks the mined negatives against each positive as it trains: a candidate it
scores at or above the positive is a false negative. Its score differences label every remaining
negative, and margin-mse (losses.py) trains on them, GPL-style.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune.config import SyntheticConfig
from ragtune.errors import UserError
from ragtune.io.data import Dataset
from ragtune.io.qrels import Qrels
from ragtune.retrieval.metrics import DECIDING_QUERIES
from ragtune.zero_label.generators import check_spec
from ragtune.zero_label.synthetic import SyntheticSpec, generate_queries
from ragtune.zero_label.teachers import Teacher
from ragtune.zero_label.teachers import check as check_teacher
from ragtune.zero_label.teachers.fusion import evidence_queries
from ragtune.zero_label.text import split_title

TEACHER_SPARE = 2  # extra candidates mined per pair, for the teacher to veto
SCORE_CHUNK = 4096  # pairs scored at once: bounds the (pairs, candidates, dim) embeddings in memory
MAX_TITLE_PASSAGES = 50


@dataclass
class SyntheticInput:
    dataset: Dataset  # kind "synthetic": train qrels from generated queries, dev qrels from the held-out ones
    positive_text: dict[str, str]  # query id -> its positive as it trains or is judged (ICT cuts the sentence out)
    evidence: pd.DataFrame
    audit: dict


def title_queries(training: pd.DataFrame) -> tuple[dict[str, str], Qrels, dict[str, str]]:
    """Real titles as one more query source: one query per source (a document's passages share it).

    A title is real when it is not empty and names at most MAX_TITLE_PASSAGES passages (a shared
    "Untitled" names them all). A one-passage source trains with its title cut off the passage, so
    the query is not found by copying it (as ict cuts its sentence out)."""
    queries, qrels, positive_text = {}, {}, {}
    for source, group in training[training["title"] != ""].groupby("source_id", sort=True):
        if len(group) > MAX_TITLE_PASSAGES:
            continue
        qid = f"title:{source}"
        title, document = group["title"].iloc[0], group["document"].iloc[0]
        queries[qid], qrels[qid] = title, {pid: 1.0 for pid in group["id"]}
        body = split_title(document, title)[1]
        if len(group) == 1 and body.strip():
            positive_text[qid] = body
    return queries, qrels, positive_text


def held_out_evidence(corpus: pd.DataFrame, wanted: int, seed: int) -> pd.DataFrame:
    """`wanted` held-out ICT queries (at most one per 5 passages), or as many as the corpus gives down to a
    floor that still decides (DECIDING_QUERIES, or `wanted` if the user asked for fewer), with a warning."""
    floor = min(wanted, DECIDING_QUERIES)
    evidence = evidence_queries(corpus, min(wanted, len(corpus) // 5), seed)
    if len(evidence) < floor:
        fewer = f", or set synthetic.evidence_queries to {len(evidence)} to decide on that few (noisy)"
        raise UserError(
            f"the corpus gives {len(evidence)} held-out synthetic queries (at most one per 5 of its {len(corpus)} "
            f"passages, each with a sentence to cut out); {floor} or more are needed to choose the teacher and "
            f"measure tuning: add passages or bring real queries (--eval-data){fewer if len(evidence) >= 5 else ''}"
        )
    if len(evidence) < wanted:
        warnings.warn(
            f"holding out {len(evidence)} synthetic queries, not {wanted} (synthetic.evidence_queries): the corpus "
            f"gives no more ({len(corpus)} passages, at most one per 5); {floor} or more still decide",
            stacklevel=3,
        )
    return evidence


def spec_of(s: SyntheticConfig, seed: int, cache_dir: Path | None = None) -> SyntheticSpec:
    """The generators' options from the `synthetic:` section."""
    return SyntheticSpec(
        generators=tuple(s.generators),
        queries_per_passage=s.queries_per_passage,
        max_query_words=s.max_query_words,
        ict_remove_probability=s.ict_remove_probability,
        seed=seed,
        options=s,
        cache_dir=cache_dir,
    )


def check(s: SyntheticConfig) -> None:
    """Known generators and teacher with settings that hold: one line, before any slow work."""
    if s.generators:
        check_spec(spec_of(s, 0))
    check_teacher(s)


def synthetic_dataset(dataset: Dataset, s: SyntheticConfig, seed: int, cache_dir: Path | None = None) -> SyntheticInput:
    corpus = dataset.corpus
    evidence = held_out_evidence(corpus, s.evidence_queries, seed)
    training = corpus[~corpus["id"].isin(set(evidence["passage_id"]))]
    if 0 < s.passages < len(training):
        training = training.sample(n=s.passages, random_state=seed).sort_index()
    queries, audit = generate_queries(training, spec_of(s, seed, cache_dir))
    if queries.empty:
        raise UserError(
            "no passage is long enough to make a synthetic query from (16 words or more after its title); "
            "bring longer passages or real queries"
        )
    titles, title_qrels, title_positives = title_queries(training) if s.titles else ({}, {}, {})
    evidence_ids = [f"heldout:{pid}" for pid in evidence["passage_id"]]
    texts = dict(zip(queries["query_id"], queries["query"])) | dict(zip(evidence_ids, evidence["query"])) | titles
    train: Qrels = {qid: {pid: 1.0} for qid, pid in zip(queries["query_id"], queries["passage_id"])} | title_qrels
    held_out: Qrels = {qid: {pid: 1.0} for qid, pid in zip(evidence_ids, evidence["passage_id"])}
    synthetic = Dataset("synthetic", corpus, texts, {"train": train, "dev": held_out})
    positives = dict(zip(queries["query_id"], queries["positive"])) | dict(zip(evidence_ids, evidence["positive"]))
    return SyntheticInput(synthetic, positives | title_positives, evidence, audit.as_dict() | {"titles": len(titles)})


def flag_false_negatives(positive_scores: np.ndarray, candidate_scores: np.ndarray) -> np.ndarray:
    """True where the teacher scores a candidate negative at or above the query's positive.

    positive_scores (n,), candidate_scores (n, k); NaN (padding) is never flagged. The mining guard
    drops these and counts them as dropped_teacher_false_negative.
    """
    return np.asarray(candidate_scores) >= np.asarray(positive_scores)[:, None]


def margin_labels(positive_scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """MarginMSE labels: teacher(q, positive) - teacher(q, negative), on the student's cosine scale."""
    return np.asarray(positive_scores) - np.asarray(negative_scores)


@dataclass
class TeacherCheck:
    """The teacher's view of the training pairs, all with base-model embeddings: the queries, each pair's positive
    as it trains (ICT cuts its sentence out, so it is encoded anew) and the corpus its negatives come from."""

    teacher: Teacher
    queries: list[str]
    query_embeddings: np.ndarray
    pairs: list[tuple[int, int]]  # (query row, positive corpus row)
    positives: list[str]
    positive_embeddings: np.ndarray
    documents: list[str]
    corpus_embeddings: np.ndarray
    scored: dict[tuple[int, int], float] = field(default_factory=dict)  # (pair, row) -> margin the vetoes computed

    @classmethod
    def build(
        cls,
        teacher,
        encoder,
        queries,
        query_embeddings,
        pairs,
        positives,
        documents,
        corpus_embeddings,
        batch_size: int,
    ) -> TeacherCheck:
        from ragtune.retrieval.embeddings import encode

        rows = np.array([p for _, p in pairs], dtype=np.int64)
        embeddings = corpus_embeddings[rows].copy()
        cut = [i for i, (text, row) in enumerate(zip(positives, rows)) if text != documents[row]]
        if cut:
            embeddings[cut] = encode(
                encoder, [positives[i] for i in cut], batch_size, "document", "encode cut positives"
            )
        return cls(teacher, queries, query_embeddings, pairs, positives, embeddings, documents, corpus_embeddings)

    def scores(self, pair_ids: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(n, 1 + k): the teacher's score of each pair's positive, then of its k candidate rows (-1 pads: NaN)."""
        out = np.full((len(pair_ids), 1 + candidates.shape[1]), np.nan)
        for start in range(0, len(pair_ids), SCORE_CHUNK):  # (chunk, 1 + k, dim) embeddings at a time
            ids, rows = pair_ids[start : start + SCORE_CHUNK], candidates[start : start + SCORE_CHUNK]
            query_rows = [self.pairs[p][0] for p in ids]
            texts = [
                [self.positives[p]] + [self.documents[r] if r >= 0 else "" for r in row] for p, row in zip(ids, rows)
            ]
            embeddings = np.concatenate(
                [self.positive_embeddings[ids][:, None], self.corpus_embeddings[np.maximum(rows, 0)]], axis=1
            )
            scored = self.teacher.score(
                [self.queries[q] for q in query_rows], self.query_embeddings[query_rows], texts, embeddings
            )
            scored[:, 1:][rows < 0] = np.nan
            out[start : start + SCORE_CHUNK] = scored
        return out

    def vetoes(self, candidates: list[list[int]], keep: int) -> tuple[list[list[int]], int]:
        """Each pair's first `keep` candidates the teacher scores below the positive; and how many it vetoed."""
        width = max((len(c) for c in candidates), default=0)
        if width == 0:
            return candidates, 0
        padded = np.array([c + [-1] * (width - len(c)) for c in candidates])
        scores = self.scores(np.arange(len(candidates)), padded)
        vetoed = flag_false_negatives(scores[:, 0], scores[:, 1:])
        kept = [[r for r, v in zip(row, flags) if r >= 0 and not v][:keep] for row, flags in zip(padded, vetoed)]
        for pair, (row, margin) in enumerate(zip(padded, margin_labels(scores[:, :1], scores[:, 1:]))):
            self.scored.update({(pair, int(r)): float(m) for r, m in zip(row, margin) if r >= 0})
        return kept, int(vetoed.sum())

    def margins(self, pair_ids: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """MarginMSE labels of (pair, negative row): teacher(q, positive) - teacher(q, negative); NaN without one.

        Candidates the vetoes already scored are not scored again (a cross-encoder pass is the costly part)."""
        labels = np.array([self.scored.get((int(p), int(n)), np.nan) for p, n in zip(pair_ids, negatives)])
        missing = np.flatnonzero(np.isnan(labels) & (negatives >= 0))
        if len(missing):
            scores = self.scores(pair_ids[missing], negatives[missing][:, None])
            labels[missing] = margin_labels(scores[:, 0], scores[:, 1])
        return labels
