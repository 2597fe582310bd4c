"""Feast serving against in-memory numbers: index throughput, search latency, recall@10, offline read.

- index: `ragtune index` end to end from an empty embedding cache (encode, offline parquet, online
  writes, apply and switch-over) against encoding the same passages alone;
- search: `retrieve_online_documents_v2` through Milvus Lite (FLAT, cosine) per query against numpy
  brute force over the same vectors, both given the already-encoded query;
- recall@10: share of the exact top 10 that the online store returns;
- offline read: `get_historical_features` of every passage (point-in-time join, duckdb).

    python benchmarks/bench_feast.py [--data data/scifact] [--passages N] [--queries 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report_result

from ragtune.config import ModelConfig
from ragtune.io.data import load_dataset
from ragtune.prepare.run import input_timestamp
from ragtune.retrieval.embeddings import encode, encode_corpus_cached
from ragtune.retrieval.models import load_model, model_fingerprint, resolve_model
from ragtune.serving.index import index
from ragtune.serving.offline import historical_corpus
from ragtune.serving.repo import init_repo
from ragtune.serving.retriever import Retriever

MODEL = "all-MiniLM-L6-v2"


def percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
    return float(p50), float(p95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scifact")
    parser.add_argument("--passages", type=int, default=0, help="first N passages only (0: all)")
    parser.add_argument("--queries", type=int, default=300)
    options = parser.parse_args()

    dataset = load_dataset(options.data)
    corpus = dataset.corpus.iloc[: options.passages or None].reset_index(drop=True)
    documents = corpus["document"].tolist()
    work = Path(tempfile.mkdtemp(prefix="bench_feast_"))
    model = load_model(MODEL, "cpu")
    rows = []

    started = time.perf_counter()
    encode(model, documents, 64)
    raw_s = time.perf_counter() - started
    rows.append(("raw encoding (no store)", f"{len(corpus) / raw_s:.1f} passages/s ({raw_s:.0f} s)"))

    repo = init_repo(work / "repo", model.get_embedding_dimension(), "data/online_store.db")
    model_config = ModelConfig(name=MODEL, device="cpu", cache_dir=str(work / "cache"))
    result = index(repo, corpus, model_config, input_timestamp(Path(options.data)))
    store_s = result.seconds - result.encode_seconds
    rows.append(
        ("ragtune index, end to end", f"{len(corpus) / result.seconds:.1f} passages/s ({result.seconds:.0f} s)")
    )
    rows.append(
        ("  of which encoding", f"{len(corpus) / result.encode_seconds:.1f} passages/s ({result.encode_seconds:.0f} s)")
    )
    rows.append(("  of which Feast (parquet, online writes, flush, apply x2)", f"{store_s:.1f} s"))

    corpus_emb = encode_corpus_cached(model, model_fingerprint(resolve_model(MODEL)), documents, 64, work / "cache")
    query_ids = sorted(dataset.queries)[: options.queries]
    query_emb = encode(model, [dataset.queries[q] for q in query_ids], 64, "query")
    retriever = Retriever(repo, device="cpu")
    ids = corpus["id"].to_numpy()
    for vector in query_emb[:5]:  # warm-up: first searches load the collection
        retriever.search_vector(vector, 10)

    served, brute, recalls = [], [], []
    for vector in query_emb:
        started = time.perf_counter()
        hits = retriever.search_vector(vector, 10)
        served.append(time.perf_counter() - started)
        started = time.perf_counter()
        scores = corpus_emb @ vector
        best = np.argpartition(-scores, 10)[:10]
        exact = ids[best[np.argsort(-scores[best])]]
        brute.append(time.perf_counter() - started)
        recalls.append(len({h.id for h in hits} & set(exact)) / 10)
    (served_p50, served_p95), (brute_p50, brute_p95) = percentiles(served), percentiles(brute)
    rows.append(
        (
            f"search top-10 via Feast + Milvus Lite ({len(query_emb)} queries)",
            f"p50 {served_p50:.1f} ms, p95 {served_p95:.1f} ms",
        )
    )
    rows.append(("search top-10, numpy brute force", f"p50 {brute_p50:.2f} ms, p95 {brute_p95:.2f} ms"))
    rows.append(("recall@10 of Feast against exact search", f"{np.mean(recalls):.4f}"))

    started = time.perf_counter()
    historical, _, _ = historical_corpus(repo)
    historical_s = time.perf_counter() - started
    rows.append((f"get_historical_features, {len(historical)} passages (duckdb)", f"{historical_s:.2f} s"))

    print(f"\n{len(corpus)} passages, model {MODEL}, repo {repo}\n")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    report_result(
        passages=len(corpus),
        raw_encode_per_s=len(corpus) / raw_s,
        index_per_s=len(corpus) / result.seconds,
        index_store_s=store_s,
        search_p50_ms=served_p50,
        search_p95_ms=served_p95,
        brute_p50_ms=brute_p50,
        brute_p95_ms=brute_p95,
        recall_at_10=float(np.mean(recalls)),
        historical_s=historical_s,
    )


if __name__ == "__main__":
    main()
