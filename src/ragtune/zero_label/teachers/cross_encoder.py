"""`cross-encoder`: a local cross-encoder the user brings reads query and passage together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ragtune.config import SyntheticConfig
from ragtune.errors import UserError
from ragtune.retrieval.fusion import QUERY_CHUNK
from ragtune.zero_label.teachers.protocol import Evidence

RERANK_DEPTH = 100  # the cross-encoder teacher as a retriever reranks this many of the base model's hits


def architectures_of(path: str) -> list[str]:
    """The architectures a cross-encoder directory's config.json names, or one line saying why it is not one."""
    where = f"synthetic.cross_encoder {path}"
    config = Path(path) / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{where}: no readable config.json; pass a local cross-encoder directory") from None
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise UserError(
            f"{where}: config.json names {architectures or 'no architecture'}, not a sequence classifier; "
            "pass a cross-encoder (e.g. one saved with sentence_transformers.CrossEncoder.save_pretrained)"
        )
    return architectures


class CrossEncoderTeacher:
    """A local cross-encoder reads query and passage together: the stronger teacher when the user has one.

    Scores are its sigmoid, in [0, 1] like the student's cosine of related texts, so their differences
    serve as MarginMSE labels. As a retriever (the baseline row) it reranks the base model's top 100.
    """

    @staticmethod
    def check(settings: SyntheticConfig) -> None:
        """A local cross-encoder directory, named before any slow work (its weights load after the mining)."""
        if not settings.cross_encoder:
            raise UserError("synthetic.cross_encoder: set a local cross-encoder directory for teacher cross-encoder")
        architectures_of(settings.cross_encoder)

    @staticmethod
    def choose(settings: SyntheticConfig, evidence: Evidence) -> dict:
        return {"name": f"cross-encoder {settings.cross_encoder}", "cross_encoder": settings.cross_encoder}

    @classmethod
    def from_record(cls, record: dict, documents, corpus_embeddings, device: str, batch_size: int):
        return cls(cls.load_model(str(record["cross_encoder"]), device), documents, corpus_embeddings, batch_size)

    @staticmethod
    def label(record: dict, model_name: str) -> str:
        return f"teacher: cross-encoder reranking {model_name}'s top {RERANK_DEPTH}"

    def __init__(self, model, documents: list[str], corpus_embeddings: np.ndarray, batch_size: int = 64):
        self.model, self.documents, self.corpus_embeddings = model, documents, corpus_embeddings
        self.batch_size = batch_size

    @staticmethod
    def load_model(path: str, device: str):
        """The CrossEncoder at `path`, or one line saying why that directory is not one."""
        import torch
        from sentence_transformers import CrossEncoder

        from ragtune.retrieval.models import pick_device

        architectures_of(path)
        where = f"synthetic.cross_encoder {path}"
        try:
            model = CrossEncoder(
                path, device=pick_device(device), local_files_only=True, activation_fn=torch.nn.Sigmoid()
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"{where}: cannot load it as a cross-encoder ({exc})") from None
        if model.num_labels != 1:
            raise UserError(f"{where}: {model.num_labels} output labels; a relevance cross-encoder has one")
        return model

    def score(self, queries: list[str], query_embeddings, passages: list[list[str]], passage_embeddings) -> np.ndarray:
        """(queries, k) scores of k passages per query; empty passages (padding) are not scored."""
        pairs = [(q, p) for q, row in zip(queries, passages) for p in row if p]
        flat = iter(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False) if pairs else [])
        return np.array([[float(next(flat)) if p else np.nan for p in row] for row in passages], dtype=np.float64)

    def rank_corpus(self, queries: list[str], query_embeddings: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """The base model's top RERANK_DEPTH per query, reordered by the cross-encoder; its top k."""
        ranked = []
        for start in range(0, len(queries), QUERY_CHUNK):
            cosines = query_embeddings[start : start + QUERY_CHUNK] @ self.corpus_embeddings.T
            tops = np.argsort(-cosines, axis=1, kind="stable")[:, :RERANK_DEPTH]
            chunk = queries[start : start + QUERY_CHUNK]
            scores = self.score(chunk, None, [[self.documents[r] for r in top] for top in tops], None)
            for top, row in zip(tops, scores):
                order = np.argsort(-row, kind="stable")[:k]
                ranked.append([(int(top[i]), float(row[i])) for i in order])
        return ranked
