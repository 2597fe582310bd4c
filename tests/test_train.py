"""Real short training runs with the bundled model on a 200-passage slice."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from safetensors.numpy import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ragtune.errors import UserError
from ragtune.mining import MiningParams
from ragtune.models import load_model, resolve_model
from ragtune.train import NegativeStore, Prepared, train

GUARD = MiningParams(range_min=0, range_max=30, min_score=0.1, relative_margin=0.95, num_negatives=1)
RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def run_args(**overrides):
    args = dict(
        model_name="all-MiniLM-L6-v2", device="cpu", loss="mnrl", epochs=2, learning_rate=5e-5, batch_size=8,
        mini_batch_size=4, warmup_ratio=0.1, max_seq_length=64, hard_negative_update_frequency=1,
        checkpoint_steps=3, early_stopping_patience=0, logging_steps=1, seed=1, mining=GUARD,
        encode_batch_size=64, cache_dir=None, resume=False, overwrite=False, config_yaml="train: {}\n",
    )  # fmt: skip
    args.update(overrides)
    return args


@pytest.fixture(scope="module")
def finished_run(prepared_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    return train(prepared_dir, run_dir, **run_args()), run_dir


def test_model_changes_and_all_artifacts_appear(finished_run):
    result, run_dir = finished_run
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.json",
        "model",
        "tensorboard",
    ]
    base = load_file(resolve_model("all-MiniLM-L6-v2") / "model.safetensors")
    tuned = load_file(run_dir / "model" / "model.safetensors")
    assert any(not np.array_equal(base[k], tuned[k]) for k in base if k in tuned)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 * 5  # 40 rows / batch 8, two epochs
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2]
    assert metrics["base"]["ndcg@10"] == metrics["history"][0]["ndcg@10"]
    assert metrics["tuned"]["ndcg@10"] == max(h["ndcg@10"] for h in metrics["history"])
    card = (run_dir / "model" / "README.md").read_text()
    assert "| ndcg@10 |" in card and "train: {}" in card
    assert load_model(str(run_dir / "model"), "cpu").max_seq_length == 256  # trained at 64, saved at full length


def test_remining_changes_the_negatives(finished_run):
    _, run_dir = finished_run
    remined = json.loads((run_dir / "metrics.json").read_text())["remining"]
    assert len(remined) == 1 and remined[0]["epoch"] == 1
    assert remined[0]["new_pairs_added"] > 0 and remined[0]["dataset_size"] == 40


def test_tensorboard_holds_the_named_scalars(finished_run):
    _, run_dir = finished_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ["train/loss", "train/learning_rate", "eval/ndcg@10", "eval/mrr@10", "eval/recall@100",
                "Evaluation/Positive_Pair_Similarity", "Hard_Negatives/New_Pairs_Added", "Dataset/Total_Size",
                "Hard_Negatives/dropped_same_source"]:  # fmt: skip
        assert tag in tags, tag
    assert (run_dir / "tensorboard" / "hparams").is_dir()


def test_store_keeps_the_guard_after_remining(prepared_dir, model):
    from ragtune.embeddings import encode

    prepared = Prepared.load(prepared_dir)
    store = NegativeStore(prepared, seed=0)
    corpus = encode(model, prepared.corpus["document"].tolist(), 64)
    queries = encode(model, [store.anchor_text[q] for q in store.anchor_ids], 64, "query")
    store.remine(queries, corpus, GUARD)
    for pair, slots in enumerate(store.slots_of_pair):
        query = store.pair_rows[pair][0]
        for slot in slots:
            negative = store.negative[slot]
            assert negative not in store.positives[query]
            assert store.sources[negative] not in {store.sources[p] for p in store.positives[query]}


@pytest.mark.parametrize("loss", ["cached-mnrl", "contrastive"])
def test_other_losses_train(prepared_dir, tmp_path, loss):
    result = train(prepared_dir, tmp_path / loss, **run_args(loss=loss, epochs=1, hard_negative_update_frequency=0))
    assert result.metrics["train"]["steps"] == (10 if loss == "contrastive" else 5)
    assert (result.model_dir / "model.safetensors").is_file()


def test_bad_training_inputs(prepared_dir, tmp_path, finished_run):
    _, run_dir = finished_run
    with pytest.raises(UserError, match="missing train.parquet"):
        train(tmp_path, tmp_path / "r", **run_args())
    with pytest.raises(UserError, match="already exists.*--resume"):
        train(prepared_dir, run_dir, **run_args())
    with pytest.raises(UserError, match="no checkpoint to resume"):
        train(prepared_dir, tmp_path / "fresh", **run_args(resume=True))


def test_tensorboard_command_binds_loopback(finished_run):
    _, run_dir = finished_run
    process = subprocess.Popen([RAGTUNE, "tensorboard", str(run_dir), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=os.environ)  # fmt: skip
    try:
        banner = process.stdout.readline()
        assert "http://127.0.0.1:" in banner
        deadline = time.time() + 60
        addresses: set[str] = set()
        while not addresses and time.time() < deadline:
            family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            addresses = {c.laddr.ip for p in family for c in p.net_connections("tcp") if c.status == "LISTEN"}
            time.sleep(0.5)
        assert addresses == {"127.0.0.1"}
    finally:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()


def test_final_model_embeddings_in_cache_match_a_fresh_encode(finished_run, prepared_dir):
    """The embeddings kept from the best evaluation are the saved model's: evaluate may reuse them."""
    from ragtune.embeddings import corpus_cache_path, encode
    from ragtune.models import model_fingerprint

    _, run_dir = finished_run
    model = load_model(str(run_dir / "model"), "cpu")
    documents = pd.read_parquet(prepared_dir / "corpus.parquet")["document"].tolist()
    path = corpus_cache_path(model_fingerprint(run_dir / "model"), model.max_seq_length, documents, None)
    cached = np.load(path)
    fresh = encode(model, documents[:16], 64)
    np.testing.assert_allclose(cached[:16], fresh, atol=1e-5)


def test_early_stopping_ends_training_when_ndcg_stops_improving(prepared_dir, tmp_path):
    """A learning rate too small to change any ranking: the first epoch brings no gain, patience 1 stops there."""
    result = train(
        prepared_dir, tmp_path / "stop",
        **run_args(epochs=3, learning_rate=1e-12, early_stopping_patience=1, hard_negative_update_frequency=0),
    )  # fmt: skip
    assert result.metrics["train"]["steps"] == 5  # one epoch of 5, not 15
    assert result.metrics["best_step"] == 0  # the base model stays the best, and is what model/ holds
