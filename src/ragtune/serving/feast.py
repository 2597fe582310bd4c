"""Feast serving: passages and tuned embeddings in a feature repo, vector search through its online store.

A repo holds one entity (`passage_id`) and one passages feature view per index run, named
`passages_vN` and tagged with the model, its dimension and its weights hash. The offline store
reads the view's parquet file (duckdb); the online store is Milvus Lite (a local file, a server
on loopback). An index run builds the new view next to the old one and drops the old one in the
same `apply` that marks the new one ready, so the vectors of two models never share a view.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from ragtune.errors import UserError
from ragtune.io.data import Dataset, document_text, titles_as_queries
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.metrics import CUTOFF, PRIMARY_METRIC, Rankings
from ragtune.serving.repo import check_repo

ENTITY = "passage_id"
ID_FEATURE = "doc_id"  # the id again as a plain feature: the entity column of a vector search is misaligned
TEXT_FEATURES = [ID_FEATURE, "title", "text", "source_id"]
VIEW_PREFIX = "passages_v"
WRITE_CHUNK = 500  # rows per online write: a pulse for the progress bar, bounded memory for the protos
CONNECT_TIMEOUT_SECONDS = "30"  # pymilvus' default of 10 s is missed by Milvus Lite's start on a busy machine
os.environ.setdefault("MILVUS_CONN_TIMEOUT", CONNECT_TIMEOUT_SECONDS)  # read when pymilvus is imported
TAG = "ragtune."  # prefix of the tags a view carries: model, dim, weights, title_in_document, state


def feature_store(directory: Path):
    """A FeatureStore, minus the warnings Feast 0.67 and ibis print on every run (nothing a user can act on).

    Set after `import feast`, whose modules put their own filters first.
    """
    from feast import FeatureStore

    warnings.filterwarnings("ignore", message='Field name "vector_enabled"', category=UserWarning)
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)
    return FeatureStore(repo_path=str(directory))


def repo_yaml(embedding_dim: int, online_path: str) -> str:
    """feature_store.yaml of an embedded repo: Milvus Lite online, duckdb over parquet offline."""
    config = {
        "project": "ragtune",
        "provider": "local",
        "registry": "data/registry.db",
        "online_store": {
            "type": "milvus",
            "path": online_path,
            "embedding_dim": embedding_dim,
            "index_type": "FLAT",
            "metric_type": "COSINE",
        },
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }
    return yaml.safe_dump(config, sort_keys=False)


def init_repo(directory: Path, embedding_dim: int, online_path: str, overwrite: bool = False) -> Path:
    """Write feature_store.yaml and register the entity; views come with `ragtune index`."""
    directory = Path(directory)
    config_file = directory / "feature_store.yaml"
    if config_file.exists() and not overwrite:
        raise UserError(f"{config_file}: already exists; choose another directory or pass --overwrite")
    if embedding_dim <= 0:
        raise UserError(f"--embedding-dim {embedding_dim}: must be the model's (positive) embedding size")
    (directory / "data" / "offline").mkdir(parents=True, exist_ok=True)
    config_file.write_text(repo_yaml(embedding_dim, online_path), encoding="utf-8")
    feature_store(directory).apply([passage_entity()])
    return directory


def open_store(directory: Path):
    directory = check_repo(directory)
    try:
        store = feature_store(directory)
    except Exception as exc:  # pydantic and yaml raise several types for a broken config
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = ": ".join(lines[1:3]) or type(exc).__name__  # the field and what is wrong with it
        raise UserError(f"{directory / 'feature_store.yaml'}: not a valid Feast config ({detail}); fix it") from None
    return store


def connect_online(store, directory: Path) -> None:
    """Connect the Milvus online store before using it, so an unreachable one is one line, not a traceback.

    Milvus Lite starts a server on first use; on a loaded machine that can take longer than pymilvus'
    default 10 s connect timeout, hence MILVUS_CONN_TIMEOUT (set on import). Retrying instead
    would start a second server on the same file, which its lock refuses. Other stores connect lazily.
    """
    online = store._get_provider().online_store
    if not hasattr(online, "_connect"):
        return
    try:
        online._connect(store.config)
    except Exception as exc:  # pymilvus raises MilvusException, grpc errors underneath
        raise UserError(
            f"{directory / 'feature_store.yaml'}: the online store did not answer ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}); check online_store (path, or host and port)"
        ) from None


def passage_entity():
    from feast import Entity, ValueType

    return Entity(name=ENTITY, join_keys=[ENTITY], value_type=ValueType.STRING, description="a passage of the corpus")


def passages_view(name: str, source_path: Path, dim: int, tags: dict[str, str]):
    """Text features plus the embedding, searchable by cosine similarity."""
    from feast import FeatureView, Field, FileSource
    from feast.types import Array, Float32, String

    source = FileSource(name=f"{name}_source", path=str(Path(source_path).resolve()), timestamp_field="event_timestamp")
    embedding = Field(
        name="embedding", dtype=Array(Float32), vector_index=True, vector_length=dim, vector_search_metric="COSINE"
    )
    schema = [Field(name=column, dtype=String) for column in [ENTITY, *TEXT_FEATURES]] + [embedding]
    return FeatureView(
        name=name, entities=[passage_entity()], schema=schema, source=source, ttl=None, online=True, tags=tags
    )


def view_version(name: str) -> int:
    match = re.fullmatch(rf"{VIEW_PREFIX}(\d+)", name)
    return int(match.group(1)) if match else -1


def passage_views(store) -> list:
    """This repo's passages views, oldest first."""
    views = [v for v in store.list_feature_views() if view_version(v.name) >= 0]
    return sorted(views, key=lambda v: view_version(v.name))


