"""The onnx backend: a real export of the bundled model run by onnxruntime, against PyTorch's encode."""

import numpy as np
import pandas as pd
import pytest
import torch

from ragtune.retrieval.embeddings import ENCODE_CHUNK, encode
from ragtune.retrieval.models import load_model
from ragtune.retrieval.onnx_backend import onnx_encoder, weights_digest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts(scifact_slice):
    corpus = pd.read_json(scifact_slice / "corpus.jsonl", lines=True)
    documents = (corpus["title"] + " " + corpus["text"]).tolist()
    return (documents * 3)[: ENCODE_CHUNK + 40]  # past the size where encode switches to onnxruntime


def test_onnx_embeddings_match_pytorch(texts):
    torch_model, onnx_model = load_model("all-MiniLM-L6-v2", "cpu"), load_model("all-MiniLM-L6-v2", "cpu", "onnx")
    onnx_model.max_seq_length = torch_model.max_seq_length = 256
    reference = encode(torch_model, texts, 32, progress=False)
    fast = encode(onnx_model, texts, 32, progress=False)
    assert onnx_encoder(onnx_model) is onnx_encoder(onnx_model)  # one export per weights
    assert np.min(np.sum(reference * fast, axis=1)) >= 0.9999
    np.testing.assert_allclose(fast, reference, atol=1e-5)


def test_changed_weights_get_a_fresh_export(texts):
    """The base weights' export is the previous test's (one export per weights); encodes run at 64 tokens for speed."""
    model = load_model("all-MiniLM-L6-v2", "cpu", "onnx")
    model.max_seq_length = 64
    before, digest = encode(model, texts, 32, progress=False), weights_digest(model)
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # what an optimizer step does: in place
    assert weights_digest(model) != digest
    after = encode(model, texts, 32, progress=False)
    np.testing.assert_allclose(after, encode(load_model_like(model), texts, 32, progress=False), atol=1e-5)
    assert np.abs(after - before).max() > 1e-3


def load_model_like(model):
    """A PyTorch-backend copy of `model`'s current weights."""
    twin = load_model("all-MiniLM-L6-v2", "cpu")
    twin.load_state_dict(model.state_dict())
    twin.max_seq_length = model.max_seq_length
    return twin
