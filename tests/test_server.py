"""`ragtune serve`: the request contract in milliseconds, then a real server process over a real Feast repo."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ragtune.serving.server import MAX_BODY, BadRequest, body_length, parse_search

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def test_a_search_request_is_read_or_refused_naming_the_field():
    assert parse_search(b'{"query": "folic acid"}', 10) == ("folic acid", 10, None)
    assert parse_search(b'{"query": "q", "k": 3, "mode": "dense"}', 10) == ("q", 3, "dense")
    refused = {
        b"not json": "not UTF-8 JSON",
        b"\xff\xfe": "not UTF-8 JSON",
        b'["q"]': "JSON object",
        b'{"query": "q", "top": 3}': "unknown field 'top'",
        b'{"query": "  "}': "query:",
        b'{"k": 3}': "query:",
        b'{"query": "q", "k": 0}': "k:",
        b'{"query": "q", "k": "3"}': "k:",
        b'{"query": "q", "k": true}': "k:",
        b'{"query": "q", "k": 100000}': "k:",
        b'{"query": "q", "mode": "sparse"}': "mode:",
    }
    for body, message in refused.items():
        with pytest.raises(BadRequest, match=re.escape(message)) as caught:
            parse_search(body, 10)
        assert caught.value.status == 400


QUESTION = "folic acid and homocysteine"


def test_a_body_length_is_a_count_within_the_limit():
    assert body_length("12") == 12 and body_length(None) == 0
    for header, status in (("-1", 400), ("ten", 400), ("1e3", 400), (str(MAX_BODY + 1), 413)):
        with pytest.raises(BadRequest) as caught:
            body_length(header)
        assert caught.value.status == status


@pytest.fixture(scope="module")
def repo(scifact_slice, tmp_path_factory) -> Path:
    """Built by the CLI: Milvus Lite's file is held by one process at a time, and the server is another."""
    directory = tmp_path_factory.mktemp("serve") / "repo"
    assert subprocess.run([RAGTUNE, "feast", "init", str(directory)], capture_output=True).returncode == 0
    command = [RAGTUNE, "index", "--repo", str(directory), "--data", str(scifact_slice), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return directory


@pytest.fixture(scope="module")
def searched(repo) -> list[tuple[str, float]]:
    """What `ragtune search` prints for QUESTION (id, score), asked before the server holds the repo."""
    done = subprocess.run(
        [RAGTUNE, "search", QUESTION, "--repo", str(repo), "--top-k", "5", "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines()[1::2]]
    return [(row[2], float(row[1])) for row in rows]


@pytest.fixture(scope="module")
def server(repo, searched):
    """`ragtune serve` on any free port; yields its base URL, then SIGTERM must end it with exit 0."""
    process = subprocess.Popen(
        [RAGTUNE, "serve", "--repo", str(repo), "--device", "cpu", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
    if not found:
        process.kill()
        pytest.fail(f"no serving line: {line!r} {process.stderr.read()[-2000:]}")
    yield found.group(1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in process.stderr.read()


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_the_server_answers_what_search_answers_and_refuses_bad_requests_with_4xx(server, searched):
    status, health = call(f"{server}/healthz")
    assert status == 200 and health["status"] == "ok" and health["mode"] == "dense"
    question = QUESTION
    status, answer = call(f"{server}/search", json.dumps({"query": question, "k": 5}).encode())
    assert status == 200 and answer["view"] == health["view"] == "passages_v1" and answer["mode"] == "dense"
    assert [hit["id"] for hit in answer["hits"]] == [doc_id for doc_id, _ in searched]
    assert [hit["score"] for hit in answer["hits"]] == pytest.approx([score for _, score in searched], abs=1e-4)
    assert set(answer["hits"][0]) == {"id", "title", "text", "score"}

    assert call(f"{server}/search", b'{"query": ""}')[0] == 400
    assert call(f"{server}/search", b"{")[0] == 400
    assert call(f"{server}/search", b"x" * (MAX_BODY + 1))[0] == 413
    assert call(f"{server}/nowhere", b"{}")[0] == 404 and call(f"{server}/search")[0] == 404
    status, error = call(f"{server}/search", json.dumps({"query": question, "mode": "hybrid"}).encode())
    assert status == 400 and "chose dense" in error["error"]  # this repo's model recorded no BM25 weight


@pytest.mark.slow
def test_eight_concurrent_clients_get_the_same_answers_as_one(server):
    questions = [f"{topic} in cells" for topic in ("folic acid", "insulin", "p53", "vitamin d")] * 4
    alone = {q: call(f"{server}/search", json.dumps({"query": q, "k": 10}).encode())[1] for q in set(questions)}
    answers: list[tuple[str, int, dict]] = []

    def client(share: list[str]) -> None:
        for q in share:
            answers.append((q, *call(f"{server}/search", json.dumps({"query": q, "k": 10}).encode())))

    threads = [threading.Thread(target=client, args=(questions[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == len(questions)
    for q, status, answer in answers:
        assert status == 200 and [h["id"] for h in answer["hits"]] == [h["id"] for h in alone[q]["hits"]]


@pytest.mark.slow
def test_a_busy_port_or_a_missing_repo_is_one_line(tmp_path, repo):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [RAGTUNE, "serve", "--repo", str(repo), "--port", str(port)], capture_output=True, text=True
        )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot listen there" in done.stderr
    done = subprocess.run([RAGTUNE, "serve", "--repo", str(tmp_path / "none")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
