"""`ragtune train`: sentence-transformers' Trainer plus what it lacks for retrieval fine-tuning.

The Trainer runs the loop, losses, schedule, checkpoints and TensorBoard logging. ragtune adds:
an evaluator that measures real retrieval on the held-out split over the whole corpus, dynamic
hard-negative re-mining with the model being trained (the negatives live in a store that the
dataset reads lazily, so the Trainer's dataloader never has to be rebuilt), best-model keeping
by nDCG@10, a state file in every checkpoint so a killed run resumes with its negatives, and a
checksum manifest written last so a checkpoint torn by a crash is recognised and skipped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sentence_transformers.base.evaluation import BaseEvaluator

from ragtune.distributed import (
    World,
    backend,
    barrier,
    broadcast_from_main,
    collective_timeout,
    configure_logging,
    configure_threads,
    current_world,
    elastic_restart,
    init_process_group,
    main_process_saves,
    on_main_then_shared,
)
from ragtune.embeddings import encode, encode_corpus_cached, store_corpus_embeddings
from ragtune.errors import UserError
from ragtune.evaluate import METRICS, dense_rankings, retrieval_metrics
from ragtune.mining import MiningAudit, MiningParams, draw_random_negative, mine
from ragtune.outputs import atomic_dir, directory_checksums, write_json, write_text

STATE_FILE = "ragtune_state.json"
CHECKSUM_FILE = "ragtune_checksums.json"
SEED_TAGS = {"new_pairs_added": "Hard_Negatives/New_Pairs_Added", "dataset_size": "Dataset/Total_Size"}


@dataclass
class Prepared:
    """What `ragtune prepare` wrote, loaded for training."""

    samples: pd.DataFrame
    eval: pd.DataFrame
    corpus: pd.DataFrame
    summary: dict

    @classmethod
    def load(cls, directory: Path) -> Prepared:
        directory = Path(directory)
        if directory.is_file() and directory.suffix == ".parquet":
            directory = directory.parent
        names = ["train.parquet", "eval.parquet", "corpus.parquet"]
        missing = [n for n in names if not (directory / n).is_file()]
        if missing:
            raise UserError(
                f"{directory}: missing {', '.join(missing)}; pass the output of `ragtune prepare` to --data"
            )
        samples, held_out, corpus = (pd.read_parquet(directory / n) for n in names)
        if samples.empty:
            raise UserError(f"{directory / 'train.parquet'}: no training samples; re-run `ragtune prepare`")
        summary_path = directory / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        return cls(samples, held_out, corpus, summary)


class NegativeStore:
    """One negative per training row ("slot"); re-mining rewrites the minable slots in place.

    Rows prepared as `random_negative` keep their negative. Rows prepared as `hard_negative` or
    `positive` (no negative found) are minable; a minable slot without a mined negative gets a
    guarded random one, so every row has the same columns for the loss.
    """

    def __init__(self, prepared: Prepared, seed: int):
        corpus, samples = prepared.corpus, prepared.samples
        self.doc_ids = corpus["id"].tolist()
        self.documents = corpus["document"].tolist()
        self.row_of = {did: i for i, did in enumerate(self.doc_ids)}
        self.sources = pd.factorize(corpus["source_id"])[0]
        self.rng = np.random.default_rng(seed)
        self.anchor_ids = sorted(samples["anchor_id"].unique())
        self.anchor_text = dict(zip(samples["anchor_id"], samples["anchor"]))
        query_of = {qid: i for i, qid in enumerate(self.anchor_ids)}
        self.positives = {
            query_of[qid]: {self.row_of[d] for d in group} for qid, group in samples.groupby("anchor_id")["positive_id"]
        }
        minable = (samples["kind"] != "random_negative").to_numpy()
        keys = list(zip(samples["anchor_id"], samples["positive_id"]))
        pairs = sorted({keys[i] for i in np.flatnonzero(minable)})
        pair_index = {key: i for i, key in enumerate(pairs)}
        self.pair_rows = [(query_of[q], self.row_of[p]) for q, p in pairs]
        self.slots_of_pair: list[list[int]] = [[] for _ in pairs]
        for slot in np.flatnonzero(minable):
            self.slots_of_pair[pair_index[keys[slot]]].append(int(slot))
        self.negative = np.array([self.row_of.get(n, -1) if n else -1 for n in samples["negative_id"].fillna("")])
        for pair, slots in enumerate(self.slots_of_pair):
            for slot in slots:
                if self.negative[slot] < 0:
                    self.negative[slot] = self._random_for(pair)

    def _random_for(self, pair: int) -> int:
        query = self.pair_rows[pair][0]
        negative = draw_random_negative(self.positives[query], self.sources, self.rng)
        if negative is None:
            raise UserError("the corpus has no passage outside the positives' sources to use as a negative")
        return negative

    @property
    def negatives_per_pair(self) -> int:
        return max(len(slots) for slots in self.slots_of_pair)

    def remine(
        self, query_embeddings: np.ndarray, corpus_embeddings: np.ndarray, params: MiningParams
    ) -> tuple[int, MiningAudit]:
        """Mine with fresh embeddings and swap the minable slots; returns how many mined negatives are new."""
        params = dataclasses.replace(params, num_negatives=self.negatives_per_pair)
        mined, audit = mine(query_embeddings, corpus_embeddings, self.pair_rows, self.positives, self.sources, params)
        added = 0
        for pair, slots in enumerate(self.slots_of_pair):
            previous = {int(self.negative[slot]) for slot in slots}
            added += len(set(mined[pair]) - previous)
            fresh = mined[pair] + [self._random_for(pair) for _ in range(len(slots) - len(mined[pair]))]
            self.negative[slots] = fresh
        return added, audit

    def text(self, slot: int) -> str:
        return self.documents[self.negative[slot]]

    def state(self) -> list[str]:
        return [self.doc_ids[n] for n in self.negative]

    def restore(self, negative_ids: list[str]) -> None:
        if len(negative_ids) != len(self.negative):
            raise UserError("checkpoint state does not match the prepared data; resume with the same --data")
        self.negative = np.array([self.row_of[n] for n in negative_ids])


def training_dataset(samples: pd.DataFrame, store: NegativeStore, loss: str):
    """A datasets.Dataset whose negative column is read from the store at access time."""
    from datasets import Dataset

    slots = np.arange(len(samples))
    if loss == "contrastive":
        table = Dataset.from_dict(
            {
                "sentence1": samples["anchor"].tolist() * 2,
                "text": samples["positive"].tolist() + [""] * len(samples),
                "slot": np.concatenate([np.full(len(samples), -1), slots]).tolist(),
            }
        )

        def contrastive(batch: dict) -> dict:
            second = [text if slot < 0 else store.text(slot) for text, slot in zip(batch["text"], batch["slot"])]
            labels = [1.0 if slot < 0 else 0.0 for slot in batch["slot"]]
            return {"sentence1": batch["sentence1"], "sentence2": second, "label": labels}

        table.set_transform(contrastive)
        return table
    table = Dataset.from_dict(
        {
            "anchor": samples["anchor"].tolist(),
            "positive": samples["positive"].tolist(),
            "slot": slots.tolist(),
        }
    )

    def triplets(batch: dict) -> dict:
        negatives = [store.text(slot) for slot in batch["slot"]]
        return {"anchor": batch["anchor"], "positive": batch["positive"], "negative": negatives}

    table.set_transform(triplets)
    return table


def build_loss(name: str, model, mini_batch_size: int, gather_across_devices: bool = False):
    from sentence_transformers.sentence_transformer import losses

    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, gather_across_devices=gather_across_devices)
    if name == "cached-mnrl":
        return losses.CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=mini_batch_size, gather_across_devices=gather_across_devices
        )
    return losses.ContrastiveLoss(model)


class HeldOutEvaluator(BaseEvaluator):
    """Retrieval on the held-out queries over the whole corpus at the model's full max length.

    Keeps the corpus embeddings of its last call so re-mining and the final model's embedding
    cache reuse them instead of encoding the corpus again.
    """

    def __init__(self, prepared: Prepared, batch_size: int, max_seq_length: int, base_cache: tuple[str, Path | None]):
        super().__init__()
        self.primary_metric = "ndcg@10"
        held_out = prepared.eval
        self.qrels: dict[str, dict[str, int]] = {}
        for row in held_out.itertuples():
            self.qrels.setdefault(row.anchor_id, {})[row.positive_id] = int(row.score)
        self.query_ids = sorted(self.qrels)
        anchor_text = dict(zip(held_out["anchor_id"], held_out["anchor"]))
        self.query_texts = [anchor_text[q] for q in self.query_ids]
        self.doc_ids = prepared.corpus["id"].tolist()
        self.documents = prepared.corpus["document"].tolist()
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.base_cache = base_cache
        self.corpus_embeddings: np.ndarray | None = None
        row_of = {did: i for i, did in enumerate(self.doc_ids)}
        query_row = {qid: i for i, qid in enumerate(self.query_ids)}
        self.pair_rows = [(query_row[q], row_of[d]) for q, docs in self.qrels.items() for d in docs]

    def encode_corpus(self, model, steps: int) -> np.ndarray:
        if steps <= 0:  # the untouched base model: its corpus embeddings are cached from `prepare`
            key, cache_dir = self.base_cache
            return encode_corpus_cached(model, key, self.documents, self.batch_size, cache_dir)
        return encode(model, self.documents, self.batch_size, "document", desc="encode corpus")

    def __call__(self, model, output_path=None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        if not self.query_ids:
            return {}
        with max_length(model, self.max_seq_length):
            corpus = self.encode_corpus(model, steps)
            queries = encode(model, self.query_texts, self.batch_size, "query")
        self.corpus_embeddings = corpus
        metrics = retrieval_metrics(dense_rankings(queries, corpus, self.query_ids, self.doc_ids), self.qrels)
        q, d = np.array(self.pair_rows).T
        metrics["positive_pair_similarity"] = float(np.mean(np.sum(queries[q] * corpus[d], axis=1)))
        return metrics


@dataclass
class RunState:
    """What a checkpoint needs beyond the Trainer's own state to resume exactly."""

    history: list[dict] = field(default_factory=list)
    remining: list[dict] = field(default_factory=list)
    best_score: float = float("-inf")
    best_step: int = -1
    evaluations_without_gain: int = 0
    base_metrics: dict = field(default_factory=dict)


