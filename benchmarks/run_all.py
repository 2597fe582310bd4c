"""`make bench`: run the benchmarks, keep each one's result, and write its numbers into docs/benchmarks.md.

Each section's commands run in a fresh process; its stdout tables, the RESULT line the scripts
print, wall time and peak RSS (wait4) are stored in benchmarks/results/NAME.json, so one section
can be re-run alone (`make bench ONLY="mining scale"`). docs/benchmarks.md is written by hand; each
section's block between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` is replaced with the result
of the section just run (`--page-only` rewrites the blocks of the stored results, `--only` narrows
it). The page gets the cores, memory and library versions, never the CPU model or the date (those
stay in the stored result). Run on a quiet machine: other work on the 2 cores changes every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ragtune

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "docs" / "benchmarks.md"
WORK = "runs/bench"


@dataclass(frozen=True)
class Section:
    title: str
    commands: tuple[str, ...]


SECTIONS = {
    "quality": Section("Retrieval quality on SciFact test, and the demo's wall time", ("ragtune demo",)),
    "first_run": Section(
        "make demo on a fresh clone: install, wall time, peak RSS, the defaults against fp32",
        ("python benchmarks/bench_first_run.py",),
    ),
    "passages": Section(
        "Passages-only mode, then real SciFact claims (a result stored before 2026-12-01 used titles as queries; "
        "since then prepare makes synthetic queries)",
        (
            f"ragtune prepare --data data/scifact-passages.jsonl.gz --output {WORK}/pp --overwrite",
            f"ragtune train --data {WORK}/pp --output {WORK}/pp-run --overwrite",
            f"ragtune evaluate --data data/scifact --model all-MiniLM-L6-v2 --model {WORK}/pp-run/model "
            f"--baseline none --output {WORK}/pp-eval --overwrite",
        ),
    ),
    "zero_label": Section(
        "Zero-label on SciFact: synthetic queries and the no-download teacher, judged on the real test claims",
        ("python benchmarks/bench_zero_label.py --data data/scifact --passages 800",),
    ),
    "train": Section(
        "Training throughput: ragtune against plain sentence-transformers", ("python benchmarks/bench_train.py",)
    ),
    "plain": Section(
        "ragtune's defaults against the plain sentence-transformers recipe (nDCG@10 and wall-time ratios)",
        ("python benchmarks/bench_plain.py",),
    ),
    "encode": Section("Corpus encoding: PyTorch against the onnx backend", ("python benchmarks/bench_encode.py",)),
    "mining": Section(
        "Mining throughput: ragtune's guard against `mine_hard_negatives`", ("python benchmarks/bench_mining.py",)
    ),
    "feast": Section("Feast serving: indexing, search latency and recall", ("python benchmarks/bench_feast.py",)),
    "ddp": Section("DDP: 1 against 2 torchrun processes", ("python benchmarks/bench_ddp.py",)),
    "errors": Section("How fast a bad input is answered (one line, exit 2)", ("python benchmarks/bench_errors.py",)),
    "scale": Section(
        "Memory and time of `prepare` at 10k, 30k and 100k passages", ("python benchmarks/bench_scale.py",)
    ),
}


def argv_of(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "ragtune":
        return [sys.executable, "-m", "ragtune.cli", *words[1:]]
    return [sys.executable, *words[1:]] if words[0] == "python" else words


def run(command: str) -> dict:
    """Stream the command's output through, keep its tables and RESULT line, time it, take its peak RSS."""
    print(f"\n$ {command}", flush=True)
    started = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "benchmarks"))
    process = subprocess.Popen(argv_of(command), cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {command}")
    result = next((json.loads(line[7:]) for line in reversed(lines) if line.startswith("RESULT ")), {})
    first_table = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    return {
        "command": command,
        "seconds": time.perf_counter() - started,
        "peak_rss_gib": usage.ru_maxrss / 1024**2,
        "output": [line for line in lines[first_table:] if not line.startswith("RESULT ")],
        "result": result,
    }


def metrics_of(path: str) -> dict:
    return json.loads((REPO / path).read_text())


def derived(name: str) -> dict:
    """Numbers the ragtune commands leave in their metrics.json (the scripts print a RESULT line instead)."""
    if name == "quality":
        results = metrics_of("runs/demo/eval/metrics.json")["results"]
        base, tuned = results["all-MiniLM-L6-v2"], results[next(k for k in results if k.endswith("run/model"))]
        return {"bm25": results["bm25"]["ndcg@10"], "base": base["ndcg@10"], "tuned": tuned["ndcg@10"]}
    if name == "passages":
        from ragtune.io.runinfo import RunMetrics

        run_metrics = RunMetrics.load(REPO / WORK / "pp-run")
        results = metrics_of(f"{WORK}/pp-eval/metrics.json")["results"]
        tuned = results[next(k for k in results if k.endswith("pp-run/model"))]
        return {
            "held_out_base": run_metrics.base["ndcg@10"],
            "held_out_tuned": run_metrics.tuned["ndcg@10"],
            "claims_base": results["all-MiniLM-L6-v2"]["ndcg@10"],
            "claims_tuned": tuned["ndcg@10"],
        }
    return {}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    import sentence_transformers
    import torch

    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}, "
        f"torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}"
    )


def commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else "unknown"


def block(entry: dict) -> list[str]:
    """A section's measured numbers as the page shows them: no CPU model, no date."""
    cores, rest = entry["machine"].split(", ", 1)
    at = f"ragtune {entry['version']} ({entry['commit']}), " if "version" in entry else ""
    lines = [f"Measured by `make bench` with {at}{cores.split(' (')[0]}, {rest}.", ""]
    for run in entry["runs"]:
        lines += [f"`{run['command']}` ({run['seconds']:.0f} s, peak RSS {run['peak_rss_gib']:.2f} GiB)", ""]
        lines += run["output"] + [""] if run["output"] else []
    return lines[:-1]


def write_page(stored: dict[str, dict], names: list[str]) -> None:
    """Replace the marked block of each named section in docs/benchmarks.md; the prose around stays."""
    text = PAGE.read_text()
    for name in names:
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        if name not in stored or begin not in text or end not in text:
            print(f"{PAGE.name} has no block for {SECTIONS[name].title!r}; see benchmarks/results/{name}.json")
            continue
        head, rest = text.split(begin, 1)
        text = "\n".join([head + begin, *block(stored[name]), end + rest.split(end, 1)[1]])
    PAGE.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--page-only", action="store_true", help="rewrite docs/benchmarks.md from stored results")
    options = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not options.page_only:
        for name in options.only or SECTIONS:
            runs = [run(command) for command in SECTIONS[name].commands]
            result = {**derived(name), **{k: v for r in runs for k, v in r["result"].items()}}
            entry = {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": machine(),
                "version": ragtune.__version__,
                "commit": commit(),
                "runs": runs,
                "result": result,
            }
            (RESULTS / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n")
    stored = {path.stem: json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))}
    write_page(stored, options.only or list(SECTIONS))
    print(f"\nwrote {PAGE}")


if __name__ == "__main__":
    main()
