"""Load and check user data: a BEIR directory or a passages-only file.

Both become one `Dataset`: a corpus table, query texts and qrels per split. Passages-only data
gets synthetic queries, one per source (its title), whose positives are that source's passages.
Empty passages (no title, no text) are skipped with one warning, with any judgement of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ragtune.errors import UserError
from ragtune.io.files import find, read_jsonl
from ragtune.io.qrels import Qrels, read_qrels


@dataclass
class Dataset:
    """corpus columns: id, title, text, source_id, document (the string that is embedded)."""

    kind: str  # "beir" or "passages"
    corpus: pd.DataFrame
    queries: dict[str, str]
    qrels: dict[str, Qrels] = field(default_factory=dict)

    def positives(self, split: str) -> Qrels:
        """Only judgements with score > 0; queries left without any are dropped."""
        return {
            qid: {did: s for did, s in docs.items() if s > 0}
            for qid, docs in self.qrels.get(split, {}).items()
            if any(s > 0 for s in docs.values())
        }


def _text(value, path: Path, row_id: str, column: str) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if not isinstance(value, str):
        raise UserError(f"{path}: '{column}' of id '{row_id}' must be a string, got {type(value).__name__}")
    return value


def _truncate(texts: pd.Series, limit: int, path: Path, column: str) -> pd.Series:
    too_long = texts.str.len() > limit
    if too_long.any():
        warnings.warn(
            f"{path}: {int(too_long.sum())} '{column}' value(s) longer than {limit} characters were "
            "truncated (data.max_text_chars)",
            stacklevel=2,
        )
        texts = texts.where(~too_long, texts.str.slice(0, limit))
    return texts


def _check_ids(ids: list, path: Path) -> None:
    """Ids are strings or integers: a missing or fractional id would silently become 'nan' or '0.0'."""
    bad = [number for number, value in enumerate(ids, start=1) if value is None or isinstance(value, float)]
    if bad:
        raise UserError(
            f"{path}: {len(bad)} passage(s) have a missing or non-integer numeric id (passage number(s) "
            f"{', '.join(map(str, bad[:5]))}); give every passage a string or integer id"
        )


def _check_unique(ids: pd.Series, path: Path) -> None:
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise UserError(
            f"{path}: duplicate id '{duplicated.iloc[0]}' ({len(duplicated)} duplicates); ids must be unique"
        )


def document_text(title: pd.Series, text: pd.Series, title_in_document: bool) -> pd.Series:
    """The string that gets embedded: title + text for BEIR corpora; for passages the text alone (their
    title is the query), or the title where a passage has no text."""
    if title_in_document:
        return (title + " " + text).str.strip()
    return text.where(text != "", title)


def titles_as_queries(corpus: pd.DataFrame) -> tuple[dict[str, str], Qrels]:
    """Titles as the only queries (synthetic.generators: []): one per titled source, its passages the positives."""
    queries, train = {}, {}
    for source, group in corpus[corpus["title"] != ""].groupby("source_id", sort=True):
        qid = f"source:{source}"
        queries[qid] = group["title"].iloc[0]
        train[qid] = {did: 1.0 for did in group["id"]}
    return queries, train


def _corpus_frame(rows: list[dict], path: Path, id_key: str, max_chars: int, title_in_document: bool) -> pd.DataFrame:
    _check_ids([row[id_key] for row in rows], path)
    ids = [str(row[id_key]) for row in rows]
    frame = pd.DataFrame(
        {
            "id": ids,
            "title": [_text(row.get("title"), path, i, "title") for row, i in zip(rows, ids)],
            "text": [_text(row.get("text"), path, i, "text") for row, i in zip(rows, ids)],
            "source_id": [str(row.get("source_id") or "") for row in rows],
        }
    )
    _check_unique(frame["id"], path)
    frame["title"] = _truncate(frame["title"].str.strip(), max_chars, path, "title")
    frame["text"] = _truncate(frame["text"].str.strip(), max_chars, path, "text")
    empty = (frame["title"] == "") & (frame["text"] == "")
    if empty.all():
        raise UserError(f"{path}: the corpus has no passage with a title or text; it needs at least one")
    if empty.any():
        warnings.warn(f"{path}: skipped {int(empty.sum())} empty passage(s) (no title, no text)", stacklevel=2)
        frame = frame[~empty].reset_index(drop=True)
    # Passages of one source (same source_id, else same title) are never each other's negatives.
    frame["source_id"] = frame["source_id"].where(frame["source_id"] != "", frame["title"].str.lower())
    frame["source_id"] = frame["source_id"].where(frame["source_id"] != "", frame["id"])
    frame["document"] = document_text(frame["title"], frame["text"], title_in_document)
    return frame


def load_beir(directory: Path, max_chars: int, zero_label: bool = False) -> Dataset:
    """A BEIR directory; with `zero_label` its corpus.jsonl alone (queries and qrels, if any, are not read)."""
    corpus_path = find(directory, "corpus.jsonl")
    queries_path = find(directory, "queries.jsonl")
    if corpus_path is None:
        raise UserError(f"{directory}: no corpus.jsonl; a BEIR directory holds corpus.jsonl, queries.jsonl, qrels/")
    if queries_path is None and not zero_label:
        raise UserError(
            f"{directory}: no queries.jsonl; a BEIR directory holds corpus.jsonl, queries.jsonl, qrels/ "
            "(to train from the passages alone: `ragtune prepare --zero-label`)"
        )
    corpus_rows = read_jsonl(corpus_path, ("_id",))
    if not corpus_rows:
        raise UserError(f"{corpus_path}: the corpus is empty; it needs at least one passage")
    corpus = _corpus_frame(corpus_rows, corpus_path, "_id", max_chars, True)
    if zero_label:
        return Dataset("passages", corpus, {}, {})
    query_rows = read_jsonl(queries_path, ("_id", "text"))
    query_ids = pd.Series([str(row["_id"]) for row in query_rows])
    _check_unique(query_ids, queries_path)
    queries = {}
    for qid, row in zip(query_ids, query_rows):
        text = _text(row["text"], queries_path, qid, "text").strip()
        if not text:
            raise UserError(f"{queries_path}: query '{qid}' has empty text; fill it in or remove it")
        queries[qid] = text[:max_chars]
    qrels_dir = directory / "qrels"
    splits = sorted(p for p in qrels_dir.glob("*.tsv*") if p.name.split(".")[0] in {"train", "dev", "test"})
    if not splits:
        raise UserError(f"{qrels_dir}: no qrels; add qrels/train.tsv (and test.tsv) with query-id, corpus-id, score")
    corpus_ids, known_queries = set(corpus["id"]), set(queries)
    skipped = frozenset(str(row["_id"]) for row in corpus_rows) - corpus_ids
    qrels = {p.name.split(".")[0]: read_qrels(p, corpus_ids, known_queries, skipped) for p in splits}
    return Dataset("beir", corpus, queries, qrels)


def load_passages(path: Path, max_chars: int) -> Dataset:
    """Passages only: (title -> passage) pairs; all passages of a source are its positives."""
    if path.suffix == ".parquet":
        try:
            table = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise UserError(f"{path}: not a readable parquet file ({exc}); check the file") from None
        if "id" not in table.columns and "_id" in table.columns:
            table = table.rename(columns={"_id": "id"})
        missing = [c for c in ("id", "text") if c not in table.columns]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}; passages need id, text (title optional)")
        rows = table.to_dict("records")
    else:
        rows = read_jsonl(path, ("id", "text"))
    if not rows:
        raise UserError(f"{path}: the corpus is empty; it needs at least one passage")
    corpus = _corpus_frame(rows, path, "id", max_chars, False)
    queries, train = titles_as_queries(corpus)
    return Dataset("passages", corpus, queries, {"train": train})


# Passages file readers by file ending; a BEIR directory is read by load_beir. A new input format is one
# reader (a module of io/ returning a Dataset) and one line here.
READERS = {".parquet": load_passages, ".jsonl": load_passages, ".jsonl.gz": load_passages}


def load_dataset(path: str | Path, max_chars: int = 20000, zero_label: bool = False) -> Dataset:
    """Dispatch on what the path is: a BEIR directory (with `zero_label`, its passages alone) or a passages file."""
    path = Path(path)
    if not str(path) or not path.exists():
        raise UserError(f"{path}: not found; pass a BEIR directory or a passages .parquet/.jsonl file to --data")
    if path.is_dir():
        return load_beir(path, max_chars, zero_label)
    for ending, reader in READERS.items():
        if path.name.endswith(ending):
            return reader(path, max_chars)
    raise UserError(f"{path}: unknown input; expected a BEIR directory or a passages file ({', '.join(READERS)})")


def load_corpus(path: str, max_chars: int) -> pd.DataFrame:
    """The corpus of a BEIR directory, a passages file, or a prepared directory (its corpus.parquet)."""
    if not path:
        raise UserError("no corpus: pass --data (a BEIR directory, a passages file or a prepared directory)")
    prepared = Path(path) / "corpus.parquet"
    if prepared.is_file():
        return pd.read_parquet(prepared)
    return load_dataset(path, max_chars).corpus


def evaluation_qrels(dataset: Dataset, split: str) -> Qrels:
    """The judged queries of a split that count: those with a relevant passage (score > 0)."""
    if split not in dataset.qrels:
        known = ", ".join(sorted(dataset.qrels)) or "none"
        raise UserError(f"split '{split}': no qrels/{split}.tsv in the data (splits found: {known}); pass --split")
    qrels = dataset.positives(split)
    if not qrels:
        raise UserError(f"split '{split}': no query has a relevant document (score > 0); check qrels/{split}.tsv")
    return qrels
