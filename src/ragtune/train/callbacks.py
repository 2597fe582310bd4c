"""ragtune's duties inside the Trainer's loop: keep the best model, stop early, re-mine, seal checkpoints.

The best model is the checkpoint of the best held-out evaluation (the base model when no epoch
beats it): the Trainer's checkpoint rotation is told to keep that checkpoint, so no extra copy of
the weights is ever written. Every rank sees the same broadcast metrics, but the bookkeeping and
the decisions (best, stop) are made on rank 0 alone and broadcast with the run state, so every
rank stops, re-mines and saves at the same step by construction.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import TrainerCallback

from ragtune import console
from ragtune.negatives.mining import MiningParams
from ragtune.negatives.store import NegativeStore
from ragtune.retrieval.embeddings import encode
from ragtune.retrieval.metrics import DECIDING_QUERIES, METRICS, PRIMARY_METRIC
from ragtune.train.checkpoints import seal
from ragtune.train.distributed import World, barrier, broadcast_from_main
from ragtune.train.heldout import HeldOutEvaluator, max_length

SEED_TAGS = {"new_pairs_added": "Hard_Negatives/New_Pairs_Added", "dataset_size": "Dataset/Total_Size"}


@dataclass
class RunState:
    """What a checkpoint needs beyond the Trainer's own state to resume exactly."""

    history: list[dict] = field(default_factory=list)
    remining: list[dict] = field(default_factory=list)
    best_score: float = float("-inf")
    best_step: int = -1
    evaluations_without_gain: int = 0
    base_metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Duties:
    """When the callback acts: `epochs` of training, re-mining every `remine_every` epochs (0: never),
    stopping after `patience` evaluations without gain (0: never). The base model (step 0) competes
    for best unless `keep_worse`: then the best tuned epoch ships even if the base was better."""

    epochs: int
    remine_every: int
    patience: int
    full_max_seq_length: int
    guard: MiningParams
    keep_worse: bool = False
    label: str = "held-out"  # or "held-out synthetic", for queries made from the passages
    precision: str = "fp32"  # of the steps; an epoch's held-out measure under bf16/fp16 says so
    remine_first: bool = False  # another model mined the prepared negatives: re-mine with this one before step 1


CEILING = 0.95  # a base model scoring this much leaves no room to show a gain


def undecidable(queries: int, base: dict[str, float]) -> str | None:
    """Why a held-out split cannot show a gain (too few queries, or the base model already near 1), or None."""
    score = base[PRIMARY_METRIC]
    if queries >= DECIDING_QUERIES and score < CEILING:
        return None
    why = "too few" if queries < DECIDING_QUERIES else "no room left"
    return (
        f"{queries} queries, base model nDCG@10 {score:.3f}: {why} to show a gain, so the choice of model follows "
        f"noise; pass --eval-data with {DECIDING_QUERIES} or more labelled queries, or raise data.eval_fraction"
    )


