"""kill -9 at random points of real `ragtune prepare`, `train` and `index` processes: the re-run or resume
finishes, no torn output is ever visible, prepare gives the bytes of an uninterrupted run, and a
Feast repo keeps serving its last ready view while an index run dies."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def prepare_command(data: Path, out: Path, cache: Path) -> list[str]:
    return [
        RAGTUNE,
        "prepare",
        "--data",
        str(data),
        "--output",
        str(out),
        "--cache-dir",
        str(cache),
        "--range-min",
        "0",
        "--min-score",
        "0.1",
        "--random-negative-ratio",
        "0.2",
        "--overwrite",
    ]


def timed_run(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - started


def kill_after(command: list[str], seconds: float) -> int:
    """Start `command`, SIGKILL its whole process group after `seconds` (or once it ended); returns its pid."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return process.pid


def digests(out: Path, cache: Path) -> dict[str, str]:
    """sha256 per file; config.yaml records the output and cache paths themselves, so those are masked."""
    masked = {p.name: p.read_bytes().replace(str(out).encode(), b"<out>") for p in sorted(out.iterdir())}
    return {
        name: hashlib.sha256(data.replace(str(cache).encode(), b"<cache>")).hexdigest() for name, data in masked.items()
    }


def die_inside_atomic_dir(final: Path) -> None:
    """A real writer killed mid-write: leaves its scratch directory, as kill -9 during write_prepared would."""
    code = textwrap.dedent(f"""
        import os, signal
        from ragtune.io.outputs import atomic_dir
        with atomic_dir({str(final)!r}, overwrite=True) as tmp:
            (tmp / "train.parquet").write_bytes(b"torn")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(scifact_slice, tmp_path_factory):
    """An uninterrupted cold-cache prepare: its file digests, its duration, and the cache it warmed."""
    root = tmp_path_factory.mktemp("reference")
    out, cache = root / "prepared", root / "cache"
    seconds = timed_run(prepare_command(scifact_slice, out, cache))
    return digests(out, cache), seconds, cache


@pytest.mark.parametrize("warm", [False, True], ids=["cold-cache", "warm-cache"])
def test_prepare_killed_at_random_points_reruns_to_identical_bytes(scifact_slice, reference, tmp_path, warm):
    expected, seconds, warm_cache = reference
    out = tmp_path / "prepared"
    cache = warm_cache if warm else tmp_path / "cache"
    command = prepare_command(scifact_slice, out, cache)
    if warm:  # a warm cache gives the same bytes as a cold one, and a shorter run to spread the kills over
        seconds = timed_run(command)
        assert digests(out, cache) == expected
        shutil.rmtree(out)
    rng = random.Random(8)
    for third in range(3):
        kill_after(command, (third + rng.random()) / 3 * seconds)
        assert not out.exists() or digests(out, cache) == expected  # all or nothing, never a torn directory
    die_inside_atomic_dir(out)
    assert list(tmp_path.glob(".prepared.tmp-*"))
    timed_run(command)
    assert digests(out, cache) == expected
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # the dead writers' scratch is gone
    assert not list(cache.rglob(".*"))


def test_train_resumes_from_the_last_intact_checkpoint_after_kill_9_and_torn_saves(prepared_dir, tmp_path):
    run_dir = tmp_path / "killed"
    checkpoints = run_dir / "checkpoints"
    command = [
        RAGTUNE,
        "train",
        "--data",
        str(prepared_dir),
        "--output",
        str(run_dir),
        "--batch-size",
        "8",
        "--epochs",
        "1",
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
        "--learning-rate",
        "5e-5",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    # checkpoints at steps 2 and 4; the next save (5) waits for the epoch's evaluation
    while len(list(checkpoints.glob("checkpoint-*/ragtune_checksums.json"))) < 2:
        assert process.poll() is None and time.time() < deadline, "no two checkpoints before the run ended"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run_dir / "model").exists()
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # a save killed before its manifest: every file there but ragtune_checksums.json
    shutil.copytree(checkpoints / "checkpoint-4", checkpoints / "checkpoint-5")
    (checkpoints / "checkpoint-5" / "ragtune_checksums.json").unlink()
    # a torn write under an existing manifest
    weights = checkpoints / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=os.environ)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    warnings = [line for line in resumed.stderr.splitlines() if "incomplete or corrupted" in line]
    assert [line.split(":")[1].strip() for line in warnings] == [
        str(checkpoints / "checkpoint-5"),
        str(checkpoints / "checkpoint-4"),
    ]
    assert f"resuming from {checkpoints / 'checkpoint-2'}" in resumed.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 5  # 40 rows / batch 8: the same as an uninterrupted run
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert (run_dir / "model" / "model.safetensors").is_file()


def hits(search_output: str) -> list[str]:
    """The served passages, without the header naming the view (a reindex makes a new one)."""
    return search_output.splitlines()[1:]


def test_index_killed_at_random_points_leaves_a_servable_repo_and_reindexes_to_one_view(scifact_slice, tmp_path):
    from ragtune.serving.repo import TAG, open_store, passage_views

    repo, cache = tmp_path / "repo", tmp_path / "cache"
    assert subprocess.run([RAGTUNE, "feast", "init", str(repo)], capture_output=True).returncode == 0
    command = [
        RAGTUNE,
        "index",
        "--repo",
        str(repo),
        "--data",
        str(scifact_slice),
        "--cache-dir",
        str(cache),
        "--device",
        "cpu",
    ]
    timed_run(command)  # v1, and a warm cache: the kills below land in Feast's and Milvus' writes
    seconds = timed_run(command)
    search = [RAGTUNE, "search", "folic acid and homocysteine", "--repo", str(repo), "--top-k", "3", "--device", "cpu"]
    expected = hits(subprocess.run(search, capture_output=True, text=True, env=os.environ).stdout)
    rng = random.Random(11)
    for third in range(3):
        kill_after(command, (third + rng.random()) / 3 * seconds)
        served = subprocess.run(search, capture_output=True, text=True, env=os.environ)
        assert served.returncode == 0 and hits(served.stdout) == expected, served.stderr[-2000:]
    timed_run(command)

    views = passage_views(open_store(repo))
    assert len(views) == 1 and views[0].tags[TAG + "state"] == "ready"
    assert [p.name for p in (repo / "data" / "offline").glob("*.parquet")] == [f"{views[0].name}.parquet"]
    final = subprocess.run(search, capture_output=True, text=True, env=os.environ)
    assert hits(final.stdout) == expected, final.stderr[-2000:]
