"""The keyword (BM25) side of served hybrid search: ragtune's own BM25 beside the view, or Milvus Lite's BM25?

For each corpus size, each method builds, saves and serves its index in a fresh process of its own
(peak RSS is that process's, its children included; Milvus Lite 3 runs its server in-process as threads):
- ragtune: `retrieval.bm25.Bm25` (bm25s tokens, English stopwords), saved and reopened through
  `serving.keywords.Keywords`, scored with `Bm25.top`, as served search does;
- milvus: a Milvus Lite collection with a BM25 function over an analyzed VARCHAR field and a
  SPARSE_INVERTED_INDEX (k1 1.2, b 0.75 like ragtune), default analyzer (no stopwords);
- milvus, matched: the same with a stop filter of bm25s's English stopwords and one-character tokens,
  the closest the Milvus Lite standard analyzer gets to bm25s's tokens.
Build time (index plus save/flush), reopen time, p50/p95 latency of one query at a time (top 100),
peak RSS, disk, and agreement of each Milvus variant with ragtune over the top 100 (mean overlap of
the id sets, share of queries with the same 10 ids, median Milvus/ragtune score ratio on shared ids).
Quality is nDCG@10: SciFact's test qrels at the SciFact size; at synthetic sizes (bench_scale's Zipf
corpus, 10-word sentences) the passage each query sentence was taken from.

    python benchmarks/bench_keywords.py [--sizes 5000 100000] [--queries 300] [--words 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 100
COLLECTION = "passages"
METHODS = ("ragtune", "milvus", "milvus_matched")
SCIFACT = "../shared/data/scifact"


def rss_mib(field: str) -> float:
    """VmHWM (peak) or VmRSS of this process, threads included. Not ru_maxrss: Linux carries the
    forking parent's RSS over exec into it, so every worker would report at least the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/self/status")


def children_peak_mib() -> float:
    """Peak RSS of child processes still alive (Milvus Lite 3 has none: its server is threads)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        status = Path(f"/proc/{child.pid}/status").read_text()
        total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")) / 1024
    return total


def disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1024**2


def timed_queries(search, query_ids: list[str], texts: list[str]) -> tuple[dict, list[float]]:
    """One query at a time, as a served request; the first call warms up and is not timed."""
    search(texts[0])
    rankings, latencies = {}, []
    for qid, text in zip(query_ids, texts):
        started = time.perf_counter()
        rankings[qid] = search(text)
        latencies.append(1000 * (time.perf_counter() - started))
    return rankings, latencies


def worker_ragtune(inputs: dict, work: Path) -> dict:
    """Build, save, drop, reopen from disk (as `ragtune serve` does), then query."""
    from ragtune.retrieval.bm25 import Bm25
    from ragtune.serving.keywords import Keywords

    started = time.perf_counter()
    directory = work / "keywords"
    directory.mkdir()
    Keywords(Bm25(inputs["texts"]), inputs["ids"]).save(directory)
    build = time.perf_counter() - started
    started = time.perf_counter()
    keywords = Keywords.load(directory)
    reopen = time.perf_counter() - started

    def search(text: str) -> list:
        return [[keywords.ids[row], score] for row, score in keywords.bm25.top(text, K)]

    rankings, latencies = timed_queries(search, inputs["query_ids"], inputs["query_texts"])
    return {
        "build_s": build,
        "reopen_s": reopen,
        "latencies": latencies,
        "rankings": rankings,
        "disk_mib": disk_mib(directory),
        "segments": 1,
    }


def milvus_schema(stop_words: list[str] | None):
    """id, analyzed text and the sparse field the BM25 function fills from it."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    analyzer = {"tokenizer": "standard"}
    if stop_words:
        # Milvus Lite 3 does not expand "_english_": the words themselves must be listed
        analyzer["filter"] = [{"type": "stop", "stop_words": stop_words}]
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params=analyzer)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]
        )
    )
    return schema


