"""ragtune's defaults against the plain sentence-transformers recipe a user would write, on the same data.

Plain: the training split's (query, passage) pairs, one hard negative per pair from
sentence-transformers' `mine_hard_negatives` (ranks 10-50, 5% relative margin, the same window as
ragtune's guard), MultipleNegativesRankingLoss, the same epochs, learning rate, batch, warmup,
sampler and training max length; no evaluation while training, the last epoch ships.
ragtune: `prepare` + `train` with the defaults (10% of the training queries held out to pick the
epoch and to re-mine). Both are timed from the raw data to a saved model, and judged by the same
code on the test split, which neither saw. Prints the ratios ragtune / plain.

    python benchmarks/bench_plain.py [--data data/scifact] [--output runs/bench/plain]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import report_result

from ragtune import api
from ragtune import config as cfg
from ragtune.evaluate.run import evaluate
from ragtune.evaluate.tables import markdown_table
from ragtune.io.data import load_dataset
from ragtune.retrieval.models import load_model


def plain_recipe(data: str, out: Path, t: cfg.TrainConfig) -> Path:
    """sentence-transformers alone, as its training docs show it (data loading through ragtune's BEIR reader)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import mine_hard_negatives

    dataset = load_dataset(data)
    text = dict(zip(dataset.corpus["id"], dataset.corpus["document"]))
    pairs = [(dataset.queries[q], text[d]) for q, docs in dataset.positives("train").items() for d in docs]
    model = load_model("all-MiniLM-L6-v2", "cpu")
    model.max_seq_length = t.max_seq_length
    triplets = mine_hard_negatives(
        Dataset.from_dict({"query": [q for q, _ in pairs], "passage": [p for _, p in pairs]}),
        model,
        corpus=list(text.values()),
        range_min=10,
        range_max=50,
        relative_margin=0.05,
        num_negatives=1,
        sampling_strategy="top",
        batch_size=64,
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=t.seed,
    )
    SentenceTransformerTrainer(
        model=model, args=args, train_dataset=triplets, loss=MultipleNegativesRankingLoss(model, scale=t.scale)
    ).train()
    model.max_seq_length = 256
    model.save_pretrained(str(out / "model"))
    return out / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--output", default="runs/bench/plain")
    options = parser.parse_args()
    out = Path(options.output)
    prepared = str(out / "prepared")
    defaults = cfg.load(
        None,
        {
            "data.path": options.data,
            "data.output": prepared,
            "train.prepared": prepared,
            "train.output": str(out / "ragtune"),
        },
    )
    seconds = {}
    started = time.perf_counter()
    plain_model = plain_recipe(options.data, out / "plain", defaults.train)
    seconds["plain"] = time.perf_counter() - started
    started = time.perf_counter()
    api.prepare(defaults, overwrite=True)
    ours = api.train(defaults, overwrite=True)
    seconds["ragtune"] = time.perf_counter() - started
    dataset = load_dataset(options.data)
    judged = cfg.replace(defaults, **{"eval.models": ["all-MiniLM-L6-v2", str(plain_model), str(ours.model_dir)]})
    results = evaluate(dataset, judged.eval, defaults.model)
    rows = {
        "BM25": results["bm25"],
        "base": results["all-MiniLM-L6-v2"],
        f"plain sentence-transformers ({seconds['plain']:.0f} s)": results[str(plain_model)],
        f"ragtune defaults ({seconds['ragtune']:.0f} s, ships {ours.metrics.shipped})": results[str(ours.model_dir)],
    }
    print(markdown_table(rows))
    ndcg = {name: results[str(path)]["ndcg@10"] for name, path in (("plain", plain_model), ("ragtune", ours.model_dir))}
    print(
        f"\nnDCG@10 ratio ragtune / plain: {ndcg['ragtune'] / ndcg['plain']:.3f}; "
        f"wall-time ratio: {seconds['ragtune'] / seconds['plain']:.2f}"
    )
    (out / "results.json").write_text(json.dumps({"results": rows, "seconds": seconds}, indent=2))
    report_result(
        plain_ndcg=ndcg["plain"],
        ragtune_ndcg=ndcg["ragtune"],
        ndcg_ratio=ndcg["ragtune"] / ndcg["plain"],
        plain_seconds=seconds["plain"],
        ragtune_seconds=seconds["ragtune"],
        time_ratio=seconds["ragtune"] / seconds["plain"],
    )


if __name__ == "__main__":
    main()