def current_view(store, directory: Path):
    ready = [v for v in passage_views(store) if v.tags.get(TAG + "state") == "ready"]
    if not ready:
        raise UserError(f"{directory}: no passages indexed yet; run `ragtune index --repo {directory} --data ...`")
    return ready[-1]


def title_in_document(corpus: pd.DataFrame) -> bool:
    """Whether the embedded string is title + text (BEIR) rather than the text alone (passages)."""
    return bool((corpus["document"] == document_text(corpus["title"], corpus["text"], True)).all())


def passages_frame(corpus: pd.DataFrame, embeddings: np.ndarray, timestamp: datetime) -> pd.DataFrame:
    """Rows of the passages view: what goes to the offline parquet and the online store."""
    return pd.DataFrame(
        {
            ENTITY: corpus["id"].to_numpy(),
            ID_FEATURE: corpus["id"].to_numpy(),
            "title": corpus["title"].to_numpy(),
            "text": corpus["text"].to_numpy(),
            "source_id": corpus["source_id"].to_numpy(),
            "embedding": list(embeddings),
            "event_timestamp": pd.Timestamp(timestamp),
        }
    )


def check_dimension(store, directory: Path, dim: int, model_name: str) -> None:
    expected = getattr(store.config.online_store, "embedding_dim", None)
    if expected is not None and expected != dim:
        raise UserError(
            f"{directory / 'feature_store.yaml'}: online_store.embedding_dim is {expected} but model '{model_name}' "
            f"makes {dim}-dim vectors; set embedding_dim: {dim} there, or `ragtune feast init` a new repo "
            f"with --embedding-dim {dim}"
        )


def flush(store, view) -> None:
    """Seal Milvus' growing segment: searches right after a write are ~10x slower without it.

    Feast has no public flush; other online stores simply have no Milvus client here.
    """
    client = getattr(store._get_provider().online_store, "client", None)
    if client is not None and hasattr(client, "flush"):
        client.flush(f"{store.project}_{view.name}")


@dataclass
class IndexResult:
    view: str
    passages: int
    removed: list[str]
    seconds: float
    encode_seconds: float  # of `seconds`; the rest is the store's work (parquet, online writes, apply)


