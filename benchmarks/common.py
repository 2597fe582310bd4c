"""Shared by the benchmark scripts: the result line, a step timer and a small prepared SciFact slice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from ragtune import api
from ragtune import config as cfg


def report_result(**numbers: float) -> None:
    """The line benchmarks/run_all.py keeps as the section's result (benchmarks/results/NAME.json)."""
    print("RESULT " + json.dumps(numbers), flush=True)


class StepTimer(TrainerCallback):
    """Samples per second between the end of the first and the last optimizer step: evaluation
    (epoch ends) stays outside the window, data loading stays inside."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def samples_per_second(self, global_batch_size: int) -> float:
        return global_batch_size * (len(self.ends) - 1) / (self.ends[-1] - self.ends[0])


def prepared_triplets(data: str, out: Path, rows: int) -> pd.DataFrame:
    """`ragtune prepare` on `data`, keeping the first `rows` hard-negative triplets and only the
    passages they and the held-out split name, so the epoch-end evaluation stays short."""
    api.prepare(cfg.load(None, {"data.path": data, "data.output": str(out)}), overwrite=True)
    samples = pd.read_parquet(out / "train.parquet")
    kept = samples[samples["kind"] == "hard_negative"].iloc[:rows]
    kept.to_parquet(out / "train.parquet")
    held_out = pd.read_parquet(out / "eval.parquet")
    named = set(kept["positive_id"]) | set(kept["negative_id"]) | set(held_out["positive_id"])
    corpus = pd.read_parquet(out / "corpus.parquet")
    corpus[corpus["id"].isin(named)].to_parquet(out / "corpus.parquet")
    return kept
