"""`ragtune train`: sentence-transformers' Trainer plus what it lacks for retrieval fine-tuning.

A run is planned (plan.py: data, loss, lock, how it starts), its Trainer built (trainer.py: the
held-out evaluator, re-mining, best-model keeping, checkpoint sealing), trained, and finished
(finish.py: the shipped weights, the serving fusion, the model card and metrics.json).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ragtune import config as cfg
from ragtune.io.outputs import swap_in
from ragtune.io.prepared import PASSAGES_STAGE, held_out_label, passages_stage
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.metrics import PRIMARY_METRIC
from ragtune.train.distributed import configure_logging, configure_threads, current_world
from ragtune.train.finish import run_metrics, ship
from ragtune.train.losses import AUTO
from ragtune.train.plan import plan_run
from ragtune.train.trainer import build_trainer


@dataclass
class TrainResult:
    model_dir: Path
    metrics: RunMetrics
    already_complete: bool = False  # a continued run found the run finished and left it untouched


def stages(config: cfg.Config) -> list[cfg.Config]:
    """The runs `train.prepared` asks for: one, or (prepared in two stages, synthetic.add_to_labels) the
    passages first with the zero-label recipe into OUTPUT-passages, then the labelled queries starting
    from that run's model into OUTPUT. Each is a whole run: its own gate, checkpoints and resume."""
    first = passages_stage(Path(config.train.prepared))
    if first is None:
        return [config]
    output = Path(config.train.output)
    first_output = output.with_name(f"{output.name}-{PASSAGES_STAGE}")
    passages = cfg.replace(
        config,
        **{
            "train.prepared": str(first),
            "train.output": str(first_output),
            "train.loss": AUTO,
            **cfg.ZERO_LABEL_RECIPE,
        },
    )
    return [passages, cfg.replace(config, **{"model.name": str(first_output / "model")})]


def train_stages(runs: list[cfg.Config], *, resume: bool, overwrite: bool, callbacks: tuple) -> TrainResult:
    """Each run of `stages` in turn, with its closing lines; the last one's result is what ships."""
    if len(runs) > 1 and current_world().is_main:
        first, then = runs[0].train.output, runs[-1].train.output
        print(f"two stages: the passages into {first}, then the labelled queries into {then}")
    for run in runs:
        result = train(run, resume=resume, overwrite=overwrite, callbacks=callbacks)
        print_summary(result, run)
    return result


def train(config: cfg.Config, *, resume: bool = False, overwrite: bool = False, callbacks: tuple = ()) -> TrainResult:
    """Fine-tune `model.name` on `train.prepared`; the result is the best model by held-out nDCG@10."""
    with ExitStack() as held:  # rank 0 holds the run's lock until the run has ended
        return _train(config, resume, overwrite, callbacks, held)


def _train(config: cfg.Config, resume: bool, overwrite: bool, callbacks: tuple, held: ExitStack) -> TrainResult:
    import transformers

    world = current_world()
    configure_threads(world)
    configure_logging(world)
    transformers.utils.logging.disable_progress_bar()  # per-save bars; the Trainer keeps its own
    plan = plan_run(config, world, resume, overwrite, held)
    run_dir, start = plan.run_dir, plan.start
    if start.action == "complete":
        if world.is_main and plan.work_dir != run_dir:
            swap_in(plan.work_dir, run_dir)
        return TrainResult(run_dir / "model", RunMetrics.load(run_dir), True)
    if start.checkpoint is not None and world.is_main:
        print(f"resuming from {start.checkpoint}")
    session = build_trainer(plan, callbacks)
    started = time.perf_counter()
    output = session.trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
    metrics = run_metrics(plan, session, output, time.perf_counter() - started)
    if world.is_main:
        ship(plan, session, metrics)
    return TrainResult(run_dir / "model", metrics)


def print_summary(result: TrainResult, config: cfg.Config) -> None:
    """The run's closing lines, on rank 0: what trained, what it scored, what ships (and why)."""
    if not current_world().is_main:  # under torchrun rank 0 reports
        return
    if result.already_complete:
        print(f"{config.train.output}: already complete; {result.model_dir} left as it is (--overwrite trains again)")
        return
    metrics = result.metrics
    base, run, label = metrics.base, metrics.train, held_out_label(metrics.heldout["kind"])
    best = metrics.best_tuned or {}
    print(
        f"trained {result.model_dir} in {run['seconds']:.0f} s ({run['steps']} steps); {label} nDCG@10 "
        f"base {base.get(PRIMARY_METRIC, float('nan')):.4f}, best epoch {best.get('epoch', '?')} "
        f"{best.get(PRIMARY_METRIC, float('nan')):.4f}"
    )
    if "wise_alpha" in metrics.tuned:
        print(
            f"{result.model_dir} holds the alpha {metrics.tuned['wise_alpha']:g} average of the best epoch and "
            f"the base model ({label} nDCG@10 {metrics.tuned[PRIMARY_METRIC]:.4f})"
        )
    if metrics.shipped == "base":
        print(
            f"no tuned epoch beat the base model on the {label} queries: {result.model_dir} holds the base model "
            "(--keep-worse ships the best tuned epoch instead)"
        )
