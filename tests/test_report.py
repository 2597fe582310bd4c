"""`ragtune report` on a real tiny run, opened in a real headless Chromium."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from ragtune import api, cli, report
from ragtune import config as cfg
from ragtune.evaluate.tables import served_line

pytestmark = pytest.mark.slow

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (CI installs it)"
)


@pytest.fixture(scope="module")
def demo_root(prepared_dir, scifact_slice, tmp_path_factory) -> Path:
    """The `ragtune demo` layout: prepared/ (16 training rows), run/ (one epoch: 2 steps), eval/ (BM25, base, tuned)."""
    root = tmp_path_factory.mktemp("report")
    shutil.copytree(prepared_dir, root / "prepared")
    samples = pd.read_parquet(root / "prepared" / "train.parquet")
    samples.iloc[:16].to_parquet(root / "prepared" / "train.parquet")
    config = cfg.load(
        None,
        {
            "data.path": str(scifact_slice),
            "model.device": "cpu",
            "mining.range_min": 0,
            "mining.min_score": 0.1,
            "train.prepared": str(root / "prepared"),
            "train.output": str(root / "run"),
            "train.batch_size": 8,
            "train.epochs": 1,
            "train.max_seq_length": 64,
            "train.logging_steps": 1,
            "train.seed": 1,
            "eval.output": str(root / "eval"),
            "eval.models": ["all-MiniLM-L6-v2", str(root / "run" / "model")],
        },
    )
    api.train(config)
    api.evaluate(config)
    return root


def chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is required in CI: .ci/run installs it"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@needs_chromium
def test_report_renders_the_run_numbers_in_chromium(demo_root, tmp_path):
    run = demo_root / "run"
    done = subprocess.run([RAGTUNE, "report", str(run)], capture_output=True, text=True, env=os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    page = run / "report.html"
    assert not any(tag in page.read_text() for tag in ["src=", "href=", "<script", "<link"])  # nothing to fetch

    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = chromium(profile, "--dump-dom", page.as_uri()).stdout
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ["ndcg@10", "mrr@10", "recall@10", "recall@100", "map@100"]:
        assert f"{metrics['base'][name]:.4f}" in dom and f"{metrics['tuned'][name]:.4f}" in dom, name
    results = json.loads((demo_root / "eval" / "metrics.json").read_text())["results"]  # found beside the run
    assert list(results)[0] == "bm25" and len(results) == 4  # bm25, base, tuned, RRF reference
    for system in results.values():
        assert all(f"{value:.4f}" in dom for value in system.values())
    audit = json.loads((demo_root / "prepared" / "audit.json").read_text())
    assert f"<th>candidates_seen</th><td>{audit['candidates_seen']}</td>" in dom
    assert dom.count("<polyline") == 4  # loss, nDCG@10, learning rate, positive pair similarity

    shot = tmp_path / "report.png"
    chromium(profile, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # text and charts, not a blank page


def test_render_escapes_everything_from_the_run(demo_root, tmp_path):
    data = report.collect(demo_root / "run", eval_dir=demo_root / "eval")
    data["config"] = "model:\n  name: </pre><script>alert(1)</script>\n"
    data["evaluation"]["results"] = {"<img src=x>": data["evaluation"]["results"]["bm25"]}
    page = report.render(data)
    assert "<script" not in page and "<img" not in page
    assert "&lt;/pre&gt;&lt;script&gt;" in page and "&lt;img src=x&gt;" in page


def test_each_remining_pass_gets_an_audit_column_and_unrelated_evals_stay_out(demo_root, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_root / "run", run, ignore=shutil.ignore_patterns("model", "checkpoints"))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["remining"] = [{"step": 2, "epoch": 1, "new_pairs_added": 5, "dataset_size": 16, "seconds": 0.4, "kept": 7}]
    (run / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"results": {"other/model": metrics["base"]}}))
    data = report.collect(run)
    assert data["evaluation"] is None
    assert [label for label, _ in data["audits"]] == ["prepare", "re-mine, epoch 1"]
    page = report.render(data)
    assert "<tr><th>new_pairs_added</th><td>–</td><td>5</td></tr>" in page and "<th>seconds</th><td>–" not in page


def test_output_flag_and_bad_inputs_exit_2_with_one_line(demo_root, tmp_path, capsys):
    out = tmp_path / "pages" / "run.html"
    assert cli.main(["report", str(demo_root / "run"), "--output", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    capsys.readouterr()
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    cases = {
        (str(tmp_path / "missing"),): "missing: not found; pass a run directory",
        (str(tmp_path / "unfinished"),): "metrics.json: not found; pass a finished run directory",
        (str(tmp_path / "broken"),): "metrics.json: not valid JSON",
        (str(demo_root / "run"), "--eval", str(tmp_path)): "metrics.json: not found; pass an output directory",
    }
    for args, message in cases.items():
        assert cli.main(["report", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ragtune: error: ") and message in err and err.count("\n") == 1, err


def test_the_demo_names_the_row_that_is_served(demo_root):
    """The run chose dense (10 held-out queries are too few for a fusion): the served row is the model's own."""
    results = json.loads((demo_root / "eval" / "metrics.json").read_text())["results"]
    model = demo_root / "run" / "model"
    line = served_line(results, "all-MiniLM-L6-v2", model)
    served, base = results[str(model)]["ndcg@10"], results["all-MiniLM-L6-v2"]["ndcg@10"]
    assert line.startswith(f"served: {model} (10 judged queries are too few") and f"ndcg@10 {served:.4f}" in line
    assert f"({served - base:+.4f})" in line
