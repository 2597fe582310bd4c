"""The typed sections of ragtune's config: every setting, its default, its help and its flag, in one place.

Sections are frozen: a stage receives the sections it consumes and cannot change them under
another stage's feet. docs/config.md is generated from these fields (`make docs`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

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
        "torch",
        "torch, or onnx: large CPU encodes in onnxruntime (same embeddings to ~1e-7; faster on some CPUs, slower on "
        "others: benchmarks/bench_encode.py)",
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
    zero_label: bool = _option(
        False,
        "zero-label: train from the passages alone (synthetic queries, teacher margins); a BEIR "
        "directory's queries and qrels are ignored",
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
        "zero-label: query generators (ict: a sentence, mostly cut from its positive; crop: a span; "
        "terms: salient words; llm: written by synthetic.llm_model); none ([], in a file): titles are the only queries",
        "--generator",
    )
    queries_per_passage: int = _option(4, "synthetic queries per passage, shared round-robin by the generators")
    add_to_labels: bool = _option(
        False,
        "labelled input, two stages: the passages first (the zero-label recipe, into OUTPUT-passages), then the "
        "labelled queries from that model; the held-out labelled queries judge both (for a few hundred labels)",
        "--add-synthetic",
    )
    titles: bool = _option(
        True, "zero-label: real titles are one more query per source (a title naming over 50 passages is not)"
    )
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
        f"loss: {AUTO} (margin-mse on zero-label data, else mnrl); "
        + "; ".join(f"{name} ({spec.help})" for name, spec in LOSSES.items()),
    )
    epochs: int = _option(3, "passes over the training samples (zero-label input: 1, see ZERO_LABEL_RECIPE)")
    learning_rate: float = _option(6e-5, "peak learning rate (linear warmup, then linear decay)")
    batch_size: int = _option(32, "samples per device per step; more in-batch negatives as it grows")
    mini_batch_size: int = _option(16, "cached-mnrl only: rows encoded at once (memory, not the result)")
    scale: float = _option(20.0, "mnrl, cached-mnrl, gist: inverse temperature of the in-batch softmax")
    warmup_ratio: float = _option(0.1, "share of steps spent warming up the learning rate")
    max_seq_length: int = _option(
        128, "token limit while training, for speed (0: the model's own); evaluation uses the model's"
    )
    activation_checkpointing: bool = _option(
        True,
        "recompute each layer's activations in the backward pass: bit-identical weights, far less memory, "
        "slower steps (docs/benchmarks.md: first run)",
    )
    activation_checkpointing_every_n_layers: int = _option(
        0,
        "recompute only every Nth transformer layer, keep the others' activations (the Trainer's every_n_layers; "
        "0: 3 under bf16 or fp16, 1 in fp32, whose activations are twice the size)",
    )
    precision: str = _option(
        "auto",
        "training steps and per-epoch encodes: auto (bf16 where the device computes it natively: CPUs with "
        "AVX512-BF16 or AMX, recent GPUs; fp16 on older GPUs; else fp32), bf16, fp16 (CUDA) or fp32; the "
        "never-ship-worse gate and every reported number are fp32",
    )
    hard_negative_update_frequency: int = _option(1, "re-mine hard negatives with the model every N epochs (0: never)")
    checkpoint_steps: int = _option(50, "save a resumable checkpoint every K optimizer steps")
    keep_checkpoints: bool = _option(
        False, "keep checkpoints/ once the run has finished (only resume needs them; 260 MB each for MiniLM)"
    )
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
        "encode each; ships if it beats the best epoch (zero-label input: [0.5])",
        "--wise-alpha",
    )
    wise_prefer: bool = _option(
        False,
        "ship the first wise_alphas average that beats the base model even when the best epoch scores "
        "higher: synthetic held-out queries cannot see what tuning forgets (zero-label input: true)",
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
    mode: str = _option(
        "recorded", "recorded (what training chose on evidence), dense, or hybrid (dense + BM25)", "--mode"
    )
    bm25_weight: float = _option(0.0, "hybrid's BM25 weight in (0, 1]; 0: the one training recorded", "--bm25-weight")
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
SERVING_MODES = ("recorded", "dense", "hybrid")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = r"auto|cpu|mps|cuda(:\d+)?"

SECTIONS: dict[str, type] = {name: kind for name, kind in typing.get_type_hints(Config).items()}