def run_metrics(model_path: Path) -> RunMetrics | None:
    """The metrics of the run that wrote this model (RUN/model beside RUN/metrics.json), if any."""
    if model_path.name != "model" or not (model_path.parent / "metrics.json").is_file():
        return None
    try:
        metrics = RunMetrics.load(model_path.parent)
    except UserError:  # not a training run's metrics (an evaluate output, a damaged file): nothing is known
        return None
    return metrics if metrics.eval_set else None


def scores_of(weights: str, run: RunMetrics | None, run_model_weights: str) -> dict[str, float]:
    """{eval set hash: held-out nDCG@10} that a run measured for these weights: its base's or its model's."""
    if run is None:
        return {}
    if weights == run.base_weights:
        return {run.eval_set: run.base[PRIMARY_METRIC]}
    if weights == run_model_weights:
        return {run.eval_set: run.tuned[PRIMARY_METRIC]}  # the base's scores when the base was shipped
    return {}


def check_not_worse(
    serving, model_name: str, new_scores: dict[str, float], run: RunMetrics | None, weights: str
) -> None:
    """Refuse to replace the served model by one measured worse on the same held-out queries. What is known
    of the served model: its view's recorded scores, or the new model's run when it served that run's base."""
    served = json.loads(serving.tags.get(TAG + "scores", "{}"))
    served = scores_of(serving.tags.get(TAG + "weights", ""), run, weights) | served
    for eval_set, score in new_scores.items():
        if eval_set in served and score < served[eval_set]:
            raise UserError(
                f"model '{model_name}' scored held-out nDCG@10 {score:.4f} where the model {serving.name} serves "
                f"scored {served[eval_set]:.4f} on the same queries; {serving.name} stays; --force indexes it anyway"
            )


def index(directory: Path, corpus: pd.DataFrame, model_config, timestamp: datetime, force: bool = False) -> IndexResult:
    """Encode the corpus with the `model:` section's model into a new view (offline parquet + online
    store), then switch over."""
    import time

    from ragtune.io.outputs import atomic_path
    from ragtune.retrieval.embeddings import encode_corpus_cached
    from ragtune.retrieval.models import BUNDLED_NAMES, cache_dir, load_model, model_fingerprint, resolve_model

    started = time.perf_counter()
    directory = Path(directory)
    store = open_store(directory)
    model_name = model_config.name
    model_path = resolve_model(model_name)
    weights = model_fingerprint(model_path)
    model = load_model(model_name, model_config.device, model_config.backend)
    dim = model.get_embedding_dimension()
    check_dimension(store, directory, dim, model_name)
    connect_online(store, directory)
    old = passage_views(store)
    run = run_metrics(model_path)
    scores = scores_of(weights, run, weights)
    served = [v for v in old if v.tags.get(TAG + "state") == "ready"]
    if served and not force:
        check_not_worse(served[-1], model_name, scores, run, weights)
    name = f"{VIEW_PREFIX}{max([view_version(v.name) for v in old], default=0) + 1}"
    encoding = time.perf_counter()
    documents = corpus["document"].tolist()
    embeddings = encode_corpus_cached(
        model, weights, documents, model_config.encode_batch_size, cache_dir(model_config)
    )
    encode_seconds = time.perf_counter() - encoding
    rows = passages_frame(corpus, embeddings, timestamp)
    source = directory / "data" / "offline" / f"{name}.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(source) as tmp:
        rows.to_parquet(tmp, index=False)
    tags = {
        TAG + "model": model_name if model_name in BUNDLED_NAMES else str(model_path),  # found from any cwd
        TAG + "dim": str(dim),
        TAG + "weights": weights,
        TAG + "title_in_document": str(title_in_document(corpus)).lower(),
        TAG + "passages": str(len(rows)),
        TAG + "scores": json.dumps(scores, sort_keys=True),  # held-out nDCG@10 by eval set, where measured
    }
    view = passages_view(name, source, dim, {**tags, TAG + "state": "building"})
    store.apply([passage_entity(), view])
    with tqdm(total=len(rows), desc=f"write {name}", unit="passage") as bar:
        for start in range(0, len(rows), WRITE_CHUNK):
            chunk = rows.iloc[start : start + WRITE_CHUNK]
            store.write_to_online_store(name, chunk)
            bar.update(len(chunk))
    flush(store, view)
    ready = passages_view(name, source, dim, {**tags, TAG + "state": "ready"})
    store.apply([passage_entity(), ready], objects_to_delete=old, partial=False)
    for stale in old:  # their vectors are gone from the online store; their parquet goes too
        Path(stale.batch_source.path).unlink(missing_ok=True)
    return IndexResult(name, len(rows), [v.name for v in old], time.perf_counter() - started, encode_seconds)


