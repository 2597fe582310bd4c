"""BEIR qrels: query-id, corpus-id, graded score; every judgement checked against the queries and corpus."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

from ragtune.errors import UserError
from ragtune.io.files import open_text

Qrels = dict[str, dict[str, float]]  # query id -> {doc id: graded relevance, kept as given}


def read_qrels(path: Path, corpus_ids: set[str], query_ids: set[str], skipped_ids: frozenset = frozenset()) -> Qrels:
    """BEIR qrels TSV with header query-id, corpus-id, score (graded scores, integer or not, kept as given).

    Judgements of passages skipped as empty are dropped with one warning.
    """
    qrels: Qrels = {}
    dropped = 0
    lines: dict[tuple[str, str], int] = {}  # (query, passage) -> the line that judged it first
    repeated = []
    try:
        with open_text(path) as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path}: empty file; expected a header 'query-id<TAB>corpus-id<TAB>score'")
            if [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
                raise UserError(f"{path} line 1: header must be 'query-id<TAB>corpus-id<TAB>score', got {header!r}")
            for line_no, row in enumerate(reader, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 3:
                    raise UserError(f"{path} line {line_no}: expected 3 tab-separated columns, got {len(row)}")
                qid, did, score = row[0].strip(), row[1].strip(), row[2].strip()
                try:
                    grade = float(score)
                except ValueError:
                    raise UserError(f"{path} line {line_no}: score {score!r} is not a number") from None
                if not math.isfinite(grade) or grade < 0:
                    raise UserError(
                        f"{path} line {line_no}: score {score!r} is not a grade; use 0 (not relevant) or more"
                    )
                if (qid, did) in lines:
                    first = lines[(qid, did)]
                    if qrels.get(qid, {}).get(did, grade) != grade:
                        raise UserError(
                            f"{path} lines {first} and {line_no}: query '{qid}' and passage '{did}' are judged "
                            f"twice with different scores; keep one line"
                        )
                    repeated.append(line_no)
                    continue
                lines[(qid, did)] = line_no
                if did in skipped_ids:
                    dropped += 1
                    continue
                if qid not in query_ids:
                    raise UserError(f"{path} line {line_no}: query-id '{qid}' is not in queries.jsonl")
                if did not in corpus_ids:
                    raise UserError(f"{path} line {line_no}: corpus-id '{did}' is not in corpus.jsonl")
                qrels.setdefault(qid, {})[did] = grade
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: bytes that are not UTF-8 ({exc.reason}); re-encode the file as UTF-8") from None
    if dropped:
        warnings.warn(f"{path}: skipped {dropped} judgement(s) of empty passages", stacklevel=2)
    if repeated:
        warnings.warn(
            f"{path}: {len(repeated)} repeated judgement(s) read once (line {repeated[0]} first)", stacklevel=2
        )
    return qrels
