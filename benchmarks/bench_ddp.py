"""DDP scaling on this machine: `ragtune train` samples per second with 1 and 2 torchrun processes.

The global batch is the same in both (32 = 32 x 1 = 16 x 2); throughput is timed between optimizer
steps, as in bench_train.py. On 2 shared CPU cores two processes mostly split the same cores, so
expect little speed-up here; on GPUs each process has its own device. Run on a quiet machine:

    python benchmarks/bench_ddp.py [--rows 192] [--max-seq-length 128]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import StepTimer, prepared_triplets, report_result

from ragtune import config as cfg
from ragtune.train.distributed import current_world
from ragtune.train.run import train

GLOBAL_BATCH = 32


def worker(prepared: Path, run_dir: Path, result: Path, max_seq_length: int) -> None:
    world = current_world()
    timer = StepTimer()
    config = cfg.load(
        None,
        {
            "train.prepared": str(prepared),
            "train.output": str(run_dir),
            "model.device": "cpu",
            "train.epochs": 1,
            "train.batch_size": GLOBAL_BATCH // world.size,
            "train.max_seq_length": max_seq_length,
            "train.hard_negative_update_frequency": 0,
            "train.checkpoint_steps": 10_000,
        },
    )
    train(config, overwrite=True, callbacks=(timer,))
    if world.is_main:
        result.write_text(json.dumps({"steps": len(timer.ends) - 1, "rate": timer.samples_per_second(GLOBAL_BATCH)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=192)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--worker", nargs=3, metavar=("PREPARED", "RUN", "RESULT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(*map(Path, options.worker), options.max_seq_length)
        return

    work = Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    prepared_triplets(options.data, work / "prepared", options.rows)
    rates = {}
    for nproc in (1, 2):
        result = work / f"result{nproc}.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nproc-per-node={nproc}",
                __file__,
                "--max-seq-length",
                str(options.max_seq_length),
                "--worker",
                str(work / "prepared"),
                str(work / f"run{nproc}"),
                str(result),
            ],
            check=True,
        )
        rates[nproc] = json.loads(result.read_text())
    print("\n| processes | per-process batch | steps timed | samples/s | scaling efficiency |\n|---|---|---|---|---|")
    for nproc, measured in rates.items():
        efficiency = measured["rate"] / (nproc * rates[1]["rate"])
        print(
            f"| {nproc} | {GLOBAL_BATCH // nproc} | {measured['steps']} | {measured['rate']:.2f} | {efficiency:.2f} |"
        )
    print(
        f"\nspeed-up 2 vs 1 process: {rates[2]['rate'] / rates[1]['rate']:.2f}x; global batch {GLOBAL_BATCH}, "
        f"{options.rows} triplets, max length {options.max_seq_length}"
    )
    report_result(
        one_process=rates[1]["rate"], two_processes=rates[2]["rate"], speedup=rates[2]["rate"] / rates[1]["rate"]
    )


if __name__ == "__main__":
    main()
