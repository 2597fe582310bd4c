"""`ragtune serve` under 8 concurrent clients: p50 and p99 request latency, dense against hybrid.

The bundled SciFact corpus (5,183 passages) is indexed with the base model into a fresh repo, one
`ragtune serve --bm25-weight 0.3` process answers (hybrid by default, dense per request), and 8
client threads send the 300 test claims, each claim once per mode, over keep-alive connections.
Latency is the client's: queueing behind the server's one-at-a-time lock included. Also reported:
the start-up a single `ragtune search` pays, which the server pays once.

    python benchmarks/bench_serve.py [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import report_result

from ragtune.io.data import load_dataset

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))
DATA = Path(__file__).resolve().parents[1] / "data" / "scifact"


def run(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([RAGTUNE, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return time.perf_counter() - started


def latencies(port: int, questions: list[str], mode: str, clients: int) -> list[float]:
    """Milliseconds per request, `clients` threads each with its own keep-alive connection."""
    measured: list[float] = []

    def client(share: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for question in share:
            body = json.dumps({"query": question, "k": 10, "mode": mode})
            started = time.perf_counter()
            connection.request("POST", "/search", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            measured.append((time.perf_counter() - started) * 1000)
            assert response.status == 200 and len(answer["hits"]) == 10, answer
        connection.close()

    threads = [threading.Thread(target=client, args=(questions[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    dataset = load_dataset(DATA)
    questions = [dataset.queries[q] for q in sorted(dataset.qrels["test"])]
    with tempfile.TemporaryDirectory(prefix="ragtune-serve-") as tmp:
        repo = Path(tmp) / "repo"
        run("feast", "init", str(repo))
        index_s = run("index", "--repo", str(repo), "--data", str(DATA), "--device", "cpu")
        search_s = run("search", questions[0], "--repo", str(repo), "--device", "cpu")
        started = time.perf_counter()
        server = subprocess.Popen(
            [RAGTUNE, "serve", "--repo", str(repo), "--device", "cpu", "--port", "0", "--bm25-weight", "0.3"],
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        ready_s = time.perf_counter() - started
        try:
            latencies(port, questions[:16], "dense", args.clients)  # warm-up: first encodes, Milvus segments
            rows = {mode: latencies(port, questions, mode, args.clients) for mode in ("dense", "hybrid")}
        finally:
            server.terminate()
            server.wait()
    print(f"index {index_s:.0f} s; one `ragtune search` {search_s:.1f} s; server ready in {ready_s:.1f} s")
    print("\n| mode | requests | clients | p50 ms | p99 ms |\n|---|---|---|---|---|")
    stats = {}
    for mode, ms in rows.items():
        p50, p99 = np.percentile(ms, [50, 99])
        stats[mode] = (float(p50), float(p99))
        print(f"| {mode} | {len(ms)} | {args.clients} | {p50:.1f} | {p99:.1f} |")
    ratio = stats["hybrid"][0] / stats["dense"][0]
    print(f"\nhybrid p50 / dense p50: x{ratio:.2f}")
    report_result(
        search_cli_s=round(search_s, 1),
        dense_p50_ms=round(stats["dense"][0], 1),
        dense_p99_ms=round(stats["dense"][1], 1),
        hybrid_p50_ms=round(stats["hybrid"][0], 1),
        hybrid_p99_ms=round(stats["hybrid"][1], 1),
        hybrid_over_dense_p50=round(ratio, 2),
    )


if __name__ == "__main__":
    main()