def make_callback(
    run_dir: Path, model, store: NegativeStore, evaluator: HeldOutEvaluator, params: MiningParams,
    state: RunState, writer, *, epochs: int, update_frequency: int, patience: int,
    world: World, full_max_seq_length: int,
):  # fmt: skip
    """The Trainer callback holding ragtune's duties at evaluation and checkpoint time."""
    from transformers import TrainerCallback

    class RagtuneCallback(TrainerCallback):
        best_embeddings: np.ndarray | None = None

        def on_evaluate(self, args, trainer_state, control, metrics=None, **kwargs):
            step, epoch = trainer_state.global_step, round(trainer_state.epoch or 0)
            scores = {m: metrics[f"eval_{m}"] for m in [*METRICS, "positive_pair_similarity"] if f"eval_{m}" in metrics}
            if not scores:
                return
            state.history.append({"step": step, "epoch": epoch, **scores})
            if step == 0:
                state.base_metrics = scores
            if world.is_main:
                writer.add_scalar("Evaluation/Positive_Pair_Similarity", scores["positive_pair_similarity"], step)
            if scores["ndcg@10"] > state.best_score:
                state.best_score, state.best_step, state.evaluations_without_gain = scores["ndcg@10"], step, 0
                self.best_embeddings = evaluator.corpus_embeddings
                if world.is_main:
                    save_model(model, run_dir / "best", full_max_seq_length)
            else:
                state.evaluations_without_gain += 1
                if patience and state.evaluations_without_gain >= patience:
                    control.should_training_stop = True
            if update_frequency and step > 0 and epoch % update_frequency == 0 and epoch < epochs:
                self.remine(step, epoch)
            if step > 0:
                control.should_save = True  # checkpoint the epoch boundary together with its negatives

        def remine(self, step: int, epoch: int) -> None:
            """Rank 0 mines from the embeddings its evaluation just made; every rank gets the result."""
            record = None
            if world.is_main:
                started = time.perf_counter()
                with max_length(model, full_max_seq_length):
                    anchors = [store.anchor_text[q] for q in store.anchor_ids]
                    queries = encode(model, anchors, evaluator.batch_size, "query")
                added, audit = store.remine(queries, evaluator.corpus_embeddings, params)
                seconds = round(time.perf_counter() - started, 1)
                record = {
                    "step": step, "epoch": epoch, "new_pairs_added": added,
                    "dataset_size": len(store.negative), "seconds": seconds, **audit.as_dict(),
                }  # fmt: skip
                for key in ["new_pairs_added", "dataset_size", *audit.as_dict()]:
                    writer.add_scalar(SEED_TAGS.get(key, f"Hard_Negatives/{key}"), record[key], step)
                print(f"re-mined at epoch {epoch}: {json.dumps(record)}")
            store.negative, record = broadcast_from_main((store.negative, record), world)
            state.remining.append(record)

        def on_save(self, args, trainer_state, control, **kwargs):
            """The Trainer has written (and rotated) the checkpoint when this runs, but every rank writes its own RNG
            file into it: rank 0 waits for all, adds ragtune's state and, last, the checksum manifest."""
            barrier(world)
            if not world.is_main:
                return
            checkpoint = Path(args.output_dir) / f"checkpoint-{trainer_state.global_step}"
            write_json(checkpoint / STATE_FILE, {"run": state.__dict__, "negatives": store.state()})
            write_json(checkpoint / CHECKSUM_FILE, checkpoint_checksums(checkpoint))

    return RagtuneCallback()


