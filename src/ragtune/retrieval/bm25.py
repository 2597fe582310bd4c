"""The one BM25 of ragtune: evaluation rows, the zero-label teacher, the fusion weight and the served keywords.

Okapi BM25 as bm25s and Lucene compute it (bm25s tokens with English stopwords, idf
log(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b len / avglen)), k1 1.2, b 0.75; a
test checks it against bm25s), kept as one sparse matrix so that it can also score a text that is
not in the index (the teacher's positives with their sentence cut out), and saved beside a served
view as plain arrays (no pickle) so that what is served is what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np
import scipy.sparse as sp

from ragtune.errors import UserError

FILES = ("bm25.npz", "bm25_vocab.json")


def tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


class Bm25:
    def __init__(self, documents: list[str] | None, k1: float = 1.2, b: float = 0.75):
        """An index of `documents` (None: filled in by `load`)."""
        self.k1, self.b = k1, b
        if documents is None:
            return
        tokens = bm25s.tokenize(documents, stopwords="en", show_progress=False)
        self.vocab: dict[str, int] = tokens.vocab
        lengths = np.array([len(ids) for ids in tokens.ids], dtype=np.float64)
        rows = np.repeat(np.arange(len(documents)), lengths.astype(np.int64))
        cols = np.fromiter((i for ids in tokens.ids for i in ids), dtype=np.int64, count=int(lengths.sum()))
        tf = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(documents), len(self.vocab)))
        tf.sum_duplicates()
        self.avg_length = max(lengths.mean(), 1e-9) if len(lengths) else 1e-9
        df = np.bincount(tf.indices, minlength=len(self.vocab))
        self.idf = np.log(1 + (len(documents) - df + 0.5) / (df + 0.5))
        norm = self.k1 * (1 - self.b + self.b * lengths / self.avg_length)
        weights = tf.copy()
        weights.data = self.idf[tf.indices] * tf.data / (tf.data + np.repeat(norm, np.diff(tf.indptr)))
        self.weights = weights.tocsc()

    @property
    def size(self) -> int:
        return self.weights.shape[0]

    def query_terms(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary ids of the query's tokens and how often each occurs (repeats count, as in bm25s)."""
        ids = [self.vocab[t] for t in tokenize([query])[0] if t in self.vocab]
        unique, counts = np.unique(np.array(ids, dtype=np.int64), return_counts=True)
        return unique, counts.astype(np.float64)

    def corpus_scores(self, query: str) -> np.ndarray:
        """The query's score for every indexed document, in index order."""
        ids, counts = self.query_terms(query)
        if len(ids) == 0:
            return np.zeros(self.size)
        return np.asarray(self.weights[:, ids] @ counts).ravel()

    def text_scores(self, query: str, texts: list[str]) -> np.ndarray:
        """Scores of any texts, with idf and average length from the indexed corpus."""
        ids, counts = self.query_terms(query)
        scores = np.zeros(len(texts))
        if len(ids) == 0:
            return scores
        wanted = dict(zip(ids.tolist(), counts.tolist()))
        for i, tokens in enumerate(tokenize(texts)):
            norm = self.k1 * (1 - self.b + self.b * len(tokens) / self.avg_length)
            tf: dict[int, int] = {}
            for token in tokens:
                term = self.vocab.get(token)
                if term in wanted:
                    tf[term] = tf.get(term, 0) + 1
            scores[i] = sum(wanted[t] * self.idf[t] * n / (n + norm) for t, n in tf.items())
        return scores

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The k best rows with a score above 0, best first (ties by row)."""
        scores = self.corpus_scores(query)
        rows = np.flatnonzero(scores > 0)
        order = rows[np.lexsort((rows, -scores[rows]))][:k]
        return [(int(r), float(scores[r])) for r in order]

    def save(self, directory: Path) -> None:
        """Plain arrays and JSON: loading them runs no code (no pickle)."""
        w = self.weights
        np.savez(
            Path(directory) / FILES[0],
            data=w.data,
            indices=w.indices,
            indptr=w.indptr,
            shape=np.array(w.shape),
            idf=self.idf,
            params=np.array([self.k1, self.b, self.avg_length]),
        )
        (Path(directory) / FILES[1]).write_text(json.dumps(self.vocab), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Bm25:
        directory = Path(directory)
        try:
            with np.load(directory / FILES[0], allow_pickle=False) as arrays:
                k1, b, avg_length = arrays["params"].tolist()
                index = cls(None, k1, b)
                index.weights = sp.csc_matrix(
                    (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
                )
                index.idf = arrays["idf"]
            index.avg_length = avg_length
            index.vocab = json.loads((directory / FILES[1]).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(
                f"{directory}: the BM25 index is missing or damaged ({exc}); run `ragtune index` again"
            ) from None
        return index
