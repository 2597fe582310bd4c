"""Training throughput of `ragtune train` against a plain sentence-transformers Trainer script.

Same rows (SciFact triplets from `ragtune prepare`), same model, batch, loss, max length and
sampler. Throughput is timed between the end of the first and the end of the last optimizer step
of one epoch, so evaluation (which the plain script does not do) is outside the window while data
loading (where ragtune reads its negatives lazily) is inside. Run on a quiet machine:

    python benchmarks/bench_train.py [--rows 160] [--batch-size 32] [--max-seq-length 128]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from common import StepTimer, prepared_triplets, report_result

from ragtune import config as cfg
from ragtune.retrieval.models import load_model
from ragtune.train.run import train


def plain_trainer(rows: pd.DataFrame, out: Path, batch_size: int, max_seq_length: int, timer: StepTimer) -> None:
    """What a user would write with sentence-transformers alone."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = load_model("all-MiniLM-L6-v2", "cpu")
    model.max_seq_length = max_seq_length
    dataset = Dataset.from_pandas(rows[["anchor", "positive", "negative"]], preserve_index=False)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out),
        num_train_epochs=1,
        per_device_train_batch_size=batch_size,
        learning_rate=6e-5,
        warmup_steps=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=42,
        logging_steps=5,
    )
    SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[timer],
    ).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--data", default="data/scifact")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    prepared = work / "prepared"
    rows = prepared_triplets(options.data, prepared, options.rows)

    plain = StepTimer()
    plain_trainer(rows, work / "plain", options.batch_size, options.max_seq_length, plain)
    ours = StepTimer()
    config = cfg.load(
        None,
        {
            "train.prepared": str(prepared),
            "train.output": str(work / "ragtune"),
            "model.device": "cpu",
            "train.epochs": 1,
            "train.batch_size": options.batch_size,
            "train.max_seq_length": options.max_seq_length,
            "train.hard_negative_update_frequency": 0,
            "train.checkpoint_steps": 10_000,
        },
    )
    train(config, overwrite=True, callbacks=(ours,))
    plain_rate, our_rate = (
        plain.samples_per_second(options.batch_size),
        ours.samples_per_second(options.batch_size),
    )
    print("\n| trainer | steps timed | samples/s |\n|---|---|---|")
    print(f"| plain sentence-transformers | {len(plain.ends) - 1} | {plain_rate:.2f} |")
    print(f"| ragtune train | {len(ours.ends) - 1} | {our_rate:.2f} |")
    print(f"\nratio ragtune / plain: {our_rate / plain_rate:.3f} (goal >= 0.95)")
    print(f"{options.rows} rows, batch {options.batch_size}, max length {options.max_seq_length}, MNRL triplets")
    report_result(plain_samples_per_s=plain_rate, ragtune_samples_per_s=our_rate, ratio=our_rate / plain_rate)


if __name__ == "__main__":
    main()
