"""One typed config for every stage: read from YAML, overridden by CLI flags, written beside outputs.

The sections and their fields live in sections.py, which fields each stage reads in stages.py;
this module reads, checks and writes a whole config. `STAGE_FIELDS` says which fields each stage
reads; the CLI derives every command's flags from it, so a command never shows a flag its stage ignores.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from ragtune.config.sections import (
    BACKENDS,
    DEVICES,
    LLM_PROMPT,
    PRECISIONS,
    SECTIONS,
    SERVING_MODES,
    Config,
    DataConfig,
    EvalConfig,
    FeastConfig,
    KubeflowConfig,
    MiningConfig,
    ModelConfig,
    SyntheticConfig,
    TrainConfig,
)
from ragtune.config.stages import (
    GUARD,
    MODEL_IO,
    RESUME_NEUTRAL,
    STAGE_FIELDS,
    flag,
    input_paths,
    stage_fields,
    training_settings,
)
from ragtune.errors import UserError
from ragtune.train.losses import AUTO, LOSSES

__all__ = [
    "BACKENDS",
    "Config",
    "DEVICES",
    "DataConfig",
    "EvalConfig",
    "FeastConfig",
    "GUARD",
    "KubeflowConfig",
    "LLM_PROMPT",
    "MODEL_IO",
    "MiningConfig",
    "ModelConfig",
    "PRECISIONS",
    "RESUME_NEUTRAL",
    "SECTIONS",
    "SERVING_MODES",
    "STAGE_FIELDS",
    "SyntheticConfig",
    "TrainConfig",
    "field_type",
    "flag",
    "from_dict",
    "input_paths",
    "load",
    "replace",
    "stage_fields",
    "to_dict",
    "to_yaml",
    "training_settings",
    "validate",
]


def field_type(section: str, name: str) -> Any:
    hints = typing.get_type_hints(SECTIONS[section])
    return hints[name]


def _coerce(value: Any, expected: Any, where: str) -> Any:
    """Check one value against its annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(expected)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_type,) = typing.get_args(expected)
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str):  # YAML reads an unquoted 1e-4 as a string
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where}: expected a number, got {value!r}") from None
    if expected is not bool and isinstance(value, bool) or not isinstance(value, expected):
        raise UserError(f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


RENAMED = {("data", "corpus_only"): "zero_label"}  # old key -> new key; old configs keep working


def _renamed(section: str, values: dict[str, Any], source: str) -> dict[str, Any]:
    """Keys an older ragtune named otherwise, under their new name, with one warning each."""
    import warnings

    renamed = dict(values)
    for (where, old), new in RENAMED.items():
        if where == section and old in renamed:
            warnings.warn(f"{source}: {section}.{old} is now {section}.{new}; rename it", stacklevel=3)
            renamed.setdefault(new, renamed.pop(old))
    return renamed


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Build a validated Config from nested dicts; unknown keys and wrong types are user errors."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of sections ({', '.join(SECTIONS)})")
    sections = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise UserError(f"{source}: unknown section '{section}' (known: {', '.join(SECTIONS)})")
        if values is None:  # `mining:` with nothing under it
            continue
        if not isinstance(values, dict):
            raise UserError(f"{source}: section '{section}' must be a mapping of keys to values")
        values = _renamed(section, values, source)
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for key in values:
            if key not in known:
                raise UserError(f"{source}: unknown key '{section}.{key}' (known: {', '.join(sorted(known))})")
        sections[section] = SECTIONS[section](
            **{
                key: _coerce(value, field_type(section, key), f"{source}: {section}.{key}")
                for key, value in values.items()
            }
        )
    config = Config(**sections)
    validate(config, source)
    return config


