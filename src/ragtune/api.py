"""Python API, one function per CLI stage: each takes the Config, writes its outputs atomically,
prints a short summary and returns what it produced. Heavy imports stay inside the functions so
the CLI answers --help and user errors without loading torch."""

from __future__ import annotations

import json
from pathlib import Path

from ragtune import config as cfg


def _cache_dir(model: cfg.ModelConfig) -> Path | None:
    return Path(model.cache_dir) if model.cache_dir else None


def prepare(config: cfg.Config, overwrite: bool = False) -> Path:
    """Training samples, held-out split, corpus and mining audit in `config.data.output`."""
    from ragtune import prepare as stage
    from ragtune.data import load_dataset
    from ragtune.outputs import atomic_dir, check_output_dir

    d, m, mining = config.data, config.model, config.mining
    output = Path(d.output)
    check_output_dir(output, overwrite)
    dataset = load_dataset(d.path, d.max_text_chars)
    prepared = stage.prepare(
        dataset,
        model_name=m.name, device=m.device, encode_batch_size=m.encode_batch_size, cache_dir=_cache_dir(m),
        eval_fraction=d.eval_fraction, seed=d.seed,
        hard_negatives_per_query=mining.hard_negatives_per_query, range_min=mining.range_min,
        range_max=mining.range_max, min_score=mining.min_score, relative_margin=mining.relative_margin,
        random_negative_ratio=mining.random_negative_ratio, timestamp=stage.input_timestamp(Path(d.path)),
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


def demo(config: cfg.Config, overwrite: bool = False) -> dict[str, dict[str, float]]:
    """prepare -> evaluate on the bundled SciFact, under runs/demo (replaced on every run)."""
    root = Path("runs/demo")
    config.data.path = config.data.path or "data/scifact"
    config.data.output = str(root / "prepared")
    config.eval.output = str(root / "eval")
    prepare(config, overwrite=True)
    return evaluate(config, overwrite=True)
