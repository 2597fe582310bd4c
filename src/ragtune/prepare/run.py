"""`ragtune prepare`: training pairs with guarded hard negatives, and a held-out evaluation split."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune.config import DataConfig, MiningConfig, ModelConfig, SyntheticConfig
from ragtune.errors import UserError
from ragtune.io.data import Dataset
from ragtune.io.prepared import Prepared
from ragtune.io.qrels import Qrels
from ragtune.negatives.mining import random_negatives
from ragtune.prepare.negatives import Pairs, mine_negatives, teacher_margins
from ragtune.retrieval.models import cache_dir
from ragtune.zero_label import pipeline as zero_label

SAMPLE_COLUMNS = [
    "training_sample_id",
    "event_timestamp",
    "kind",
    "anchor_id",
    "anchor",
    "positive_id",
    "positive",
    "negative_id",
    "negative",
]


@dataclass
class Splits:
    train: Qrels
    eval: Qrels
    eval_source: str  # dev qrels, a held-out share of the training queries, or --eval-data
    eval_kind: str  # "real" queries, or "synthetic" ones made from the passages


def split_queries(
    dataset: Dataset, eval_fraction: float, seed: int, real: Dataset | None = None, real_split: str = "test"
) -> Splits:
    """Training positives minus any test query; evaluation from `real` (--eval-data), dev qrels, or held out
    by query. A query of the evaluation set never trains, even when both name it differently."""
    train = dataset.positives("train")
    if not train:
        raise UserError("no training positives: qrels/train.tsv (or the passages) gave no pair with score > 0")
    test_queries = set(dataset.qrels.get("test", {}))
    train = {qid: docs for qid, docs in train.items() if qid not in test_queries}
    kind = "real" if dataset.kind == "beir" else "synthetic"
    if real is not None:
        held_out = real.positives(real_split)
        texts = {real.queries[q] for q in held_out}
        train = {q: d for q, d in train.items() if q not in held_out and dataset.queries[q] not in texts}
        return Splits(train, held_out, f"--eval-data qrels/{real_split}", "real")
    if "dev" in dataset.qrels:
        held_out = dataset.positives("dev")
        train = {qid: docs for qid, docs in train.items() if qid not in held_out}
        source = "dev" if kind == "real" else "ict sentences, each cut out of its passage"
        return Splits(train, held_out, source, kind)
    query_ids = sorted(train)
    n_eval = max(1, int(round(eval_fraction * len(query_ids))))  # best-model choice needs held-out queries
    if n_eval >= len(query_ids):
        raise UserError(f"data.eval_fraction {eval_fraction} leaves no training queries; lower it")
    chosen = set(np.random.default_rng(seed).permutation(query_ids)[:n_eval].tolist())
    return Splits(
        {q: d for q, d in train.items() if q not in chosen},
        {q: d for q, d in train.items() if q in chosen},
        f"{eval_fraction:.0%} of training queries",
        kind,
    )


def load_eval_data(data: DataConfig, corpus: pd.DataFrame) -> Dataset | None:
    """--eval-data: real queries and qrels over this corpus, checked before any slow work."""
    from ragtune.io.data import evaluation_qrels, load_dataset

    if not data.eval_data:
        return None
    real = load_dataset(data.eval_data, data.max_text_chars)
    if real.kind != "beir":
        raise UserError(f"--eval-data {data.eval_data}: expected a BEIR directory (queries.jsonl, qrels/)")
    qrels = evaluation_qrels(real, data.eval_split)
    missing = sorted({did for docs in qrels.values() for did in docs} - set(corpus["id"]))
    if missing:
        raise UserError(
            f"--eval-data {data.eval_data}: qrels/{data.eval_split} names passage '{missing[0]}' that the "
            f"training corpus does not hold ({len(missing)} such); judge queries over the same corpus"
        )
    return real


def sample_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


def compose_samples(
    corpus: pd.DataFrame,
    queries: dict[str, str],
    query_ids: list[str],
    pairs: list[tuple[int, int]],
    hard: list[list[int]],
    random_draws: list[tuple[int, int]],
    timestamp: datetime,
    positive_text: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per (pair, negative); a pair with no mined negative still yields a positive-only row.

    `positive_text` gives a query's positive as it trains, where it differs from the passage (ICT)."""
    ids, docs = corpus["id"].tolist(), corpus["document"].tolist()
    positive_text = positive_text or {}
    rows = []

    def add(kind: str, pair_index: int, negative: int | None) -> None:
        query, positive = pairs[pair_index]
        qid = query_ids[query]
        neg_id = ids[negative] if negative is not None else None
        rows.append(
            (
                sample_id(qid, ids[positive], kind, neg_id or ""),
                timestamp,
                kind,
                qid,
                queries[qid],
                ids[positive],
                positive_text.get(qid, docs[positive]),
                neg_id,
                docs[negative] if negative is not None else None,
            )
        )

    for pair_index, negatives in enumerate(hard):
        if negatives:
            for negative in negatives:
                add("hard_negative", pair_index, negative)
        else:
            add("positive", pair_index, None)
    for pair_index, negative in random_draws:
        add("random_negative", pair_index, negative)
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS).drop_duplicates("training_sample_id")


