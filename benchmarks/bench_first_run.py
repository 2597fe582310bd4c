"""`make demo` as a new user meets it: install with an empty pip cache, then `ragtune demo`'s wall time,
peak memory, test nDCG@10 and run size with the defaults (mixed precision where the CPU computes
bf16 natively, activation checkpointing) against the same demo in fp32 (`train.precision: fp32`,
the default before mixed precision), the baseline measured in the same run.

Everything runs in a fresh clone of this repository (committed files only) with its own `.venv`
(`make .venv/.installed-demo`, PIP_NO_CACHE_DIR=1) and an empty embedding cache per demo. Peak
RSS is the largest resident set of any process of the demo's tree, sampled every 0.5 s (psutil),
and the kernel's high-water mark of the demo process (wait4), whichever is larger.

    python benchmarks/bench_first_run.py [--skip-install-timing]

About 30 minutes on 2 cores. Run it on a quiet machine: the ratios are only as good as the quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3


def install(clone: Path) -> float:
    """Seconds for the demo's install target in a new venv, pip's cache off."""
    started = time.perf_counter()
    env = os.environ | {"PIP_NO_CACHE_DIR": "1"}
    subprocess.run(["make", "-C", str(clone), ".venv/.installed-demo"], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def sample_peak(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """Largest RSS of any single process of the tree rooted at pid, until stop is set."""
    while not stop.wait(0.5):
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in tree:
            try:
                peak[0] = max(peak[0], process.memory_info().rss)
            except psutil.NoSuchProcess:
                pass


DEMOS = {"fp32 (baseline)": "train:\n  precision: fp32\n", "defaults": ""}


def demo(clone: Path, work: Path, name: str) -> dict:
    """One `ragtune demo` in the clone with DEMOS[name]: wall s, peak RSS GiB, tuned test nDCG@10, run MB."""
    slug = name.split()[0]
    config = work / f"{slug}.yaml"
    config.write_text(DEMOS[name])
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAGTUNE_CACHE": str(work / f"cache-{slug}")}
    command = [str(clone / ".venv" / "bin" / "ragtune"), "demo", "--config", str(config), "--quiet"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=clone, env=env)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=sample_peak, args=(process.pid, stop, peak))
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ragtune demo failed (exit {os.waitstatus_to_exitcode(status)})")
    run = clone / "runs" / "demo" / "run"
    results = json.loads((clone / "runs" / "demo" / "eval" / "metrics.json").read_text())["results"]
    return {
        "seconds": seconds,
        "peak_gib": max(peak[0], usage.ru_maxrss * 1024) / GIB,
        "tuned_ndcg10": results["runs/demo/run/model"]["ndcg@10"],
        "run_mb": sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-install-timing", action="store_true", help="reuse this repo's .venv instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragtune-first-run-") as tmp:
        work = Path(tmp)
        clone = work / "ragtune"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        if args.skip_install_timing:
            (clone / ".venv").symlink_to(REPO / ".venv")
            install_s = float("nan")
        else:
            install_s = install(clone)
            print(f"install (make .venv/.installed-demo, empty pip cache): {install_s:.0f} s", flush=True)
        rows = {}
        for name in DEMOS:
            rows[name] = demo(clone, work, name)
            print(f"{name}: {json.dumps(rows[name])}", flush=True)
    base, ours = rows.values()
    print("\n| demo | ragtune demo s | peak RSS GiB | tuned test nDCG@10 | run dir MB |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds']:.0f} | {row['peak_gib']:.2f} | {row['tuned_ndcg10']:.4f} "
            f"| {row['run_mb']:.0f} |"
        )
    print(
        f"\ninstall {install_s:.0f} s; defaults against fp32: time x{ours['seconds'] / base['seconds']:.2f}, "
        f"peak RSS x{ours['peak_gib'] / base['peak_gib']:.2f}"
    )
    report_result(
        install_s=round(install_s, 1),
        demo_s=round(ours["seconds"], 1),
        demo_s_baseline=round(base["seconds"], 1),
        peak_gib=round(ours["peak_gib"], 3),
        peak_gib_baseline=round(base["peak_gib"], 3),
        tuned_ndcg10=ours["tuned_ndcg10"],
        tuned_ndcg10_baseline=base["tuned_ndcg10"],
        run_mb=round(ours["run_mb"], 1),
    )


if __name__ == "__main__":
    main()