@dataclass
class Hit:
    id: str
    title: str
    text: str
    score: float  # cosine similarity


class Retriever:
    """Vector search through the repo's online store, with the query encoded by the view's model.

    `model` defaults to the one the view was built with; another model is refused (its vectors
    would not be comparable), checked by weights hash.
    """

    def __init__(self, repo: str | Path, model: str | None = None, device: str = "auto", encode_batch_size: int = 64):
        from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model

        self.repo = Path(repo)
        self.store = open_store(self.repo)
        self.view = current_view(self.store, self.repo)
        connect_online(self.store, self.repo)
        tags = self.view.tags
        self.model_name = model or tags[TAG + "model"]
        try:
            weights = model_fingerprint(resolve_model(self.model_name))
        except UserError as exc:
            if model:
                raise
            raise UserError(f"{exc} ({self.view.name} was built with it; pass its new path as --model)") from None
        if weights != tags[TAG + "weights"]:
            raise UserError(
                f"model '{self.model_name}' (weights {weights}) is not the one {self.repo}:{self.view.name} was "
                f"built with ('{tags[TAG + 'model']}', weights {tags[TAG + 'weights']}); search with that model, "
                f"or `ragtune index --model {self.model_name}` first"
            )
        self.model = load_model(self.model_name, device)
        self.encode_batch_size = encode_batch_size
        self.features = [f"{self.view.name}:{name}" for name in [ID_FEATURE, "title", "text", "embedding"]]

    def encode(self, questions: list[str]) -> np.ndarray:
        from ragtune.retrieval.embeddings import encode

        return encode(self.model, questions, self.encode_batch_size, "query", "encode queries")

    def search_vector(self, vector: np.ndarray, top_k: int) -> list[Hit]:
        """Best first. Ids come from the id feature, never from the entity column (misaligned in Feast 0.67)."""
        if top_k <= 0:
            raise UserError(f"--top-k {top_k}: must be a positive integer")
        response = self.store.retrieve_online_documents_v2(
            features=self.features, query=vector.tolist(), top_k=top_k, distance_metric="COSINE"
        ).to_dict()
        hits = [
            Hit(doc_id, title, text, float(score))
            for doc_id, title, text, score in zip(
                response[ID_FEATURE], response["title"], response["text"], response["distance"]
            )
        ]
        return sorted(hits, key=lambda hit: (-hit.score, hit.id))

    def search(self, question: str, top_k: int = 10) -> list[Hit]:
        return self.search_vector(self.encode([question])[0], top_k)


@dataclass
class Answer:
    question: str
    answer: str
    passages: list[Hit]


Generator = Callable[[str, list[Hit]], str]  # (question, retrieved passages) -> answer text


class RAG:
    """Retrieve, then hand the question and passages to any generator (an LLM call, a template …)."""

    def __init__(self, retriever: Retriever, generator: Generator, top_k: int = 5):
        self.retriever, self.generator, self.top_k = retriever, generator, top_k

    def __call__(self, question: str) -> Answer:
        passages = self.retriever.search(question, self.top_k)
        return Answer(question, self.generator(question, passages), passages)


