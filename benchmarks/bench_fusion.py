"""Does the fusion weight chosen on evidence hold on real test queries? (issue: serve the best retriever)

For each dataset and model: nDCG@10 on the real test queries at every BM25 weight (the last column,
`oracle`, picks on test itself: an upper bound, never a choice), and the weight each kind of
evidence chooses, judged on test:
- real: held-out real queries (the dev split, else a share of the training queries), as `train` uses;
- synthetic: held-out ICT queries, their sentence cut out of the passage (the zero-label held-out set);
- synthetic, uncapped: the same rows chosen without SYNTHETIC_WEIGHT_CAP (`retrieval.fusion.choose_weight`),
  to show what the cap corrects.

    python benchmarks/bench_fusion.py [--data ../shared/data/scifact --data ../shared/data/arguana]
        [--model all-MiniLM-L6-v2] [--evidence 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import report_result

from ragtune.config import DataConfig
from ragtune.io.data import load_dataset
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.fusion import WEIGHTS, choose_weight, mode_name, weight_evidence
from ragtune.retrieval.metrics import PRIMARY_METRIC
from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model
from ragtune.zero_label.teachers.fusion import evidence_documents, evidence_queries


def real_evidence(dataset, count: int, seed: int) -> tuple[dict, str]:
    """Judged real queries outside test: dev, else a random share of train."""
    for split in ("dev", "train"):
        qrels = {q: {d: s for d, s in docs.items() if s > 0} for q, docs in dataset.qrels.get(split, {}).items()}
        qrels = {q: docs for q, docs in qrels.items() if docs}
        if qrels:
            keys = sorted(qrels)
            chosen = np.random.default_rng(seed).choice(len(keys), size=min(count, len(keys)), replace=False)
            return {keys[i]: qrels[keys[i]] for i in sorted(chosen)}, f"qrels/{split}"
    raise SystemExit(f"{dataset}: no dev or train qrels")


def rows_on(model, texts, qrels, query_ids, documents, corpus_emb, doc_ids, batch: int):
    query_emb = encode(model, texts, batch, "query", progress=False)
    return weight_evidence(texts, query_emb, corpus_emb, documents, qrels, query_ids, doc_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", default=[])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--evidence", type=int, default=200, help="held-out queries of each kind")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    model = load_model(args.model, "cpu", "torch")
    key = model_fingerprint(resolve_model(args.model))
    summary = {}
    for path in args.data or ["../shared/data/scifact", "../shared/data/arguana"]:
        started = time.perf_counter()
        dataset = load_dataset(path, DataConfig().max_text_chars)
        corpus = dataset.corpus
        doc_ids, documents = corpus["id"].tolist(), corpus["document"].tolist()
        corpus_emb = encode_corpus_cached(model, key, documents, 64, None)
        test = {q: docs for q, docs in dataset.qrels["test"].items() if any(s > 0 for s in docs.values())}
        test_ids = sorted(test)
        test_rows = rows_on(
            model, [dataset.queries[q] for q in test_ids], test, test_ids, documents, corpus_emb, doc_ids, 64
        )
        on_test = {row["bm25_weight"]: row[PRIMARY_METRIC] for row in test_rows}

        real, source = real_evidence(dataset, args.evidence, args.seed)
        real_ids = sorted(real)
        real_rows = rows_on(
            model, [dataset.queries[q] for q in real_ids], real, real_ids, documents, corpus_emb, doc_ids, 64
        )

        evidence = evidence_queries(corpus, args.evidence, args.seed)
        cut, rows = evidence_documents(documents, doc_ids, evidence)
        cut_emb = corpus_emb.copy()
        cut_emb[rows] = encode(model, [cut[r] for r in rows], 64, "document", progress=False)
        synthetic_ids = [f"s{i}" for i in range(len(evidence))]
        synthetic = {q: {pid: 1.0} for q, pid in zip(synthetic_ids, evidence["passage_id"])}
        synthetic_rows = rows_on(model, evidence["query"].tolist(), synthetic, synthetic_ids, cut, cut_emb, doc_ids, 64)

        name = path.rstrip("/").split("/")[-1]
        print(f"\n## {name}: {len(corpus)} passages, {len(test_ids)} test queries, model {args.model}")
        print("| evidence | queries | " + " | ".join(mode_name(w) for w in WEIGHTS) + " | chosen | test nDCG@10 |")
        print("|---" * (len(WEIGHTS) + 4) + "|")
        choices = {
            "real (" + source + ")": (choose_weight(real_rows, len(real_ids), "real", source), real_rows),
            "synthetic (ict, cut)": (
                choose_weight(synthetic_rows, len(synthetic_ids), "synthetic", ""),
                synthetic_rows,
            ),
            "uncapped synthetic": (choose_weight(synthetic_rows, len(synthetic_ids), "real", ""), synthetic_rows),
        }
        for label, (choice, rows_) in choices.items():
            cells = " | ".join(f"{row[PRIMARY_METRIC]:.4f}" for row in rows_)
            print(f"| {label} | {choice.queries} | {cells} | {choice.name} | {on_test[choice.bm25_weight]:.4f} |")
        oracle = max(on_test, key=lambda w: (on_test[w], -w))
        cells = " | ".join(f"{on_test[w]:.4f}" for w in WEIGHTS)
        print(f"| test itself (oracle) | {len(test_ids)} | {cells} | {mode_name(oracle)} | {on_test[oracle]:.4f} |")
        print(f"({time.perf_counter() - started:.0f} s)")
        for label, (choice, _) in choices.items():
            summary[f"{name}_{label.split()[0]}_gain_over_dense"] = round(on_test[choice.bm25_weight] - on_test[0.0], 4)
        summary[f"{name}_oracle_gain_over_dense"] = round(on_test[oracle] - on_test[0.0], 4)
    report_result(**summary)


if __name__ == "__main__":
    main()
