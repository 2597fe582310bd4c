"""Why pairs train without a hard negative, on clean text and on text as users have it (issue #31, item 4).

For each variant of tests/real_text.py (lowercase, punctuation spaced off or stripped, hard wraps,
transcripts), a zero-label `ragtune prepare` of the first --passages passages of the corpus with the
defaults a passages file gets (the zero-label recipe, the fusion teacher, --train-passages of them
giving training queries), then from its audit.json: pairs, the share without a hard negative, those
pairs by the rule that removed their last candidate, and the candidates each rule dropped.

    python benchmarks/bench_mining_audit.py [--data data/scifact] [--passages 1400] [--train-passages 800]
        [--variant clean --variant transcript ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import report_result

from ragtune import api
from ragtune import config as cfg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_text import TRANSFORMS, read_corpus, variant  # noqa: E402

RULES = (
    "labelled_positive",
    "same_source",
    "below_min_score",
    "above_relative_margin",
    "teacher_false_negative",
    "empty_window",
)


def audit_of(rows: list[dict], work: Path, train_passages: int) -> tuple[dict, dict]:
    """audit.json and summary.json of a zero-label prepare of `rows`."""
    path = work / "passages.jsonl"
    path.write_text("".join(json.dumps({"id": r["_id"], "title": r["title"], "text": r["text"]}) + "\n" for r in rows))
    overrides = {"data.path": str(path), "data.output": str(work / "prepared"), "synthetic.passages": train_passages}
    api.prepare(cfg.load(None, overrides), overwrite=True)
    read = lambda name: json.loads((work / "prepared" / name).read_text())  # noqa: E731
    return read("audit.json"), read("summary.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact/corpus.jsonl.gz", help="a BEIR corpus.jsonl(.gz)")
    parser.add_argument("--passages", type=int, default=1400)
    parser.add_argument("--train-passages", type=int, default=800)
    parser.add_argument("--variant", action="append", default=[], choices=list(TRANSFORMS))
    args = parser.parse_args()
    rows = read_corpus(args.data)[: args.passages]
    header = ["variant", "pairs", "without negative", *(f"by {r.replace('_', ' ')}" for r in RULES)]
    header += ["dropped: positive", "same source", "below min", "above margin", "teacher", "teacher w"]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    summary = {}
    for name in args.variant or list(TRANSFORMS):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            audit, prepared = audit_of(variant(rows, name), Path(work), args.train_passages)
        pairs, without = audit["pairs"], audit["pairs_without_negative"]
        why = audit.get("without_negative_by", {})
        cells = [name, f"{pairs:,}", f"{without:,} ({without / pairs:.1%})", *(f"{why.get(r, 0):,}" for r in RULES)]
        cells += [f"{audit[f'dropped_{r}']:,}" for r in RULES[:2]]
        cells += [f"{audit['dropped_below_min_score']:,}", f"{audit['dropped_above_relative_margin']:,}"]
        cells += [f"{audit['dropped_teacher_false_negative']:,}", str(prepared["teacher"]["bm25_weight"])]
        print("| " + " | ".join(cells) + f" |  ({time.perf_counter() - started:.0f} s)", flush=True)
        summary[f"{name}_without_negative_share"] = round(without / pairs, 4)
    report_result(**summary)


if __name__ == "__main__":
    main()
