"""A few labels plus the corpus (issue #31, item 6): labels only, synthetic only, and both, judged on test.

For each --labels N, N training claims of SciFact are drawn at random (seed 0); their qrels alone make
a BEIR copy of the data (the test qrels stay whole and never train). Three arms, each prepared,
trained with the defaults it gets and judged on the test claims over the full corpus:
- labels: the N claims, --judge-fraction of them held out to pick the epoch and the fusion weight
  (0.3: 30 of 100, the fewest that decide; the default 0.1 would leave 10);
- synthetic: passages only (`data.zero_label`, the zero-label recipe, --passages training passages);
- both (`synthetic.add_to_labels`, two stages): the passages first with the zero-label recipe, then the
  N claims starting from that model; the same held-out share of the claims judges both stages.
BM25 and the base model are measured in the same run.

    python benchmarks/bench_few_labels.py [--labels 100 --labels 300] [--passages 800] [--judge-fraction 0.3]
        [--arm labels --arm synthetic --arm both] [--output runs/bench/few-labels]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from common import report_result

from ragtune import api
from ragtune import config as cfg
from ragtune.evaluate.run import evaluate
from ragtune.evaluate.tables import markdown_table
from ragtune.io.data import load_dataset
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.metrics import PRIMARY_METRIC

DATA = Path("data/scifact")
ARMS = {
    "labels": {},
    "synthetic": {"data.zero_label": True},
    "both": {"synthetic.add_to_labels": True},
}


def few_labels_copy(n: int, out: Path) -> Path:
    """DATA with only `n` random training claims judged (their lines of qrels/train.tsv), test qrels whole."""
    root = out / f"scifact-{n}-labels"
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl.gz", "queries.jsonl.gz", "qrels/test.tsv"):
        shutil.copyfile(DATA / name, root / name)
    header, *lines = (DATA / "qrels" / "train.tsv").read_text().splitlines()
    claims = sorted({line.split("\t")[0] for line in lines})
    chosen = set(random.Random(0).sample(claims, n))
    kept = [line for line in lines if line.split("\t")[0] in chosen]
    (root / "qrels" / "train.tsv").write_text("\n".join([header, *kept]) + "\n")
    return root


def run_arm(data: Path, arm: str, options: argparse.Namespace, out: Path) -> tuple[Path, dict]:
    """Prepare and train one arm; the shipped model and its run's metrics."""
    keys = {"data.path": str(data), "synthetic.passages": options.passages, **ARMS[arm]}
    keys["data.eval_fraction"] = options.judge_fraction
    prepared = out / f"prepared-{arm}"
    api.prepare(cfg.load(None, {**keys, "data.output": str(prepared)}), overwrite=True)
    config = cfg.load(None, {**keys, "train.prepared": str(prepared), "train.output": str(out / arm)})
    trained = api.train(config, overwrite=True)
    steps = trained.metrics.train["steps"]
    first = out / f"{arm}-passages"  # the two-stage arm's first stage
    if (first / "metrics.json").is_file():
        steps = f"{RunMetrics.load(first).train['steps']}+{steps}"
    return trained.model_dir, {"shipped": trained.metrics.shipped, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, action="append", default=[])
    parser.add_argument("--passages", type=int, default=800, help="synthetic arms: passages that give queries")
    parser.add_argument("--judge-fraction", type=float, default=0.3, help="labelled claims held out to judge")
    parser.add_argument("--arm", action="append", choices=list(ARMS), default=[])
    parser.add_argument("--output", default="runs/bench/few-labels")
    options = parser.parse_args()
    out, summary = Path(options.output), {}
    dataset = load_dataset(DATA)
    base = cfg.load(None, {"data.path": str(DATA)})
    results = evaluate(dataset, cfg.replace(base, **{"eval.baselines": ["bm25"]}).eval, base.model)
    reference = {"BM25": results["bm25"], "base": results[base.model.name]}
    for n in options.labels or [100, 300]:
        data, rows = few_labels_copy(n, out), dict(reference)
        for arm in options.arm or list(ARMS):
            started = time.perf_counter()
            model_dir, run = run_arm(data, arm, options, out / f"{n}-labels")
            judging = cfg.replace(base, **{"eval.baselines": ["none"], "eval.models": [str(model_dir)]})
            judged = evaluate(dataset, judging.eval, base.model)
            seconds = time.perf_counter() - started
            rows[f"{arm} ({run['shipped']}, {run['steps']} steps, {seconds:.0f} s)"] = judged[str(model_dir)]
            summary[f"labels{n}_{arm}"] = round(judged[str(model_dir)][PRIMARY_METRIC], 4)
            for name, served in judged.items():  # the recorded fusion, when its run chose one
                if name.startswith(f"{model_dir} "):
                    rows[f"{arm} as served: {name.removeprefix(f'{model_dir} ')}"] = served
                    summary[f"labels{n}_{arm}_served"] = round(served[PRIMARY_METRIC], 4)
            print(f"\n## {n} labelled claims\n" + markdown_table(rows), flush=True)
        (out / f"{n}-labels" / "results.json").write_text(json.dumps(rows, indent=2))
    report_result(base=reference["base"][PRIMARY_METRIC], bm25=reference["BM25"][PRIMARY_METRIC], **summary)


if __name__ == "__main__":
    main()
