"""Shared fixtures: a 200-passage SciFact slice from the bundled demo data, and the bundled model."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO / "data" / "scifact"


def _qrels(split: str) -> list[list[str]]:
    with open(SCIFACT / "qrels" / f"{split}.tsv", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]


def write_beir(directory: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, list[list]]) -> Path:
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    with open(directory / "corpus.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(doc) + "\n" for doc in corpus)
    with open(directory / "queries.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(query) + "\n" for query in queries)
    for split, rows in qrels.items():
        with open(directory / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            handle.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    return directory


@pytest.fixture(scope="session")
def scifact_slice(tmp_path_factory) -> Path:
    """200 SciFact passages holding the positives of 80 train and 40 test judgements, plus distractors."""
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        corpus = [json.loads(line) for line in handle]
    with gzip.open(SCIFACT / "queries.jsonl.gz", "rt", encoding="utf-8") as handle:
        queries = [json.loads(line) for line in handle]
    train, test = _qrels("train")[:80], _qrels("test")[:40]
    needed = {row[1] for row in train + test}
    docs = [doc for doc in corpus if doc["_id"] in needed]
    rest = [doc for doc in corpus if doc["_id"] not in needed]
    random.Random(0).shuffle(rest)
    docs += rest[: 200 - len(docs)]
    query_ids = {row[0] for row in train + test}
    return write_beir(
        tmp_path_factory.mktemp("scifact_slice"),
        docs,
        [q for q in queries if q["_id"] in query_ids],
        {"train": train, "test": test},
    )


@pytest.fixture(scope="session", autouse=True)
def embedding_cache(tmp_path_factory) -> Path:
    """Keep the tests' embedding cache out of the user's home."""
    path = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAGTUNE_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def model():
    from ragtune.retrieval.models import load_model

    return load_model("all-MiniLM-L6-v2", "cpu")


@pytest.fixture(scope="session")
def prepared_dir(scifact_slice, tmp_path_factory):
    """Prepared slice cut to 40 training rows so a run is a few steps."""
    out = tmp_path_factory.mktemp("train") / "prepared"
    overrides = {
        "data.path": str(scifact_slice),
        "data.output": str(out),
        "data.eval_fraction": 0.15,
        "mining.range_min": 0,
        "mining.min_score": 0.1,
    }
    from ragtune import api
    from ragtune import config as cfg

    api.prepare(cfg.load(None, overrides))
    samples = pd.read_parquet(out / "train.parquet")
    samples.iloc[:40].to_parquet(out / "train.parquet")
    return out


def train_config(prepared: Path, output: Path, **overrides):
    """A small, fast training config on a prepared directory; keyword overrides are 'section__key'."""
    from ragtune import config as cfg

    settings = {
        "train.prepared": str(prepared),
        "train.output": str(output),
        "model.device": "cpu",
        "train.epochs": 2,
        "train.learning_rate": 5e-5,
        "train.batch_size": 8,
        "train.mini_batch_size": 4,
        "train.max_seq_length": 64,
        "train.checkpoint_steps": 3,
        "train.logging_steps": 1,
        "train.seed": 1,
        "mining.range_min": 0,
        "mining.range_max": 30,
        "mining.min_score": 0.1,
    }
    settings.update({key.replace("__", "."): value for key, value in overrides.items()})
    return cfg.load(None, settings)
