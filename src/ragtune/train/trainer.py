"""The sentence-transformers Trainer as ragtune runs it: the dataset, the arguments and the callbacks.

The Trainer runs the loop, the loss, the schedule, checkpoints and TensorBoard logging. ragtune
adds the held-out retrieval evaluator (heldout.py), hard negatives that re-mining swaps in while
training runs (negatives/store.py), and its duties in the loop (callbacks.py).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragtune import config as cfg
from ragtune import console
from ragtune.io.prepared import held_out_label
from ragtune.negatives.mining import MiningParams
from ragtune.negatives.store import NegativeStore
from ragtune.retrieval.models import cache_dir, load_model
from ragtune.train.callbacks import Duties, RagtuneCallback, RunState, TrainingBar
from ragtune.train.checkpoints import STATE_FILE
from ragtune.train.distributed import backend, main_process_saves
from ragtune.train.heldout import HeldOutEvaluator
from ragtune.train.losses import LABELLED_PAIRS, LOSSES, MARGINS
from ragtune.train.modelcard import fill_card_data, quiet_widget_examples
from ragtune.train.plan import RunPlan
from ragtune.train.progress import trainjob_progress_callback


@dataclass
class Session:
    """A Trainer ready to run, and the parts the end of the run reads."""

    trainer: object
    model: object
    callback: RagtuneCallback
    evaluator: HeldOutEvaluator
    writer: object  # TensorBoard's SummaryWriter, rank 0 only
    full_length: int  # the model's own max_seq_length (training may run shorter)
    samples: int


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
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type="linear",
        activation_checkpointing=t.activation_checkpointing,
        activation_checkpointing_kwargs={"every_n_layers": t.activation_checkpointing_every_n_layers},
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
        bf16=t.precision == "bf16",  # accelerate runs the model's forward under autocast: steps and encodes
        fp16=t.precision == "fp16",
        use_cpu=not use_cuda,
        ddp_backend=backend(use_cuda) if world.distributed else None,
        ddp_timeout=timeout,
    )


def build_trainer(plan: RunPlan, callbacks: tuple) -> Session:
    """Model, negative store (restored on resume), evaluator and callbacks, wired into the Trainer."""
    from sentence_transformers import SentenceTransformerTrainer
    from torch.utils.tensorboard import SummaryWriter
    from transformers import PrinterCallback, ProgressCallback
    from transformers.integrations import TensorBoardCallback

    # sentence-transformers 6 defines only the older name of activation_checkpointing_enable
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing_enable", category=FutureWarning)
    config, world, start = plan.config, plan.world, plan.start
    t, m = config.train, config.model
    model = load_model(m.name, m.device, m.backend)  # the backend serves the held-out evaluation's encodes
    full_length = model.max_seq_length
    if t.max_seq_length:
        model.max_seq_length = t.max_seq_length
    fill_card_data(model, config, str(plan.run_dir / "model"))
    store = NegativeStore(plan.prepared.samples, plan.prepared.corpus, t.seed)
    state = RunState()
    if start.checkpoint is not None:
        saved = json.loads((start.checkpoint / STATE_FILE).read_text())
        store.restore(saved["negatives"])
        state = RunState(**saved["run"])
    evaluator = HeldOutEvaluator(plan.prepared, m.encode_batch_size, full_length, (plan.base_weights, cache_dir(m)))
    writer = SummaryWriter(log_dir=str(plan.work_dir / "tensorboard")) if world.is_main else None
    guard = MiningParams.of(config.mining, store.negatives_per_pair)
    label = held_out_label(plan.held_out["kind"])
    duties = Duties(
        t.epochs,
        plan.remine_every,
        t.early_stopping_patience,
        full_length,
        guard,
        t.keep_worse,
        label,
        t.precision,
        plan.remine_first,
    )
    callback = RagtuneCallback(model, store, evaluator, state, duties, world, writer, plan.fingerprint)
    args = training_arguments(t, plan.work_dir, world, plan.use_cuda, plan.timeout, fresh=start.checkpoint is None)
    dataset = training_dataset(plan.prepared.samples, store, LOSSES[t.loss].columns)
    quiet_widget_examples(model, dataset)
    trainer = main_process_saves(SentenceTransformerTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=LOSSES[t.loss].build(model, t),
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
    return Session(trainer, model, callback, evaluator, writer, full_length, len(dataset))
