"""`ragtune train`: sentence-transformers' Trainer plus what it lacks for retrieval fine-tuning.

The Trainer runs the loop, the loss, the schedule, checkpoints and TensorBoard logging. ragtune
adds, each in its own module: the held-out retrieval evaluator (heldout.py), hard negatives that
re-mining swaps in while training runs (negatives.py), best-model keeping, early stopping and
checkpoint sealing (callbacks.py), and one resume policy with checkpoints a crash cannot fool
(checkpoints.py). This module wires them together and writes the run's outputs.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragtune import config as cfg
from ragtune import console
from ragtune.errors import UserError
from ragtune.io.outputs import atomic_dir, swap_in, write_text
from ragtune.io.prepared import Prepared, data_fingerprint, held_out_label
from ragtune.io.runinfo import RunMetrics
from ragtune.negatives.mining import MiningParams
from ragtune.negatives.store import NegativeStore
from ragtune.retrieval.embeddings import store_corpus_embeddings
from ragtune.retrieval.metrics import METRICS, PRIMARY_METRIC
from ragtune.retrieval.models import (
    cache_dir,
    load_model,
    model_fingerprint,
    pick_device,
    position_limit,
    resolve_model,
)
from ragtune.train.averaging import choose_average
from ragtune.train.callbacks import Duties, RagtuneCallback, RunState, TrainingBar
from ragtune.train.checkpoints import STATE_FILE, plan_start, run_lock
from ragtune.train.distributed import (
    backend,
    collective_timeout,
    configure_logging,
    configure_threads,
    current_world,
    elastic_restart,
    init_process_group,
    main_process_saves,
    on_main_then_shared,
)
from ragtune.train.heldout import HeldOutEvaluator, max_length
from ragtune.train.losses import LABELLED_PAIRS, LOSSES, MARGINS, resolve_loss
from ragtune.train.modelcard import fill_card_data, write_model_card
from ragtune.train.progress import trainjob_progress_callback


@dataclass
class TrainResult:
    model_dir: Path
    metrics: RunMetrics
    already_complete: bool = False  # a continued run found the run finished and left it untouched


def training_dataset(samples, store: NegativeStore, columns: tuple[str, ...]):
    """A datasets.Dataset with the loss's columns, whose negatives are read from the store at access time.

    margin-mse trains only the rows the teacher gave a margin, on the negative it was given for."""
    from datasets import Dataset

    slots = np.arange(len(samples))
    if columns == LABELLED_PAIRS:  # every sample twice: (anchor, positive, 1) then (anchor, its negative, 0)
        table = Dataset.from_dict(
            {
                "sentence1": samples["anchor"].tolist() * 2,
                "text": samples["positive"].tolist() + [""] * len(samples),
                "slot": np.concatenate([np.full(len(samples), -1), slots]).tolist(),
            }
        )

        def labelled(batch: dict) -> dict:
            second = [text if slot < 0 else store.text(slot) for text, slot in zip(batch["text"], batch["slot"])]
            return {
                "sentence1": batch["sentence1"],
                "sentence2": second,
                "label": [1.0 if slot < 0 else 0.0 for slot in batch["slot"]],
            }

        table.set_transform(labelled)
        return table
    if columns == MARGINS:
        slots = np.flatnonzero(samples["label"].notna().to_numpy())
    rows = samples.iloc[slots]
    table = Dataset.from_dict(
        {
            "anchor": rows["anchor"].tolist(),
            "positive": rows["positive"].tolist(),
            "slot": slots.tolist(),
            **({"margin": rows["label"].tolist()} if columns == MARGINS else {}),
        }
    )

    def triplets(batch: dict) -> dict:
        negatives = [store.text(slot) for slot in batch["slot"]]
        return {
            "anchor": batch["anchor"],
            "positive": batch["positive"],
            "negative": negatives,
            **({"label": batch["margin"]} if "margin" in batch else {}),
        }

    table.set_transform(triplets)
    return table


def training_arguments(t: cfg.TrainConfig, run_dir: Path, world, use_cuda: bool, timeout: int, fresh: bool):
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    bf16 = use_cuda and torch.cuda.is_bf16_supported()
    return SentenceTransformerTrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="epoch",
        eval_on_start=fresh,
        save_strategy="steps",
        save_steps=t.checkpoint_steps,
        save_total_limit=2,
        logging_steps=t.logging_steps,
        report_to="none",
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        fp16=use_cuda and not bf16,
        use_cpu=not use_cuda,
        ddp_backend=backend(use_cuda) if world.distributed else None,
        ddp_timeout=timeout,
    )


def train(config: cfg.Config, *, resume: bool = False, overwrite: bool = False, callbacks: tuple = ()) -> TrainResult:
    """Fine-tune `model.name` on `train.prepared`; the result is the best model by held-out nDCG@10."""
    with ExitStack() as held:  # rank 0 holds the run's lock until the run has ended
        return _train(config, resume, overwrite, callbacks, held)


def _train(config: cfg.Config, resume: bool, overwrite: bool, callbacks: tuple, held: ExitStack) -> TrainResult:
    import transformers
    from sentence_transformers import SentenceTransformerTrainer
    from torch.utils.tensorboard import SummaryWriter
    from transformers import PrinterCallback, ProgressCallback
    from transformers.integrations import TensorBoardCallback

    t, m = config.train, config.model
    world = current_world()
    configure_threads(world)
    configure_logging(world)
    transformers.utils.logging.disable_progress_bar()  # per-save bars; the Trainer keeps its own
    run_dir = Path(t.output)
    prepared = Prepared.load(Path(t.prepared))
    loss = resolve_loss(t.loss, "label" in prepared.samples and prepared.samples["label"].notna().any())
    config = cfg.replace(config, **{"train.loss": loss})  # config.yaml and the card name the loss that trained
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
    held_out = held_out_description(prepared.summary)
    remine_every = t.hard_negative_update_frequency
    if LOSSES[loss].columns == MARGINS and remine_every:
        remine_every = 0  # the teacher's margins belong to the negatives prepare mined
        if world.is_main:
            print(f"{loss}: re-mining is off (the teacher's margins were computed for the prepared negatives)")
    use_cuda = pick_device(m.device).startswith("cuda")
    timeout = collective_timeout(len(prepared.corpus), world)
    init_process_group(world, use_cuda, timeout)
    continuing = resume or elastic_restart()

    def lock_and_plan():
        held.enter_context(run_lock(run_dir))
        return plan_start(run_dir, fingerprint, continuing=continuing, overwrite=overwrite)

    start = on_main_then_shared(lock_and_plan, world)
    work_dir = start.work_dir  # the run directory, or (--overwrite) its replacement until this run ends
    if start.action == "complete":
        if world.is_main and work_dir != run_dir:
            swap_in(work_dir, run_dir)
        return TrainResult(run_dir / "model", RunMetrics.load(run_dir), True)
    if start.checkpoint is not None and world.is_main:
        print(f"resuming from {start.checkpoint}")

    model = load_model(m.name, m.device, m.backend)  # the backend serves the held-out evaluation's encodes
    full_length = model.max_seq_length
    if t.max_seq_length:
        model.max_seq_length = t.max_seq_length
    fill_card_data(model, config, str(run_dir / "model"))
    store = NegativeStore(prepared.samples, prepared.corpus, t.seed)
    state = RunState()
    if start.checkpoint is not None:
        saved = json.loads((start.checkpoint / STATE_FILE).read_text())
        store.restore(saved["negatives"])
        state = RunState(**saved["run"])
    evaluator = HeldOutEvaluator(prepared, m.encode_batch_size, full_length, (base_weights, cache_dir(m)))
    writer = SummaryWriter(log_dir=str(work_dir / "tensorboard")) if world.is_main else None
    duties = Duties(
        t.epochs,
        remine_every,
        t.early_stopping_patience,
        full_length,
        MiningParams.of(config.mining, store.negatives_per_pair),
        t.keep_worse,
        held_out_label(held_out["kind"]),
    )
    callback = RagtuneCallback(model, store, evaluator, state, duties, world, writer, fingerprint)
    args = training_arguments(t, work_dir, world, use_cuda, timeout, fresh=start.checkpoint is None)
    dataset = training_dataset(prepared.samples, store, LOSSES[loss].columns)
    trainer = main_process_saves(SentenceTransformerTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=LOSSES[loss].build(model, t),
        evaluator=evaluator,
        callbacks=[
            *([TensorBoardCallback(tb_writer=writer)] if world.is_main else []),
            callback,
            *filter(None, [trainjob_progress_callback(world)]),
            *callbacks,
        ],
    )
    if console.level != "verbose":  # the Trainer's own bar and its raw log dicts
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        if world.is_main and console.bars():
            trainer.add_callback(TrainingBar())
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
    state = callback.state
    metrics = RunMetrics(
        heldout=held_out,
        base=state.base_metrics,
        tuned=next(h for h in state.history if h["step"] == state.best_step),
        best_step=state.best_step,
        shipped="base" if state.best_step <= 0 else "tuned",
        best_tuned=max((h for h in state.history if h["step"] > 0), key=lambda h: h[PRIMARY_METRIC], default=None),
        history=state.history,
        remining=state.remining,
        train={
            "steps": output.global_step,
            "epochs": t.epochs,
            "loss": loss,
            "per_device_batch_size": t.batch_size,
            "global_batch_size": t.batch_size * args.world_size,
            "world_size": args.world_size,
            "samples": len(dataset),
            "seconds": round(time.perf_counter() - started, 1),
            "samples_per_second": output.metrics.get("train_samples_per_second"),
        },
        data=prepared.summary,
        eval_set=fingerprint["data"]["eval.parquet"],
        base_weights=base_weights,
    )
    if world.is_main:
        best = base_path if state.best_step <= 0 else work_dir / "checkpoints" / f"checkpoint-{state.best_step}"
        model.load_state_dict(load_model(str(best), m.device).state_dict())
        if t.wise_alphas and state.best_step > 0:
            average_with_base(
                model, load_model(m.name, m.device), evaluator, t.wise_alphas, t.wise_prefer, metrics, callback
            )
        model.model_card_data.eval_results_dict[evaluator] = {k: metrics.tuned[k] for k in METRICS}  # these weights
        finish_run(work_dir, model, full_length, metrics, config, prepared.audit)
        if callback.best_embeddings is not None:  # the final model's corpus embeddings: evaluate reuses them
            store_corpus_embeddings(
                callback.best_embeddings,
                model_fingerprint(work_dir / "model"),
                full_length,
                evaluator.documents,
                cache_dir(m),
            )
        writer.add_hparams(
            {
                "loss": loss,
                "epochs": t.epochs,
                "learning_rate": t.learning_rate,
                "batch_size": t.batch_size,
                "max_seq_length": t.max_seq_length or full_length,
                "hard_negative_update_frequency": t.hard_negative_update_frequency,
            },
            {f"hparam/{PRIMARY_METRIC}": metrics.tuned[PRIMARY_METRIC]},
            run_name="hparams",
        )
        writer.close()
        if work_dir != run_dir:  # the finished replacement takes the old run's place only now
            swap_in(work_dir, run_dir)
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
    best = metrics.best_tuned
    print(
        f"trained {result.model_dir} in {run['seconds']:.0f} s ({run['steps']} steps); {label} nDCG@10 "
        f"base {base.get('ndcg@10', float('nan')):.4f}, best epoch "
        f"{best['ndcg@10'] if best else float('nan'):.4f}"
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


def average_with_base(model, base, evaluator, alphas: list[float], prefer: bool, metrics: RunMetrics, callback) -> None:
    """WiSE-FT candidates beside the best epoch; a winner replaces the tuned weights, metrics and cached embeddings."""
    prefer_over = metrics.base[PRIMARY_METRIC] if prefer else None
    choice = choose_average(model, base.state_dict(), evaluator, alphas, metrics.tuned[PRIMARY_METRIC], prefer_over)
    metrics.wise = choice.as_dict()
    for candidate in choice.candidates:
        ships = " (ships)" if candidate["alpha"] == choice.alpha else ""
        callback.say(
            f"WiSE alpha {candidate['alpha']:g}: {callback.duties.label} nDCG@10 {candidate[PRIMARY_METRIC]:.4f}{ships}"
        )
    if choice.alpha is not None:
        metrics.tuned = {**metrics.tuned, **choice.metrics, "wise_alpha": choice.alpha}
        callback.best_embeddings = choice.corpus_embeddings


def held_out_description(summary: dict) -> dict:
    """What the held-out metrics were measured on: real queries, or synthetic ones (and then labelled so)."""
    return {
        "kind": summary.get("eval_kind", "real"),
        "source": summary.get("eval_source", ""),
        "queries": summary.get("eval_queries"),
    }


def finish_run(run_dir: Path, model, full_length: int, metrics: RunMetrics, config: cfg.Config, audit: dict) -> None:
    """model/ (the best weights at full max length, with its card), then metrics.json: together they mark
    the run finished, so they are written last and in this order; config.yaml follows."""
    with max_length(model, full_length), atomic_dir(run_dir / "model", overwrite=True) as tmp:
        model.save_pretrained(str(tmp))
        write_model_card(tmp / "README.md", metrics, config, audit)
    metrics.write(run_dir)
    write_text(run_dir / "config.yaml", cfg.to_yaml(config))
