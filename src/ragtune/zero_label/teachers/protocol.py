"""What a teacher is: the methods prepare and evaluate call, and the evidence it may choose its settings on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ragtune.config import SyntheticConfig


@dataclass
class Evidence:
    """The base model, the corpus and the held-out synthetic queries (never trained on), in prepare."""

    encoder: Any
    corpus: pd.DataFrame
    queries: pd.DataFrame  # held-out ict queries: query, passage_id, positive (the sentence cut out)
    corpus_embeddings: np.ndarray
    batch_size: int


class Teacher(Protocol):
    """A teacher scores (query, passage) pairs on the student's cosine scale; summary.json records it so that
    `evaluate --baseline teacher` can rebuild it."""

    @staticmethod
    def check(settings: SyntheticConfig) -> None:
        """Refuse a bad setting in one line before any slow work."""

    @staticmethod
    def choose(settings: SyntheticConfig, evidence: Evidence) -> dict:
        """The record summary.json keeps: everything `from_record` needs, and a readable `name`."""

    @classmethod
    def from_record(
        cls, record: dict, documents: list[str], corpus_embeddings: np.ndarray, device: str, batch_size: int
    ):
        """The teacher over this corpus (base-model embeddings), as prepare chose it."""

    @staticmethod
    def label(record: dict, model_name: str) -> str:
        """The evaluate row's name: what ranks, over which model."""

    def score(self, queries, query_embeddings, passages: list[list[str]], passage_embeddings) -> np.ndarray:
        """(queries, k) scores of k passages per query."""

    def rank_corpus(self, queries: list[str], query_embeddings: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k corpus rows per query: the teacher as a retriever, for the baseline row."""