def validate(config: Config, source: str = "config") -> None:
    """Range checks that types alone cannot express."""
    m, d, t = config.mining, config.data, config.train
    checks = [
        (0.0 < d.eval_fraction < 1.0, "data.eval_fraction", "a number in (0, 1): training needs held-out queries"),
        (d.max_text_chars > 0, "data.max_text_chars", "a positive integer"),
        (m.hard_negatives_per_query >= 0, "mining.hard_negatives_per_query", "0 or more"),
        (0 <= m.range_min < m.range_max, "mining.range_min/range_max", "0 <= range_min < range_max"),
        (0.0 < m.relative_margin <= 1.0, "mining.relative_margin", "a number in (0, 1]"),
        (-1.0 <= m.min_score <= 1.0, "mining.min_score", "a cosine similarity in [-1, 1]"),
        (m.random_negative_ratio >= 0, "mining.random_negative_ratio", "0 or more"),
        (re.fullmatch(DEVICES, config.model.device) is not None, "model.device", "auto, cpu, cuda, cuda:N or mps"),
        (config.model.encode_batch_size > 0, "model.encode_batch_size", "a positive integer"),
        (config.model.backend in ("torch", "onnx"), "model.backend", "torch or onnx"),
        (t.loss in (AUTO, *LOSSES), "train.loss", "one of " + ", ".join((AUTO, *LOSSES))),
        (t.precision in PRECISIONS, "train.precision", " or ".join(PRECISIONS)),
        (t.epochs > 0, "train.epochs", "a positive integer"),
        (t.activation_checkpointing_every_n_layers >= 0, "train.activation_checkpointing_every_n_layers", "0 or more"),
        (t.learning_rate > 0, "train.learning_rate", "a positive number"),
        (t.batch_size > 1, "train.batch_size", "at least 2 (in-batch negatives need company)"),
        (t.mini_batch_size > 0, "train.mini_batch_size", "a positive integer"),
        (t.scale > 0, "train.scale", "a positive number"),
        (0 <= t.warmup_ratio < 1, "train.warmup_ratio", "a number in [0, 1)"),
        (t.max_seq_length >= 0, "train.max_seq_length", "0 or a positive integer"),
        (t.hard_negative_update_frequency >= 0, "train.hard_negative_update_frequency", "0 or more"),
        (t.checkpoint_steps > 0, "train.checkpoint_steps", "a positive integer"),
        (t.early_stopping_patience >= 0, "train.early_stopping_patience", "0 or more"),
        (t.logging_steps > 0, "train.logging_steps", "a positive integer"),
        (all(0 < a < 1 for a in t.wise_alphas), "train.wise_alphas", "numbers in (0, 1) (1 is the tuned model)"),
        (not t.wise_prefer or bool(t.wise_alphas), "train.wise_prefer", "set together with train.wise_alphas"),
        (config.synthetic.queries_per_passage > 0, "synthetic.queries_per_passage", "a positive integer"),
        (config.synthetic.max_query_words >= 4, "synthetic.max_query_words", "at least 4"),
        (0 <= config.synthetic.ict_remove_probability <= 1, "synthetic.ict_remove_probability", "in [0, 1]"),
        (config.synthetic.evidence_queries >= 5, "synthetic.evidence_queries", "at least 5"),
        (config.synthetic.passages >= 0, "synthetic.passages", "0 (all) or a positive integer"),
        ("{passage}" in config.synthetic.llm_prompt, "synthetic.llm_prompt", "a template containing {passage}"),
        (config.synthetic.llm_concurrency > 0, "synthetic.llm_concurrency", "a positive integer"),
        (config.synthetic.llm_retries >= 0, "synthetic.llm_retries", "0 or more"),
        (config.feast.top_k > 0, "feast.top_k", "a positive integer (--top-k)"),
        (config.feast.mode in SERVING_MODES, "feast.mode", " or ".join(SERVING_MODES) + " (--mode)"),
        (0 <= config.feast.bm25_weight <= 1, "feast.bm25_weight", "a number in [0, 1] (--bm25-weight)"),
        (config.feast.embedding_dim > 0, "feast.embedding_dim", "the model's embedding size, a positive integer"),
        (config.kubeflow.backend in BACKENDS, "kubeflow.backend", " or ".join(BACKENDS)),
        (config.kubeflow.num_nodes > 0, "kubeflow.num_nodes", "at least 1 (--num-nodes)"),
        (config.kubeflow.gpu >= 0, "kubeflow.gpu", "0 or more"),
    ]
    for ok, name, expected in checks:
        if not ok:
            raise UserError(f"{source}: {name} must be {expected}")


# What the zero-label benchmarks measured (docs/zero-label.md): one epoch, and the halfway average of
# the tuned and base weights shipped when it beats the base, since synthetic held-out queries cannot
# see what tuning forgets. Defaults for zero-label input only; the YAML file and flags override them.
ZERO_LABEL_RECIPE = {"train.epochs": 1, "train.wise_alphas": [0.5], "train.wise_prefer": True}
PASSAGES_FILES = (".jsonl", ".jsonl.gz", ".parquet")


def zero_label_input(merged: dict[str, Any]) -> bool:
    """Does this command train from passages alone? data.zero_label, a passages file with generators, or
    a prepared directory that prepare made from synthetic queries (its summary.json says so)."""
    data, train = merged.get("data") or {}, merged.get("train") or {}
    generators = (merged.get("synthetic") or {}).get("generators", SyntheticConfig().generators)
    if data.get("zero_label") is True or (str(data.get("path", "")).endswith(PASSAGES_FILES) and generators):
        return True
    summary = Path(str(train.get("prepared") or TrainConfig().prepared)) / "summary.json"
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("input_kind") == "synthetic"
    except (OSError, ValueError, AttributeError):  # no prepared directory yet, or not ours: train reports it
        return False


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the zero-label recipe (zero-label input only), then the YAML file, then flag
    overrides given as {'section.key': value}."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: config file not found; pass an existing YAML file to --config")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise UserError(
                f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax"
            ) from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)})")
    merged = {section: dict(values) if isinstance(values, dict) else values for section, values in data.items()}
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        if merged.get(section) is None:
            merged[section] = {}
        if isinstance(merged[section], dict):  # anything else is reported by from_dict
            merged[section][key] = value
    if zero_label_input(merged):
        for dotted, value in ZERO_LABEL_RECIPE.items():
            section, key = dotted.split(".", 1)
            values = merged.get(section) or {}
            if isinstance(values, dict) and key not in values:  # anything else is reported by from_dict
                merged[section] = {**values, key: value}
    return from_dict(merged, str(path) if path else "flags")


def replace(config: Config, **changes: Any) -> Config:
    """A copy with {'section.key': value} changed, validated again."""
    data = to_dict(config)
    for dotted, value in changes.items():
        section, key = dotted.split(".", 1)
        data[section][key] = value
    return from_dict(data, "config")


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