def feast_rankings(retriever: Retriever, queries: dict[str, str], query_ids: list[str]) -> Rankings:
    """Rankings as the serving path returns them, ready for `retrieval_metrics`."""
    vectors = retriever.encode([queries[q] for q in query_ids])
    rankings = {}
    for qid, vector in tqdm(list(zip(query_ids, vectors)), desc="search via feast", unit="query"):
        rankings[qid] = [(hit.id, hit.score) for hit in retriever.search_vector(vector, CUTOFF)]
    return rankings


def evaluate_via_feast(
    dataset: Dataset, repo: Path, *, split: str, models: list[str], device: str, encode_batch_size: int
) -> dict[str, dict[str, float]]:
    """The IR metrics of what the repo serves, on the dataset's queries and qrels."""
    from ragtune.io.data import evaluation_qrels
    from ragtune.retrieval.metrics import retrieval_metrics

    if len(models) > 1:
        raise UserError("--via-feast evaluates the repo's one indexed model; pass at most one --model")
    qrels = evaluation_qrels(dataset, split)
    retriever = Retriever(repo, models[0] if models else None, device, encode_batch_size)
    served = set(pd.read_parquet(retriever.view.batch_source.path, columns=[ID_FEATURE])[ID_FEATURE])
    missing = sorted({did for docs in qrels.values() for did in docs} - served)
    if missing:
        raise UserError(
            f"{repo}: passage '{missing[0]}' of the qrels is not indexed ({len(missing)} missing); "
            "index the same corpus with `ragtune index --data ...`"
        )
    rankings = feast_rankings(retriever, dataset.queries, sorted(qrels))
    return {f"{retriever.model_name} via feast ({retriever.view.name})": retrieval_metrics(rankings, qrels)}


def historical_corpus(repo: Path, as_of: datetime | None = None) -> tuple[pd.DataFrame, datetime, str]:
    """The corpus as the offline store holds it at `as_of` (default: the newest passage's time).

    A point-in-time join on every passage id of the current view; returns the corpus, the time it
    is valid from (the newest event timestamp it contains) and the view's name.
    """
    store = open_store(repo)
    view = current_view(store, repo)
    written = pd.read_parquet(view.batch_source.path, columns=[ENTITY, "event_timestamp"])
    as_of = as_of or written["event_timestamp"].max().to_pydatetime()
    entity_df = pd.DataFrame({ENTITY: written[ENTITY].unique(), "event_timestamp": pd.Timestamp(as_of)})
    features = [f"{view.name}:{name}" for name in TEXT_FEATURES]
    frame = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    frame = frame.dropna(subset=[ID_FEATURE])  # passages not yet written at `as_of`
    if frame.empty:
        raise UserError(f"{repo}: no passage of {view.name} is as old as {as_of.isoformat()}; pick a later time")
    corpus = frame[TEXT_FEATURES].rename(columns={ID_FEATURE: "id"}).sort_values("id", kind="stable")
    corpus = corpus.reset_index(drop=True)
    corpus["document"] = document_text(
        corpus["title"], corpus["text"], view.tags.get(TAG + "title_in_document") == "true"
    )
    valid_from = written.loc[written[ENTITY].isin(corpus["id"]), "event_timestamp"].max().to_pydatetime()
    return corpus, valid_from, view.name


def dataset_from_feast(repo: Path, data_path: str, max_chars: int) -> tuple[Dataset, datetime, str]:
    """Passages from the offline store; queries and qrels from `data_path` (BEIR), or titles as queries."""
    from ragtune.io.data import load_dataset

    corpus, valid_from, view = historical_corpus(Path(repo))
    if not data_path:
        queries, train = titles_as_queries(corpus)
        return Dataset("passages", corpus, queries, {"train": train}), valid_from, view
    dataset = load_dataset(data_path, max_chars)
    known = set(corpus["id"])
    for split, qrels in dataset.qrels.items():
        missing = sorted({did for docs in qrels.values() for did in docs} - known)
        if missing:
            raise UserError(
                f"{data_path}: qrels/{split} names passage '{missing[0]}' that {repo} does not hold "
                f"({len(missing)} such); index this corpus first"
            )
    return Dataset(dataset.kind, corpus, dataset.queries, dataset.qrels), valid_from, view
