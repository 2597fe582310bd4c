"""Zero-label on text as users have it (issue #31, item 5): what is served on each transformed corpus.

For each corpus and variant of tests/real_text.py, a BEIR copy with the corpus transformed (titles get
the character transforms only; the queries and qrels stay as they are: users' questions are typed, their
documents are scanned) goes through `ragtune demo` with configs/demo-zero-label.yaml: synthetic queries
from the passages, the teacher, one epoch, the never-ship-worse choice and the fusion weight chosen on
held-out synthetic queries. The real test queries judge. Per variant: BM25, the base, the teacher, the
shipped model dense, and what is served (dense or the recorded fusion), beside the clean run's served
figure (when `clean` is among the variants). Goal: served within 0.01 of clean and never below the base.

    python benchmarks/bench_real_text_served.py [--data data/scifact --data ../shared/data/arguana]
        [--variant clean --variant transcript ...] [--output runs/bench/real-text-served]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench_real_text import corpus_path
from common import report_result

from ragtune import api
from ragtune import config as cfg
from ragtune.evaluate.tables import served_row
from ragtune.retrieval.metrics import PRIMARY_METRIC

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_text import TRANSFORMS, read_corpus, variant  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-zero-label.yaml"


def transformed_copy(data: Path, name: str, out: Path) -> Path:
    """A BEIR directory under `out` whose corpus is `data`'s through transform `name`; queries and qrels copied."""
    root = out / "data"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(data / "qrels", root / "qrels")
    queries = next(p for p in (data / "queries.jsonl", data / "queries.jsonl.gz") if p.exists())
    shutil.copyfile(queries, root / queries.name)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for row in variant(read_corpus(corpus_path(str(data))), name):
            handle.write(json.dumps(row) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", default=[], help="a BEIR directory")
    parser.add_argument("--variant", action="append", default=[], choices=list(TRANSFORMS))
    parser.add_argument("--output", default="runs/bench/real-text-served")
    options = parser.parse_args()
    variants = options.variant or list(TRANSFORMS)  # clean first, when given: the others are compared with it
    variants = sorted(variants, key=lambda name: name != "clean")
    summary = {}
    for data in map(Path, options.data or ["data/scifact", "../shared/data/arguana"]):
        corpus = data.name
        print(f"\n## {corpus}, zero-label, served nDCG@10 on the real test queries")
        print("| variant | BM25 | base | teacher | tuned, dense | served (mode) | served - clean | wall s |")
        print("|---|---|---|---|---|---|---|---|")
        clean = None
        for name in variants:
            started = time.perf_counter()
            out = Path(options.output) / corpus / name
            config = cfg.load(CONFIG, {"data.path": str(transformed_copy(data, name, out))})
            results = api.demo(config, root=out)
            model = out / "run" / "model"
            row, fusion = served_row(model)
            teacher = next(key for key in results if key.startswith("teacher"))
            score = {key: results[key][PRIMARY_METRIC] for key in ("bm25", config.model.name)}
            score["teacher"] = results[teacher][PRIMARY_METRIC]
            served, dense = results[row][PRIMARY_METRIC], results[str(model)][PRIMARY_METRIC]
            clean = served if name == "clean" else clean
            seconds = time.perf_counter() - started
            against_clean = "" if clean is None else f"{served - clean:+.4f}"
            print(
                f"| {name} | {score['bm25']:.4f} | {score[config.model.name]:.4f} | {score['teacher']:.4f} | "
                f"{dense:.4f} | {served:.4f} ({fusion.name}) | {against_clean} | {seconds:.0f} |",
                flush=True,
            )
            summary[f"{corpus}_{name}_served"] = round(served, 4)
            summary[f"{corpus}_{name}_served_minus_base"] = round(served - score[config.model.name], 4)
    report_result(**summary)


if __name__ == "__main__":
    main()
