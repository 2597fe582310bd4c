"""Hard-negative mining throughput: ragtune's guard against sentence-transformers' `mine_hard_negatives`.

Same model, same SciFact training pairs, same full corpus, same window (ranks 10-50), floor 0.3
and relative margin (ours: negative <= 0.95 x positive; theirs: relative_margin=0.05), one
negative per pair, both from a cold start (corpus encoding included). Ours also excludes
same-source passages and counts every rejection; the last row is our re-mining path, which runs
on embeddings the training evaluation already made. Run on a quiet machine:

    python benchmarks/bench_mining.py [--data data/scifact]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import report_result

from ragtune.io.data import load_dataset
from ragtune.negatives.mining import MiningParams, mine
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model

PARAMS = MiningParams(range_min=10, range_max=50, min_score=0.3, relative_margin=0.95, num_negatives=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--batch-size", type=int, default=64)
    options = parser.parse_args()

    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    dataset = load_dataset(options.data, 20_000)
    corpus = dataset.corpus
    documents = corpus["document"].tolist()
    row_of = {did: i for i, did in enumerate(corpus["id"])}
    train = dataset.positives("train")
    query_ids = sorted(train)
    pairs = [(qi, row_of[d]) for qi, q in enumerate(query_ids) for d in sorted(train[q])]
    positives = {qi: {row_of[d] for d in train[q]} for qi, q in enumerate(query_ids)}
    sources = pd.factorize(corpus["source_id"])[0]
    model = load_model("all-MiniLM-L6-v2", "cpu")

    started = time.perf_counter()
    key = model_fingerprint(resolve_model("all-MiniLM-L6-v2"))
    corpus_emb = encode_corpus_cached(model, key, documents, options.batch_size, Path(tempfile.mkdtemp()))
    query_emb = encode(model, [dataset.queries[q] for q in query_ids], options.batch_size, "query", "encode queries")
    encoded = time.perf_counter()
    negatives, audit = mine(query_emb, corpus_emb, pairs, positives, sources, PARAMS)
    ours = time.perf_counter() - started
    remine = time.perf_counter() - encoded

    anchors = Dataset.from_dict(
        {
            "anchor": [dataset.queries[query_ids[q]] for q, _ in pairs],
            "positive": [documents[p] for _, p in pairs],
        }
    )
    started = time.perf_counter()
    theirs_out = mine_hard_negatives(
        anchors,
        model,
        corpus=documents,
        range_min=10,
        range_max=50,
        min_score=0.3,
        relative_margin=0.05,
        num_negatives=1,
        sampling_strategy="top",
        batch_size=options.batch_size,
        output_format="triplet",
        verbose=False,
    )
    theirs = time.perf_counter() - started

    print(f"\n{len(pairs)} pairs, {len(documents):,} passages, ranks 10-50, floor 0.3, 0.95 x positive, 1 negative")
    print("| miner | seconds | pairs/s | pairs with a negative | ratio vs mine_hard_negatives |\n|---|---|---|---|---|")
    print(
        f"| sentence-transformers mine_hard_negatives | {theirs:.1f} | {len(pairs) / theirs:.1f} | "
        f"{len(theirs_out)} | 1.00 |"
    )
    print(
        f"| ragtune (encode + guard) | {ours:.1f} | {len(pairs) / ours:.1f} | "
        f"{sum(bool(n) for n in negatives)} | {theirs / ours:.2f} |"
    )
    print(
        f"| ragtune re-mining (embeddings from the epoch's evaluation) | {remine:.2f} | {len(pairs) / remine:.0f} | "
        f"{sum(bool(n) for n in negatives)} | {theirs / remine:.0f} |"
    )
    print(f"\nguard audit: {audit.as_dict()}")
    report_result(theirs_s=theirs, ours_s=ours, ratio=theirs / ours, remine_s=remine)


if __name__ == "__main__":
    main()
