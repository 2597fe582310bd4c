"""Real short training runs with the bundled model on a 200-passage slice."""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from conftest import train_config
from safetensors.numpy import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerCallback

from ragtune import api
from ragtune import config as cfg
from ragtune.errors import UserError
from ragtune.io.prepared import Prepared
from ragtune.retrieval.models import load_model, resolve_model
from ragtune.train.heldout import HeldOutEvaluator
from ragtune.train.plan import resolve_precision
from ragtune.train.run import train

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def tree_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + path.read_bytes())
    return digest.hexdigest()


class CheckpointingSeen(TrainerCallback):
    """Which transformer layers recompute their activations in the backward pass, as training starts."""

    def __init__(self):
        self.layers: list[bool] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.layers = [layer.gradient_checkpointing for layer in model[0].auto_model.encoder.layer]


@pytest.fixture(scope="module")
def checkpointing_seen():
    return CheckpointingSeen()


@pytest.fixture(scope="module")
def finished_run(prepared_dir, tmp_path_factory, checkpointing_seen):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    config = train_config(prepared_dir, run_dir, train__keep_checkpoints=True)
    with contextlib.redirect_stdout(io.StringIO()) as said:  # the event lines, for the tests to read
        result = train(config, callbacks=(checkpointing_seen,))
    (run_dir.parent / "said.txt").write_text(said.getvalue())
    return result, run_dir


@pytest.fixture(scope="module")
def prepared_k3(scifact_slice, tmp_path_factory):
    """Three hard negatives asked per pair, in a window where some pairs find fewer: re-mining must cope."""
    out = tmp_path_factory.mktemp("k3") / "prepared"
    api.prepare(
        cfg.load(
            None,
            {
                "data.path": str(scifact_slice),
                "data.output": str(out),
                "data.eval_fraction": 0.15,
                "mining.range_min": 0,
                "mining.range_max": 12,
                "mining.min_score": 0.45,
                "mining.hard_negatives_per_query": 3,
            },
        )
    )
    samples = pd.read_parquet(out / "train.parquet")
    slots = samples.groupby(["anchor_id", "positive_id"]).size()
    assert slots.max() == 3 and slots.min() < 3, "the fixture must hold pairs with fewer negatives than asked"
    keep = samples[samples["anchor_id"].isin(sorted(samples["anchor_id"].unique())[:16])]
    keep.to_parquet(out / "train.parquet")
    return out


def test_model_changes_and_all_artifacts_appear(finished_run):
    result, run_dir = finished_run
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".ragtune-output",
        "checkpoints",
        "config.yaml",
        "metrics.json",
        "model",
        "tensorboard",
    ]
    assert not list(run_dir.parent.glob(".*.lock")), "the run's lock outlived the run"
    base = load_file(resolve_model("all-MiniLM-L6-v2") / "model.safetensors")
    tuned = load_file(run_dir / "model" / "model.safetensors")
    assert any(not np.array_equal(base[k], tuned[k]) for k in base if k in tuned)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 * 5  # 40 rows / batch 8, two epochs
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2]
    assert metrics["base"]["ndcg@10"] == metrics["history"][0]["ndcg@10"]
    best = max(metrics["history"], key=lambda h: h["ndcg@10"])
    assert metrics["best_step"] == best["step"] == metrics["tuned"]["step"]
    assert load_model(str(run_dir / "model"), "cpu").max_seq_length == 256  # trained at 64, saved at full length


def test_model_card_is_sentence_transformers_card_with_ragtune_sections(finished_run):
    _, run_dir = finished_run
    card = (run_dir / "model" / "README.md").read_text()
    header = card.split("---")[1]
    assert (
        "base_model: sentence-transformers/all-MiniLM-L6-v2" in header
        and "library_name: sentence-transformers" in header
    )
    assert "- ragtune" in header
    assert f'SentenceTransformer("{run_dir / "model"}")' in card  # the usage snippet loads this model
    assert card.index("## ragtune") < card.index("## Training Details")
    assert "| ndcg@10 |" in card and "dropped_same_source" in card and "loss: mnrl" in card


