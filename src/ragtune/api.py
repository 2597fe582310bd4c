"""Python API, one function per CLI stage: each takes the Config, writes its outputs atomically,
prints a short summary and returns what it produced. Heavy imports stay inside the functions so
the CLI answers --help and user errors without loading torch."""

from __future__ import annotations

import json
from pathlib import Path

from ragtune import config as cfg

OUTPUT_FIELDS = {"prepare": "data.output", "train": "train.output", "evaluate": "eval.output"}


def check_outputs(
    config: cfg.Config, stage: str, overwrite: bool = False, config_file: Path | None = None, resume: bool = False
) -> None:
    """ragtune.outputs' rules for a stage's output, before anything is read: never over an input,
    never an existing one without `overwrite`, never one ragtune did not write; the cache writable.
    A resumed run (and every torchrun worker but rank 0) leaves the existing run to plan_start."""
    from ragtune.io.outputs import check_output_path, check_writable, default_cache_dir, guard_output
    from ragtune.train.distributed import current_world, elastic_restart

    section, key = OUTPUT_FIELDS[stage].split(".")
    output = getattr(getattr(config, section), key)
    inputs = {**cfg.input_paths(config, stage), "--config": config_file}
    continuing = resume or elastic_restart() or not current_world().is_main
    if stage == "train" and continuing:
        check_output_path(output, inputs, cfg.flag(section, key))
    else:
        guard_output(output, inputs, overwrite, cfg.flag(section, key))
    check_writable(config.model.cache_dir or default_cache_dir(), "--cache-dir")


def prepare(config: cfg.Config, overwrite: bool = False, config_file: Path | None = None) -> Path:
    """Training samples, held-out split, corpus and mining audit in `config.data.output`."""
    check_outputs(config, "prepare", overwrite, config_file)
    from ragtune.io.data import Dataset, load_dataset
    from ragtune.retrieval.models import resolve_model

    d = config.data
    output = Path(d.output)
    if d.from_feast:
        from ragtune.serving.offline import dataset_from_feast

        dataset, timestamp, view = dataset_from_feast(Path(d.from_feast), d.path, d.max_text_chars)
    else:
        dataset = load_dataset(d.path, d.max_text_chars, d.zero_label)  # answered before torch is imported
    resolve_model(config.model.name)
    from ragtune.io.outputs import atomic_dir
    from ragtune.prepare import run as stage

    if not d.from_feast:
        timestamp = stage.input_timestamp(Path(d.path))
    if d.zero_label:
        dataset = Dataset("passages", dataset.corpus, {}, {})
    prepared = stage.prepare(dataset, d, config.model, config.mining, config.synthetic, timestamp)
    if d.from_feast:
        prepared.summary["passages_from"] = f"feast {d.from_feast} ({view})"
    with atomic_dir(output, overwrite, "prepared data") as tmp:
        prepared.write(tmp, cfg.to_yaml(config))
    print(prepared.describe(output))
    return output


def evaluate(
    config: cfg.Config, overwrite: bool = False, config_file: Path | None = None
) -> dict[str, dict[str, float]]:
    """Metrics of each model (and BM25) on one qrels split, with metrics.json/.md/.png."""
    check_outputs(config, "evaluate", overwrite, config_file)
    from ragtune.io.data import load_dataset

    e, m = config.eval, config.model
    output = Path(e.output)
    dataset = load_dataset(config.data.path, config.data.max_text_chars)  # answered before torch is imported
    from ragtune.evaluate import run as stage
    from ragtune.evaluate.plots import bar_chart
    from ragtune.evaluate.tables import markdown_table
    from ragtune.io.outputs import atomic_dir

    results = stage.evaluate(dataset, e, m)
    if e.via_feast:  # the model is the one the repo serves; its rankings come from the online store
        from ragtune.serving.retriever import evaluate_via_feast

        results |= evaluate_via_feast(
            dataset,
            Path(e.via_feast),
            split=e.split,
            models=e.models,
            model_config=m,
            feast_config=config.feast,
        )
    table = markdown_table(results)
    with atomic_dir(output, overwrite, "evaluation") as tmp:
        (tmp / "metrics.json").write_text(json.dumps({"split": e.split, "results": results}, indent=2) + "\n")
        (tmp / "metrics.md").write_text(table)
        (tmp / "config.yaml").write_text(cfg.to_yaml(config))
        bar_chart(results, tmp / "metrics.png", f"{Path(config.data.path).name} / {e.split}")
    print(table + f"\nwritten to {output}/ (metrics.json, metrics.md, metrics.png)")
    return results


