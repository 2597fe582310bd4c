"""The real `ragtune` executable, end to end on a 200-passage slice, and its bad-input contract."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def run(*args, cwd=None):
    return subprocess.run([RAGTUNE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=os.environ)


def assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ragtune: error")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def prepared_dir(scifact_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "prepared"
    result = run(
        "prepare",
        "--data",
        scifact_slice,
        "--output",
        out,
        "--range-min",
        "0",
        "--min-score",
        "0.2",
        "--random-negative-ratio",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    assert "candidates seen, dropped" in result.stdout and len(result.stdout) < 1000, result.stdout
    return out


def test_prepare_writes_every_artifact(prepared_dir):
    assert sorted(p.name for p in prepared_dir.iterdir()) == [
        ".ragtune-output",
        "audit.json",
        "config.yaml",
        "corpus.parquet",
        "eval.parquet",
        "summary.json",
        "train.parquet",
    ]
    config = yaml.safe_load((prepared_dir / "config.yaml").read_text())
    assert config["mining"]["range_min"] == 0 and config["mining"]["random_negative_ratio"] == 0.2
    audit = json.loads((prepared_dir / "audit.json").read_text())
    samples = pd.read_parquet(prepared_dir / "train.parquet")
    assert (samples["kind"] == "hard_negative").sum() == audit["selected"] > 0
    assert not list(prepared_dir.parent.glob(".prepared.tmp-*"))


def test_prepare_refuses_to_overwrite_and_leaves_outputs_untouched(prepared_dir, scifact_slice):
    before = {p.name: p.read_bytes() for p in prepared_dir.iterdir()}
    assert_user_error(
        run("prepare", "--data", scifact_slice, "--output", prepared_dir), str(prepared_dir), "--overwrite"
    )
    assert {p.name: p.read_bytes() for p in prepared_dir.iterdir()} == before


def test_evaluate_writes_metrics_table_and_chart(scifact_slice, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", "--data", scifact_slice, "--split", "test", "--output", out)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["results"]) == ["bm25", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2 RRF with bm25 (k=60, reference)"]
    assert 0.3 < metrics["results"]["all-MiniLM-L6-v2"]["ndcg@10"] <= 1.0
    assert "| all-MiniLM-L6-v2 |" in result.stdout
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert yaml.safe_load((out / "config.yaml").read_text())["eval"]["split"] == "test"


def test_passages_only_file_prepares_end_to_end(tmp_path):
    rows = pd.read_json(Path(__file__).parents[1] / "data" / "scifact-passages.jsonl.gz", lines=True).iloc[:150]
    rows.to_parquet(tmp_path / "passages.parquet")
    out = tmp_path / "prepared"
    result = run(
        "prepare", "--data", tmp_path / "passages.parquet", "--output", out, "--range-min", "0", "--min-score", "0.1"
    )
    assert result.returncode == 0, result.stderr
    samples = pd.read_parquet(out / "train.parquet")
    corpus = pd.read_parquet(out / "corpus.parquet").set_index("id")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_kind"] == "synthetic" and summary["teacher"]["evidence_queries"] == 30
    assert set(summary["synthetic"]["kept"]) == {"ict", "crop", "terms"}
    titles = samples["anchor"] == corpus.loc[samples["positive_id"], "title"].to_numpy()
    from_titles = samples["anchor_id"].str.startswith("title:")  # real titles: one more query source
    assert from_titles.any() and titles[from_titles].all() and not titles[~from_titles].any()
    held_out = set(pd.read_parquet(out / "eval.parquet")["positive_id"])
    assert not held_out & set(samples["positive_id"]), "a held-out passage gave training queries"
    negatives = samples.dropna(subset=["negative_id"])
    assert len(negatives) > 0
    assert samples["label"].isna().equals(samples["negative_id"].isna())  # a teacher margin for every negative
    assert (negatives.loc[negatives["kind"] == "hard_negative", "label"] > 0).all()  # vetoed: at or above the positive
    assert (
        corpus.loc[negatives["negative_id"], "source_id"].to_numpy()
        != corpus.loc[negatives["positive_id"], "source_id"].to_numpy()
    ).all()


def test_bad_inputs_exit_2_with_one_line(tmp_path, scifact_slice):
    assert_user_error(run("prepare", "--data", tmp_path / "nowhere", "--output", tmp_path / "o"), "nowhere", "--data")
    broken = tmp_path / "run.yaml"
    broken.write_text("mining: {range_max: [}\n")
    assert_user_error(run("prepare", "--config", broken), "run.yaml", "not valid YAML")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("mining:\n  hard_negatives: 3\n")
    assert_user_error(run("prepare", "--config", unknown), "mining.hard_negatives")
    assert_user_error(run("evaluate", "--data", scifact_slice, "--split", "dev", "--output", tmp_path / "e"), "dev")
    no_model = run("evaluate", "--data", scifact_slice, "--model", "no/such-model", "--output", tmp_path / "e")
    assert_user_error(no_model, "no/such-model")
    bad_qrels = tmp_path / "bad"
    shutil.copytree(scifact_slice, bad_qrels)
    with open(bad_qrels / "qrels" / "test.tsv", "a") as handle:
        handle.write("1\tunknown-doc\t1\n")
    assert_user_error(run("evaluate", "--data", bad_qrels, "--output", tmp_path / "e"), "test.tsv", "unknown-doc")
    assert not (tmp_path / "e").exists()


def test_train_input_errors_are_caught_before_any_worker_starts(tmp_path):
    for extra in ([], ["--nproc", "2"]):
        result = run("train", "--data", tmp_path / "missing", "--output", tmp_path / "run", *extra)
        assert_user_error(result, "missing train.parquet", "ragtune prepare")
        assert "torch.distributed" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_argument_errors_are_one_line():
    result = run("prepare", "--range-max", "many")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_repros_of_the_training_core_issue(tmp_path, prepared_dir):
    """An empty config section plus one of its flags, empty passages in a corpus, eval_fraction 0, and
    --resume of a finished run: each works or says why in one line, never a traceback."""
    config = tmp_path / "run.yaml"
    config.write_text("mining:\ntrain:\n")
    rows = pd.read_json(Path(__file__).parents[1] / "data" / "scifact-passages.jsonl.gz", lines=True).iloc[:160]
    rows.loc[[3, 70], ["title", "text"]] = ""
    rows.to_json(tmp_path / "passages.jsonl", orient="records", lines=True)
    out = tmp_path / "prepared"
    result = run(
        "prepare",
        "--config",
        config,
        "--range-min",
        "5",
        "--data",
        tmp_path / "passages.jsonl",
        "--output",
        out,
        "--min-score",
        "0.1",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "skipped 2 empty passage(s)" in result.stderr
    assert len(pd.read_parquet(out / "corpus.parquet")) == 158
    assert yaml.safe_load((out / "config.yaml").read_text())["mining"]["range_min"] == 5
    zero = run("prepare", "--data", tmp_path / "passages.jsonl", "--output", tmp_path / "p0", "--eval-fraction", "0")
    assert_user_error(zero, "data.eval_fraction", "(0, 1)")

    run_dir = tmp_path / "run"
    train = [
        "train",
        "--data",
        prepared_dir,
        "--output",
        run_dir,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-seq-length",
        "32",
        "--hard-negative-update-frequency",
        "0",
    ]
    trained = run(*train)
    assert trained.returncode == 0, trained.stderr
    assert "{'loss'" not in trained.stdout + trained.stderr  # no raw Trainer dicts: one bar, a line per event
    assert re.search(r"^train: (\d+)/\1 steps in \d+ s \(loss ", trained.stderr, re.M), trained.stderr  # no terminal:
    assert "\r" not in trained.stderr and "Computing widget examples" not in trained.stderr  # one line per stage
    assert "the base model: held-out nDCG@10" in trained.stdout + trained.stderr
    assert "warning: the held-out split: " in trained.stderr and "too few to show a gain" in trained.stderr
    assert "\nwidget:\n- source_sentence:" in (run_dir / "model" / "README.md").read_text()  # picked quietly
    weights = (run_dir / "model" / "model.safetensors").read_bytes()
    again = run(*train, "--resume", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and "Traceback" not in again.stderr
    assert len(again.stdout.splitlines()) == 1 and "it/s" not in again.stderr
    assert (run_dir / "model" / "model.safetensors").read_bytes() == weights


def test_demo_runs_the_whole_pipeline_and_ends_with_its_table(scifact_slice, tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(scifact_slice), "eval_fraction": 0.15},
                "mining": {"range_min": 0, "min_score": 0.1},
                "train": {"epochs": 1, "batch_size": 16, "max_seq_length": 32, "hard_negative_update_frequency": 0},
            }
        )
    )
    result = run("demo", "--config", config, "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "runs" / "demo"
    assert {p.name for p in root.iterdir()} == {"prepared", "run", "eval"}
    assert (root / "run" / "report.html").is_file() and "| bm25 |" in result.stdout
    assert "demo finished in" in result.stdout.splitlines()[-1]


def test_version_and_tensorboard_ports_and_signals(tmp_path):
    """Repro (#28): no --version; a busy port gave exit 255 and library noise; SIGTERM left TensorBoard serving."""
    import signal
    import socket
    import time
    import urllib.request

    assert run("--version").stdout.strip().startswith("ragtune ")
    (tmp_path / "tensorboard").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert_user_error(run("tensorboard", tmp_path, "--port", busy.getsockname()[1]), "cannot listen there")
    assert_user_error(run("tensorboard", tmp_path, "--port", "70000"), "--port 70000")
    board = subprocess.Popen([RAGTUNE, "tensorboard", str(tmp_path), "--port", "0"], stdout=subprocess.PIPE, text=True)
    url = board.stdout.readline().split(" on ")[1].split()[0]
    deadline = time.time() + 120
    while True:
        try:
            assert urllib.request.urlopen(url, timeout=5).status == 200
            break
        except OSError:
            assert time.time() < deadline and board.poll() is None, "TensorBoard never served the printed URL"
            time.sleep(1)
    board.send_signal(signal.SIGTERM)
    assert board.wait(timeout=60) == 0
    with pytest.raises(OSError):  # the child went with it: nothing serves the URL any more
        urllib.request.urlopen(url, timeout=5)


def test_a_second_train_on_a_run_directory_names_the_first(tmp_path, prepared_dir):
    """Repro (#28): two `train --resume` on one run directory; the first crashed."""
    run_dir = tmp_path / "run"
    code = f"from ragtune.train.checkpoints import run_lock\nwith run_lock({str(run_dir)!r}):\n"
    code += "    print('held', flush=True)\n    import time; time.sleep(600)\n"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run("train", "--data", prepared_dir, "--output", run_dir, "--resume")
        assert_user_error(result, f"in use by ragtune train (pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()


def test_a_byte_order_mark_and_an_unquoted_exponent_are_read(tmp_path, scifact_slice):
    """Repro (#28): a UTF-8 file with a BOM was refused with no hint; `learning_rate: 1e-4` was refused."""
    data = tmp_path / "data"
    shutil.copytree(scifact_slice, data)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (data / name).write_bytes(b"\xef\xbb\xbf" + (data / name).read_bytes())
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  learning_rate: 1e-4\n")
    result = run(
        "evaluate", "--config", config, "--data", data, "--model", "all-MiniLM-L6-v2", "--output", tmp_path / "e"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| bm25 |" in result.stdout