def test_the_served_fusion_is_chosen_on_the_held_out_queries_for_the_shipped_model(finished_run, prepared_dir):
    """Rows for every weight, w = 0 being the shipped model's own held-out score; the choice, its evidence and
    the card agree; hybrid only when it beat dense on enough queries."""
    from ragtune.retrieval.fusion import WEIGHTS, FusionChoice
    from ragtune.retrieval.metrics import DECIDING_QUERIES

    result, run_dir = finished_run
    choice = FusionChoice.from_dict(json.loads((run_dir / "metrics.json").read_text())["fusion"])
    assert [row["bm25_weight"] for row in choice.rows] == list(WEIGHTS)
    assert choice.rows[0]["ndcg@10"] == pytest.approx(result.metrics.tuned["ndcg@10"], abs=1e-6)
    assert choice.queries == len(pd.read_parquet(prepared_dir / "eval.parquet")["anchor_id"].unique())
    best = max(choice.rows, key=lambda row: (row["ndcg@10"], -row["bm25_weight"]))
    beats = best["ndcg@10"] > choice.rows[0]["ndcg@10"] and choice.queries >= DECIDING_QUERIES
    assert choice.bm25_weight == (best["bm25_weight"] if beats else 0.0)
    card = (run_dir / "model" / "README.md").read_text()
    assert f"### Served as {choice.name}" in card and choice.why in card


def test_best_checkpoint_survives_rotation_and_is_the_model(finished_run):
    """The model is the best evaluation's checkpoint; rotation (2 kept) never deleted it."""
    _, run_dir = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = metrics["best_step"]
    if best > 0:
        kept = load_file(run_dir / "checkpoints" / f"checkpoint-{best}" / "model.safetensors")
        final = load_file(run_dir / "model" / "model.safetensors")
        assert all(np.array_equal(kept[k], final[k]) for k in final)


def test_activation_checkpointing_changes_no_weight(finished_run, checkpointing_seen, prepared_dir, tmp_path):
    """It trades time for memory only: the same run without it ends in bit-identical weights. The default
    recomputes every third layer in bf16 and every layer in fp32 (the Trainer's every_n_layers)."""
    off = CheckpointingSeen()
    run_dir = tmp_path / "run"
    train(train_config(prepared_dir, run_dir, train__activation_checkpointing=False), callbacks=(off,))
    every = 3 if finished_run[0].metrics.train["precision"] == "bf16" else 1
    assert checkpointing_seen.layers == [i % every == 0 for i in range(6)] and off.layers == [False] * 6
    assert cfg.load(finished_run[1] / "config.yaml", {}).train.activation_checkpointing_every_n_layers == every
    with_it = load_file(finished_run[1] / "model" / "model.safetensors")
    without = load_file(run_dir / "model" / "model.safetensors")
    assert with_it.keys() == without.keys()
    assert all(np.array_equal(with_it[k], without[k]) for k in with_it)


def test_mixed_precision_trains_fast_and_reports_fp32(finished_run, prepared_dir):
    """Steps and per-epoch encodes run in bf16 where the CPU computes it natively; the base's numbers, the
    shipped model's numbers (what the gate compared) and its cached embeddings (a test below) are fp32."""
    result, run_dir = finished_run
    metrics = result.metrics
    assert metrics.train["precision"] == resolve_precision("auto", "cpu")
    assert cfg.load(run_dir / "config.yaml", {}).train.precision == metrics.train["precision"]
    evaluator = HeldOutEvaluator(Prepared.load(prepared_dir), 64, 256, ("none", None))
    similarity = "positive_pair_similarity"  # continuous: bf16 moves it by ~1e-3
    shipped = evaluator.measure(load_model(str(run_dir / "model"), "cpu"), steps=metrics.best_step)
    base = evaluator.measure(load_model("all-MiniLM-L6-v2", "cpu"), steps=0)
    assert metrics.tuned[similarity] == pytest.approx(shipped[similarity], abs=1e-5)
    assert metrics.base[similarity] == pytest.approx(base[similarity], abs=1e-5)
    assert metrics.tuned["ndcg@10"] == pytest.approx(shipped["ndcg@10"], abs=1e-6)
    last = metrics.history[-1]  # the last epoch is measured in fp32 (tests/test_heldout.py: the others in bf16)
    assert last["step"] == metrics.best_step and last[similarity] == pytest.approx(shipped[similarity], abs=1e-5)
    said = (run_dir.parent / "said.txt").read_text()
    precision = metrics.train["precision"]
    if precision != "fp32":  # a mixed-precision measure says so; the fp32 ones do not
        assert re.search(rf"^epoch 1: held-out nDCG@10 [\d.]+ \({precision} encode\)", said, re.M), said
    assert re.search(r"^epoch 2: held-out nDCG@10 [\d.]+( \(best\))?$", said, re.M), said


