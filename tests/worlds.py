"""Small made-up corpora and vectors the retrieval tests share: their answers are known by construction."""

from __future__ import annotations

import random

import numpy as np

DOCUMENTS = [
    "Insulin resistance rises in obese mice fed a high fat diet.",
    "Tumour suppressor p53 mutations are common in human cancers; p53 loss drives growth.",
    "Vaccination of children against measles lowers mortality.",
    "The kinase mTOR controls cell growth and insulin signalling in the liver.",
    "",
]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def lexical_world(n: int, seed: int) -> tuple[list[str], list[str]]:
    """n passages of distinct made-up words; query i uses three words of passage i."""
    rng = random.Random(seed)
    vocab = [f"w{i}x" for i in range(n * 8)]
    rng.shuffle(vocab)
    documents = [" ".join(vocab[i * 8 : (i + 1) * 8]) for i in range(n)]
    queries = [" ".join(rng.sample(documents[i].split(), 3)) for i in range(n)]
    return queries, documents
