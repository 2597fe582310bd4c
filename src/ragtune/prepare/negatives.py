"""The pairs `prepare` trains on and their hard negatives: mined by the base model behind the false-negative
guard (negatives/mining.py), vetoed and labelled by the zero-label teacher when there is one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ragtune.config import MiningConfig, ModelConfig, SyntheticConfig
from ragtune.io.data import Dataset
from ragtune.io.qrels import Qrels
from ragtune.negatives.mining import MiningAudit, MiningParams, mine
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.models import cache_dir, load_model, model_fingerprint, resolve_model
from ragtune.zero_label import pipeline as zero_label
from ragtune.zero_label import teachers


@dataclass
class Pairs:
    """The training (query, positive) pairs as row numbers of the queries and the corpus."""

    query_ids: list[str]
    query_row: dict[str, int]
    row_of: dict[str, int]  # passage id -> corpus row
    pairs: list[tuple[int, int]]
    positives: dict[int, set[int]]  # every labelled positive of a query: never its negative
    sources: np.ndarray  # corpus row -> source document number: chunks of a positive's source are no negatives

    @classmethod
    def of(cls, corpus: pd.DataFrame, train: Qrels) -> Pairs:
        row_of = {did: i for i, did in enumerate(corpus["id"])}
        query_ids = sorted(train)
        query_row = {qid: i for i, qid in enumerate(query_ids)}
        pairs = [(query_row[q], row_of[d]) for q in query_ids for d in sorted(train[q])]
        positives = {query_row[q]: {row_of[d] for d in train[q]} for q in query_ids}
        return cls(query_ids, query_row, row_of, pairs, positives, pd.factorize(corpus["source_id"])[0])


@dataclass
class Mined:
    hard: list[list[int]]  # corpus rows of each pair's hard negatives
    audit: MiningAudit
    teacher: dict | None = None  # the zero-label teacher, as summary.json records it
    check: zero_label.TeacherCheck | None = None  # its scores: vetoes and margins
    mined_with: str = ""  # fingerprint of the model that mined: train re-mines if another model starts


def mine_negatives(
    dataset: Dataset,
    p: Pairs,
    made,
    model: ModelConfig,
    mining: MiningConfig,
    synthetic: SyntheticConfig,
) -> Mined:
    """Hard negatives by the base model behind the false-negative guard; with a zero-label teacher, its veto."""
    wanted = mining.hard_negatives_per_query
    if wanted <= 0:
        return Mined([[] for _ in p.pairs], MiningAudit(pairs=len(p.pairs), pairs_without_negative=len(p.pairs)))
    with_teacher = made is not None and synthetic.teacher != teachers.NO_TEACHER
    encoder = load_model(model.name, model.device, model.backend)
    key = model_fingerprint(resolve_model(model.name))
    documents = dataset.corpus["document"].tolist()
    corpus_emb = encode_corpus_cached(encoder, key, documents, model.encode_batch_size, cache_dir(model))
    texts = [dataset.queries[q] for q in p.query_ids]
    query_emb = encode(encoder, texts, model.encode_batch_size, "query", "encode queries")
    spare = zero_label.TEACHER_SPARE if with_teacher else 0
    hard, audit = mine(query_emb, corpus_emb, p.pairs, p.positives, p.sources, MiningParams.of(mining, wanted + spare))
    mined = Mined(hard, audit, mined_with=key)
    if with_teacher:
        evidence = teachers.Evidence(encoder, dataset.corpus, made.evidence, corpus_emb, model.encode_batch_size)
        mined.teacher = teachers.choose(synthetic, evidence)
        teacher = teachers.build_teacher(mined.teacher, documents, corpus_emb, model.device, model.encode_batch_size)
        trained_positives = [made.positive_text.get(p.query_ids[q], documents[d]) for q, d in p.pairs]
        mined.check = zero_label.TeacherCheck.build(
            teacher,
            encoder,
            texts,
            query_emb,
            p.pairs,
            trained_positives,
            documents,
            corpus_emb,
            model.encode_batch_size,
        )
        had = sum(bool(negatives) for negatives in mined.hard)
        mined.hard, vetoed = mined.check.vetoes(mined.hard, wanted)
        audit.dropped_teacher_false_negative, audit.kept = vetoed, audit.kept - vetoed
        audit.count_emptied("teacher_false_negative", had - sum(bool(negatives) for negatives in mined.hard))
    mined.hard = [negatives[:wanted] for negatives in mined.hard]
    audit.selected = sum(map(len, mined.hard))
    audit.pairs_without_negative = sum(not negatives for negatives in mined.hard)
    return mined


def teacher_margins(
    check: zero_label.TeacherCheck, samples: pd.DataFrame, query_row: dict[str, int], row_of: dict[str, int]
) -> np.ndarray:
    """Each sample's MarginMSE label from the teacher; NaN for a row without a negative (margin-mse skips it)."""
    pair_of = {pair: i for i, pair in enumerate(check.pairs)}
    pair_ids = np.array(
        [pair_of[(query_row[q], row_of[p])] for q, p in zip(samples["anchor_id"], samples["positive_id"])]
    )
    negatives = np.array([row_of.get(n, -1) if isinstance(n, str) else -1 for n in samples["negative_id"]])
    labels = np.full(len(samples), np.nan)
    present = np.flatnonzero(negatives >= 0)
    labels[present] = check.margins(pair_ids[present], negatives[present])
    return labels
