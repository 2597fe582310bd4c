"""Synthetic training queries from passages alone, with no model download.

Three generators, chosen by name:

- `ict`: Inverse Cloze Task (Lee et al. 2019). A sentence (or a short run of them, when one is too
  short) is the query; with `ict_remove_probability` it is cut out of the positive, so the model
  learns what a passage is about rather than string overlap. sentences.py finds the sentences in
  text as users have it (lowercase, spaced punctuation, hard wraps, bullets) and cuts text without
  them (transcripts) into word windows instead.
- `crop`: independent cropping (Izacard et al. 2022, Contriever). A random span is the query and
  another random span of 10-50% of the passage is the positive.
- `terms`: a few salient words (TF-IDF against the corpus) in the order the passage uses them,
  like a keyword search.
- `llm`: queries an LLM wrote for the passage (llm.py fetches them; here they pass the same filters).

Queries come from the passage body: a title the document starts with is cut off first, and a
query whose content words all appear in the title is dropped, so title-prefixed wiki chunks never
yield title -> passage pairs (string overlap that teaches nothing about real questions).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import pandas as pd

from ragtune.config import GENERATORS
from ragtune.errors import UserError
from ragtune.zero_label.sentences import query_spans

SPAN_GENERATORS = {"ict", "crop"}  # min_query_words applies to these; terms queries use terms_per_query
QUERY_COLUMNS = ["query_id", "query", "passage_id", "generator", "positive", "query_removed"]
CROP_POSITIVE_FRACTION = (0.1, 0.5)  # Contriever's crop ratio range
TERMS_POOL = 10  # a terms query samples from the passage's most salient words
ATTEMPTS_PER_QUERY = 4  # random generators retry a few times when they hit a duplicate

_TOKEN = re.compile(r"\b\w\w+\b")  # bm25s' default token pattern
_SEPARATOR = re.compile(r"[\s.:;,|\-\u2013\u2014]*")
STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below between both "
    "but by can could did do does doing down during each few for from further had has have having he her here hers "
    "herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on "
    "once only or other our ours ourselves out over own same she should so some such than that the their theirs "
    "them themselves then there these they this those through to too under until up very was we were what when "
    "where which while who whom why will with would you your yours yourself yourselves".split()
)


@dataclass(frozen=True)
class SyntheticSpec:
    """Options of the `synthetic:` config section; queries_per_passage is shared round-robin by the generators."""

    generators: tuple[str, ...] = ("ict", "crop", "terms")
    queries_per_passage: int = 4  # as SyntheticConfig
    max_query_words: int = 32
    min_query_words: int = 4
    min_passage_words: int = 16
    ict_remove_probability: float = 0.9
    terms_per_query: tuple[int, int] = (3, 6)
    seed: int = 42


@dataclass
class SyntheticAudit:
    """What was made and what was dropped, by reason; `kept` counts queries per generator."""

    passages: int = 0
    passages_used: int = 0
    candidates: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    ict_removed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def check_spec(spec: SyntheticSpec) -> None:
    """Name the bad field and the fix (the config layer reports these as user errors)."""
    unknown = [g for g in spec.generators if g not in GENERATORS]
    if unknown or not spec.generators:
        raise UserError(
            f"synthetic.generators: unknown or empty {unknown or '[]'}; choose from {', '.join(GENERATORS)}"
        )
    if spec.queries_per_passage < 1:
        raise UserError(f"synthetic.queries_per_passage {spec.queries_per_passage}: must be at least 1")
    if not 1 <= spec.min_query_words <= spec.max_query_words:
        raise UserError("synthetic.min_query_words/max_query_words: need 1 <= min_query_words <= max_query_words")
    if not 0.0 <= spec.ict_remove_probability <= 1.0:
        raise UserError(f"synthetic.ict_remove_probability {spec.ict_remove_probability}: must be in [0, 1]")
    low, high = spec.terms_per_query
    if not 1 <= low <= high:
        raise UserError(f"synthetic.terms_per_query {list(spec.terms_per_query)}: need 1 <= low <= high")


def normalise(text: str) -> str:
    """The form compared for duplicates: lowercase words, punctuation as single spaces."""
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def content_words(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS}


def split_title(document: str, title: str) -> tuple[str, str]:
    """(prefix, body): a leading copy of the title (and the punctuation after it) goes to the prefix."""
    n = len(title.split())
    if n == 0:
        return "", document
    match = re.match(r"\s*" + r"\S+\s+" * (n - 1) + r"\S+", document)
    if match is None or normalise(match.group()) != normalise(title):
        return "", document
    cut = match.end()
    cut += _SEPARATOR.match(document, cut).end() - cut
    return document[:cut], document[cut:]


def cap_words(text: str, max_words: int) -> str:
    return " ".join(text.split()[:max_words])


def _ict(body: str, prefix: str, document: str, spec: SyntheticSpec, rng: random.Random, count: int):
    """Yield (query, positive, removed) from distinct sentences, extended by the next ones when too short
    (word windows where the passage has too few sentences of query length: `sentences.query_spans`)."""
    spans = query_spans(body, spec.min_query_words, spec.max_query_words)
    if len(spans) < 2:
        return
    order = list(range(len(spans)))
    rng.shuffle(order)
    for first in order[:count]:
        last = first
        while len(body[spans[first][0] : spans[last][1]].split()) < spec.min_query_words and last + 1 < len(spans):
            last += 1
        start, end = spans[first][0], spans[last][1]
        query = cap_words(body[start:end], spec.max_query_words)
        if rng.random() < spec.ict_remove_probability:
            rest = (body[:start] + " " + body[end:]).split()
            if rest:
                yield query, " ".join((prefix + " " + " ".join(rest)).split()), True
                continue
        yield query, document, False


def _crop(body: str, spec: SyntheticSpec, rng: random.Random, count: int):
    words = body.split()
    n = len(words)
    longest_query = min(spec.max_query_words, n // 2)
    if longest_query < spec.min_query_words:
        return
    low, high = (max(spec.min_query_words, round(f * n)) for f in CROP_POSITIVE_FRACTION)
    for _ in range(count * ATTEMPTS_PER_QUERY):
        q_len = rng.randint(spec.min_query_words, longest_query)
        p_len = rng.randint(low, max(low, high))
        q_start, p_start = rng.randint(0, n - q_len), rng.randint(0, n - p_len)
        yield " ".join(words[q_start : q_start + q_len]), " ".join(words[p_start : p_start + p_len]), False


def _terms(body: str, document: str, idf: dict[str, float], spec: SyntheticSpec, rng: random.Random, count: int):
    """Weighted draws from the passage's most salient words (tf-idf), written in the passage's order."""
    first_seen: dict[str, tuple[int, str]] = {}
    tf: Counter[str] = Counter()
    for match in _TOKEN.finditer(body):
        token = match.group().lower()
        if token in STOPWORDS or token.isdigit():
            continue
        tf[token] += 1
        first_seen.setdefault(token, (match.start(), match.group()))
    salience = {t: (1 + math.log(c)) * idf.get(t, 0.0) for t, c in tf.items()}
    pool = sorted(salience, key=lambda t: (-salience[t], first_seen[t][0]))[:TERMS_POOL]
    low, high = spec.terms_per_query
    if len(pool) < low:
        return
    for _ in range(count * ATTEMPTS_PER_QUERY):
        k = rng.randint(low, min(high, len(pool)))
        remaining, weights, chosen = list(pool), [salience[t] + 1e-9 for t in pool], []
        for _ in range(k):
            i = rng.choices(range(len(remaining)), weights)[0]
            chosen.append(remaining.pop(i))
            weights.pop(i)
        chosen.sort(key=lambda t: first_seen[t][0])
        yield " ".join(first_seen[t][1] for t in chosen), document, False


def inverse_document_frequency(bodies: list[str]) -> dict[str, float]:
    """ln(1 + N / df) over passage bodies, for content words."""
    df: Counter[str] = Counter()
    for body in bodies:
        df.update(content_words(body))
    return {t: math.log(1 + len(bodies) / d) for t, d in df.items()}


def shares(total: int, generators: tuple[str, ...]) -> dict[str, int]:
    """Split the per-passage total round-robin: 10 over 3 generators gives 4, 3, 3."""
    return {g: total // len(generators) + (i < total % len(generators)) for i, g in enumerate(generators)}


def _span_candidates(name: str, body: str, prefix: str, document: str, idf, spec: SyntheticSpec, rng, count: int):
    """(query, positive, sentence removed) candidates of one span generator for one passage."""
    if name == "ict":
        return _ict(body, prefix, document, spec, rng, count)
    if name == "crop":
        return _crop(body, spec, rng, count)
    return _terms(body, document, idf, spec, rng, count)


def _take(candidates, name: str, count: int, spec: SyntheticSpec, title_words: set, seen: set, audit, dropped) -> list:
    """Up to `count` candidates that pass the filters, as (query, positive, removed, key); counts the rest."""
    taken = []
    for query, positive, removed in candidates:
        audit.candidates[name] += 1
        key = normalise(query)
        words = content_words(query)
        if name in SPAN_GENERATORS and len(query.split()) < spec.min_query_words:
            dropped["query_too_short"] += 1
        elif not words or words <= title_words:
            dropped["only_title_words"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            taken.append((query, positive, removed, key))
            if len(taken) == count:
                break
    return taken


def generate_queries(
    corpus: pd.DataFrame, spec: SyntheticSpec, written: dict[str, list[str]] | None = None
) -> tuple[pd.DataFrame, SyntheticAudit]:
    """Queries (QUERY_COLUMNS) for the corpus frame of `ragtune.data`, deterministic for `spec.seed`.

    `written` holds the llm generator's queries by passage id (llm.write_queries), when it is chosen.

    Each passage draws from its own random stream (seed, passage id), so a passage's queries do
    not change when other passages are added. A query made twice for one passage is kept once; a
    query made for several passages is dropped everywhere, since it would point at all of them.
    """
    check_spec(spec)
    written = written or {}
    audit = SyntheticAudit(passages=len(corpus))
    audit.candidates = dict.fromkeys(spec.generators, 0)
    dropped: Counter[str] = Counter()
    split = [split_title(doc, title) for doc, title in zip(corpus["document"], corpus["title"])]
    idf = inverse_document_frequency([body for _, body in split]) if "terms" in spec.generators else {}
    per_generator = shares(spec.queries_per_passage, spec.generators)
    rows = []
    for passage_id, title, document, (prefix, body) in zip(corpus["id"], corpus["title"], corpus["document"], split):
        if len(body.split()) < spec.min_passage_words:
            dropped["passage_too_short"] += 1
            continue
        title_words, seen, made = content_words(title), set(), 0
        for name in spec.generators:
            count = per_generator[name]
            if count == 0:
                continue
            rng = random.Random(f"{spec.seed}\x1f{name}\x1f{passage_id}")
            if name == "llm":
                candidates = (
                    (cap_words(q, spec.max_query_words), document, False) for q in written.get(passage_id, [])
                )
            else:
                candidates = _span_candidates(name, body, prefix, document, idf, spec, rng, count)
            taken = _take(candidates, name, count, spec, title_words, seen, audit, dropped)
            for query, positive, removed, key in taken:
                rows.append((f"{name}:{passage_id}:{made}", query, passage_id, name, positive, removed, key))
                made += 1
            if not taken:
                dropped[f"{name}_passage_yielded_none"] += 1
        audit.passages_used += made > 0
    frame = pd.DataFrame(rows, columns=[*QUERY_COLUMNS, "key"])
    ambiguous = frame.groupby("key")["passage_id"].transform("nunique") > 1
    if ambiguous.any():
        dropped["duplicate_across_passages"] += int(ambiguous.sum())
    frame = frame[~ambiguous].drop(columns="key").reset_index(drop=True)
    audit.kept = {name: int((frame["generator"] == name).sum()) for name in spec.generators}
    audit.ict_removed = int(frame["query_removed"].sum())
    audit.dropped = dict(sorted(dropped.items()))
    return frame, audit
