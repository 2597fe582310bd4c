"""The per-epoch evaluator with the bundled model on a three-passage corpus."""

import numpy as np
import pandas as pd
import pytest

from ragtune.io.prepared import Prepared
from ragtune.retrieval.embeddings import encode
from ragtune.retrieval.models import load_model
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


def test_under_mixed_precision_epochs_are_measured_in_bf16_and_the_base_and_last_in_fp32(model):
    """The Trainer's accelerate wraps the model's forward in bf16 autocast; the evaluator unwraps it
    for the base model (step 0) and the run's last step, whose numbers are reported."""
    from accelerate import Accelerator

    fp32 = evaluator_for(CUT)(model, steps=1)
    wrapped = load_model("all-MiniLM-L6-v2", "cpu")
    Accelerator(mixed_precision="bf16", cpu=True).prepare_model(wrapped)
    assert "_original_forward" in wrapped.__dict__
    judge = evaluator_for(CUT)
    judge.final_step = 10
    similarity = {steps: judge(wrapped, steps=steps)["positive_pair_similarity"] for steps in (0, 5, 10)}
    assert similarity[0] == pytest.approx(fp32["positive_pair_similarity"], abs=1e-6)
    assert similarity[10] == pytest.approx(fp32["positive_pair_similarity"], abs=1e-6)
    assert abs(similarity[5] - fp32["positive_pair_similarity"]) > 1e-5  # bf16
    assert judge.measured_in_fp32  # the last call: step 10
