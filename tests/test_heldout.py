"""The per-epoch evaluator with the bundled model on a three-passage corpus."""

import numpy as np
import pandas as pd

from ragtune.io.prepared import Prepared
from ragtune.retrieval.embeddings import encode
from ragtune.train.heldout import HeldOutEvaluator

DOCUMENTS = [
    "Vitamin D lowers fracture risk. The trial ran for two years in twelve hospitals.",
    "Measles vaccination of children lowers mortality in low-income countries.",
    "The kinase mTOR controls cell growth and insulin signalling in the liver.",
]
QUERY = "Vitamin D lowers fracture risk."
CUT = "The trial ran for two years in twelve hospitals."  # the passage with the query sentence cut out


def evaluator_for(positive: str) -> HeldOutEvaluator:
    corpus = pd.DataFrame({"id": ["d0", "d1", "d2"], "document": DOCUMENTS, "source_id": ["d0", "d1", "d2"]})
    held_out = pd.DataFrame(
        {"anchor_id": ["heldout:d0"], "anchor": [QUERY], "positive_id": ["d0"], "positive": [positive], "score": [1.0]}
    )
    return HeldOutEvaluator(Prepared(held_out.iloc[:0], held_out, corpus), 8, 256, ("none", None))


def test_synthetic_held_out_queries_are_judged_against_the_cut_passage(model):
    texts = [(QUERY, "query"), (DOCUMENTS[0], "document"), (CUT, "document")]
    query, full, cut = (encode(model, [text], 8, kind, progress=False)[0] for text, kind in texts)
    judged_cut = evaluator_for(CUT)
    metrics = judged_cut(model, steps=1)
    assert judged_cut.replaced == {0: CUT}
    assert np.isclose(metrics["positive_pair_similarity"], query @ cut, atol=1e-5)
    assert np.allclose(judged_cut.corpus_embeddings[0], full, atol=1e-5)  # kept for re-mining: the real passage
    judged_full = evaluator_for(DOCUMENTS[0])
    metrics = judged_full(model, steps=1)
    assert judged_full.replaced == {} and np.isclose(metrics["positive_pair_similarity"], query @ full, atol=1e-5)