def test_fp16_on_cpu_is_refused_with_the_fix(prepared_dir, tmp_path):
    with pytest.raises(UserError, match="train.precision fp16 needs a CUDA device.*--precision bf16 or fp32"):
        train(train_config(prepared_dir, tmp_path / "r", train__precision="fp16"))


def test_remining_changes_the_negatives(finished_run):
    _, run_dir = finished_run
    remined = json.loads((run_dir / "metrics.json").read_text())["remining"]
    assert len(remined) == 1 and remined[0]["epoch"] == 1
    assert remined[0]["new_pairs_added"] > 0 and remined[0]["dataset_size"] == 40


def test_three_negatives_per_pair_train_and_remine(prepared_k3, tmp_path):
    """Repro: k >= 2 with pairs that got fewer negatives crashed re-mining after epoch 1."""
    result = train(train_config(prepared_k3, tmp_path / "k3", train__checkpoint_steps=50))
    remined = result.metrics.remining
    assert len(remined) == 1 and remined[0]["dataset_size"] == result.metrics.train["samples"]
    assert result.metrics.train["steps"] > 0 and (result.model_dir / "model.safetensors").is_file()
    assert not (tmp_path / "k3" / "checkpoints").exists(), "a finished run keeps no checkpoints by default"


def test_tensorboard_holds_the_named_scalars(finished_run):
    _, run_dir = finished_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in [
        "train/loss",
        "train/learning_rate",
        "eval/ndcg@10",
        "eval/mrr@10",
        "eval/recall@100",
        "Evaluation/Positive_Pair_Similarity",
        "Hard_Negatives/New_Pairs_Added",
        "Dataset/Total_Size",
        "Hard_Negatives/dropped_same_source",
    ]:
        assert tag in tags, tag
    assert (run_dir / "tensorboard" / "hparams").is_dir()


@pytest.mark.parametrize("loss", ["cached-mnrl", "gist", "contrastive"])
def test_other_losses_train(prepared_dir, tmp_path, loss):
    result = train(
        train_config(
            prepared_dir, tmp_path / loss, train__loss=loss, train__epochs=1, train__hard_negative_update_frequency=0
        )
    )
    assert result.metrics.train["steps"] == (10 if loss == "contrastive" else 5)
    assert (result.model_dir / "model.safetensors").is_file()


def test_resuming_a_finished_run_reports_complete_and_touches_nothing(finished_run, capsys):
    """Repro: `--resume` on a finished run raised FileNotFoundError for run/best."""
    _, run_dir = finished_run
    before = tree_digest(run_dir)
    result = api.train(cfg.load(run_dir / "config.yaml"), resume=True)
    assert result.already_complete and "already complete" in capsys.readouterr().out
    assert tree_digest(run_dir) == before


def test_resume_refuses_other_data_or_settings(finished_run, prepared_dir, tmp_path):
    """Re-prepared data of the same length, or other settings: one line naming what differs."""
    _, run_dir = finished_run
    run = tmp_path / "run"
    shutil.copytree(run_dir / "checkpoints", run / "checkpoints")
    with pytest.raises(UserError, match=r"other settings \(train.epochs: 2 then, 3 now\)"):
        train(train_config(prepared_dir, run, train__epochs=3), resume=True)
    other = tmp_path / "prepared"
    shutil.copytree(prepared_dir, other)
    samples = pd.read_parquet(other / "train.parquet")
    samples["anchor"] = samples["anchor"].str.upper()  # same rows, same length, other content
    samples.to_parquet(other / "train.parquet")
    with pytest.raises(UserError, match=r"other data \(train.parquet: "):
        train(train_config(other, run), resume=True)


def test_restart_before_the_first_checkpoint_starts_fresh(prepared_dir, tmp_path, monkeypatch):
    """What a run leaves before its first intact checkpoint (TensorBoard logs, a torn checkpoint) is no
    reason to fail a torchrun elastic restart, a pod restart or --resume: the run starts over."""
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "events.out.tfevents.1").write_bytes(b"partial")
    (run / "checkpoints" / "checkpoint-99").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-99" / "model.safetensors").write_bytes(b"torn")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    result = train(train_config(prepared_dir, run, train__epochs=1, train__hard_negative_update_frequency=0))
    assert result.metrics.train["steps"] == 5 and not (run / "checkpoints" / "checkpoint-99").exists()


