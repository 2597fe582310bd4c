"""A ragtune Feast repo: its config, its one entity and its versioned passages views.

A repo holds one entity (`passage_id`) and one passages feature view per index run, named
`passages_vN` and tagged with the model, its dimension and its weights hash. The offline store
reads the view's parquet file (duckdb); the online store is Milvus Lite (a local file, a server
on loopback). `check_repo` answers before Feast and torch are imported (seconds); Feast itself is
imported only inside the functions that need it.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import yaml

from ragtune import console
from ragtune.errors import UserError

ENTITY = "passage_id"
ID_FEATURE = "doc_id"  # the id again as a plain feature: the entity column of a vector search is misaligned
TEXT_FEATURES = [ID_FEATURE, "title", "text", "source_id"]
VIEW_PREFIX = "passages_v"
TAG = "ragtune."  # prefix of the tags a view carries: model, dim, weights, title_in_document, state
CONNECT_TIMEOUT_SECONDS = "30"  # pymilvus' default of 10 s is missed by Milvus Lite's start on a busy machine


def check_repo(directory: Path) -> Path:
    """`directory` if it holds a feature_store.yaml; else one line naming the command that makes one."""
    directory = Path(directory)
    if not (directory / "feature_store.yaml").is_file():
        raise UserError(f"{directory}: not a Feast repo (no feature_store.yaml); create one with `ragtune feast init`")
    return directory


def feature_store(directory: Path):
    """A FeatureStore, minus the warnings Feast 0.67 and ibis print on every run (nothing a user can act on).

    Set after `import feast`, whose modules put their own filters first.
    """
    os.environ.setdefault("MILVUS_CONN_TIMEOUT", CONNECT_TIMEOUT_SECONDS)  # read when pymilvus is imported
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
        with console.waiting("loading Feast"):
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
        with console.waiting("starting the online store (Milvus Lite starts a local server, ~10 s)"):
            connect_fresh_if_stale(online, store.config)
    except Exception as exc:  # pymilvus raises MilvusException, grpc errors underneath
        raise UserError(
            f"{directory / 'feature_store.yaml'}: the online store did not answer ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}); check online_store (path, or host and port)"
        ) from None


def connect_fresh_if_stale(online, config) -> None:
    """Connect; if that fails while pymilvus holds a pooled connection, drop the pool and connect once more.

    A connection this process left idle (an earlier Retriever) can be sent away by the server (gRPC
    GOAWAY "too_many_pings", seen under load), and pymilvus 3 then fails to recover it in place. With
    no pooled connection nothing is retried, so an unreachable store still fails at once."""
    from pymilvus.client.connection_manager import ConnectionManager

    try:
        online._connect(config)
    except Exception:
        pool = ConnectionManager.get_instance()
        if not pool.get_stats()["shared_connections"]:
            raise
        pool.close_all()
        online._connect(config)


def read_online(store, read):
    """`read()` of the online store; once more on a fresh connection if its channel was closed.

    `connect_fresh_if_stale` in another store of this process (a second Retriever, Feast's own
    FeastVectorStore) drops pymilvus' whole pool, which closes this store's channel too."""
    try:
        return read()
    except Exception as exc:
        if "closed channel" not in str(exc):
            raise
    online = store._get_provider().online_store
    online.client = None
    connect_fresh_if_stale(online, store.config)
    return read()


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