@contextmanager
def max_length(model, length: int) -> Iterator[None]:
    """Training may run at a shorter token limit; encoding for evaluation and saving use the full one."""
    training_length = model.max_seq_length
    model.max_seq_length = length
    try:
        yield
    finally:
        model.max_seq_length = training_length


def save_model(model, target: Path, max_seq_length: int) -> None:
    """Atomic save at the model's full max length."""
    with max_length(model, max_seq_length), atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(str(tmp))


def checkpoint_checksums(checkpoint: Path) -> dict[str, str]:
    return {name: digest for name, digest in directory_checksums(checkpoint).items() if name != CHECKSUM_FILE}


def checkpoint_intact(checkpoint: Path) -> bool:
    """Its manifest exists and every file matches it: a kill -9 mid-save leaves no manifest or a mismatch."""
    try:
        return json.loads((checkpoint / CHECKSUM_FILE).read_text()) == checkpoint_checksums(checkpoint)
    except (OSError, ValueError):
        return False


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest intact checkpoint; newer torn ones are skipped with a warning."""
    checkpoints = sorted(
        (run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]), reverse=True
    )
    for checkpoint in checkpoints:
        if checkpoint_intact(checkpoint):
            return checkpoint
        warnings.warn(f"{checkpoint}: incomplete or corrupted (checksums do not match), skipped", stacklevel=2)
    return None


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict


def train(
    prepared_dir: Path,
    run_dir: Path,
    *,
    model_name: str,
    device: str,
    loss: str,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    mini_batch_size: int,
    warmup_ratio: float,
    max_seq_length: int,
    hard_negative_update_frequency: int,
    checkpoint_steps: int,
    early_stopping_patience: int,
    logging_steps: int,
    seed: int,
    mining: MiningParams,
    encode_batch_size: int,
    cache_dir: Path | None,
    resume: bool,
    overwrite: bool,
    config_yaml: str,
    gather_across_devices: bool = False,
    callbacks: tuple = (),
) -> TrainResult:
    """Fine-tune `model_name` on a prepared directory; the final model is the best by held-out nDCG@10."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    from ragtune.models import load_model, model_fingerprint, pick_device, resolve_model

    world = current_world()
    configure_threads(world)
    configure_logging(world)
    transformers.utils.logging.disable_progress_bar()  # per-save bars; the Trainer keeps its own
    run_dir = Path(run_dir)
    prepared = Prepared.load(prepared_dir)
    base_path = resolve_model(model_name)
    use_cuda = pick_device(device).startswith("cuda")
    bf16 = use_cuda and torch.cuda.is_bf16_supported()
    timeout = collective_timeout(len(prepared.corpus), world)
    init_process_group(world, use_cuda, timeout)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_ratio,
        lr_scheduler_type="linear",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="epoch",
        save_strategy="steps",
        save_steps=checkpoint_steps,
        save_total_limit=2,
        logging_steps=logging_steps,
        report_to="none",
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        fp16=use_cuda and not bf16,
        use_cpu=not use_cuda,
        ddp_backend=backend(use_cuda) if world.distributed else None,
        ddp_timeout=timeout,
    )
    checkpoint = on_main_then_shared(lambda: prepare_run_dir(run_dir, resume or elastic_restart(), overwrite), world)
    args.eval_on_start = checkpoint is None

    model = load_model(model_name, device)
    full_length = model.max_seq_length
    if max_seq_length:
        model.max_seq_length = max_seq_length
    store = NegativeStore(prepared, seed)
    state = RunState()
    if checkpoint is not None:
        saved = json.loads((checkpoint / STATE_FILE).read_text())
        store.restore(saved["negatives"])
        state = RunState(**saved["run"])
    evaluator = HeldOutEvaluator(prepared, encode_batch_size, full_length, (model_fingerprint(base_path), cache_dir))
    if not evaluator.query_ids:
        raise UserError(f"{prepared_dir}: eval.parquet has no held-out queries; prepare with data.eval_fraction > 0")
    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard")) if world.is_main else None
    callback = make_callback(
        run_dir, model, store, evaluator, mining, state, writer, epochs=epochs,
        update_frequency=hard_negative_update_frequency, patience=early_stopping_patience,
        world=world, full_max_seq_length=full_length,
    )  # fmt: skip
    trainer = main_process_saves(SentenceTransformerTrainer)(
        model=model,
        args=args,
        train_dataset=training_dataset(prepared.samples, store, loss),
        loss=build_loss(loss, model, mini_batch_size, gather_across_devices),
        evaluator=evaluator,
        callbacks=[*([TensorBoardCallback(tb_writer=writer)] if world.is_main else []), callback, *callbacks],
    )
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    elapsed = time.perf_counter() - started

    metrics = {
        "base": state.base_metrics,
        "tuned": next(h for h in state.history if h["step"] == state.best_step),
        "best_step": state.best_step,
        "history": state.history,
        "remining": state.remining,
        "train": {
            "steps": output.global_step,
            "epochs": epochs,
            "loss": loss,
            "per_device_batch_size": batch_size,
            "global_batch_size": batch_size * args.world_size,
            "world_size": args.world_size,
            "samples": len(store.negative),
            "seconds": round(elapsed, 1),
            "samples_per_second": output.metrics.get("train_samples_per_second"),
        },
        "data": prepared.summary,
    }
    if world.is_main:
        finish_run(run_dir, metrics, config_yaml, model_name)
        if callback.best_embeddings is not None:  # the final model's corpus embeddings: evaluate reuses them
            store_corpus_embeddings(
                callback.best_embeddings,
                model_fingerprint(run_dir / "model"),
                full_length,
                evaluator.documents,
                cache_dir,
            )
        writer.add_hparams(
            {"loss": loss, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
             "max_seq_length": max_seq_length or full_length,
             "hard_negative_update_frequency": hard_negative_update_frequency},
            {"hparam/ndcg@10": metrics["tuned"]["ndcg@10"]},
            run_name="hparams",
        )  # fmt: skip
        writer.close()
    return TrainResult(run_dir / "model", metrics)


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to clobber a finished run."""
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise UserError(f"{run_dir}: no checkpoint to resume from; start without --resume")
        print(f"resuming from {checkpoint}")
        return checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise UserError(f"{run_dir}: already exists; pass --resume to continue it, --overwrite to replace it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def finish_run(run_dir: Path, metrics: dict, config_yaml: str, base_name: str) -> None:
    """Swap the best model in as run_dir/model with its card, beside metrics.json and config.yaml."""
    best = run_dir / "best"
    with atomic_dir(run_dir / "model", overwrite=True) as tmp:
        shutil.copytree(best, tmp, dirs_exist_ok=True)
        (tmp / "README.md").write_text(model_card(metrics, config_yaml, base_name), encoding="utf-8")
    shutil.rmtree(best)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "config.yaml", config_yaml)


def model_card(metrics: dict, config_yaml: str, base_name: str) -> str:
    rows = "\n".join(
        f"| {name} | {metrics['base'].get(name, float('nan')):.4f} | {metrics['tuned'][name]:.4f} |" for name in METRICS
    )
    train = metrics["train"]
    return f"""# ragtune fine-tuned {base_name}

Fine-tuned with ragtune from `{base_name}` ({train["loss"]} loss, {train["epochs"]} epochs,
{train["steps"]} steps, global batch {train["global_batch_size"]} = {train["per_device_batch_size"]} x
{train["world_size"]} processes). This is the checkpoint with the best held-out nDCG@10
(step {metrics["best_step"]}).

## Data

{json.dumps(metrics["data"], indent=2)}

## Held-out retrieval (full corpus, exact search)

| metric | base | tuned |
|---|---|---|
{rows}

## Config

```yaml
{config_yaml}```
"""
