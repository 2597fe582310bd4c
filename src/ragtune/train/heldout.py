"""The evaluator the Trainer calls every epoch: real retrieval on the held-out queries, whole corpus.

sentence-transformers 6.2 runs an evaluator on rank 0 only (the other ranks serve its encode
calls) and broadcasts the metrics, so every rank sees the same numbers. The corpus embeddings of
the last call are kept: re-mining and the final model's embedding cache reuse them instead of
encoding the corpus again. Held-out synthetic queries are ranked with their source passage's
query sentence cut out (eval.parquet's `positive`): in the full passage BM25-like overlap finds
them, and that number rose on a corpus where real queries got worse (CHANGELOG.md).

In a mixed-precision run the epochs are measured in bf16 (they choose the epoch and re-mine; the
parity is in docs/benchmarks.md), the base model and the last epoch in fp32; if an earlier epoch
is best, the end of the run (finish.py) measures it again in fp32 before the never-ship-worse gate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from sentence_transformers.base.evaluation import BaseEvaluator

from ragtune.io.prepared import Prepared
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.fusion import weight_evidence
from ragtune.retrieval.metrics import PRIMARY_METRIC, dense_rankings, retrieval_metrics


@contextmanager
def max_length(model, length: int) -> Iterator[None]:
    """Training may run at a shorter token limit; encoding for evaluation and saving use the full one."""
    training_length = model.max_seq_length
    model.max_seq_length = length
    try:
        yield
    finally:
        model.max_seq_length = training_length


@contextmanager
def full_precision(model) -> Iterator[None]:
    """fp32 encodes inside a mixed-precision run: accelerate wraps the model's forward in autocast and
    keeps the original beside it (in fp32 runs there is nothing to undo)."""
    original = model.__dict__.get("_original_forward")
    if original is None:
        yield
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


class HeldOutEvaluator(BaseEvaluator):
    def __init__(self, prepared: Prepared, batch_size: int, max_seq_length: int, base_cache: tuple[str, Path | None]):
        super().__init__()
        self.primary_metric = PRIMARY_METRIC
        held_out = prepared.eval
        self.qrels, anchor_text = prepared.judgements()
        self.query_ids = sorted(self.qrels)
        self.query_texts = [anchor_text[q] for q in self.query_ids]
        self.doc_ids = prepared.corpus["id"].tolist()
        self.documents = prepared.corpus["document"].tolist()
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.base_cache = base_cache
        self.corpus_embeddings: np.ndarray | None = None
        self.measured_in_fp32 = False  # were corpus_embeddings (and the last metrics) encoded in fp32?
        self.final_step = -1  # the run's last step (the callback sets it): measured in fp32, it is what ships
        row_of = {did: i for i, did in enumerate(self.doc_ids)}
        judged = dict(zip(held_out["positive_id"], held_out["positive"]))
        self.replaced = {row_of[d]: text for d, text in judged.items() if text != self.documents[row_of[d]]}
        query_row = {qid: i for i, qid in enumerate(self.query_ids)}
        self.pair_rows = [(query_row[q], row_of[d]) for q, docs in self.qrels.items() for d in docs if docs[d] > 0]

    def encode_corpus(self, model, steps: int) -> np.ndarray:
        if steps <= 0:  # the untouched base model: its corpus embeddings are cached from `prepare`
            key, cache_dir = self.base_cache
            return encode_corpus_cached(model, key, self.documents, self.batch_size, cache_dir, progress=False)
        return encode(model, self.documents, self.batch_size, "document", progress=False)  # the training bar shows it

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        metrics = self.measure(model, steps)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)  # the card's training log
        return metrics

    def measure(self, model, steps: int) -> dict[str, float]:
        """Held-out metrics of `model` (steps <= 0: the untouched base model, whose corpus embeddings are cached)."""
        # the base (as cached: the gate's reference) and the last epoch (the usual best) in fp32
        precise = steps <= 0 or steps == self.final_step
        with max_length(model, self.max_seq_length), full_precision(model) if precise else nullcontext():
            self.corpus_embeddings = self.encode_corpus(model, steps)  # the real corpus: re-mining, cache
            queries, corpus = self.judged_embeddings(model, self.corpus_embeddings)
        self.measured_in_fp32 = precise or "_original_forward" not in model.__dict__
        metrics = retrieval_metrics(dense_rankings(queries, corpus, self.query_ids, self.doc_ids), self.qrels)
        q, d = np.array(self.pair_rows).T
        metrics["positive_pair_similarity"] = float(np.mean(np.sum(queries[q] * corpus[d], axis=1)))
        return metrics

    def judged_embeddings(self, model, corpus_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Query embeddings and the corpus the queries are judged on: held-out synthetic queries find their
        source passage with the query's sentence cut out (re-encoded here; the rest is `corpus_embeddings`)."""
        queries = encode(model, self.query_texts, self.batch_size, "query", progress=False)
        if not self.replaced:
            return queries, corpus_embeddings
        corpus = corpus_embeddings.copy()
        corpus[list(self.replaced)] = encode(
            model, list(self.replaced.values()), self.batch_size, "document", progress=False
        )
        return queries, corpus

    def fusion_evidence(self, model, corpus_embeddings: np.ndarray | None, steps: int) -> list[dict]:
        """Held-out metrics of `model` fused with BM25 at each weight (retrieval.fusion.WEIGHTS), w = 0 first."""
        with max_length(model, self.max_seq_length):
            if corpus_embeddings is None:  # a resumed run: the best model's embeddings were made by another process
                corpus_embeddings = self.encode_corpus(model, steps)
            queries, corpus = self.judged_embeddings(model, corpus_embeddings)
        documents = list(self.documents)
        for row, text in self.replaced.items():
            documents[row] = text
        return weight_evidence(self.query_texts, queries, corpus, documents, self.qrels, self.query_ids, self.doc_ids)