def train(
    config: cfg.Config,
    overwrite: bool = False,
    resume: bool = False,
    callbacks: tuple = (),
    config_file: Path | None = None,
):
    """Fine-tune on a prepared directory; writes model/, metrics.json, config.yaml, tensorboard/."""
    check_outputs(config, "train", overwrite, config_file, resume)
    from ragtune.io.prepared import resolve
    from ragtune.retrieval.models import resolve_model

    resolve(Path(config.train.prepared))  # answered before torch is imported
    resolve_model(config.model.name)
    from ragtune.train import run as stage

    runs = stage.stages(config)
    for run in runs[:-1]:  # the passages stage of a two-stage prepared directory
        check_outputs(run, "train", overwrite, config_file, resume)
    return stage.train_stages(runs, resume=resume, overwrite=overwrite, callbacks=callbacks)


def report(run_dir: Path, eval_dir: Path | None = None, output: Path | None = None, overwrite: bool = False) -> Path:
    """One self-contained HTML page for a run (default RUN_DIR/report.html, replaced on every call);
    `eval_dir` adds BM25/test metrics. Any other `output` obeys ragtune.outputs' rules for a file."""
    from ragtune import report as stage
    from ragtune.io.outputs import guard_file_output, write_text

    default = Path(run_dir) / "report.html"
    if output is not None and Path(output).resolve() != default.resolve():
        guard_file_output(output, {"RUN": run_dir, "--eval": eval_dir}, overwrite)
    page = stage.render(stage.collect(Path(run_dir), eval_dir))
    output = Path(output) if output else default
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, page)
    print(f"report written to {output}")
    return output


def _job_backend(config: cfg.Config):
    from ragtune.cluster.kubeflow import backend_for

    return backend_for(config.kubeflow)


def submit(config: cfg.Config) -> str:
    """Send the training config as a Kubeflow TrainJob (or a local torchrun job); returns the job's name."""
    name = _job_backend(config).submit(config)
    k = config.kubeflow
    print(
        f"submitted {name} ({k.backend}, {k.num_nodes} node(s)); follow it: ragtune logs {name} --follow"
        + (" --backend local" if k.backend == "local" else "")
    )
    return name


def jobs(config: cfg.Config) -> list:
    found = _job_backend(config).list()
    print(f"{'NAME':<16} {'STATUS':<10} {'NODES':>5}  {'RUNTIME':<28} CREATED")
    for job in found:
        print(f"{job.name:<16} {job.status:<10} {job.num_nodes:>5}  {job.runtime:<28} {job.created}")
    return found


def status(config: cfg.Config, name: str):
    job = _job_backend(config).get(name)
    print(f"{job.name}: {job.status} ({job.num_nodes} node(s), runtime {job.runtime}, created {job.created})")
    for step in job.steps:
        print(f"  {step}")
    return job


def logs(config: cfg.Config, name: str, follow: bool = False, rank: int = 0) -> None:
    for line in _job_backend(config).logs(name, follow, rank):
        print(line, flush=True)


def wait(config: cfg.Config, name: str, timeout: int = 3600):
    job = _job_backend(config).wait(name, timeout)
    print(f"{job.name}: {job.status}")
    return job


def delete(config: cfg.Config, name: str) -> None:
    _job_backend(config).delete(name)
    print(f"deleted {name}")


def feast_init(config: cfg.Config, overwrite: bool = False) -> Path:
    """A Feast feature repo in `config.feast.repo`: Milvus Lite online store, duckdb over parquet offline."""
    from ragtune.serving.repo import init_repo

    f = config.feast
    repo = init_repo(Path(f.repo), f.embedding_dim, f.online_path, overwrite)
    print(
        f"Feast repo {repo}: Milvus Lite online store ({f.online_path}, {f.embedding_dim}-dim, FLAT, COSINE), "
        f"duckdb offline store; next: ragtune index --repo {repo} --data DATA --model MODEL"
    )
    return repo


