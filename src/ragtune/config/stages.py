"""Which config fields each stage reads: the command's flags, and what a checkpoint must agree with to resume."""

from __future__ import annotations

import dataclasses
from typing import Any

from ragtune.config.sections import SECTIONS, Config

# What each stage reads ("section.*" for a whole section): the command's flags, and for training
# also what a checkpoint must agree with to be resumed (minus RESUME_NEUTRAL).
MODEL_IO = ["model.device", "model.encode_batch_size", "model.cache_dir", "model.backend"]
GUARD = ["mining.range_min", "mining.range_max", "mining.min_score", "mining.relative_margin"]
SEARCH = [
    "feast.repo",
    "feast.top_k",
    "feast.mode",
    "feast.bm25_weight",
    "model.device",
    "model.encode_batch_size",
]  # `serve` is `search` kept running
STAGE_FIELDS: dict[str, list[str]] = {
    "prepare": ["data.*", "model.*", "mining.*", "synthetic.*"],
    "train": ["train.*", "model.name", *MODEL_IO, *GUARD],
    "evaluate": ["data.path", "data.max_text_chars", *MODEL_IO, "eval.*", "feast.mode", "feast.bm25_weight"],
    "demo": ["model.device", "model.cache_dir", "model.backend"],
    "index": ["feast.repo", "data.path", "data.max_text_chars", "model.*"],
    "search": SEARCH,
    "serve": SEARCH,
}
# Settings that change where or how fast a run goes, not what it learns: a resume may change them.
RESUME_NEUTRAL = {
    "train.prepared",
    "train.output",
    "train.checkpoint_steps",
    "train.keep_checkpoints",
    "train.activation_checkpointing",
    "train.activation_checkpointing_every_n_layers",
    "train.logging_steps",
    *MODEL_IO,
}


def stage_fields(stage: str) -> list[tuple[str, str]]:
    """(section, key) pairs a stage reads, in declaration order."""
    pairs = []
    for pattern in STAGE_FIELDS[stage]:
        section, name = pattern.split(".")
        pairs += [(section, f.name) for f in dataclasses.fields(SECTIONS[section]) if name in ("*", f.name)]
    return pairs


def training_settings(config: Config) -> dict[str, Any]:
    """The settings a checkpoint was trained with, by dotted name: a resume must match them."""
    return {
        f"{section}.{key}": getattr(getattr(config, section), key)
        for section, key in stage_fields("train")
        if f"{section}.{key}" not in RESUME_NEUTRAL
    }


def flag(section: str, name: str) -> str:
    """The command-line flag of a field: its own (--data) or its name (--range-min)."""
    found = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
    return found.metadata.get("flag") or "--" + name.replace("_", "-")


def input_paths(config: Config, stage: str) -> dict[str, Any]:
    """Every file or directory a stage reads, by flag: what its output must never overlap."""
    found = {}
    for section, key in stage_fields(stage):
        field_ = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
        if field_.metadata.get("path"):
            found[flag(section, key)] = getattr(getattr(config, section), key)
    return found
