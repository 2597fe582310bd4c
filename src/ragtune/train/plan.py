"""Everything a training run settles before the model loads: its data, its loss, its fingerprint, how it starts.

The run directory is locked (rank 0) and `plan_start` decides fresh, resume or complete before any
weights are read, so a run with nothing to do returns in seconds and a refused one wastes nothing.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ragtune import config as cfg
from ragtune.errors import UserError
from ragtune.io.prepared import Prepared, data_fingerprint
from ragtune.retrieval.models import model_fingerprint, pick_device, position_limit, resolve_model
from ragtune.train.checkpoints import Start, plan_start, run_lock
from ragtune.train.distributed import (
    World,
    collective_timeout,
    elastic_restart,
    init_process_group,
    on_main_then_shared,
)
from ragtune.train.losses import LOSSES, MARGINS, resolve_loss


@dataclass
class RunPlan:
    config: cfg.Config  # train.loss is the loss that trains (auto resolved)
    prepared: Prepared
    world: World
    start: Start
    fingerprint: dict  # the data and settings a checkpoint must match to be resumed
    base_path: Path
    base_weights: str  # fingerprint of the base model's weights
    held_out: dict  # what the held-out metrics are measured on
    remine_every: int
    remine_first: bool  # the prepared negatives were mined by another model than the one that starts
    use_cuda: bool
    timeout: int  # seconds a collective may wait

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.output)

    @property
    def work_dir(self) -> Path:
        """The run directory, or (--overwrite) its replacement until this run ends."""
        return self.start.work_dir


def plan_run(config: cfg.Config, world: World, resume: bool, overwrite: bool, held: ExitStack) -> RunPlan:
    t, m = config.train, config.model
    prepared = Prepared.load(Path(t.prepared))
    loss = resolve_loss(t.loss, "label" in prepared.samples and prepared.samples["label"].notna().any())
    device = pick_device(m.device)
    precision = resolve_precision(t.precision, device)
    # bf16 and fp16 activations take half of fp32's memory: keep two layers in three (docs/benchmarks.md: first run)
    every_n_layers = t.activation_checkpointing_every_n_layers or (1 if precision == "fp32" else 3)
    # config.yaml and the card name the loss, precision and checkpointing that trained
    config = cfg.replace(
        config,
        **{
            "train.loss": loss,
            "train.precision": precision,
            "train.activation_checkpointing_every_n_layers": every_n_layers,
        },
    )
    t = config.train
    fingerprint = {"data": data_fingerprint(Path(t.prepared)), "settings": cfg.training_settings(config)}
    base_path = resolve_model(m.name)
    limit = position_limit(base_path)
    if limit and t.max_seq_length > limit:
        raise UserError(
            f"train.max_seq_length {t.max_seq_length}: {m.name} reads at most {limit} tokens; "
            f"pass --max-seq-length {limit} or less (0: the model's own)"
        )
    base_weights = model_fingerprint(base_path)  # hashes the weights files: once per run
    remine_every = t.hard_negative_update_frequency
    if LOSSES[loss].columns == MARGINS and remine_every:
        remine_every = 0  # the teacher's margins belong to the negatives prepare mined
        if world.is_main:
            print(f"{loss}: re-mining is off (the teacher's margins were computed for the prepared negatives)")
    remine_first = bool(remine_every) and prepared.summary.get("mined_with", base_weights) != base_weights
    use_cuda = device.startswith("cuda")
    timeout = collective_timeout(len(prepared.corpus), world)
    init_process_group(world, use_cuda, timeout)
    continuing = resume or elastic_restart()

    def lock_and_plan():
        held.enter_context(run_lock(Path(t.output)))
        return plan_start(Path(t.output), fingerprint, continuing=continuing, overwrite=overwrite)

    start = on_main_then_shared(lock_and_plan, world)
    held_out = held_out_description(prepared.summary)
    return RunPlan(
        config,
        prepared,
        world,
        start,
        fingerprint,
        base_path,
        base_weights,
        held_out,
        remine_every,
        remine_first,
        use_cuda,
        timeout,
    )


def resolve_precision(setting: str, device: str) -> str:
    """`auto` is bf16 only where the device computes it natively (elsewhere it is emulated, slower than
    fp32), fp16 on a GPU without bf16, else fp32. Measured in docs/benchmarks.md (first run)."""
    import torch

    if setting == "fp16" and not device.startswith("cuda"):
        raise UserError(f"train.precision fp16 needs a CUDA device (this run: {device}); pass --precision bf16 or fp32")
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    native = device == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16" if native else "fp32"


def held_out_description(summary: dict) -> dict:
    """What the held-out metrics were measured on: real queries, or synthetic ones (and then labelled so)."""
    return {
        "kind": summary.get("eval_kind", "real"),
        "source": summary.get("eval_source", ""),
        "queries": summary.get("eval_queries"),
    }
