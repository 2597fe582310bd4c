"""Encode texts in chunks, cache corpus embeddings on disk, and search top-k without an N x N matrix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ragtune import console
from ragtune.io.outputs import atomic_path, default_cache_dir

ENCODE_CHUNK = 512  # passages per encode call: bounds memory and gives the progress bar a pulse


def texts_hash(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def encode(
    model, texts: list[str], batch_size: int, kind: str = "document", desc: str = "encode", progress: bool = True
) -> np.ndarray:
    """Unit-normalised float32 embeddings, encoded chunk by chunk into one preallocated array.

    Texts go longest first across the whole list (not only within a chunk), so batches carry
    little padding; rows come back in the input order.
    """
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    encode_fn = model.encode_document if kind == "document" else model.encode_query
    fast = None
    if getattr(model, "ragtune_backend", "torch") == "onnx" and len(texts) >= ENCODE_CHUNK:
        from ragtune.retrieval.onnx_backend import onnx_encoder

        fast = onnx_encoder(model)  # small encodes stay in PyTorch: an export costs seconds
    order = np.argsort([-len(text) for text in texts], kind="stable")
    hidden = len(texts) < ENCODE_CHUNK or not progress or not console.bars()
    with console.progress(len(texts), desc, "text", hidden=hidden) as bar:
        for start in range(0, len(texts), ENCODE_CHUNK):
            rows = order[start : start + ENCODE_CHUNK]
            chunk = [texts[i] for i in rows]
            out[rows] = (
                fast.encode(model, chunk, batch_size)
                if fast
                else encode_fn(
                    chunk,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            )
            bar.update(len(rows))
    return out


def corpus_cache_path(model_key: str, max_seq_length: int, texts: list[str], cache_dir: Path | None) -> Path:
    """Keyed by model weights, max length and corpus content."""
    return (cache_dir or default_cache_dir()) / "embeddings" / f"{model_key}-{max_seq_length}-{texts_hash(texts)}.npy"


def store_corpus_embeddings(
    embeddings: np.ndarray, model_key: str, max_seq_length: int, texts: list[str], cache_dir: Path | None
) -> None:
    path = corpus_cache_path(model_key, max_seq_length, texts, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with tmp.open("wb") as handle:
            np.save(handle, embeddings, allow_pickle=False)


def encode_corpus_cached(
    model, model_key: str, texts: list[str], batch_size: int, cache_dir: Path | None = None, progress: bool = True
) -> np.ndarray:
    """Corpus embeddings from the cache, or encoded once and cached: a re-run never re-encodes."""
    path = corpus_cache_path(model_key, model.max_seq_length, texts, cache_dir)
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(texts):
            return cached
    embeddings = encode(model, texts, batch_size, "document", "encode corpus", progress)
    store_corpus_embeddings(embeddings, model_key, model.max_seq_length, texts, cache_dir)
    return embeddings


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, query_chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Cosine top-k (inputs are unit vectors), best first; memory is query_chunk x corpus at most."""
    k = min(k, corpus.shape[0])
    corpus_t = torch.from_numpy(corpus)
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], query_chunk):
        block = torch.from_numpy(queries[start : start + query_chunk]) @ corpus_t.T
        values, idx = torch.topk(block, k, dim=1, largest=True, sorted=True)
        scores[start : start + len(values)] = values.numpy()
        indices[start : start + len(values)] = idx.numpy()
    return scores, indices
