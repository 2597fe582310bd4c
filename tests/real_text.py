"""Text as users have it, made from clean text: shared by tests/test_synthetic.py and
benchmarks/bench_real_text.py (issue #31). Each transform maps a passage's text to its variant."""

from __future__ import annotations

import gzip
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pandas as pd

SCIFACT = Path(__file__).resolve().parents[1] / "data" / "scifact" / "corpus.jsonl.gz"
_CLEAN_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")  # a reference split of clean text, for the bullets variant


def lowercase(text: str) -> str:
    return text.lower()


def detach(text: str) -> str:
    """Punctuation spaced off the word before it: "the wing. The" -> "the wing . The" (3.5 stays)."""
    return re.sub(r"(?<=[^\s.,;:!?])([.,;:!?]+)(?=\s|$)", r" \1", text)


def strip_punctuation(text: str) -> str:
    """Punctuation between words dropped, kept inside them (3.5, IL-6): like a speech transcript."""
    return " ".join(re.sub(r"(?<!\w)[^\w\s]+|[^\w\s]+(?!\w)", " ", text).split())


def wrap(text: str, width: int = 60) -> str:
    """Hard newlines every `width` columns, as OCR or PDF extraction leaves them."""
    return "\n".join(
        textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False) for line in text.split("\n")
    )


def join_lines(text: str) -> str:
    """All lines run into one."""
    return " ".join(text.split())


def bullets(text: str) -> str:
    """Each sentence a "- " line without its final full stop."""
    return "\n".join("- " + s.rstrip(".") for s in _CLEAN_END.split(text.strip()))


LAYOUT = {wrap, join_lines, bullets}  # steps that change lines, not characters: titles stay one line
TRANSFORMS: dict[str, tuple[Callable[[str], str], ...]] = {
    "clean": (),
    "lowercase": (lowercase,),
    "detach": (detach,),
    "strip": (strip_punctuation,),
    "wrap60": (wrap,),
    "join": (join_lines,),
    "bullets": (bullets,),
    "lower+detach": (lowercase, detach),
    "lower+wrap60": (lowercase, wrap),
    "lower+detach+wrap60": (lowercase, detach, wrap),
    "bullets+join": (bullets, join_lines),
    "transcript": (lowercase, strip_punctuation, join_lines),
    "transcript+wrap60": (lowercase, strip_punctuation, wrap),
}


def transform(text: str, name: str, title: bool = False) -> str:
    """`text` through the steps of TRANSFORMS[name]; a title only through those that keep it one line."""
    for step in TRANSFORMS[name]:
        if not (title and step in LAYOUT):
            text = step(text)
    return text


def read_corpus(path: str | Path = SCIFACT) -> list[dict]:
    """BEIR corpus rows (_id, title, text) of a corpus.jsonl or .jsonl.gz."""
    with (gzip.open if str(path).endswith(".gz") else open)(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def variant(rows: list[dict], name: str) -> list[dict]:
    """The rows with title and text transformed."""
    return [
        {**row, "title": transform(row.get("title") or "", name, title=True), "text": transform(row["text"], name)}
        for row in rows
    ]


def long_rows(rows: list[dict], words: int = 40, limit: int | None = None) -> list[dict]:
    """The first `limit` rows whose (clean) text has at least `words` words."""
    return [row for row in rows if len(row["text"].split()) >= words][:limit]


def corpus_frame(rows: list[dict]) -> pd.DataFrame:
    """The corpus frame of `ragtune.io.data` for BEIR rows: document is title + text."""
    frame = pd.DataFrame({"id": [str(r["_id"]) for r in rows], "title": [r["title"] for r in rows]})
    frame["text"] = [r["text"] for r in rows]
    frame["source_id"] = frame["id"]
    frame["document"] = (frame["title"] + " " + frame["text"]).str.strip()
    return frame


def yield_shares(queries: pd.DataFrame, passage_ids: list[str], generators: tuple[str, ...]) -> dict[str, float]:
    """Per generator, the share of `passage_ids` with at least one query in `queries` (generate_queries' frame)."""
    wanted = set(passage_ids)
    return {
        g: len(set(queries.loc[queries["generator"] == g, "passage_id"]) & wanted) / len(wanted) for g in generators
    }