class RagtuneCallback(TrainerCallback):
    def __init__(
        self,
        model,
        store: NegativeStore,
        evaluator: HeldOutEvaluator,
        state: RunState,
        duties: Duties,
        world: World,
        writer,
        fingerprint: dict,
    ):
        self.model, self.store, self.evaluator, self.state = model, store, evaluator, state
        self.duties, self.world, self.writer, self.fingerprint = duties, world, writer, fingerprint
        self.best_embeddings: np.ndarray | None = None  # corpus embeddings of the best model, this process
        self.best_in_fp32 = False  # were they (and the best's history row) measured in fp32?

    def on_train_begin(self, args, trainer_state, control, **kwargs):
        self.evaluator.final_step = trainer_state.max_steps  # measured in fp32: it usually ships

    def on_epoch_begin(self, args, trainer_state, control, **kwargs):
        self._protect_best(args, trainer_state)  # after a resume too: the loaded Trainer state predates it

    def on_evaluate(self, args, trainer_state, control, metrics=None, **kwargs):
        step, epoch = trainer_state.global_step, round(trainer_state.epoch or 0)
        scores = {m: metrics[f"eval_{m}"] for m in [*METRICS, "positive_pair_similarity"] if f"eval_{m}" in metrics}
        if not scores:
            return
        decision = None
        if self.world.is_main:
            self.writer.add_scalar("Evaluation/Positive_Pair_Similarity", scores["positive_pair_similarity"], step)
            decision = (*self._decide(scores, step, epoch), self.state)
        improved, stop, self.state = broadcast_from_main(decision, self.world)
        if step == 0 and self.world.is_main and (doubt := undecidable(len(self.evaluator.query_ids), scores)):
            warnings.warn(f"the {self.duties.label} split: {doubt}", stacklevel=2)
        what = "the base model" if step == 0 else f"epoch {epoch}"
        encoded = "" if self.evaluator.measured_in_fp32 else f" ({self.duties.precision} encode)"
        self.say(
            f"{what}: {self.duties.label} nDCG@10 {scores[PRIMARY_METRIC]:.4f}{encoded}"
            + (" (best)" if improved else "")
        )
        if improved:
            self.best_embeddings, self.best_in_fp32 = self.evaluator.corpus_embeddings, self.evaluator.measured_in_fp32
        control.should_training_stop |= stop
        d = self.duties
        if d.remine_every and step > 0 and epoch % d.remine_every == 0 and epoch < d.epochs and not stop:
            self.remine(step, epoch)
        elif step == 0 and d.remine_first:
            self.remine(step, epoch)
        if step > 0:
            control.should_save = True  # checkpoint the epoch boundary together with its negatives

    def _decide(self, scores: dict[str, float], step: int, epoch: int) -> tuple[bool, bool]:
        """Record the evaluation and answer (new best?, stop now?)."""
        state, score = self.state, scores[PRIMARY_METRIC]
        state.history.append({"step": step, "epoch": epoch, **scores})
        if step == 0:
            state.base_metrics = scores
            if self.duties.keep_worse:
                return False, False
        if score > state.best_score:
            state.best_score, state.best_step, state.evaluations_without_gain = score, step, 0
            return True, False
        state.evaluations_without_gain += 1
        return False, bool(self.duties.patience) and state.evaluations_without_gain >= self.duties.patience

    def remine(self, step: int, epoch: int) -> None:
        """Rank 0 mines from the embeddings its evaluation just made; every rank gets the result."""
        store, record = self.store, None
        if self.world.is_main:
            started = time.perf_counter()
            with max_length(self.model, self.duties.full_max_seq_length):
                anchors = [store.anchor_text[q] for q in store.anchor_ids]
                queries = encode(self.model, anchors, self.evaluator.batch_size, "query")
            added, audit = store.remine(queries, self.evaluator.corpus_embeddings, self.duties.guard)
            record = {
                "step": step,
                "epoch": epoch,
                "new_pairs_added": added,
                "dataset_size": len(store.negative),
                "seconds": round(time.perf_counter() - started, 1),
                **audit.as_dict(),
            }
            for key in ["new_pairs_added", "dataset_size", *audit.as_dict()]:
                tag = SEED_TAGS.get(key, f"Hard_Negatives/{key}")
                counts = record[key] if isinstance(record[key], dict) else {"": record[key]}  # by rule: one per rule
                for rule, count in counts.items():
                    self.writer.add_scalar(f"{tag}/{rule}" if rule else tag, count, step)
            when = f"at epoch {epoch}" if step else "with the starting model"
            self.say(
                f"re-mined {when}: {added} new hard negatives, {audit.pairs_without_negative} pairs "
                f"without one ({record['seconds']:.0f} s)"
            )
        store.negative, record = broadcast_from_main((store.negative, record), self.world)
        self.state.remining.append(record)

    def on_save(self, args, trainer_state, control, **kwargs):
        """The Trainer has written (and rotated) the checkpoint, but every rank writes its own RNG file
        into it: rank 0 waits for all, then seals it with ragtune's state."""
        barrier(self.world)
        self._protect_best(args, trainer_state)
        if self.world.is_main:
            checkpoint = Path(args.output_dir) / f"checkpoint-{trainer_state.global_step}"
            seal(
                checkpoint,
                {"run": asdict(self.state), "negatives": self.store.state(), "fingerprint": self.fingerprint},
            )

    def say(self, line: str) -> None:
        """One line per event, above the progress bar; rank 0 only."""
        if self.world.is_main and console.level != "quiet":
            tqdm.write(line)

    def _protect_best(self, args, trainer_state) -> None:
        if self.state.best_step > 0:
            trainer_state.best_model_checkpoint = str(Path(args.output_dir) / f"checkpoint-{self.state.best_step}")


class TrainingBar(TrainerCallback):
    """One bar for the whole run (loss and learning rate beside it), in place of the Trainer's bar and raw log dicts."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = console.progress(state.max_steps, "train", "step", initial=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0):.2e}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()
