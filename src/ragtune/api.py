"""Python API, one function per CLI stage: each takes the Config, writes its outputs atomically,
prints a short summary and returns what it produced. Heavy imports stay inside the functions so
the CLI answers --help and user errors without loading torch."""

from __future__ import annotations

import json
from pathlib import Path

from ragtune import config as cfg


def _cache_dir(model: cfg.ModelConfig) -> Path | None:
    return Path(model.cache_dir) if model.cache_dir else None


def mining_params(mining: cfg.MiningConfig):
    from ragtune.mining import MiningParams

    return MiningParams(
        range_min=mining.range_min, range_max=mining.range_max, min_score=mining.min_score,
        relative_margin=mining.relative_margin, num_negatives=mining.hard_negatives_per_query,
    )  # fmt: skip


def prepare(config: cfg.Config, overwrite: bool = False) -> Path:
    """Training samples, held-out split, corpus and mining audit in `config.data.output`."""
    from ragtune import prepare as stage
    from ragtune.data import load_dataset
    from ragtune.outputs import atomic_dir, check_output_dir

    d, m = config.data, config.model
    output = Path(d.output)
    check_output_dir(output, overwrite)
    dataset = load_dataset(d.path, d.max_text_chars)
    prepared = stage.prepare(
        dataset,
        model_name=m.name, device=m.device, encode_batch_size=m.encode_batch_size, cache_dir=_cache_dir(m),
        eval_fraction=d.eval_fraction, seed=d.seed,
        mining=mining_params(config.mining), random_negative_ratio=config.mining.random_negative_ratio,
        timestamp=stage.input_timestamp(Path(d.path)),
    )  # fmt: skip
    with atomic_dir(output, overwrite) as tmp:
        stage.write_prepared(tmp, prepared, cfg.to_yaml(config))
    print(f"prepared {output}: {json.dumps(prepared.summary)}")
    print(f"mining audit: {json.dumps(prepared.audit.as_dict())}")
    return output


def evaluate(config: cfg.Config, overwrite: bool = False) -> dict[str, dict[str, float]]:
    """Metrics of each model (and BM25) on one qrels split, with metrics.json/.md/.png."""
    from ragtune import evaluate as stage
    from ragtune.data import load_dataset
    from ragtune.outputs import atomic_dir, check_output_dir

    e, m = config.eval, config.model
    output = Path(e.output)
    check_output_dir(output, overwrite)
    dataset = load_dataset(config.data.path, config.data.max_text_chars)
    results = stage.evaluate(
        dataset, split=e.split, models=e.models or [m.name], baselines=e.baselines,
        device=m.device, encode_batch_size=m.encode_batch_size, cache_dir=_cache_dir(m),
    )  # fmt: skip
    table = stage.markdown_table(results)
    with atomic_dir(output, overwrite) as tmp:
        (tmp / "metrics.json").write_text(json.dumps({"split": e.split, "results": results}, indent=2) + "\n")
        (tmp / "metrics.md").write_text(table)
        (tmp / "config.yaml").write_text(cfg.to_yaml(config))
        stage.bar_chart(results, tmp / "metrics.png", f"{Path(config.data.path).name} / {e.split}")
    print(table + f"\nwritten to {output}/ (metrics.json, metrics.md, metrics.png)")
    return results


def train(config: cfg.Config, overwrite: bool = False, resume: bool = False):
    """Fine-tune on a prepared directory; writes model/, metrics.json, config.yaml, tensorboard/."""
    from ragtune import train as stage
    from ragtune.distributed import current_world

    t, m = config.train, config.model
    result = stage.train(
        Path(t.prepared), Path(t.output),
        model_name=m.name, device=m.device, loss=t.loss, epochs=t.epochs, learning_rate=t.learning_rate,
        batch_size=t.batch_size, mini_batch_size=t.mini_batch_size, warmup_ratio=t.warmup_ratio,
        max_seq_length=t.max_seq_length, hard_negative_update_frequency=t.hard_negative_update_frequency,
        checkpoint_steps=t.checkpoint_steps, early_stopping_patience=t.early_stopping_patience,
        logging_steps=t.logging_steps, seed=t.seed, mining=mining_params(config.mining),
        encode_batch_size=m.encode_batch_size, cache_dir=_cache_dir(m), resume=resume, overwrite=overwrite,
        config_yaml=cfg.to_yaml(config), gather_across_devices=t.gather_across_devices,
    )  # fmt: skip
    if not current_world().is_main:  # under torchrun rank 0 reports
        return result
    base, tuned = result.metrics["base"], result.metrics["tuned"]
    print(
        f"trained {result.model_dir} in {result.metrics['train']['seconds']:.0f} s "
        f"({result.metrics['train']['steps']} steps); held-out nDCG@10 "
        f"{base.get('ndcg@10', float('nan')):.4f} -> {tuned['ndcg@10']:.4f}"
    )
    return result


def demo(config: cfg.Config, root: Path = Path("runs/demo")) -> dict[str, dict[str, float]]:
    """prepare -> train -> evaluate on the bundled SciFact; BM25 / base / tuned on its test split.

    Everything goes under `root` and is replaced on every run.
    """
    import time

    started = time.perf_counter()
    config.data.path = config.data.path or "data/scifact"
    config.data.output = config.train.prepared = str(root / "prepared")
    config.train.output = str(root / "run")
    config.eval.output = str(root / "eval")
    config.eval.models = [config.model.name, str(root / "run" / "model")]
    prepare(config, overwrite=True)
    train(config, overwrite=True)
    results = evaluate(config, overwrite=True)
    print(f"demo finished in {time.perf_counter() - started:.0f} s; chart: {root / 'eval' / 'metrics.png'}")
    return results
