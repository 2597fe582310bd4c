"""Synthetic queries from text as users have it (issue #31): per generator, the share of passages that yield one.

Each corpus is read as is (clean) and through each transform of tests/real_text.py (lowercase,
punctuation spaced off or stripped, hard wraps at 60 columns, all lines joined, bullet lists, and
combinations such as a lowercase unpunctuated transcript); titles get the character transforms only.
For every variant, `generate_queries` runs on the whole corpus with the spec `ragtune prepare` builds
from the default `synthetic:` config, and the table gives, per generator, the share of passages of
--min-words words or more (in the clean text) with at least one query. --baseline names another
synthetic.py (e.g. `git show HEAD:src/ragtune/zero_label/synthetic.py > /tmp/old_synthetic.py`)
measured the same way, as a `before` column next to each generator. The last column is the share
of those passages where ict finds sentences (after the change) rather than falling back to word windows.

    python benchmarks/bench_real_text.py [--data data/scifact --data ../shared/data/arguana]
        [--variant clean --variant strip ...] [--min-words 40] [--baseline /tmp/old_synthetic.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import pandas as pd
from common import report_result

from ragtune.config import DataConfig, SyntheticConfig
from ragtune.zero_label import synthetic
from ragtune.zero_label.sentences import query_spans, sentence_spans
from ragtune.zero_label.synthetic import SyntheticSpec
from ragtune.zero_label.text import split_title

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_text import TRANSFORMS, corpus_frame, long_rows, read_corpus, variant, yield_shares  # noqa: E402


def default_spec(module, s: SyntheticConfig, seed: int):
    """The SyntheticSpec of zero_label.pipeline.synthetic_dataset for config section `s`."""
    return module.SyntheticSpec(
        generators=tuple(s.generators),
        queries_per_passage=s.queries_per_passage,
        max_query_words=s.max_query_words,
        ict_remove_probability=s.ict_remove_probability,
        seed=seed,
    )


def load_module(path: str):
    spec = importlib.util.spec_from_file_location("baseline_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def corpus_path(data: str) -> Path:
    path = Path(data)
    if path.is_file():
        return path
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (path / name).exists():
            return path / name
    raise SystemExit(f"{data}: no corpus.jsonl(.gz)")


def shares_of(module, frame: pd.DataFrame, ids: list[str]) -> dict[str, float]:
    spec = default_spec(module, SyntheticConfig(), DataConfig().seed)
    queries, _ = module.generate_queries(frame, spec)
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
    parser.add_argument("--baseline", help="another synthetic.py to measure the same way (the `before` columns)")
    args = parser.parse_args()
    modules = {"after": synthetic} | ({"before": load_module(args.baseline)} if args.baseline else {})
    generators = tuple(SyntheticConfig().generators)
    summary = {}
    for data in args.data or ["data/scifact", "../shared/data/arguana"]:
        started = time.perf_counter()
        rows = read_corpus(corpus_path(data))
        ids = [str(row["_id"]) for row in long_rows(rows, args.min_words)]
        name = Path(data).name.removesuffix(".gz").removesuffix(".jsonl")
        print(f"\n## {name}: {len(rows)} passages, {len(ids)} of {args.min_words} words or more")
        columns = [f"{g} {when}" if args.baseline else g for g in generators for when in reversed(modules)]
        print("| variant | " + " | ".join(columns) + " | ict from sentences (not windows) |")
        print("|---" * (len(columns) + 2) + "|")
        for name_ in args.variant or list(TRANSFORMS):
            frame = corpus_frame(variant(rows, name_))
            measured = {when: shares_of(module, frame, ids) for when, module in modules.items()}
            cells = [f"{measured[when][g]:.2%}" for g in generators for when in reversed(modules)]
            cells.append(f"{sentence_share(frame, ids):.2%}")
            print(f"| {name_} | " + " | ".join(cells) + " |", flush=True)
            for g in generators:
                key = f"{name}_{g}_min_share"
                summary[key] = round(min(summary.get(key, 1.0), measured["after"][g]), 4)
        print(f"({time.perf_counter() - started:.0f} s)")
    report_result(**summary)


if __name__ == "__main__":
    main()
