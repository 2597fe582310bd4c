"""Weight averaging of a tuned model with its base (WiSE-FT): alpha * tuned + (1 - alpha) * base.

Each alpha is measured on the run's own held-out queries (what ragtune could choose on) and on the
real queries of each split in --splits (what the user gets; in passages-only mode the train split
never entered training and is the column a recipe choice may look at, the test split judges), side
by side, so a choice made on one column can be read against the others. alpha 1 is the tuned model,
alpha 0 the base. `--tuned` names the tuned model when the run's model/ already holds an average
(the epoch checkpoint, RUN/checkpoints/checkpoint-N, kept when the run was trained with
--keep-checkpoints).

    python benchmarks/bench_wise.py --run runs/demo/run --prepared runs/demo/prepared \
        [--tuned DIR] [--data data/scifact] [--splits test train] [--alphas 0.25 0.5 0.75]
        (alpha 1 is always measured)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import report_result

from ragtune.io.data import evaluation_qrels, load_dataset
from ragtune.io.prepared import Prepared
from ragtune.retrieval.embeddings import encode
from ragtune.retrieval.metrics import dense_rankings, retrieval_metrics
from ragtune.retrieval.models import load_model
from ragtune.train.averaging import averaged_state


def averaged(base, tuned, alpha: float):
    """A copy of `tuned` whose every floating tensor is alpha * tuned + (1 - alpha) * base."""
    import copy

    model = copy.deepcopy(tuned)
    model.load_state_dict(averaged_state(tuned.state_dict(), base.state_dict(), alpha))
    return model


def ndcg(model, queries: list[str], query_ids: list[str], corpus, doc_ids: list[str], qrels) -> float:
    rankings = dense_rankings(encode(model, queries, 64, "query"), corpus, query_ids, doc_ids)
    return retrieval_metrics(rankings, qrels)["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--tuned", help="the tuned model (default: RUN/model)")
    parser.add_argument("--splits", nargs="+", default=["test"], help="real query splits to judge on")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    options = parser.parse_args()
    tuned_path = options.tuned or str(Path(options.run) / "model")
    base, tuned = load_model("all-MiniLM-L6-v2", "cpu"), load_model(tuned_path, "cpu")
    tuned.max_seq_length = base.max_seq_length  # a checkpoint keeps the training length; ragtune judges at full
    prepared = Prepared.load(Path(options.prepared))
    held_qrels: dict[str, dict[str, float]] = {}
    for row in prepared.eval.itertuples():
        held_qrels.setdefault(row.anchor_id, {})[row.positive_id] = float(row.score)
    held_text = dict(zip(prepared.eval["anchor_id"], prepared.eval["anchor"]))
    held_ids = sorted(held_qrels)
    dataset = load_dataset(options.data)
    real_queries = {}  # split -> (texts, ids, qrels), the same for every alpha
    for split in options.splits:
        qrels = evaluation_qrels(dataset, split)
        ids = sorted(qrels)
        real_queries[split] = ([dataset.queries[q] for q in ids], ids, qrels)
    corpus_ids, corpus_docs = prepared.corpus["id"].tolist(), prepared.corpus["document"].tolist()
    test_ids, test_docs = dataset.corpus["id"].tolist(), dataset.corpus["document"].tolist()
    rows = []
    for alpha in sorted(set(options.alphas) | {1.0}):  # alpha 1, the tuned model, is what the others beat or not
        model = averaged(base, tuned, alpha)
        corpus = encode(model, corpus_docs, 64, "document", "encode corpus")
        held = ndcg(model, [held_text[q] for q in held_ids], held_ids, corpus, corpus_ids, held_qrels)
        test_corpus = corpus if test_docs == corpus_docs else encode(model, test_docs, 64, "document", "encode corpus")
        real = {
            split: ndcg(model, texts, ids, test_corpus, test_ids, qrels)
            for split, (texts, ids, qrels) in real_queries.items()
        }
        rows.append((alpha, held, real))
        scores = ", ".join(f"{split} nDCG@10 {value:.4f}" for split, value in real.items())
        print(f"alpha {alpha}: held-out nDCG@10 {held:.4f}, {scores}", flush=True)
    print("\n| alpha | held-out nDCG@10 | " + " | ".join(f"{split} nDCG@10" for split in real_queries) + " |")
    print("|---|---|" + "---|" * len(real_queries))
    for alpha, held, real in rows:
        print(f"| {alpha:g} | {held:.4f} | " + " | ".join(f"{value:.4f}" for value in real.values()) + " |")
    judge = options.splits[0]
    chosen = max(rows, key=lambda row: row[1])
    tuned_real = next(real for alpha, _, real in rows if alpha == 1.0)
    report_result(chosen_alpha=chosen[0], chosen_test=chosen[2][judge], tuned_test=tuned_real[judge])


if __name__ == "__main__":
    main()
