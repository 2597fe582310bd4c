"""bf16 encodes against fp32, as training uses them: do they pick the same model and mine the same negatives?

A mixed-precision run (`train.precision: auto` on a CPU with AVX512-BF16 or AMX) measures its
epochs in bf16 to choose the best one and re-mines hard negatives from those embeddings; the base
model, the last epoch, the gate and every reported number stay fp32. For each model given, this
encodes the whole corpus and the split's queries both ways (bf16 as training runs it: autocast)
and prints nDCG@10 of each, the model each precision would pick, the lowest cosine between a
passage's two embeddings, the encode speed ratio, and the share of fp32's mining candidates
(the training queries' ranks [range_min, range_max), the guard's window) that bf16 keeps. Quiet machine:

    python benchmarks/bench_precision.py --data data/scifact --model all-MiniLM-L6-v2 --model RUN/model ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import report_result

from ragtune import config as cfg
from ragtune.io.data import evaluation_qrels, load_dataset
from ragtune.retrieval.embeddings import encode, top_k
from ragtune.retrieval.metrics import PRIMARY_METRIC, dense_rankings, retrieval_metrics
from ragtune.retrieval.models import load_model


def encoded(model, queries: list[str], documents: list[str], batch_size: int, bf16: bool):
    """(query embeddings, corpus embeddings, corpus seconds), under bf16 autocast or in fp32."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        started = time.perf_counter()
        corpus = encode(model, documents, batch_size, "document", progress=False)
        seconds = time.perf_counter() - started
        return encode(model, queries, batch_size, "query", progress=False), corpus, seconds


def window_overlap(fp32: tuple, bf16: tuple, window: tuple[int, int]) -> float:
    """Share of fp32's candidates in ranks [start, stop) that bf16's window holds too, over all queries."""
    start, stop = window
    _, mine = top_k(fp32[0], fp32[1], stop)
    _, theirs = top_k(bf16[0], bf16[1], stop)
    kept = sum(len(set(a[start:]) & set(b[start:])) for a, b in zip(mine, theirs))
    return kept / (len(mine) * (stop - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--model", action="append", dest="models", required=True, help="repeat: models in order")
    parser.add_argument("--split", default="test", help="qrels split that judges (nDCG@10)")
    parser.add_argument("--batch-size", type=int, default=64)
    options = parser.parse_args()
    dataset = load_dataset(options.data)
    documents, doc_ids = dataset.corpus["document"].tolist(), dataset.corpus["id"].tolist()
    qrels = evaluation_qrels(dataset, options.split)
    judged = sorted(qrels)
    training = sorted(evaluation_qrels(dataset, "train"))
    mining = cfg.load(None, {}).mining
    window = (mining.range_min, mining.range_max)
    print("| model | nDCG@10 fp32 | nDCG@10 bf16 | difference | lowest cosine | bf16 speed | mining window kept |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in options.models:
        model = load_model(name, "cpu")
        texts = [dataset.queries[q] for q in judged + training]
        runs = {bf16: encoded(model, texts, documents, options.batch_size, bf16) for bf16 in (False, True)}
        scores = {}
        for bf16, (queries, corpus, _) in runs.items():
            rankings = dense_rankings(queries[: len(judged)], corpus, judged, doc_ids)
            scores[bf16] = retrieval_metrics(rankings, qrels)[PRIMARY_METRIC]
        (q32, c32, s32), (q16, c16, s16) = runs[False], runs[True]
        lowest = float(np.min(np.sum(c32 * c16, axis=1)))
        kept = window_overlap((q32[len(judged) :], c32), (q16[len(judged) :], c16), window)
        rows.append({"fp32": scores[False], "bf16": scores[True], "speed": s32 / s16, "kept": kept, "cos": lowest})
        print(
            f"| {name} | {scores[False]:.4f} | {scores[True]:.4f} | {scores[True] - scores[False]:+.4f} | "
            f"{lowest:.5f} | x{s32 / s16:.2f} | {kept:.4f} |",
            flush=True,
        )
    pick = {p: int(np.argmax([row[p] for row in rows])) for p in ("fp32", "bf16")}
    worst_difference = max(abs(row["bf16"] - row["fp32"]) for row in rows)
    print(
        f"\npicked: fp32 {options.models[pick['fp32']]}, bf16 {options.models[pick['bf16']]}; largest nDCG@10 "
        f"difference {worst_difference:.4f}; lowest share of mining candidates kept "
        f"{min(row['kept'] for row in rows):.4f} (window {window[0]}-{window[1]}, {len(training)} training queries); "
        f"{len(judged)} {options.split} queries, {len(documents)} passages"
    )
    report_result(
        same_pick=float(pick["fp32"] == pick["bf16"]),
        largest_ndcg_difference=worst_difference,
        lowest_window_kept=min(row["kept"] for row in rows),
        lowest_cosine=min(row["cos"] for row in rows),
        bf16_speed=float(np.mean([row["speed"] for row in rows])),
    )


if __name__ == "__main__":
    main()
