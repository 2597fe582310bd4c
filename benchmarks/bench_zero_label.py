"""Zero-label domain adaptation on a BEIR corpus, judged on its real test queries.

Training sees the corpus only: synthetic queries (ragtune.synthetic) from a subset of passages,
hard negatives mined by the base model and checked by the teacher (ragtune.teacher), then MNRL on
(query, positive, negative) or MarginMSE on the teacher's margins, with sentence-transformers'
trainer directly. The test queries and qrels are used for the final table only. Base, BM25 and
the teacher are measured in the same run, with full-corpus exact search.

    RAGTUNE_CACHE=/tmp/zl-cache python benchmarks/bench_zero_label.py [--passages 600] \
        [--queries-per-passage 4] [--generators ict,crop,terms] [--loss mnrl|marginmse]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import report_result

from ragtune.evaluate.run import bm25_rankings
from ragtune.io.data import evaluation_qrels, load_dataset
from ragtune.negatives.mining import MiningParams, mine
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.metrics import dense_rankings, retrieval_metrics
from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model
from ragtune.zero_label.pipeline import TeacherCheck, flag_false_negatives, margin_labels
from ragtune.zero_label.synthetic import SyntheticSpec, generate_queries
from ragtune.zero_label.teachers.fusion import (
    FusionTeacher,
    choose_teacher,
    evidence_documents,
    evidence_queries,
)

MODEL = "all-MiniLM-L6-v2"
CANDIDATES = 3  # mined candidates per query; the hardest the teacher does not flag is kept


class Clock:
    def __init__(self):
        self.start, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.start - sum(self.laps.values()), 1)
        print(f"[{self.laps[name]:7.1f} s] {name}", flush=True)


def training_triplets(corpus, corpus_emb, model, teacher, spec, passages, batch_size=64):
    """Synthetic queries from `passages`, a negative mined over the whole corpus each, teacher scores of both."""
    queries, audit = generate_queries(passages.sort_index(), spec)
    row_of = {did: i for i, did in enumerate(corpus["id"])}
    source = np.array([row_of[pid] for pid in queries["passage_id"]])
    query_emb = encode(model, queries["query"].tolist(), batch_size, "query", "encode synthetic queries")
    pairs = [(i, int(row)) for i, row in enumerate(source)]
    params = MiningParams(range_min=10, range_max=50, min_score=0.3, relative_margin=0.95, num_negatives=CANDIDATES)
    sources = pd.factorize(corpus["source_id"])[0]
    candidates, mining_audit = mine(query_emb, corpus_emb, pairs, {i: {r} for i, r in pairs}, sources, params)

    documents = corpus["document"].tolist()
    check = TeacherCheck.build(
        teacher,
        model,
        queries["query"].tolist(),
        query_emb,
        pairs,
        queries["positive"].tolist(),
        documents,
        corpus_emb,
        batch_size,
    )
    padded = [list(c) + [-1] * (CANDIDATES - len(c)) for c in candidates]
    scores = check.scores(np.arange(len(pairs)), np.array(padded))
    flagged = flag_false_negatives(scores[:, 0], scores[:, 1:])
    usable = ~flagged & ~np.isnan(scores[:, 1:])
    first = np.where(usable.any(axis=1), usable.argmax(axis=1), -1)
    keep = first >= 0
    chosen = np.array(padded)[np.arange(len(first)), np.maximum(first, 0)]
    triplets = pd.DataFrame(
        {
            "query": queries["query"][keep].to_numpy(),
            "positive": queries["positive"][keep].to_numpy(),
            "negative": [documents[r] for r in chosen[keep]],
            "label": margin_labels(scores[keep, 0], scores[keep][np.arange(keep.sum()), 1 + first[keep]]),
        }
    )
    guard = mining_audit.as_dict() | {
        "dropped_teacher_false_negative": int(flagged.sum()),
        "queries_without_negative": int((~keep).sum()),
    }
    return triplets, audit.as_dict(), guard, queries["generator"][keep].value_counts().to_dict()


def train(triplets: pd.DataFrame, loss_name: str, out: Path, batch_size: int, lr: float, max_seq_length: int):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss, MultipleNegativesRankingLoss
    from sentence_transformers.util import pairwise_cos_sim

    model = load_model(MODEL, "cpu")
    model.max_seq_length = max_seq_length
    columns = ["query", "positive", "negative"] + (["label"] if loss_name == "marginmse" else [])
    # MarginMSELoss defaults to the dot product; the teacher's labels are cosine margins (ragtune.teacher.fuse), so
    # say cosine: the same number for a model that ends in Normalize, and still the right scale for one that does not
    loss = (
        MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
        if loss_name == "marginmse"
        else MultipleNegativesRankingLoss(model)
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=42,
        logging_steps=10,
    )
    dataset = Dataset.from_pandas(triplets[columns], preserve_index=False)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
    model.max_seq_length = 256
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/scifact")
    parser.add_argument("--passages", type=int, default=600, help="passages that give training queries")
    parser.add_argument("--queries-per-passage", type=int, default=4)
    parser.add_argument("--generators", default="ict,crop,terms")
    parser.add_argument("--loss", choices=["mnrl", "marginmse"], default="mnrl")
    parser.add_argument("--evidence", type=int, default=400, help="held-out ICT queries that choose the teacher")
    parser.add_argument("--learning-rate", type=float, default=6e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default="/tmp/bench_zero_label")
    parser.add_argument(
        "--max-triplets",
        type=int,
        default=0,
        help="train on a random subset of this many triplets (0: all), to hold a step budget",
    )
    parser.add_argument("--prepare-only", action="store_true", help="stop once the training triplets are cached")
    options = parser.parse_args()
    clock = Clock()
    out = Path(options.output)
    out.mkdir(parents=True, exist_ok=True)

    dataset = load_dataset(options.data)
    corpus, qrels = dataset.corpus, evaluation_qrels(dataset, "test")
    doc_ids, documents = corpus["id"].tolist(), corpus["document"].tolist()
    query_ids = sorted(qrels)
    test_queries = [dataset.queries[q] for q in query_ids]
    base = load_model(MODEL, "cpu")
    corpus_emb = encode_corpus_cached(base, model_fingerprint(resolve_model(MODEL)), documents, 64)
    test_emb = encode(base, test_queries, 64, "query")
    results = {
        "bm25": retrieval_metrics(bm25_rankings(test_queries, query_ids, documents, doc_ids), qrels),
        "base": retrieval_metrics(dense_rankings(test_emb, corpus_emb, query_ids, doc_ids), qrels),
    }
    clock.lap("base and BM25 on the test queries (corpus embeddings cached)")

    evidence = evidence_queries(corpus, options.evidence, options.seed)
    evidence_docs, rows = evidence_documents(documents, doc_ids, evidence)
    evidence_emb = corpus_emb.copy()
    evidence_emb[rows] = encode(base, [evidence_docs[r] for r in rows], 64)
    evidence_query_emb = encode(base, evidence["query"].tolist(), 64, "query")
    choice = choose_teacher(evidence["query"].tolist(), evidence_query_emb, rows, evidence_docs, evidence_emb)
    teacher = FusionTeacher(documents, corpus_emb, choice.bm25_weight)
    ranked = teacher.rank_corpus(test_queries, test_emb, 100)
    teacher_rankings = {q: [(doc_ids[r], s) for r, s in hits] for q, hits in zip(query_ids, ranked)}
    results[f"teacher: {choice.name}"] = retrieval_metrics(teacher_rankings, qrels)
    clock.lap(f"teacher chosen on {options.evidence} held-out ICT queries: {choice.name}")

    generators = tuple(options.generators.split(","))
    spec = SyntheticSpec(generators=generators, queries_per_passage=options.queries_per_passage, seed=options.seed)
    training_corpus = corpus[~corpus["id"].isin(set(evidence["passage_id"]))]  # evidence never trains
    key = f"{options.passages}-{options.queries_per_passage}-{options.generators}-{options.seed}-{choice.bm25_weight}"
    cached = out / f"triplets-{key}.parquet"
    if cached.is_file():
        triplets = pd.read_parquet(cached)
        info = json.loads(cached.with_suffix(".json").read_text())
    else:
        triplets, synthetic_audit, guard, used = training_triplets(
            corpus,
            corpus_emb,
            base,
            teacher,
            spec,
            training_corpus.sample(n=options.passages, random_state=options.seed),
        )
        info = {"synthetic_audit": synthetic_audit, "guard": guard, "generators_trained": used}
        triplets.to_parquet(cached)
        cached.with_suffix(".json").write_text(json.dumps(info, indent=2))
    clock.lap(f"{len(triplets)} training triplets (queries, mining, teacher check)")
    if options.prepare_only:
        print(f"triplets cached in {cached}")
        return
    if 0 < options.max_triplets < len(triplets):
        triplets = triplets.sample(n=options.max_triplets, random_state=options.seed).reset_index(drop=True)
        key += f"-max{options.max_triplets}"
        clock.lap(f"kept a random {len(triplets)} of them (--max-triplets)")

    tuned = train(
        triplets, options.loss, out / "model", options.batch_size, options.learning_rate, options.max_seq_length
    )
    clock.lap(f"training: 1 epoch, {options.loss}, {len(triplets)} triplets")
    tuned_corpus = encode(tuned, documents, 64, "document", "encode corpus (tuned)")
    tuned_queries = encode(tuned, test_queries, 64, "query")
    results[f"tuned ({options.loss})"] = retrieval_metrics(
        dense_rankings(tuned_queries, tuned_corpus, query_ids, doc_ids), qrels
    )
    clock.lap("tuned model on the test queries")

    base_ndcg = results["base"]["ndcg@10"]
    print("\n| system | nDCG@10 | MRR@10 | Recall@100 | nDCG@10 / base |\n|---|---|---|---|---|")
    for system, m in results.items():
        print(
            f"| {system} | {m['ndcg@10']:.4f} | {m['mrr@10']:.4f} | {m['recall@100']:.4f} | "
            f"{m['ndcg@10'] / base_ndcg:.3f} |"
        )
    print("\nteacher evidence:", json.dumps(choice.evidence, indent=1))
    print("training data:", json.dumps(info, indent=1))
    record = {
        "options": vars(options),
        "results": results,
        "teacher": choice.as_dict(),
        "training": info,
        "seconds": clock.laps,
    }
    (out / f"result-{key}-{options.loss}.json").write_text(json.dumps(record, indent=2))
    report_result(base=base_ndcg, bm25=results["bm25"]["ndcg@10"], tuned=results[f"tuned ({options.loss})"]["ndcg@10"])


if __name__ == "__main__":
    main()
