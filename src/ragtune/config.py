"""One typed config for every stage: read from YAML, overridden by CLI flags, written beside outputs.

Sections are frozen: a stage receives the sections it consumes and cannot change them under
another stage's feet. `STAGE_FIELDS` says which fields each stage reads; the CLI derives every
command's flags from it, so a command never shows a flag its stage ignores.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragtune.errors import UserError
from ragtune.train.losses import AUTO, LOSSES


def _option(default: Any, help: str, flag: str | None = None, path: bool = False) -> Any:
    """A config field; `path` marks a file or directory the stage reads (an output may never overlap it)."""
    metadata = {"help": help, "flag": flag, "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ModelConfig:
    name: str = _option(
        "all-MiniLM-L6-v2", "base model: a local sentence-transformers dir or the bundled name", "--model", path=True
    )
    device: str = _option("auto", "torch device: auto, cpu, cuda, cuda:1 …")
    encode_batch_size: int = _option(64, "batch size for encoding passages and queries")
    cache_dir: str = _option("", "embedding cache directory (default: ~/.cache/ragtune)", path=True)
    backend: str = _option(
        "onnx",
        "onnx: large CPU encodes in onnxruntime (same embeddings as torch to ~1e-7, 1.33x faster here), or torch",
        "--encoder",
    )


@dataclass(frozen=True)
class DataConfig:
    path: str = _option("", "BEIR directory or passages file (.parquet/.jsonl)", "--data", path=True)
    output: str = _option("prepared", "directory that prepare writes", "--output")
    eval_fraction: float = _option(
        0.1, "share of training queries held out to pick the best model (if no dev qrels); in (0, 1)"
    )
    seed: int = _option(42, "seed for the held-out split and random negatives")
    max_text_chars: int = _option(20000, "longer passages/queries are truncated (with a warning)")
    corpus_only: bool = _option(
        False, "zero-label: train from the passages of a BEIR directory alone, ignoring its queries and qrels"
    )
    eval_data: str = _option(
        "",
        "real labelled queries (a BEIR directory) that pick the best model each epoch; never trained on",
        "--eval-data",
        path=True,
    )
    eval_split: str = _option("test", "qrels split of --eval-data to evaluate on")
    from_feast: str = _option(
        "",
        "prepare: passages from this Feast repo's offline store (--data adds queries/qrels)",
        "--from-feast",
        path=True,
    )


@dataclass(frozen=True)
class MiningConfig:
    hard_negatives_per_query: int = _option(1, "mined hard negatives per (query, positive) pair")
    range_min: int = _option(10, "skip the top ranks: they hold most unlabelled positives")
    range_max: int = _option(50, "look no deeper than this rank")
    min_score: float = _option(0.3, "similarity floor: weaker candidates teach nothing")
    relative_margin: float = _option(0.95, "drop candidates scoring above this x the positive's score")
    random_negative_ratio: float = _option(0.0, "random-negative rows per training pair")


LLM_PROMPT = (
    "Write one short question that a reader could answer with this passage. Reply with the question only.\n\n"
    "Passage: {passage}"
)


@dataclass(frozen=True)
class SyntheticConfig:
    generators: list[str] = _option(
        ["ict", "crop", "terms"],
        "passages-only input: query generators (ict: a sentence, mostly cut from its positive; crop: a span; "
        "terms: salient words; llm: written by synthetic.llm_model); none given in a file ([]): titles are the queries",
        "--generator",
    )
    queries_per_passage: int = _option(4, "synthetic queries per passage, shared round-robin by the generators")
    max_query_words: int = _option(32, "longer synthetic queries are cut to this many words")
    ict_remove_probability: float = _option(0.9, "ict: how often the query sentence is cut out of its positive")
    evidence_queries: int = _option(
        200,
        "held-out synthetic queries (never trained on): choose the teacher and, without --eval-data, the best model",
    )
    teacher: str = _option(
        "fusion",
        "fusion (the base model + BM25, weighed on the held-out queries), cross-encoder (synthetic.cross_encoder) "
        "or none; the teacher vetoes false negatives and its margins train margin-mse",
    )
    cross_encoder: str = _option(
        "", "teacher cross-encoder: a local sentence-transformers CrossEncoder directory", path=True
    )
    passages: int = _option(0, "passages that give training queries, a random sample (0: all); mining uses all")
    llm_endpoint: str = _option(
        "",
        "llm generator: base URL of an OpenAI-compatible API (vLLM, Ollama, llama.cpp server …), e.g. "
        "http://127.0.0.1:8080/v1; a key, if needed, is read from OPENAI_API_KEY",
    )
    llm_model: str = _option("", "llm generator: the model name the endpoint serves")
    llm_prompt: str = _option(LLM_PROMPT, "llm generator: the prompt; {passage} is replaced by the passage")
    llm_concurrency: int = _option(4, "llm generator: requests in flight at once")
    llm_retries: int = _option(3, "llm generator: retries of a failed request (connection, timeout, 429, 5xx)")


@dataclass(frozen=True)
class TrainConfig:
    prepared: str = _option("prepared", "directory written by `ragtune prepare`", "--data", path=True)
    output: str = _option("runs/train", "run directory: model/, checkpoints/, tensorboard/, metrics.json", "--output")
    loss: str = _option(
        AUTO,
        f"loss: {AUTO} (margin-mse on passages-only data, else mnrl); "
        + "; ".join(f"{name} ({spec.help})" for name, spec in LOSSES.items()),
    )
    epochs: int = _option(3, "passes over the training samples")
    learning_rate: float = _option(6e-5, "peak learning rate (linear warmup, then linear decay)")
    batch_size: int = _option(32, "samples per device per step; more in-batch negatives as it grows")
    mini_batch_size: int = _option(16, "cached-mnrl only: rows encoded at once (memory, not the result)")
    scale: float = _option(20.0, "mnrl, cached-mnrl, gist: inverse temperature of the in-batch softmax")
    warmup_ratio: float = _option(0.1, "share of steps spent warming up the learning rate")
    max_seq_length: int = _option(
        128, "token limit while training, for speed (0: the model's own); evaluation uses the model's"
    )
    hard_negative_update_frequency: int = _option(1, "re-mine hard negatives with the model every N epochs (0: never)")
    checkpoint_steps: int = _option(50, "save a resumable checkpoint every K optimizer steps")
    early_stopping_patience: int = _option(0, "stop after N evaluations without a better nDCG@10 (0: never)")
    logging_steps: int = _option(5, "log loss and learning rate every N steps")
    seed: int = _option(42, "seed for data order, negatives and initialisation")
    gather_across_devices: bool = _option(False, "mnrl/cached-mnrl/gist under DDP: in-batch negatives from all ranks")
    keep_worse: bool = _option(
        False, "ship the best tuned epoch even when it does not beat the base model on the held-out queries"
    )
    wise_alphas: list[float] = _option(
        [],
        "also try alpha * tuned + (1 - alpha) * base weights for each alpha (WiSE-FT); one held-out corpus "
        "encode each; ships if it beats the best epoch",
        "--wise-alpha",
    )
    wise_prefer: bool = _option(
        False,
        "ship the first wise_alphas average that beats the base model even when the best epoch scores "
        "higher: synthetic held-out queries cannot see what tuning forgets (passages-only mode)",
    )


@dataclass(frozen=True)
class EvalConfig:
    models: list[str] = _option([], "models to evaluate (default: model.name); repeat the flag", "--model", path=True)
    split: str = _option("test", "qrels split to evaluate")
    baselines: list[str] = _option(
        ["bm25"], "baselines to add: bm25, teacher (the zero-label teacher of --teacher-of), or none", "--baseline"
    )
    teacher_of: str = _option(
        "", "a prepared directory whose zero-label teacher (summary.json) is a baseline", path=True
    )
    output: str = _option("runs/eval", "directory for metrics.json, metrics.md, metrics.png", "--output")
    via_feast: str = _option(
        "", "evaluate what this Feast repo serves (its indexed model) instead of in memory", "--via-feast", path=True
    )


@dataclass(frozen=True)
class FeastConfig:
    repo: str = _option("feature_repo", "Feast feature repo directory (made by `ragtune feast init`)", "--repo")
    top_k: int = _option(10, "passages a search returns", "--top-k")
    embedding_dim: int = _option(384, "feast init: the online store's vector size (the model's dimension)")
    online_path: str = _option("data/online_store.db", "feast init: Milvus Lite file, relative to the repo")


@dataclass(frozen=True)
class KubeflowConfig:
    backend: str = _option("kubernetes", "kubernetes (a cluster with Kubeflow Trainer v2) or local (torchrun here)")
    kubeconfig: str = _option("", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    namespace: str = _option("default", "namespace of the TrainJobs")
    runtime: str = _option("ragtune-torch-distributed", "(Cluster)TrainingRuntime to run on (deploy/runtime.yaml)")
    num_nodes: int = _option(1, "training nodes (local backend: processes)")
    cpu: str = _option("", "CPU per node, a Kubernetes quantity such as 4 or 500m (default: the runtime's)")
    memory: str = _option("", "memory per node, a Kubernetes quantity such as 8Gi (default: the runtime's)")
    gpu: int = _option(0, "GPUs per node")
    image: str = _option("", "training image (default: the runtime's)")
    workdir: str = _option("/mnt/ragtune", "where the job runs: relative data and output paths resolve here")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    feast: FeastConfig = field(default_factory=FeastConfig)
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)


BACKENDS = ("kubernetes", "local")
DEVICES = r"auto|cpu|mps|cuda(:\d+)?"
TEACHERS = ("fusion", "cross-encoder", "none")
GENERATORS = ("ict", "crop", "terms", "llm")  # ragtune.synthetic implements them; llm.py fetches llm's queries

SECTIONS: dict[str, type] = {name: kind for name, kind in typing.get_type_hints(Config).items()}

# What each stage reads ("section.*" for a whole section): the command's flags, and for training
# also what a checkpoint must agree with to be resumed (minus RESUME_NEUTRAL).
MODEL_IO = ["model.device", "model.encode_batch_size", "model.cache_dir", "model.backend"]
GUARD = ["mining.range_min", "mining.range_max", "mining.min_score", "mining.relative_margin"]
STAGE_FIELDS: dict[str, list[str]] = {
    "prepare": ["data.*", "model.*", "mining.*", "synthetic.*"],
    "train": ["train.*", "model.name", *MODEL_IO, *GUARD],
    "evaluate": ["data.path", "data.max_text_chars", *MODEL_IO, "eval.*"],
    "demo": ["model.device", "model.cache_dir", "model.backend"],
    "index": ["feast.repo", "data.path", "data.max_text_chars", "model.*"],
    "search": ["feast.repo", "feast.top_k", "model.device", "model.encode_batch_size"],
}
# Settings that change where or how fast a run goes, not what it learns: a resume may change them.
RESUME_NEUTRAL = {"train.prepared", "train.output", "train.checkpoint_steps", "train.logging_steps", *MODEL_IO}


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
        (t.epochs > 0, "train.epochs", "a positive integer"),
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
        (set(config.synthetic.generators) <= set(GENERATORS), "synthetic.generators", "among " + ", ".join(GENERATORS)),
        (config.synthetic.queries_per_passage > 0, "synthetic.queries_per_passage", "a positive integer"),
        (config.synthetic.max_query_words >= 4, "synthetic.max_query_words", "at least 4"),
        (0 <= config.synthetic.ict_remove_probability <= 1, "synthetic.ict_remove_probability", "in [0, 1]"),
        (config.synthetic.evidence_queries >= 5, "synthetic.evidence_queries", "at least 5"),
        (config.synthetic.passages >= 0, "synthetic.passages", "0 (all) or a positive integer"),
        (config.synthetic.teacher in TEACHERS, "synthetic.teacher", " or ".join(TEACHERS)),
        (
            config.synthetic.teacher != "cross-encoder" or bool(config.synthetic.cross_encoder),
            "synthetic.cross_encoder",
            "a local cross-encoder directory when synthetic.teacher is cross-encoder",
        ),
        (
            "llm" not in config.synthetic.generators
            or bool(config.synthetic.llm_endpoint and config.synthetic.llm_model),
            "synthetic.llm_endpoint and synthetic.llm_model",
            "set (an OpenAI-compatible API base URL and the model it serves) when synthetic.generators has llm",
        ),
        ("{passage}" in config.synthetic.llm_prompt, "synthetic.llm_prompt", "a template containing {passage}"),
        (config.synthetic.llm_concurrency > 0, "synthetic.llm_concurrency", "a positive integer"),
        (config.synthetic.llm_retries >= 0, "synthetic.llm_retries", "0 or more"),
        (config.feast.top_k > 0, "feast.top_k", "a positive integer (--top-k)"),
        (config.feast.embedding_dim > 0, "feast.embedding_dim", "the model's embedding size, a positive integer"),
        (config.kubeflow.backend in BACKENDS, "kubeflow.backend", " or ".join(BACKENDS)),
        (config.kubeflow.num_nodes > 0, "kubeflow.num_nodes", "at least 1 (--num-nodes)"),
        (config.kubeflow.gpu >= 0, "kubeflow.gpu", "0 or more"),
    ]
    for ok, name, expected in checks:
        if not ok:
            raise UserError(f"{source}: {name} must be {expected}")


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file, then flag overrides given as {'section.key': value}."""
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
