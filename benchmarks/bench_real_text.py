"""Synthetic queries from text as users have it (issue #31): per generator, the share of passages that yield one.

Each corpus is read as is (clean) and through each transform of tests/real_text.py (lowercase,
punctuation spaced off or stripped, hard wraps at 60 columns, all lines joined, bullet lists, and
combinations such as a lowercase unpunctuated transcript); titles get the character transforms only.
For every variant, `generate_queries` runs on the whole corpus with the spec `ragtune prepare` builds
from the default `synthetic:` config, and the table gives, per generator, the share of passages of
--min-words words or more (in the clean text) with at least one query. The last column is the share
of those passages where ict finds sentences rather than falling back to word windows.

    python benchmarks/bench_real_text.py [--data data/scifact --data ../shared/data/arguana]
        [--variant clean --variant strip ...] [--min-words 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from common import report_result

from ragtune.config import DataConfig, SyntheticConfig
from ragtune.zero_label.pipeline import spec_of
from ragtune.zero_label.sentences import query_spans, sentence_spans
from ragtune.zero_label.synthetic import SyntheticSpec, generate_queries
from ragtune.zero_label.text import split_title

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_text import TRANSFORMS, corpus_frame, long_rows, read_corpus, variant, yield_shares  # noqa: E402


def corpus_path(data: str) -> Path:
    path = Path(data)
    if path.is_file():
        return path
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (path / name).exists():
            return path / name
    raise SystemExit(f"{data}: no corpus.jsonl(.gz)")


def shares_of(frame: pd.DataFrame, ids: list[str]) -> dict[str, float]:
    spec = spec_of(SyntheticConfig(), DataConfig().seed)
    queries, _ = generate_queries(frame, spec)
    return yield_shares(queries, ids, spec.generators)


def sentence_share(frame: pd.DataFrame, ids: list[str]) -> float:
    """The share of `ids` whose ict queries are sentences (not the word windows of sentences.query_spans)."""
    s, wanted, found = SyntheticConfig(), set(ids), 0
    for pid, title, document in zip(frame["id"], frame["title"], frame["document"]):
        if pid in wanted:
            body = split_title(document, title)[1]
            found += query_spans(body, SyntheticSpec.min_query_words, s.max_query_words) == sentence_spans(body)
    return found / len(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", default=[], help="a BEIR directory or corpus.jsonl(.gz)")
    parser.add_argument("--variant", action="append", default=[], choices=list(TRANSFORMS))
    parser.add_argument("--min-words", type=int, default=40, help="passages counted: this many words or more")
    args = parser.parse_args()
    generators = tuple(SyntheticConfig().generators)
    summary = {}
    for data in args.data or ["data/scifact", "../shared/data/arguana"]:
        started = time.perf_counter()
        rows = read_corpus(corpus_path(data))
        ids = [str(row["_id"]) for row in long_rows(rows, args.min_words)]
        name = Path(data).name.removesuffix(".gz").removesuffix(".jsonl")
        print(f"\n## {name}: {len(rows)} passages, {len(ids)} of {args.min_words} words or more")
        print("| variant | " + " | ".join(generators) + " | ict from sentences (not windows) |")
        print("|---" * (len(generators) + 2) + "|")
        for name_ in args.variant or list(TRANSFORMS):
            frame = corpus_frame(variant(rows, name_))
            measured = shares_of(frame, ids)
            cells = [f"{measured[g]:.2%}" for g in generators]
            cells.append(f"{sentence_share(frame, ids):.2%}")
            print(f"| {name_} | " + " | ".join(cells) + " |", flush=True)
            for g in generators:
                key = f"{name}_{g}_min_share"
                summary[key] = round(min(summary.get(key, 1.0), measured[g]), 4)
        print(f"({time.perf_counter() - started:.0f} s)")
    report_result(**summary)


if __name__ == "__main__":
    main()
