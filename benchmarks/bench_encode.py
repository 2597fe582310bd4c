"""Corpus encoding, PyTorch against the onnx backend (`model.backend`), on the same passages in one run.

Parity first: the lowest cosine between the two embeddings of a passage. Then passages per second
of each, and the export's own seconds (paid once per weights per process). Run on a quiet machine:

    python benchmarks/bench_encode.py [--data data/scifact] [--passages 1536] [--max-seq-length 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import report_result

from ragtune.io.data import load_dataset
from ragtune.retrieval.embeddings import encode
from ragtune.retrieval.models import load_model
from ragtune.retrieval.onnx_backend import onnx_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--passages", type=int, default=1536)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    options = parser.parse_args()
    documents = load_dataset(options.data).corpus["document"].tolist()[: options.passages]
    models = {backend: load_model("all-MiniLM-L6-v2", "cpu", backend) for backend in ("torch", "onnx")}
    for model in models.values():
        model.max_seq_length = options.max_seq_length
    started = time.perf_counter()
    onnx_encoder(models["onnx"])
    export_seconds = time.perf_counter() - started
    embeddings, rates = {}, {}
    for backend, model in models.items():
        started = time.perf_counter()
        embeddings[backend] = encode(model, documents, options.batch_size, progress=False)
        rates[backend] = len(documents) / (time.perf_counter() - started)
    lowest = float(np.min(np.sum(embeddings["torch"] * embeddings["onnx"], axis=1)))
    print("| backend | passages/s |\n|---|---|")
    for backend, rate in rates.items():
        print(f"| {backend} | {rate:.1f} |")
    print(
        f"\nspeed ratio onnx / torch: {rates['onnx'] / rates['torch']:.2f}; export {export_seconds:.1f} s; "
        f"lowest cosine {lowest:.8f}; {len(documents)} passages at {options.max_seq_length} tokens"
    )
    report_result(
        torch_per_s=rates["torch"],
        onnx_per_s=rates["onnx"],
        ratio=rates["onnx"] / rates["torch"],
        export_seconds=export_seconds,
        lowest_cosine=lowest,
    )


if __name__ == "__main__":
    main()
