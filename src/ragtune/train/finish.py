"""The end of a training run: what it measured, the weights that ship, how they serve, the files it leaves.

The shipped weights are the best held-out evaluation's (the base model's when no epoch beat it),
optionally averaged with the base (WiSE-FT); the serving fusion is chosen for exactly those
weights. model/ and metrics.json are written last: together they mark the run finished.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ragtune import config as cfg
from ragtune.io.outputs import atomic_dir, swap_in, write_text
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.embeddings import store_corpus_embeddings
from ragtune.retrieval.fusion import choose_weight
from ragtune.retrieval.metrics import METRICS, PRIMARY_METRIC
from ragtune.retrieval.models import cache_dir, load_model, model_fingerprint
from ragtune.train.averaging import choose_average
from ragtune.train.heldout import HeldOutEvaluator, full_precision, max_length
from ragtune.train.modelcard import write_model_card
from ragtune.train.plan import RunPlan
from ragtune.train.trainer import Session


def run_metrics(plan: RunPlan, session: Session, output, seconds: float) -> RunMetrics:
    """The typed record of the run, from the callback's state and the Trainer's output."""
    state, t = session.callback.state, plan.config.train
    world_size = session.trainer.args.world_size
    return RunMetrics(
        heldout=plan.held_out,
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
            "loss": t.loss,
            "per_device_batch_size": t.batch_size,
            "global_batch_size": t.batch_size * world_size,
            "world_size": world_size,
            "precision": t.precision,  # of the steps and the per-epoch history; base and tuned are fp32
            "samples": session.samples,
            "seconds": round(seconds, 1),
            "samples_per_second": output.metrics.get("train_samples_per_second"),
        },
        data=plan.prepared.summary,
        eval_set=plan.fingerprint["data"]["eval.parquet"],
        base_weights=plan.base_weights,
    )


def ship(plan: RunPlan, session: Session, metrics: RunMetrics) -> None:
    """Rank 0: load the best weights, try the averages, choose the fusion, write the run and swap it in."""
    config, work_dir = plan.config, plan.work_dir
    t, m = config.train, config.model
    model, evaluator, callback = session.model, session.evaluator, session.callback
    best_step = callback.state.best_step
    best = plan.base_path if best_step <= 0 else work_dir / "checkpoints" / f"checkpoint-{best_step}"
    with full_precision(model):  # what ships, what it reports and its cached embeddings are fp32
        model.load_state_dict(load_model(str(best), m.device).state_dict())
        if best_step > 0 and not callback.best_in_fp32:
            gate_in_fp32(model, plan, evaluator, metrics, callback)
        if t.wise_alphas and metrics.best_step > 0:
            base = load_model(m.name, m.device)
            average_with_base(model, base, evaluator, t.wise_alphas, t.wise_prefer, metrics, callback)
        record_fusion(model, evaluator, metrics, callback)
        model.model_card_data.eval_results_dict[evaluator] = {k: metrics.tuned[k] for k in METRICS}  # these weights
        finish_run(work_dir, model, session.full_length, metrics, config, plan.prepared.audit)
    if callback.best_embeddings is not None:  # the final model's corpus embeddings: evaluate reuses them
        key = model_fingerprint(work_dir / "model")
        store_corpus_embeddings(callback.best_embeddings, key, session.full_length, evaluator.documents, cache_dir(m))
    hparams = {
        "loss": t.loss,
        "epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "batch_size": t.batch_size,
        "max_seq_length": t.max_seq_length or session.full_length,
        "hard_negative_update_frequency": t.hard_negative_update_frequency,
    }
    session.writer.add_hparams(hparams, {f"hparam/{PRIMARY_METRIC}": metrics.tuned[PRIMARY_METRIC]}, run_name="hparams")
    session.writer.close()
    if not t.keep_checkpoints:  # the run is finished (model/, metrics.json): nothing will resume from them
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    if work_dir != plan.run_dir:  # the finished replacement takes the old run's place only now
        swap_in(work_dir, plan.run_dir)


def gate_in_fp32(model, plan: RunPlan, evaluator: HeldOutEvaluator, metrics: RunMetrics, callback) -> None:
    """A mixed-precision run chose its best epoch on bf16 (or fp16) encodes; the numbers it reports and
    the never-ship-worse gate are fp32. The epoch is measured again (its corpus embeddings are the ones
    evaluate reuses) against the base model's fp32 numbers; if it does not beat them, the base ships.
    A resumed run measures its best epoch again too: its embeddings were made by another process."""
    tuned = evaluator.measure(model, metrics.best_step)
    if metrics.best_tuned and metrics.best_tuned["step"] == metrics.best_step:
        metrics.best_tuned = {**metrics.best_tuned, **tuned}
    score, base = tuned[PRIMARY_METRIC], metrics.base[PRIMARY_METRIC]
    if score > base or plan.config.train.keep_worse:
        metrics.tuned = {**metrics.tuned, **tuned}
        callback.best_embeddings = evaluator.corpus_embeddings
        return
    callback.say(
        f"in fp32 epoch {metrics.tuned['epoch']} scores {score:.4f}, not above the base model's {base:.4f}: "
        "the base ships"
    )
    model.load_state_dict(load_model(str(plan.base_path), plan.config.model.device).state_dict())
    metrics.best_step, metrics.shipped = 0, "base"
    metrics.tuned = next(h for h in metrics.history if h["step"] == 0)
    evaluator.measure(model, 0)  # the base's cached corpus embeddings
    callback.best_embeddings = evaluator.corpus_embeddings


def record_fusion(model, evaluator: HeldOutEvaluator, metrics: RunMetrics, callback) -> None:
    """How the shipped weights serve (dense, or fused with BM25), chosen on the held-out queries."""
    rows = evaluator.fusion_evidence(model, callback.best_embeddings, metrics.best_step)
    held_out = metrics.heldout
    choice = choose_weight(rows, len(evaluator.query_ids), held_out["kind"], held_out["source"])
    metrics.fusion = choice.as_dict()
    callback.say(f"serves {choice.name}: {choice.why}")


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


def finish_run(run_dir: Path, model, full_length: int, metrics: RunMetrics, config: cfg.Config, audit: dict) -> None:
    """model/ (the best weights at full max length, with its card), then metrics.json: together they mark
    the run finished, so they are written last and in this order; config.yaml follows."""
    with max_length(model, full_length), atomic_dir(run_dir / "model", overwrite=True) as tmp:
        model.save_pretrained(str(tmp))
        write_model_card(tmp / "README.md", metrics, config, audit)
    metrics.write(run_dir)
    write_text(run_dir / "config.yaml", cfg.to_yaml(config))