def worker_milvus(inputs: dict, work: Path, matched: bool) -> dict:
    """Insert in batches, flush (else every search re-indexes the growing memtable), index, load, query."""
    from pymilvus import MilvusClient

    path = work / "milvus.db"
    started = time.perf_counter()
    client = MilvusClient(str(path))
    client.create_collection(COLLECTION, schema=milvus_schema(inputs["stop_words"] if matched else None))
    ids, texts = inputs["ids"], inputs["texts"]
    for i in range(0, len(ids), 1000):
        client.insert(COLLECTION, [{"id": d, "text": t} for d, t in zip(ids[i : i + 1000], texts[i : i + 1000])])
    client.flush(COLLECTION)
    index = client.prepare_index_params()
    # nested "params": pymilvus flattens a plain params dict into keys Milvus Lite ignores (k1 stays 1.5)
    tuning = {"bm25_k1": 1.2, "bm25_b": 0.75}
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"params": tuning})
    client.create_index(COLLECTION, index)
    client.load_collection(COLLECTION)
    build = time.perf_counter() - started
    if client.describe_index(COLLECTION, "sparse").get("params") != tuning:
        raise SystemExit(f"Milvus Lite did not take k1/b: {client.describe_index(COLLECTION, 'sparse')}")
    started = time.perf_counter()
    client.release_collection(COLLECTION)
    client.load_collection(COLLECTION)
    reopen = time.perf_counter() - started

    def search(text: str) -> list:
        hits = client.search(COLLECTION, data=[text], anns_field="sparse", limit=K, output_fields=["id"])[0]
        return [[hit["id"], -hit["distance"]] for hit in hits]  # Milvus Lite's distance is -score

    rankings, latencies = timed_queries(search, inputs["query_ids"], inputs["query_texts"])
    segments = len(list(path.rglob("data_*.parquet")))
    client.close()
    return {
        "build_s": build,
        "reopen_s": reopen,
        "latencies": latencies,
        "rankings": rankings,
        "disk_mib": disk_mib(path),
        "segments": segments,
    }


def run_worker(method: str, work: Path) -> None:
    if method == "ragtune":
        import ragtune.serving.keywords  # noqa: F401
    else:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    base = rss_mib("VmRSS")
    inputs = json.loads((work / "inputs.json").read_text(encoding="utf-8"))
    if method == "ragtune":
        result = worker_ragtune(inputs, work)
    else:
        result = worker_milvus(inputs, work, matched=method == "milvus_matched")
    result |= {"base_rss_mib": base, "peak_rss_mib": rss_mib("VmHWM") + children_peak_mib()}
    (work / "result.json").write_text(json.dumps(result), encoding="utf-8")


def run_method(method: str, inputs: Path, work: Path) -> dict:
    """The method in a fresh interpreter that imports only what it needs."""
    work.mkdir(parents=True)
    shutil.copy(inputs, work / "inputs.json")
    command = [sys.executable, __file__, "--worker", method, "--work", str(work)]
    subprocess.run(command, check=True)
    return json.loads((work / "result.json").read_text(encoding="utf-8"))


def scifact_inputs(path: str) -> tuple[dict, dict]:
    """SciFact passages (title + text) and its judged test queries."""
    from ragtune.io.data import load_dataset

    dataset = load_dataset(path)
    qrels = {q: {d: s for d, s in docs.items() if s > 0} for q, docs in dataset.qrels["test"].items()}
    qrels = {q: docs for q, docs in qrels.items() if docs}
    query_ids = sorted(qrels)
    inputs = {
        "ids": dataset.corpus["id"].tolist(),
        "texts": dataset.corpus["document"].tolist(),
        "query_ids": query_ids,
        "query_texts": [dataset.queries[q] for q in query_ids],
    }
    return inputs, qrels


def synthetic_inputs(size: int, words: int, queries: int, work: Path, seed: int) -> tuple[dict, dict]:
    """bench_scale's Zipf corpus in 10-word sentences; each query is one sentence of a random passage."""
    from bench_scale import write_corpus

    from ragtune.io.data import load_dataset

    corpus = load_dataset(write_corpus(work / "corpus", size, words, seed, sentence_words=10)).corpus
    ids, texts = corpus["id"].tolist(), corpus["document"].tolist()
    rng = np.random.default_rng(seed)
    sources = sorted(rng.choice(len(ids), size=queries, replace=False).tolist())
    query_texts = []
    for row in sources:
        sentences = [s.strip(" .") for s in texts[row].split(". ") if s.strip(" .")]
        query_texts.append(sentences[rng.integers(len(sentences))])
    query_ids = [f"q{row}" for row in sources]
    inputs = {"ids": ids, "texts": texts, "query_ids": query_ids, "query_texts": query_texts}
    return inputs, {q: {ids[row]: 1} for q, row in zip(query_ids, sources)}


