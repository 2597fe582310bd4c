"""How fast a bad input is answered: each case's one-line error, timed against `ragtune --version`.

A user who mistypes a column or a path should hear about it within seconds, before torch, Feast or
the model load. Each case runs the real executable 3 times; the median wall time is shown beside the
CLI's own start-up (`ragtune --version`, measured the same way in this run), and the slowest case is
the RESULT. Usage: python benchmarks/bench_errors.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report_result

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))
REPEATS = 3


def seconds(args: list[str], cwd: Path) -> tuple[float, int, str]:
    times, result = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = subprocess.run([RAGTUNE, *args], capture_output=True, text=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result.returncode, result.stderr.strip().splitlines()[-1] if result.stderr else ""


def make_inputs(root: Path) -> None:
    (root / "no_text.jsonl").write_text(json.dumps({"id": "a", "title": "t"}) + "\n")
    (root / "good.jsonl").write_text(json.dumps({"id": "a", "title": "t", "text": "a passage"}) + "\n")
    (root / "repo").mkdir()
    (root / "repo" / "feature_store.yaml").write_text("project: p\n")
    (root / "mydata").mkdir()
    (root / "mydata" / "corpus.jsonl").write_text("{}\n")


CASES = {
    "prepare: missing --data": ["prepare", "--data", "nope", "--output", "out"],
    "prepare: passages without a text column": ["prepare", "--data", "no_text.jsonl", "--output", "out"],
    "prepare: --output over --data": ["prepare", "--data", "mydata", "--output", "mydata", "--overwrite"],
    "train: missing prepared data": ["train", "--data", "nope", "--output", "run"],
    "evaluate: missing --data": ["evaluate", "--data", "nope", "--output", "ev"],
    "index: passages without a text column": ["index", "--repo", "repo", "--data", "no_text.jsonl"],
    "index: not a Feast repo": ["index", "--repo", "nope", "--data", "good.jsonl"],
    "search: empty question": ["search", " ", "--repo", "repo"],
    "config: not a ragtune config": ["train", "--config", "no_text.jsonl"],
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_inputs(root)
        baseline, _, _ = seconds(["--version"], root)
        print(f"`ragtune --version` (CLI start-up, the baseline): {baseline:.2f} s\n")
        print("| bad input | exit | seconds | x start-up | the line |\n|---|---:|---:|---:|---|")
        slowest = 0.0
        for name, args in CASES.items():
            wall, code, line = seconds(args, root)
            slowest = max(slowest, wall)
            print(f"| {name} | {code} | {wall:.2f} | {wall / baseline:.1f} | {line[:90]} |")
    report_result(start_up_seconds=round(baseline, 2), slowest_error_seconds=round(slowest, 2))


if __name__ == "__main__":
    main()
