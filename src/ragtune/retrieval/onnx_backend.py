"""The model's whole forward (transformer, pooling, normalisation) exported to ONNX and run by onnxruntime.

sentence-transformers' own ONNX backend needs optimum-onnx, whose only release caps transformers
below 4.58 (we pin 5.24), so the export is torch's (`torch.onnx.export`, dynamo) of the very
modules `encode` runs, with ST's own tokenisation in front. Measured parity and speed are in
docs/benchmarks.md; `model.backend: torch` keeps every encode in PyTorch.

An export belongs to the weights it was made from: it is looked up by a hash of the weights'
bytes, so a model that trains on (an epoch of the held-out evaluation) gets a fresh export and
never a stale one. Exports live in memory for the process, not on disk: each is ~90 MB and takes
seconds to make.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

KEEP = 2  # exports held at once: the base model and the model in training
_sessions: dict[str, OnnxEncoder] = {}


def weights_digest(model) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def supported(model) -> bool:
    """Plain CPU encoders only: prompts (which change the text and, in some poolings, the mask) stay in PyTorch."""
    return model.device.type == "cpu" and not any(model.prompts.values())


@contextmanager
def _exporter_quiet() -> Iterator[None]:
    """The exporter's warnings (torchvision ops it skips, its own deprecations) say nothing a user can act on."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class _Forward(torch.nn.Module):
    """model(features)["sentence_embedding"] with the tensor features as positional inputs (what ONNX takes)."""

    def __init__(self, model, names: list[str], constants: dict):
        super().__init__()
        self.model, self.names, self.constants = model, names, constants

    def forward(self, *inputs):
        return self.model({**self.constants, **dict(zip(self.names, inputs))})["sentence_embedding"]


class OnnxEncoder:
    def __init__(self, model):
        import onnxruntime

        sample = model.preprocess(["an example", "a second, longer example"])
        self.names = [name for name, value in sample.items() if isinstance(value, torch.Tensor)]
        constants = {name: value for name, value in sample.items() if name not in self.names}  # e.g. modality
        training = model.training
        dims = tuple({0: torch.export.Dim("batch"), 1: torch.export.Dim("tokens", max=4096)} for _ in self.names)
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), _exporter_quiet():
            path = Path(tmp) / "model.onnx"
            program = torch.onnx.export(
                _Forward(model, self.names, constants).eval(),
                tuple(sample[n] for n in self.names),
                input_names=self.names,
                output_names=["ragtune_sentence_embedding"],
                dynamic_shapes=(dims,),
                dynamo=True,
                verbose=False,
            )
            program.save(str(path))
            model.train(training)  # .eval() above switched off dropout for the export only
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, model, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit-normalised embeddings, batches in the given order (the caller sorts by length).

        Tokenised by the calling `model`, whose max length may differ from the one of the model object
        the export was made from (same weights: a training model set to 128 tokens, say)."""
        out = []
        for start in range(0, len(texts), batch_size):
            features = model.preprocess(texts[start : start + batch_size])
            (embedding,) = self.session.run(None, {n: features[n].numpy() for n in self.names})
            out.append(embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32, copy=False)


def onnx_encoder(model) -> OnnxEncoder | None:
    """The export of the model's current weights (made on first use), or None where it does not apply."""
    if not supported(model) or (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return None  # under DDP the ranks share encodes through sentence-transformers instead
    key = weights_digest(model)
    if key not in _sessions:
        while len(_sessions) >= KEEP:
            _sessions.pop(next(iter(_sessions)))
        _sessions[key] = OnnxEncoder(model)
    return _sessions[key]
