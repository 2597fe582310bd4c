"""The one BM25: bm25s' numbers, for indexed and outside texts, saved and loaded without pickle."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest
from worlds import DOCUMENTS

from ragtune.errors import UserError
from ragtune.retrieval.bm25 import FILES, Bm25

QUERIES = ["insulin growth liver", "p53 p53 cancer", "measles vaccine children"]


def reference_index() -> bm25s.BM25:
    reference = bm25s.BM25(k1=1.2, b=0.75)
    reference.index(bm25s.tokenize(DOCUMENTS, stopwords="en", show_progress=False), show_progress=False)
    return reference


def test_bm25_matches_bm25s_in_corpus_and_for_outside_texts():
    ours, reference = Bm25(DOCUMENTS), reference_index()
    for query in QUERIES:
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        expected = reference.get_scores(tokens)
        np.testing.assert_allclose(ours.corpus_scores(query), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.text_scores(query, DOCUMENTS), expected, rtol=1e-5, atol=1e-6)
    assert not ours.corpus_scores("the of and").any()  # only stopwords: no evidence, no crash
    shorter = ours.text_scores("insulin", ["insulin"])[0]
    assert shorter > ours.corpus_scores("insulin")[0] > 0  # a short text with the term scores higher


def test_top_is_bm25s_retrieval_without_the_zero_scores():
    ours, reference = Bm25(DOCUMENTS), reference_index()
    for query in QUERIES:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        rows, scores = reference.retrieve(tokens, k=len(DOCUMENTS), show_progress=False, n_threads=1)
        expected = [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if s > 0]
        got = ours.top(query, len(DOCUMENTS))
        assert [r for r, _ in got] == [r for r, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)
    assert ours.top("insulin", 1) == ours.top("insulin", 5)[:1]
    assert ours.top("the", 5) == []


def test_a_saved_index_scores_the_same_and_a_damaged_one_is_one_line(tmp_path):
    ours = Bm25(DOCUMENTS)
    ours.save(tmp_path)
    loaded = Bm25.load(tmp_path)
    for query in QUERIES:
        np.testing.assert_array_equal(loaded.corpus_scores(query), ours.corpus_scores(query))
        np.testing.assert_array_equal(loaded.text_scores(query, DOCUMENTS[:2]), ours.text_scores(query, DOCUMENTS[:2]))
    (tmp_path / FILES[0]).write_bytes(b"not a numpy archive")
    with pytest.raises(UserError, match="BM25 index is missing or damaged.*ragtune index"):
        Bm25.load(tmp_path)
    with pytest.raises(UserError, match="missing or damaged"):
        Bm25.load(tmp_path / "nowhere")
