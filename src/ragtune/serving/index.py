"""`ragtune index`: the corpus encoded into a new passages view, which replaces the served one only when ready.

An index run builds the new view next to the old one and drops the old one in the same `apply`
that marks the new one ready, so the vectors of two models never share a view. A model measured
worse than the served one on the same held-out queries is refused (the never-serve-worse gate).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune import console
from ragtune.errors import UserError
from ragtune.io.data import document_text
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.bm25 import Bm25
from ragtune.retrieval.fusion import FusionChoice
from ragtune.retrieval.metrics import PRIMARY_METRIC
from ragtune.serving.keywords import Keywords, keywords_dir
from ragtune.serving.repo import (
    ENTITY,
    ID_FEATURE,
    TAG,
    VIEW_PREFIX,
    connect_online,
    open_store,
    passage_entity,
    passage_views,
    passages_view,
    view_version,
)

WRITE_CHUNK = 500  # rows per online write: a pulse for the progress bar, bounded memory for the protos


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


def scores_of(weights: str, run: RunMetrics | None, run_model_weights: str) -> dict[str, float]:
    """{eval set hash: held-out nDCG@10} that a run measured for these weights: its base's (dense) or its
    model's as served (the fusion its run chose, measured on the same held-out queries)."""
    if run is None:
        return {}
    if weights == run.base_weights:
        return {run.eval_set: run.base[PRIMARY_METRIC]}
    if weights == run_model_weights:  # as served: the recorded fusion's score, else the model's own
        served = FusionChoice.from_dict(run.fusion).evidence_score() if run.fusion else None
        return {run.eval_set: served if served is not None else run.tuned[PRIMARY_METRIC]}
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


def write_sides(directory: Path, name: str, rows: pd.DataFrame, documents: list[str]) -> Path:
    """The view's offline parquet and its keyword index, each complete before the view names them."""
    from ragtune.io.outputs import atomic_dir, atomic_path

    source = directory / "data" / "offline" / f"{name}.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(source) as tmp:
        rows.to_parquet(tmp, index=False)
    with atomic_dir(keywords_dir(directory, name), overwrite=True, what="keyword index") as tmp:
        Keywords(Bm25(documents), rows[ENTITY].tolist()).save(tmp)
    return source


def served_fusion(run: RunMetrics | None) -> dict:
    """The fusion the model's run chose ({}: dense, also for a model no ragtune run wrote)."""
    choice = FusionChoice.from_dict(run.fusion if run else None)
    return {"bm25_weight": choice.bm25_weight, "why": choice.why} if choice.mode == "hybrid" else {}


def index(directory: Path, corpus: pd.DataFrame, model_config, timestamp: datetime, force: bool = False) -> IndexResult:
    """Encode the corpus with the `model:` section's model into a new view (offline parquet + online
    store), then switch over."""
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
    run = RunMetrics.of_model(model_path)
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
    source = write_sides(directory, name, rows, documents)
    tags = {
        TAG + "model": model_name if model_name in BUNDLED_NAMES else str(model_path),  # found from any cwd
        TAG + "dim": str(dim),
        TAG + "weights": weights,
        TAG + "title_in_document": str(title_in_document(corpus)).lower(),
        TAG + "passages": str(len(rows)),
        TAG + "scores": json.dumps(scores, sort_keys=True),  # held-out nDCG@10 by eval set, where measured
        TAG + "keywords": "bm25",
        TAG + "fusion": json.dumps(served_fusion(run)),  # how the model's run chose to serve it
    }
    view = passages_view(name, source, dim, {**tags, TAG + "state": "building"})
    store.apply([passage_entity(), view])
    with console.progress(len(rows), f"write {name}", "passage") as bar:
        for start in range(0, len(rows), WRITE_CHUNK):
            chunk = rows.iloc[start : start + WRITE_CHUNK]
            store.write_to_online_store(name, chunk)
            bar.update(len(chunk))
    flush(store, view)
    ready = passages_view(name, source, dim, {**tags, TAG + "state": "ready"})
    store.apply([passage_entity(), ready], objects_to_delete=old, partial=False)
    for stale in old:  # their vectors are gone from the online store; their parquet and keywords go too
        Path(stale.batch_source.path).unlink(missing_ok=True)
        shutil.rmtree(keywords_dir(directory, stale.name), ignore_errors=True)
    return IndexResult(name, len(rows), [v.name for v in old], time.perf_counter() - started, encode_seconds)