def agreement(reference: dict, other: dict) -> dict:
    """Top-100 id overlap, same top-10 id set, and how Milvus's scores relate to ragtune's."""
    overlaps, same_ten, ratios = [], [], []
    for qid, ranked in reference.items():
        ours = {d: s for d, s in ranked}
        theirs = {d: s for d, s in other.get(qid, [])}
        overlaps.append(len(ours.keys() & theirs.keys()) / K)
        same_ten.append({d for d, _ in ranked[:10]} == {d for d, _ in other.get(qid, [])[:10]})
        ratios += [theirs[d] / ours[d] for d in ours.keys() & theirs.keys() if ours[d] > 0]
    return {
        "overlap": float(np.mean(overlaps)),
        "same_top10": float(np.mean(same_ten)),
        "ratio": float(np.median(ratios)) if ratios else float("nan"),
        "ratio_spread": float(np.percentile(ratios, 90) - np.percentile(ratios, 10)) if ratios else float("nan"),
    }


def print_table(title: str, results: dict, quality: dict) -> None:
    print(f"\n## {title}")
    print(
        "| method | build s | reopen s | p50 ms | p95 ms | peak RSS MiB (after imports) | disk MiB | segments "
        "| top-100 overlap | same top-10 | score ratio (p10-p90 spread) | nDCG@10 |"
    )
    print("|---" * 12 + "|")
    for method, result in results.items():
        latencies = result["latencies"]
        agree = result.get("agreement")
        cells = "(reference) | |"
        if agree:
            ratio = f"{agree['ratio']:.2f} ({agree['ratio_spread']:.2f})"
            cells = f"{agree['overlap']:.3f} | {agree['same_top10']:.3f} | {ratio}"
        print(
            f"| {method} | {result['build_s']:.1f} | {result['reopen_s']:.2f} | {np.percentile(latencies, 50):.1f} "
            f"| {np.percentile(latencies, 95):.1f} | {result['peak_rss_mib']:.0f} ({result['base_rss_mib']:.0f}) "
            f"| {result['disk_mib']:.1f} "
            f"| {result['segments']} | {cells} | {quality[method]:.4f} |"
        )


def bench_size(size: int, options, work: Path) -> dict:
    """All methods on one corpus; returns the numbers for the RESULT line."""
    import bm25s

    from ragtune.retrieval.metrics import retrieval_metrics

    if size <= 5183:
        inputs, qrels = scifact_inputs(options.scifact)
        title = f"SciFact: {len(inputs['ids']):,} passages, {len(qrels)} test queries"
    else:
        inputs, qrels = synthetic_inputs(size, options.words, options.queries, work, options.seed)
        title = f"synthetic: {size:,} passages of {options.words} words, {len(qrels)} one-sentence queries"
    one_char = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    inputs["stop_words"] = sorted(set(bm25s.stopwords.STOPWORDS_EN) | set(one_char))
    (work / "inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
    results, quality = {}, {}
    for method in options.methods:
        started = time.perf_counter()
        results[method] = run_method(method, work / "inputs.json", work / method)
        print(f"{size}: {method} done in {time.perf_counter() - started:.0f} s", flush=True)
        quality[method] = retrieval_metrics(results[method]["rankings"], qrels)["ndcg@10"]
        if method != "ragtune" and "ragtune" in results:
            results[method]["agreement"] = agreement(results["ragtune"]["rankings"], results[method]["rankings"])
    print_table(title, results, quality)
    summary = {}
    for method, result in results.items():
        summary[f"{size}_{method}_p50_ms"] = round(float(np.percentile(result["latencies"], 50)), 2)
        summary[f"{size}_{method}_peak_rss_mib"] = round(result["peak_rss_mib"])
        summary[f"{size}_{method}_ndcg10"] = round(quality[method], 4)
        if "agreement" in result:
            summary[f"{size}_{method}_top100_overlap"] = round(result["agreement"]["overlap"], 4)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000], help="<= 5183: SciFact itself")
    parser.add_argument("--queries", type=int, default=300, help="synthetic queries per synthetic corpus")
    parser.add_argument("--words", type=int, default=40, help="words per synthetic passage")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--scifact", default=SCIFACT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:  # the measured process: nothing imported beyond its own method
        run_worker(options.worker, options.work)
        return
    from common import report_result

    work = Path(tempfile.mkdtemp(prefix="bench_keywords_"))
    summary = {}
    for size in options.sizes:
        (work / str(size)).mkdir()
        summary |= bench_size(size, options, work / str(size))
    print("\nTimings are rough: a 2-core machine shared with other work.")
    shutil.rmtree(work, ignore_errors=True)
    report_result(**summary)


if __name__ == "__main__":
    main()
