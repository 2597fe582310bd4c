"""`llm`: synthetic queries written by an LLM behind any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp,
hosted APIs); they pass the same filters as the other generators' queries.

One chat completion per query; a passage's samples differ by their seed. Every answer is appended to an
on-disk cache keyed by model + prompt + passage + sample as soon as it arrives, so a killed generation
resumes where it stopped and nothing is generated twice. The endpoint is tried once before the long
work, so a wrong URL or model name costs one line, not a traceback after minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ragtune import console
from ragtune.errors import UserError
from ragtune.io.outputs import default_cache_dir
from ragtune.zero_label.generators.spec import Generator, Passage, SyntheticSpec
from ragtune.zero_label.text import cap_words

PROMPT_PASSAGE_WORDS = 200  # longer passages are cut for the prompt: the start says what a passage is about
API_KEY_ENV = "OPENAI_API_KEY"  # the key is read from this variable, never from the config
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
_LEADER = re.compile(r"^\s*(?:(?:\d+[.)]|[-*•]|(?:query|question|claim|search)\s*:)\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class LLMSpec:
    endpoint: str  # base URL of the API, e.g. http://127.0.0.1:8080/v1
    model: str
    prompt: str  # a template with {passage}
    queries_per_passage: int
    concurrency: int = 4
    retries: int = 3
    timeout: float = 120.0
    temperature: float = 0.8
    max_tokens: int = 48


def cache_key(spec: LLMSpec, passage: str, sample: int) -> str:
    """Everything that changes the answer: model, rendered prompt, sampling settings and the sample number."""
    fields = [spec.model, render(spec.prompt, passage), spec.temperature, spec.max_tokens, sample]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def render(prompt: str, passage: str) -> str:
    return prompt.replace("{passage}", " ".join(passage.split()[:PROMPT_PASSAGE_WORDS]))


def clean(answer: str) -> str:
    """The query in an answer: its first non-empty line without list markers, labels or quotes."""
    for line in answer.splitlines():
        line = _LEADER.sub("", line).strip().strip("\"'`").strip()
        if line:
            return line
    return ""


class AnswerCache:
    """Append-only JSON lines of {key, answer}; a line torn by a kill is ignored on the next load."""

    def __init__(self, path: Path):
        self.path = path
        self.answers: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    self.answers[entry["key"]] = entry["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def add(self, key: str, answer: str) -> None:
        self.answers[key] = answer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "answer": answer}) + "\n")
            f.flush()


def complete(spec: LLMSpec, passage: str, sample: int) -> str:
    """One chat completion; transient failures (connection, timeouts, 429, 5xx) are retried with backoff."""
    body = {
        "model": spec.model,
        "messages": [{"role": "user", "content": render(spec.prompt, passage)}],
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "seed": sample,
    }
    headers = {"Content-Type": "application/json"}
    if os.environ.get(API_KEY_ENV):
        headers["Authorization"] = f"Bearer {os.environ[API_KEY_ENV]}"
    url = spec.endpoint.rstrip("/") + "/chat/completions"
    attempt = 0
    while True:
        request = urllib.request.Request(url, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=spec.timeout) as response:
                reply = json.loads(response.read())
            return reply["choices"][0]["message"]["content"] or ""
        except urllib.error.HTTPError as e:
            detail = e.read(300).decode("utf-8", "replace").strip()
            if e.code not in RETRYABLE or attempt == spec.retries:
                raise UserError(
                    f"synthetic.llm_endpoint {url}: HTTP {e.code} {detail!r}; check synthetic.llm_model and the server"
                ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            if attempt == spec.retries:
                reason = getattr(e, "reason", e)
                raise UserError(
                    f"synthetic.llm_endpoint {url}: unreachable ({reason}; {spec.retries + 1} attempt(s)); "
                    "start the server or fix the URL"
                ) from None
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise UserError(
                f"synthetic.llm_endpoint {url}: the reply is not an OpenAI chat completion; "
                "point it at the API base (…/v1) of an OpenAI-compatible server"
            ) from None
        time.sleep(min(0.5 * 2**attempt, 8.0))
        attempt += 1


def write_queries(
    passages: dict[str, str], spec: LLMSpec, cache_path: Path, progress: bool = True
) -> dict[str, list[str]]:
    """passage id -> its LLM-written queries (cleaned, possibly empty strings dropped), in sample order."""
    cache = AnswerCache(cache_path)
    wanted = [
        (pid, s, cache_key(spec, text, s)) for pid, text in passages.items() for s in range(spec.queries_per_passage)
    ]
    missing = [(pid, s, key) for pid, s, key in wanted if key not in cache.answers]
    if missing:
        pid, sample, key = missing[0]  # fail fast: one request before the pool
        cache.add(key, complete(spec, passages[pid], sample))
        hidden = not progress or not console.bars()
        with (
            ThreadPoolExecutor(spec.concurrency) as pool,
            console.progress(len(missing), "llm queries", "query", initial=1, hidden=hidden) as b,
        ):
            futures = {pool.submit(complete, spec, passages[p], s): k for p, s, k in missing[1:]}
            for future in as_completed(futures):
                cache.add(futures[future], future.result())
                b.update(1)
    written: dict[str, list[str]] = {pid: [] for pid in passages}
    for pid, _, key in wanted:
        query = clean(cache.answers[key])
        if query:
            written[pid].append(query)
    return written


class Llm(Generator):
    """Fetches every training passage's queries once (cached on disk), then hands them out per passage."""

    span = False  # an LLM's query is kept at any length

    @staticmethod
    def check(spec: SyntheticSpec) -> None:
        s = spec.options
        if s is None or not (s.llm_endpoint and s.llm_model):
            raise UserError(
                "synthetic.llm_endpoint and synthetic.llm_model: set them (an OpenAI-compatible API base URL and "
                "the model it serves) to use the llm generator"
            )

    def __init__(self, passages: list[Passage], spec: SyntheticSpec):
        super().__init__(passages, spec)
        s = spec.options
        self.max_words = spec.max_query_words
        llm = LLMSpec(s.llm_endpoint, s.llm_model, s.llm_prompt, spec.share("llm"), s.llm_concurrency, s.llm_retries)
        slug = re.sub(r"[^\w.-]+", "_", s.llm_model)[:80]
        cache = (spec.cache_dir or default_cache_dir()) / "llm" / f"{slug}.jsonl"
        long_enough = {p.id: p.document for p in passages if len(p.body.split()) >= spec.min_passage_words}
        self.written = write_queries(long_enough, llm, cache)

    def candidates(self, passage: Passage, rng, count: int):
        return ((cap_words(q, self.max_words), passage.document, False) for q in self.written.get(passage.id, []))