def test_bad_training_inputs(prepared_dir, tmp_path, finished_run):
    _, run_dir = finished_run
    with pytest.raises(UserError, match="missing train.parquet"):
        train(train_config(tmp_path, tmp_path / "r"))
    with pytest.raises(UserError, match="already exists.*--resume"):
        train(train_config(prepared_dir, run_dir))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's own file")
    with pytest.raises(UserError, match="holds notes.txt but no intact checkpoint"):
        train(train_config(prepared_dir, tmp_path / "mine"), resume=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's own file"


def test_tensorboard_command_binds_loopback(finished_run):
    _, run_dir = finished_run
    process = subprocess.Popen(
        [RAGTUNE, "tensorboard", str(run_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ,
    )
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
    from ragtune.retrieval.embeddings import corpus_cache_path, encode
    from ragtune.retrieval.models import model_fingerprint

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
        train_config(
            prepared_dir,
            tmp_path / "stop",
            train__epochs=3,
            train__learning_rate=1e-12,
            train__early_stopping_patience=1,
            train__hard_negative_update_frequency=0,
        )
    )
    assert result.metrics.train["steps"] == 5  # one epoch of 5, not 15
    assert result.metrics.best_step == 0  # the base model stays the best, and is what model/ holds
    assert result.metrics.shipped == "base" and result.metrics.best_tuned["step"] == 5
    base = load_file(resolve_model("all-MiniLM-L6-v2") / "model.safetensors")
    kept = load_file(result.model_dir / "model.safetensors")
    assert all(np.array_equal(base[k], kept[k]) for k in kept)


def test_never_ship_worse_unless_asked(prepared_dir, tmp_path, capsys):
    """A tuned model that does not beat the base on the held-out queries is not shipped; --keep-worse ships it."""
    worse = {"train__epochs": 1, "train__learning_rate": 3e-2, "train__hard_negative_update_frequency": 0}
    result = api.train(train_config(prepared_dir, tmp_path / "safe", **worse))
    metrics = result.metrics
    assert metrics.best_tuned["ndcg@10"] < metrics.base["ndcg@10"], "the fixture must make a worse model"
    out = capsys.readouterr().out
    assert metrics.shipped == "base" and "holds the base model" in out
    assert f"best epoch 1 {metrics.best_tuned['ndcg@10']:.4f}" in out  # the summary names the epoch it means
    kept = api.train(train_config(prepared_dir, tmp_path / "kept", train__keep_worse=True, **worse))
    assert kept.metrics.shipped == "tuned" and kept.metrics.best_step == 5
    epoch = next(h for h in kept.metrics.history if h["step"] == 5)  # measured as in the first run's history
    assert epoch["ndcg@10"] == pytest.approx(next(h for h in metrics.history if h["step"] == 5)["ndcg@10"], abs=1e-6)


def test_passages_only_data_trains_on_teacher_margins(tmp_path, prepared_dir):
    """loss auto: prepare's teacher margins -> margin-mse on exactly the labelled rows, with re-mining off."""
    rows = pd.read_json(Path(__file__).parents[1] / "data" / "scifact-passages.jsonl.gz", lines=True).iloc[:150]
    rows.to_parquet(tmp_path / "passages.parquet")
    prepared = tmp_path / "prepared"
    api.prepare(
        cfg.load(
            None,
            {
                "data.path": str(tmp_path / "passages.parquet"),
                "data.output": str(prepared),
                "mining.range_min": 0,
                "mining.min_score": 0.1,
                "synthetic.passages": 20,
                "synthetic.queries_per_passage": 1,
            },
        )
    )
    samples = pd.read_parquet(prepared / "train.parquet")
    assert samples["positive_id"].nunique() <= 20 and samples["label"].notna().any()  # synthetic.passages
    result = train(train_config(prepared, tmp_path / "run", train__epochs=1, train__batch_size=4))
    assert result.metrics.train["loss"] == "margin-mse" and result.metrics.remining == []
    assert result.metrics.train["samples"] == samples["label"].notna().sum()
    assert result.metrics.heldout["kind"] == "synthetic"
    with pytest.raises(UserError, match="train.loss margin-mse needs the teacher margins"):
        train(train_config(prepared_dir, tmp_path / "mined", train__loss="margin-mse"))


def test_labels_with_synthetic_train_in_two_stages_that_resume_each(scifact_slice, tmp_path, capsys):
    """--add-synthetic (#31, item 6): the passages train first with the zero-label recipe into RUN-passages,
    then the labelled queries start from its model, whose negatives it re-mines before the first step;
    the same labelled queries judge both, and --resume finds both finished."""
    from ragtune.io.runinfo import RunMetrics

    prepared = tmp_path / "prepared"
    settings = {"data.eval_fraction": 0.15, "mining.range_min": 0, "mining.min_score": 0.1}
    synthetic = {"synthetic.passages": 20, "synthetic.queries_per_passage": 1, "synthetic.evidence_queries": 30}
    api.prepare(
        cfg.load(
            None,
            {"data.path": str(scifact_slice), "data.output": str(prepared), "synthetic.add_to_labels": True}
            | settings
            | synthetic,
        )
    )
    assert (prepared / "passages" / "train.parquet").is_file()
    config = train_config(prepared, tmp_path / "run", train__epochs=1, train__batch_size=4)
    capsys.readouterr()
    result = api.train(config)
    said = capsys.readouterr().out
    assert f"two stages: the passages into {tmp_path / 'run-passages'}" in said
    first = RunMetrics.load(tmp_path / "run-passages")
    recipe = cfg.load(tmp_path / "run-passages" / "config.yaml").train  # the zero-label recipe
    assert first.train["loss"] == "margin-mse" and (recipe.epochs, recipe.wise_alphas) == (1, [0.5])
    assert first.heldout == result.metrics.heldout and first.heldout["kind"] == "real"
    started = cfg.load(tmp_path / "run" / "config.yaml")
    assert started.model.name == str(tmp_path / "run-passages" / "model")
    assert result.metrics.base["ndcg@10"] == pytest.approx(first.tuned["ndcg@10"], abs=1e-4)
    assert result.metrics.train["loss"] == "mnrl"
    assert result.metrics.remining[0]["step"] == 0 and "re-mined with the starting model" in said
    again = api.train(config, resume=True)
    assert again.already_complete and capsys.readouterr().out.count("already complete") == 2


def test_wise_average_is_measured_and_ships_when_it_beats_the_epoch(prepared_dir, tmp_path, capsys):
    """A broken epoch (lr 3e-2, kept with --keep-worse) against two averages: the one near the base wins and ships."""
    from ragtune.io.prepared import Prepared
    from ragtune.train.averaging import averaged_state
    from ragtune.train.heldout import HeldOutEvaluator

    result = api.train(
        train_config(
            prepared_dir,
            tmp_path / "wise",
            train__epochs=1,
            train__learning_rate=3e-2,
            train__hard_negative_update_frequency=0,
            train__keep_worse=True,
            train__wise_alphas=[0.95, 0.05],
            train__keep_checkpoints=True,
        )
    )
    metrics = result.metrics
    candidates = {c["alpha"]: c["ndcg@10"] for c in metrics.wise["candidates"]}
    assert sorted(candidates) == [0.05, 0.95] and metrics.wise["chosen_alpha"] == 0.05
    assert candidates[0.05] > metrics.best_tuned["ndcg@10"]
    assert metrics.tuned["ndcg@10"] == candidates[0.05] and metrics.tuned["wise_alpha"] == 0.05
    assert "holds the alpha 0.05 average of the best epoch and the base model" in capsys.readouterr().out
    base = load_model("all-MiniLM-L6-v2", "cpu")
    epoch = load_model(str(tmp_path / "wise" / "checkpoints" / "checkpoint-5"), "cpu")
    epoch.load_state_dict(averaged_state(epoch.state_dict(), base.state_dict(), 0.05))
    shipped = load_model(str(result.model_dir), "cpu").state_dict()
    assert all(torch.allclose(shipped[k], v, atol=1e-6) for k, v in epoch.state_dict().items())
    evaluator = HeldOutEvaluator(Prepared.load(prepared_dir), 64, base.max_seq_length, ("", None))
    assert evaluator.measure(epoch, steps=1)["ndcg@10"] == pytest.approx(candidates[0.05], abs=1e-6)
