"""Checkpoints a killed run can trust, and the one policy that decides how a run starts.

The Trainer writes a checkpoint (weights, optimizer, scheduler, RNG); ragtune adds its state
(negatives, history, the fingerprint of the data and settings) and, last, a manifest of sha256
sums. A checkpoint without the manifest, or not matching it, was torn by a crash and is skipped.

`plan_start` is the single answer to "how does this run start?" for a user's `--resume`, a
torchrun elastic restart and a TrainJob pod restart alike.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import UserError
from ragtune.io.outputs import MARKER, directory_checksums, mark, write_json, written_by_ragtune

STATE_FILE = "ragtune_state.json"
CHECKSUM_FILE = "ragtune_checksums.json"
FINISHED = ("model", "metrics.json")  # written last, in this order, when a run ends
LEFTOVERS = {"checkpoints", "tensorboard"}  # what a run holds before its first intact checkpoint


def checkpoint_checksums(checkpoint: Path) -> dict[str, str]:
    return {name: digest for name, digest in directory_checksums(checkpoint).items() if name != CHECKSUM_FILE}


def seal(checkpoint: Path, state: dict) -> None:
    """Add ragtune's state, then the manifest: a checkpoint counts only once both are on disk."""
    write_json(checkpoint / STATE_FILE, state)
    write_json(checkpoint / CHECKSUM_FILE, checkpoint_checksums(checkpoint))


def checkpoint_intact(checkpoint: Path) -> bool:
    """Its manifest exists and every file matches it: a kill -9 mid-save leaves no manifest or a mismatch."""
    try:
        return json.loads((checkpoint / CHECKSUM_FILE).read_text()) == checkpoint_checksums(checkpoint)
    except (OSError, ValueError):
        return False


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest intact checkpoint; newer torn ones are skipped with a warning."""
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=checkpoint_step, reverse=True)
    for checkpoint in checkpoints:
        if checkpoint_intact(checkpoint):
            return checkpoint
        warnings.warn(f"{checkpoint}: incomplete or corrupted (checksums do not match), skipped", stacklevel=2)
    return None


@dataclass(frozen=True)
class Start:
    action: str  # "fresh", "resume" or "complete"
    checkpoint: Path | None = None
    work_dir: Path | None = None  # where this run trains: the run directory, or its replacement in the making


def replacement_dir(run_dir: Path) -> Path:
    """Where `--overwrite` trains the new run: the old one stays whole until the new one is finished."""
    return run_dir.with_name(f".{run_dir.name}.next")


def _present(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")} if directory.is_dir() else set()


def _fresh(work_dir: Path) -> Start:
    work_dir.mkdir(parents=True, exist_ok=True)
    mark(work_dir, "training run")
    return Start("fresh", work_dir=work_dir)


def plan_start(run_dir: Path, fingerprint: dict, *, continuing: bool, overwrite: bool) -> Start:
    """How a run starts. `continuing` (--resume, an elastic restart, a pod restart): a finished run is
    complete; an intact checkpoint resumes, if it was made from the same data and settings; a run
    with no checkpoint yet (or only torn ones) starts fresh; anything else is a user error.
    Otherwise an existing run is replaced only with `overwrite`, only if ragtune wrote it, and only
    once the new run has finished: until then it trains in `replacement_dir`, which a resume continues."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory; choose another --output")
    present = _present(run_dir)
    replacement = replacement_dir(run_dir)
    if not continuing:
        if present and not overwrite:
            raise UserError(f"{run_dir}: already exists; pass --resume to continue it, --overwrite to replace it")
        if present and not written_by_ragtune(run_dir):
            raise UserError(
                f"{run_dir}: was not written by ragtune (no {MARKER} file), so --overwrite will not replace it; "
                "choose another --output or move it away yourself"
            )
        shutil.rmtree(replacement, ignore_errors=True)  # an earlier replacement that never finished
        return _fresh(replacement if present else run_dir)
    if replacement.is_dir():  # an --overwrite run was stopped: it continues; the old run is still whole
        return _continue(replacement, fingerprint)
    return _continue(run_dir, fingerprint)


def _continue(work_dir: Path, fingerprint: dict) -> Start:
    present = _present(work_dir)
    if all((work_dir / name).exists() for name in FINISHED):
        return Start("complete", work_dir=work_dir)
    checkpoint = latest_checkpoint(work_dir) if "checkpoints" in present else None
    if checkpoint is not None:
        check_fingerprint(checkpoint, fingerprint)
        mark(work_dir, "training run")
        return Start("resume", checkpoint, work_dir)
    unknown = sorted(present - LEFTOVERS)
    if unknown:
        raise UserError(
            f"{work_dir}: holds {', '.join(unknown)} but no intact checkpoint to resume from; "
            "choose another --output, or pass --overwrite without --resume to replace it"
        )
    for name in present:  # a run that died before its first checkpoint: nothing worth keeping
        shutil.rmtree(work_dir / name)
    return _fresh(work_dir)


@contextmanager
def run_lock(run_dir: Path):
    """Hold `.NAME.lock` beside the run directory for the whole run: a second `train` on it refuses,
    naming the holder. The kernel drops the lock when its process dies, so a killed run's is taken over."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path = run_dir.with_name(f".{run_dir.name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{run_dir}: in use by {holder}; wait for that run to end (or stop it), or choose another --output"
            ) from None
        try:  # the file we locked is still the one on disk (a finishing holder may have just removed it)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"ragtune train (pid {os.getpid()} on {socket.gethostname()})".encode())
    try:
        yield
    finally:
        os.unlink(path)
        os.close(fd)


def check_fingerprint(checkpoint: Path, fingerprint: dict) -> None:
    """One line naming what differs between the checkpoint's data/settings and this run's."""
    saved = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8")).get("fingerprint", {})
    for part, fix in (("data", "resume with the --data it was trained on"), ("settings", "resume with its settings")):
        before, now = saved.get(part, {}), fingerprint.get(part, {})
        differing = [key for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
        if differing:
            shown = "; ".join(f"{key}: {_short(before.get(key))} then, {_short(now.get(key))} now" for key in differing)
            raise UserError(f"{checkpoint}: was trained with other {part} ({shown}); {fix}, or start a new --output")


def _short(value) -> str:
    text = json.dumps(value)
    return text[:12] + "…" if len(text) > 40 else text
