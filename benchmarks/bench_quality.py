"""Supervised quality experiments: `ragtune train` variants on one prepared SciFact, judged on its test claims.

Each variant is a set of config overrides (`name:section.key=value,...`) applied to the defaults;
`prepare` runs once per distinct set of prepare overrides (data/mining keys). BM25 and the base
model are measured in the same run; every tuned row is the model `ragtune train` ships (the best
held-out epoch, or the base when no epoch beat it). Test queries never enter training. One
variant at a time takes both cores, so the train seconds compare.

    python benchmarks/bench_quality.py --variant default: --variant scale50:train.scale=50 \
        --variant gist:train.loss=gist [--data data/scifact] [--output runs/bench/quality]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from common import report_result

from ragtune import api
from ragtune import config as cfg
from ragtune.evaluate.run import evaluate
from ragtune.evaluate.tables import markdown_table
from ragtune.io.data import load_dataset

PREPARE_SECTIONS = ("data", "mining", "synthetic")


def parse_variant(text: str) -> tuple[str, dict]:
    """`name:key=value,key=value` -> (name, overrides), values read as YAML scalars."""
    name, _, assignments = text.partition(":")
    overrides = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--variant", action="append", required=True, help="name:section.key=value,...")
    parser.add_argument("--output", default="runs/bench/quality")
    options = parser.parse_args()
    out = Path(options.output)
    dataset = load_dataset(options.data)
    base = cfg.load(None, {"data.path": options.data})
    results = evaluate(dataset, cfg.replace(base, **{"eval.baselines": ["bm25"]}).eval, base.model)
    rows = {"BM25": results["bm25"], "base": results[base.model.name]}
    seconds, prepared_for = {}, {}
    for name, overrides in map(parse_variant, options.variant):
        prepare_keys = {k: v for k, v in overrides.items() if k.split(".")[0] in PREPARE_SECTIONS}
        key = json.dumps(prepare_keys, sort_keys=True)
        if key not in prepared_for:
            prepared = out / f"prepared-{len(prepared_for)}"
            api.prepare(
                cfg.load(None, {"data.path": options.data, "data.output": str(prepared), **prepare_keys}),
                overwrite=True,
            )
            prepared_for[key] = prepared
        config = cfg.load(
            None,
            {
                "data.path": options.data,
                "train.prepared": str(prepared_for[key]),
                "train.output": str(out / name),
                **overrides,
            },
        )
        started = time.perf_counter()
        trained = api.train(config, overwrite=True)
        seconds[name] = round(time.perf_counter() - started, 1)
        judged = cfg.replace(config, **{"eval.baselines": ["none"], "eval.models": [str(trained.model_dir)]})
        tuned = evaluate(dataset, judged.eval, config.model)
        rows[f"{name} ({trained.metrics.shipped}, {trained.metrics.train['steps']} steps, {seconds[name]} s)"] = tuned[
            str(trained.model_dir)
        ]
        print(markdown_table(rows), flush=True)
    (out / "results.json").write_text(json.dumps({"variants": options.variant, "results": rows}, indent=2))
    print(markdown_table(rows))
    tuned_rows = [v["ndcg@10"] for k, v in rows.items() if k not in ("BM25", "base")]
    report_result(base=rows["base"]["ndcg@10"], bm25=rows["BM25"]["ndcg@10"], best_tuned=max(tuned_rows))


if __name__ == "__main__":
    main()