def index(config: cfg.Config, force: bool = False):
    """Encode `data.path` with `model.name` into a new passages view of the repo; the old view goes."""
    from ragtune.io.data import load_corpus
    from ragtune.serving.repo import check_repo

    d, repo = config.data, check_repo(Path(config.feast.repo))  # answered before torch and Feast load
    corpus = load_corpus(d.path, d.max_text_chars)
    from ragtune.prepare.run import input_timestamp
    from ragtune.serving import index as stage
    from ragtune.serving.repo import open_store

    open_store(repo)
    result = stage.index(repo, corpus, config.model, input_timestamp(Path(d.path)), force)
    removed = f"; removed {', '.join(result.removed)}" if result.removed else ""
    print(f"indexed {result.passages} passages into {repo}:{result.view} in {result.seconds:.1f} s{removed}")
    return result


def search(config: cfg.Config, question: str, model: str | None = None):
    """Top-k passages for one question through the repo's online store, printed best first."""
    from ragtune.errors import UserError

    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("search: the question holds bytes that are not UTF-8; pass it as UTF-8 text") from None
    if not question.strip():
        raise UserError("search: the question is empty; pass the text to search for")
    from ragtune.serving.repo import check_repo

    check_repo(Path(config.feast.repo))  # answered before torch and Feast load
    retriever = _retriever(config, model)
    hits = retriever.search(question, config.feast.top_k)
    print(f"{retriever.repo}:{retriever.view.name}, {retriever.mode}")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:>3}  {hit.score:.4f}  {hit.id}  {hit.title[:90]}")
        print(f"     {hit.text[:160]}")
    return hits


def serve(config: cfg.Config, model: str | None = None, host: str = "127.0.0.1", port: int = 8000) -> int:
    """`search` kept running: the model and the index loaded once, JSON over HTTP until SIGTERM or Ctrl-C."""
    from ragtune.serving.repo import check_repo
    from ragtune.serving.server import free_port

    check_repo(Path(config.feast.repo))  # the repo and the port are answered before torch and Feast load
    port = free_port(host, port)
    from ragtune.serving.server import serve as serve_http

    return serve_http(_retriever(config, model), host, port, config.feast.top_k)


def _retriever(config: cfg.Config, model: str | None):
    from ragtune.serving.retriever import Retriever

    m, f = config.model, config.feast
    return Retriever(Path(f.repo), model, m.device, m.encode_batch_size, f.mode, f.bm25_weight)


def demo(config: cfg.Config, root: Path = Path("runs/demo")) -> dict[str, dict[str, float]]:
    """prepare -> train -> evaluate -> report on the bundled SciFact; BM25 / base / tuned on its test split.

    With data.zero_label (configs/demo-zero-label.yaml) the passages alone train, and the table adds
    the zero-label teacher. Everything goes under `root` and is replaced on every run.
    """
    import time

    started = time.perf_counter()
    teacher = ["teacher"] if config.data.zero_label and "teacher" not in config.eval.baselines else []
    config = cfg.replace(
        config,
        **{
            "data.path": config.data.path or "data/scifact",
            "data.output": str(root / "prepared"),
            "train.prepared": str(root / "prepared"),
            "train.output": str(root / "run"),
            "eval.output": str(root / "eval"),
            "eval.models": [config.model.name, str(root / "run" / "model")],
            "eval.baselines": [*config.eval.baselines, *teacher],
            "eval.teacher_of": str(root / "prepared"),
        },
    )
    prepare(config, overwrite=True)
    train(config, overwrite=True)
    results = evaluate(config, overwrite=True)
    from ragtune.evaluate.tables import served_line

    print(served_line(results, config.model.name, root / "run" / "model"))
    page = report(root / "run", root / "eval")
    print(
        f"demo finished in {time.perf_counter() - started:.0f} s; chart: {root / 'eval' / 'metrics.png'}; "
        f"report: {page}"
    )
    return results
