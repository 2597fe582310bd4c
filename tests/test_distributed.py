"""Real torchrun processes on CPU (gloo): gradients synchronise, gathering works, a killed worker resumes."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from ragtune.train.distributed import World, collective_timeout, torchrun_command

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", *args]


@pytest.fixture(scope="module")
def ddp_runs(prepared_dir, tmp_path_factory):
    """Two 2-process runs on the same data, without and with gather_across_devices."""
    root = tmp_path_factory.mktemp("ddp")
    for gather in ("0", "1"):
        result = subprocess.run(
            torchrun(
                str(HERE / "ddp_worker.py"), str(prepared_dir), str(root / f"run{gather}"), str(root / gather), gather
            ),
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.parametrize("gather", ["0", "1"])
def test_parameters_are_identical_across_ranks_and_changed(ddp_runs, gather):
    out = ddp_runs / gather
    names = ("start-rank0", "end-rank0", "end-rank1")
    start, rank0, rank1 = (load_file(out / f"{name}.safetensors") for name in names)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert (rank0[name] == rank1[name]).all(), f"{name} differs between ranks: gradients were not synchronised"
    assert any(not (rank0[n] == start[n]).all() for n in rank0), "training did not change the model"


def test_gathering_negatives_across_ranks_raises_the_first_loss(ddp_runs):
    """With gathering each query also scores the other rank's passages: more negatives, a higher loss."""
    plain = json.loads((ddp_runs / "0" / "losses-rank0.json").read_text())
    gathered = json.loads((ddp_runs / "1" / "losses-rank0.json").read_text())
    assert gathered[0] > plain[0]


def test_only_rank_zero_writes_the_run(ddp_runs):
    run = ddp_runs / "run0"
    assert (run / "model" / "model.safetensors").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2 and metrics["train"]["global_batch_size"] == 8
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) >= 1


def kill_rank_one_once(run_dir: Path, prepared_dir: Path, ready) -> str:
    """Start an elastic 2-process run, kill the rank-1 worker once `ready(run_dir)` holds; the launcher's output."""
    launcher = subprocess.Popen(
        elastic_command(prepared_dir, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ,
    )
    deadline = time.time() + 600
    while not ready(run_dir):
        assert launcher.poll() is None and time.time() < deadline, "the run ended before the moment to kill"
        time.sleep(0.1)
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    assert workers, "rank 1 not found"
    workers[0].kill()
    output, _ = launcher.communicate(timeout=900)
    assert launcher.returncode == 0, output[-3000:]
    assert "exitcode: -9" in output  # the killed worker was seen, and the restarted group finished the run
    return output


def sealed_checkpoint(run_dir: Path) -> bool:
    return bool(list((run_dir / "checkpoints").glob("checkpoint-*/ragtune_checksums.json")))


def test_killed_worker_is_restarted_and_training_resumes(prepared_dir, tmp_path):
    run_dir = tmp_path / "elastic"
    kill_rank_one_once(run_dir, prepared_dir, sealed_checkpoint)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 10  # 40 rows / (4 x 2 ranks) = 5 steps per epoch, 2 epochs


def elastic_command(prepared_dir: Path, run_dir: Path) -> list[str]:
    return [
        RAGTUNE,
        "train",
        "--nproc",
        "2",
        "--max-restarts",
        "1",
        "--data",
        str(prepared_dir),
        "--output",
        str(run_dir),
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--max-seq-length",
        "64",
        "--checkpoint-steps",
        "2",
        "--min-score",
        "0.1",
        "--range-min",
        "0",
        "--seed",
        "1",
        "--hard-negative-update-frequency",
        "1",
    ]


def test_worker_killed_before_the_first_checkpoint_restarts_fresh(prepared_dir, tmp_path):
    """Repro: an elastic restart with TensorBoard logs but no checkpoint yet failed on every restart."""

    def training_started_without_checkpoint(run_dir: Path) -> bool:
        if not list((run_dir / "tensorboard").glob("events.out.tfevents.*")):
            return False
        assert not sealed_checkpoint(run_dir), "a checkpoint came before the kill"
        return True

    run_dir = tmp_path / "early"
    kill_rank_one_once(run_dir, prepared_dir, training_started_without_checkpoint)
    assert json.loads((run_dir / "metrics.json").read_text())["train"]["steps"] == 10


CRASHING_WORKER = """
import sys, time
from ragtune.train.distributed import current_world, init_process_group, on_main_then_shared
world = current_world()
init_process_group(world, False, 600)
started = time.monotonic()
try:
    on_main_then_shared(lambda: 1 / 0, world)
except Exception as exc:
    print(f"rank {world.rank} failed after {time.monotonic() - started:.1f} s: {type(exc).__name__}: {exc}")
    sys.exit(3)
"""


def test_a_crash_on_rank_zero_fails_every_rank_at_once(tmp_path):
    """A non-user error inside on_main_then_shared reaches rank 1 now, not after the 600 s collective timeout."""
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_WORKER)
    result = subprocess.run(
        torchrun("--standalone", str(script)), capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert result.returncode != 0
    assert "rank 0 failed after" in result.stdout and "ZeroDivisionError" in result.stdout
    assert "rank 1 failed after" in result.stdout and "RuntimeError: rank 0 failed: ZeroDivisionError" in result.stdout


def test_torchrun_command_and_timeout_follow_the_work():
    command = torchrun_command(2, ["train", "--data", "p"], max_restarts=3)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=3"]
    assert command[-3:] == ["train", "--data", "p"]
    small, large = collective_timeout(1_000, World(size=2)), collective_timeout(1_000_000, World(size=2))
    assert small == 300 and large > 10 * small
