"""Every piece of process-group and rank logic in ragtune.

torchrun starts the processes and sets RANK / LOCAL_RANK / WORLD_SIZE; transformers' Trainer
creates the process group from them with the backend and timeout chosen here. Rank 0 alone
evaluates (sentence-transformers shards the encoding across ranks meanwhile), mines, writes
TensorBoard, checkpoints and the final model; the other ranks receive its results by broadcast.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

SECONDS_PER_PASSAGE = 0.2  # worst case seen here for one CPU process at max length 256 (measured: ~0.04-0.08)
MIN_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The world torchrun described in the environment (a single process without it)."""
    env = os.environ
    return World(
        rank=int(env.get("RANK", 0)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        size=int(env.get("WORLD_SIZE", 1)),
        local_size=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
    )


def backend(use_cuda: bool) -> str:
    return "nccl" if use_cuda else "gloo"


def collective_timeout(corpus_size: int, world: World) -> int:
    """Seconds a rank may wait in a collective: the longest wait is rank 0 encoding its corpus shard
    for evaluation (plus mining), so the timeout follows the corpus size, not a blanket hour."""
    shard = -(-corpus_size // max(world.size, 1))
    return max(MIN_TIMEOUT_SECONDS, int(shard * SECONDS_PER_PASSAGE * 3))


def init_process_group(world: World, use_cuda: bool, timeout_seconds: int) -> None:
    """Join the process group before the Trainer would, with our backend and timeout, and with store
    keys namespaced by torchrun's restart attempt: after an elastic restart, torch 2.13's agent store
    still holds the previous attempt's gloo addresses and the new group would dial dead ranks."""
    import torch
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    timeout = timedelta(seconds=timeout_seconds)
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world.size,
        is_master=world.is_main and not agent_store,
        timeout=timeout,
        multi_tenant=not agent_store,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"ragtune/attempt-{attempt}", store)
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend(use_cuda), store=store, rank=world.rank, world_size=world.size, timeout=timeout)


def configure_threads(world: World) -> None:
    """Split the CPU between local processes: oversubscribed threads spin-wait instead of working."""
    import torch

    if world.local_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))


def configure_logging(world: World) -> None:
    """Every log line of a non-zero rank carries its rank."""
    if world.distributed:
        logging.basicConfig(format=f"[rank {world.rank}] %(levelname)s %(name)s: %(message)s", force=True)


def broadcast_from_main(value, world: World):
    """Rank 0's value on every rank."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    holder = [value if world.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(world: World) -> None:
    """Every rank has reached this point (a no-op alone)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def main_process_saves(trainer_class):
    """sentence-transformers 6.2 lets every rank write the model into the same folder; only the
    process that transformers says should save does here."""

    class RankZeroSaveTrainer(trainer_class):
        def _save(self, output_dir=None, state_dict=None):
            if self.args.should_save:
                super()._save(output_dir, state_dict)

    return RankZeroSaveTrainer


def torchrun_command(nproc: int, argv: list[str], max_restarts: int) -> list[str]:
    """`ragtune train --nproc N ...` becomes torchrun with N local workers running the same command."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        "-m",
        "ragtune.cli",
        *argv,
    ]


def launch(nproc: int, argv: list[str], max_restarts: int) -> int:
    return subprocess.call(torchrun_command(nproc, argv, max_restarts))


def elastic_restart() -> bool:
    """torchrun restarted the workers after a failure: they must resume, not start over."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0


def on_main_then_shared(work, world: World):
    """Run `work` on rank 0 only (file-system decisions) and give every rank its result or its error.

    Any failure on rank 0 reaches the other ranks at once, instead of leaving them blocked in the
    broadcast until the collective timeout.
    """
    from ragtune.errors import UserError

    outcome, failure = None, None
    if world.is_main:
        try:
            outcome = ("ok", work())
        except UserError as exc:
            outcome = ("user error", str(exc))
        except Exception as exc:
            outcome, failure = ("crash", f"{type(exc).__name__}: {exc}"), exc
    kind, value = broadcast_from_main(outcome, world)
    if failure is not None:
        raise failure
    if kind == "user error":
        raise UserError(value)
    if kind == "crash":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value
