"""Peak memory and time of `ragtune prepare` (encode, exact top-k, guarded mining) as the corpus grows.

Synthetic BEIR corpora of 10k, 30k and 100k short passages (one training query per 20 passages,
its words drawn from its positive) go through the real CLI in a fresh process each; the peak RSS
is that process's own (wait4). Target: under 4 GiB at 100k, time about linear in corpus size.

    python benchmarks/bench_scale.py [--sizes 10000 30000 100000] [--words 40] [--zero-label 800]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report_result

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "xe", "zu", "ba", "de", "fi", "go", "hu", "ja"]


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words = {"".join(rng.choice(SYLLABLES, rng.integers(2, 5))) for _ in range(size * 2)}
    return sorted(words)[:size]


def write_corpus(directory: Path, passages: int, words: int, seed: int = 0, sentence_words: int = 0) -> Path:
    """A BEIR directory; Zipf-distributed words so some passages are near each other, as in real text.

    `sentence_words` > 0 makes sentences of that many words, capitalised (synthetic ICT queries need them)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary(5000, rng))
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    ranks = np.minimum(rng.zipf(1.3, size=(passages, words)), len(vocab)) - 1
    texts = [" ".join(vocab[row]) for row in ranks]
    if sentence_words:
        texts = [
            ". ".join(" ".join(ws[i : i + sentence_words]).capitalize() for i in range(0, len(ws), sentence_words))
            + "."
            for ws in (text.split() for text in texts)
        ]
    with open(directory / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    targets = np.arange(0, passages, 20)
    with (
        open(directory / "queries.jsonl", "w", encoding="utf-8") as queries,
        open(directory / "qrels" / "train.tsv", "w", encoding="utf-8") as qrels,
    ):
        qrels.write("query-id\tcorpus-id\tscore\n")
        for target in targets:
            words_of = texts[target].split()
            picked = rng.choice(len(words_of), size=min(8, len(words_of)), replace=False)
            queries.write(json.dumps({"_id": f"q{target}", "text": " ".join(words_of[i] for i in picked)}) + "\n")
            qrels.write(f"q{target}\td{target}\t1\n")
    return directory


def run_prepare(data: Path, output: Path, cache: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one `ragtune prepare` process."""
    command = [
        sys.executable,
        "-m",
        "ragtune.cli",
        "prepare",
        "--data",
        str(data),
        "--output",
        str(output),
        "--cache-dir",
        str(cache),
        "--device",
        "cpu",
        *extra,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"prepare failed on {data}")
    return seconds, usage.ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--words", type=int, default=16, help="words per synthetic passage")
    parser.add_argument(
        "--zero-label",
        type=int,
        default=0,
        metavar="PASSAGES",
        help="passages-only mode (--zero-label): synthetic queries from this many passages, "
        "the teacher over the whole corpus; passages get 10-word sentences",
    )
    options = parser.parse_args()
    extra = ["--zero-label", "--passages", str(options.zero_label)] if options.zero_label else []

    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    rows = []
    for size in options.sizes:
        data = write_corpus(work / f"corpus_{size}", size, options.words, sentence_words=10 if extra else 0)
        seconds, peak = run_prepare(data, work / f"prepared_{size}", work / f"cache_{size}", extra)
        summary = json.loads((work / f"prepared_{size}" / "summary.json").read_text())
        rows.append((size, summary["train_queries"], seconds, peak))
        print(f"{size} passages: {seconds:.0f} s, peak RSS {peak:.2f} GiB", flush=True)

    base_size, _, base_seconds, _ = rows[0]
    print("\n| passages | queries | wall s | s per 1k passages | time ratio / size ratio | peak RSS GiB |")
    print("|---|---|---|---|---|---|")
    for size, queries, seconds, peak in rows:
        linearity = (seconds / base_seconds) / (size / base_size)
        print(
            f"| {size:,} | {queries:,} | {seconds:.0f} | {1000 * seconds / size:.2f} | {linearity:.2f} | {peak:.2f} |"
        )
    mode = f"passages only, queries from {options.zero_label} passages" if extra else "`ragtune prepare` defaults"
    print(f"\n{options.words} words per passage, cold embedding cache, {mode}; goal: < 4 GiB")
    size, _, seconds, peak = rows[-1]
    report_result(passages=size, peak_rss_gib=peak, linearity=(seconds / base_seconds) / (size / base_size))


if __name__ == "__main__":
    main()