def eval_frame(
    corpus: pd.DataFrame,
    queries: dict[str, str],
    qrels: Qrels,
    timestamp: datetime,
    positive_text: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Held-out judgements in the sample schema (kind 'positive'), with the graded score.

    A held-out synthetic query's positive is its passage with the query sentence cut out (`positive_text`):
    the evaluator ranks that text in the passage's place, so the query cannot simply be found by its words."""
    documents = dict(zip(corpus["id"], corpus["document"]))
    positive_text = positive_text or {}
    rows = [
        (
            sample_id(qid, did, "eval"),
            timestamp,
            "positive",
            qid,
            queries[qid],
            did,
            positive_text.get(qid, documents[did]),
            None,
            None,
            score,
        )
        for qid, docs in sorted(qrels.items())
        for did, score in sorted(docs.items())
    ]
    return pd.DataFrame(rows, columns=[*SAMPLE_COLUMNS, "score"])


def training_queries(
    dataset: Dataset, data: DataConfig, synthetic: SyntheticConfig, real: Dataset | None, cache: Path | None
) -> tuple[Dataset, zero_label.SyntheticInput | None, Splits]:
    """The queries that train and those that judge: real ones, or synthetic ones made from the passages."""
    passages = dataset.kind == "passages"
    if passages and not synthetic.generators and not dataset.queries:
        raise UserError(
            f"{data.path}: no passage has a title, and synthetic.generators is [] (titles as the only queries); "
            "give the passages titles, or keep the generators"
        )
    if not synthetic.generators or not passages:
        return dataset, None, split_queries(dataset, data.eval_fraction, data.seed, real, data.eval_split)
    zero_label.check(synthetic)  # before slow work
    made = zero_label.synthetic_dataset(dataset, synthetic, data.seed, cache)
    return made.dataset, made, split_queries(made.dataset, data.eval_fraction, data.seed, real, data.eval_split)


def prepare(
    dataset: Dataset,
    data: DataConfig,
    model: ModelConfig,
    mining: MiningConfig,
    synthetic: SyntheticConfig,
    timestamp: datetime,
) -> Prepared:
    """Labelled or passages-only input; with synthetic.add_to_labels, labelled input in two stages: the
    passages first (the zero-label recipe, in `Prepared.passages_stage`), then the labels, the same
    held-out labelled queries judging both."""
    real = load_eval_data(data, dataset.corpus)
    if not (synthetic.add_to_labels and dataset.kind == "beir" and synthetic.generators):
        return prepare_stage(dataset, data, model, mining, synthetic, timestamp, real)
    zero_label.check(synthetic)  # before slow work
    labels = prepare_stage(dataset, data, model, mining, synthetic, timestamp, real)
    qrels, queries = labels.judgements()
    judges = Dataset("beir", dataset.corpus, queries, {JUDGES: qrels})
    passages = Dataset("passages", dataset.corpus, {}, {})
    first = prepare_stage(
        passages, dataclasses.replace(data, eval_split=JUDGES), model, mining, synthetic, timestamp, judges
    )
    first.summary["eval_source"] = labels.summary["eval_source"]
    labels.passages_stage = first
    return labels


JUDGES = "judges"  # the split name of the labelled held-out queries when they judge the passages stage


def prepare_stage(
    dataset: Dataset,
    data: DataConfig,
    model: ModelConfig,
    mining: MiningConfig,
    synthetic: SyntheticConfig,
    timestamp: datetime,
    real: Dataset | None,
) -> Prepared:
    dataset, made, splits = training_queries(dataset, data, synthetic, real, cache_dir(model))
    corpus = dataset.corpus
    p = Pairs.of(corpus, splits.train)
    mined = mine_negatives(dataset, p, made, model, mining, synthetic)
    rng = np.random.default_rng(data.seed)
    draws = random_negatives(p.pairs, p.positives, p.sources, mining.random_negative_ratio, rng)
    positive_text = made.positive_text if made else None
    samples = compose_samples(
        corpus, dataset.queries, p.query_ids, p.pairs, mined.hard, draws, timestamp, positive_text
    )
    if mined.check is not None:
        samples["label"] = teacher_margins(mined.check, samples, p.query_row, p.row_of)
    held_out = eval_frame(
        corpus, real.queries if real else dataset.queries, splits.eval, timestamp, None if real else positive_text
    )
    summary = {
        "input_kind": dataset.kind,
        "corpus_passages": len(corpus),
        "train_queries": len(p.query_ids),
        "train_pairs": len(p.pairs),
        "eval_queries": len(splits.eval),
        "eval_source": splits.eval_source,
        "eval_kind": splits.eval_kind,
        "samples": samples["kind"].value_counts().to_dict(),
        **({"mined_with": mined.mined_with} if mined.mined_with else {}),
        **({"synthetic": made.audit} if made else {}),
        **({"teacher": mined.teacher} if mined.teacher else {}),
    }
    return Prepared(samples, held_out, corpus, summary, mined.audit.as_dict())


def input_timestamp(path: Path) -> datetime:
    """Newest input modification time: deterministic for the same inputs, and Feast-ready."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in files), tz=UTC).replace(microsecond=0)
