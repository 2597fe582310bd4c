"""The corpus as the offline store holds it (a point-in-time join), for `prepare --from-feast`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from ragtune.errors import UserError
from ragtune.io.data import Dataset, document_text, titles_as_queries
from ragtune.serving.repo import ENTITY, ID_FEATURE, TAG, TEXT_FEATURES, current_view, open_store


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
