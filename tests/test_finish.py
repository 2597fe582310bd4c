"""The end of a run's fp32 gate, with the bundled model on a three-passage held-out set."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from ragtune import config as cfg
from ragtune.io.prepared import Prepared
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.models import load_model, resolve_model
from ragtune.train.finish import gate_in_fp32
from ragtune.train.heldout import HeldOutEvaluator

DOCUMENTS = [
    "Vitamin D lowers fracture risk in older adults.",
    "Measles vaccination of children lowers mortality in low-income countries.",
    "The kinase mTOR controls cell growth and insulin signalling in the liver.",
]
QUERIES = ["does vitamin d prevent fractures", "measles vaccine child deaths", "mTOR and insulin in the liver"]


def evaluator() -> HeldOutEvaluator:
    ids = ["d0", "d1", "d2"]
    corpus = pd.DataFrame({"id": ids, "document": DOCUMENTS, "source_id": ids})
    held_out = pd.DataFrame(
        {"anchor_id": ["q0", "q1", "q2"], "anchor": QUERIES, "positive_id": ids, "positive": DOCUMENTS, "score": 1.0}
    )
    return HeldOutEvaluator(Prepared(held_out.iloc[:0], held_out, corpus), 8, 256, ("none", None))


def gate(tuned_model, keep_worse: bool):
    """Run the gate on a record whose epoch 1 looked best while training (the number bf16 reported)."""
    judge = evaluator()
    base = judge.measure(load_model("all-MiniLM-L6-v2", "cpu"), steps=0)
    epoch = {"step": 5, "epoch": 1, **base, "ndcg@10": 1.0}  # what training saw: a win
    metrics = RunMetrics(
        base=base, tuned=epoch, best_step=5, best_tuned=epoch, history=[{"step": 0, "epoch": 0, **base}, epoch]
    )
    config = cfg.load(None, {"model.device": "cpu", "train.keep_worse": keep_worse})
    plan = SimpleNamespace(config=config, base_path=resolve_model("all-MiniLM-L6-v2"))
    said: list[str] = []
    callback = SimpleNamespace(say=said.append, best_embeddings=None)
    gate_in_fp32(tuned_model, plan, judge, metrics, callback)
    return metrics, callback, said


def damaged_model():
    """The bundled model with noise in every weight: in fp32 it ranks worse than the base."""
    model = load_model("all-MiniLM-L6-v2", "cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def test_an_epoch_that_does_not_beat_the_base_in_fp32_is_not_shipped():
    model = damaged_model()
    metrics, callback, said = gate(model, keep_worse=False)
    assert metrics.shipped == "base" and metrics.best_step == 0
    assert metrics.tuned == metrics.history[0]  # the base's fp32 numbers
    assert metrics.best_tuned["ndcg@10"] < metrics.base["ndcg@10"]  # the epoch, now measured in fp32
    base = load_model("all-MiniLM-L6-v2", "cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    assert callback.best_embeddings.shape == (3, 384)
    assert len(said) == 1 and "in fp32 epoch 1 scores" in said[0] and "the base ships" in said[0]


def test_keep_worse_ships_the_epoch_with_its_fp32_numbers():
    model = damaged_model()
    metrics, callback, said = gate(model, keep_worse=True)
    assert metrics.shipped == "tuned" and metrics.best_step == 5 and not said
    assert metrics.tuned["ndcg@10"] < metrics.base["ndcg@10"] and metrics.tuned["step"] == 5
    fresh = evaluator()
    assert np.allclose(callback.best_embeddings, fresh.measure(model, steps=5) and fresh.corpus_embeddings, atol=1e-6)
