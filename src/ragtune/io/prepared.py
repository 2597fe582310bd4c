"""A prepared directory: what `ragtune prepare` writes and `ragtune train` reads, as one type.

train.parquet holds one row per training sample (Feast-ready: an id and an event timestamp),
eval.parquet the held-out judgements, corpus.parquet the passages with the embedded string.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ragtune.errors import UserError
from ragtune.io.qrels import Qrels

TABLES = {"samples": "train.parquet", "eval": "eval.parquet", "corpus": "corpus.parquet"}
PASSAGES_STAGE = "passages"  # the subdirectory of a two-stage prepared directory that trains first


@dataclass
class Prepared:
    samples: pd.DataFrame
    eval: pd.DataFrame
    corpus: pd.DataFrame
    summary: dict = field(default_factory=dict)
    audit: dict = field(default_factory=dict)
    passages_stage: Prepared | None = None  # labelled input with synthetic.add_to_labels: trains first

    @classmethod
    def load(cls, directory: Path) -> Prepared:
        directory = resolve(directory)
        samples, held_out, corpus = (pd.read_parquet(directory / name) for name in TABLES.values())
        if samples.empty:
            raise UserError(f"{directory / 'train.parquet'}: no training samples; re-run `ragtune prepare`")
        if held_out.empty:
            raise UserError(
                f"{directory / 'eval.parquet'}: no held-out queries; re-run `ragtune prepare` "
                "(data.eval_fraction > 0, or qrels/dev.tsv)"
            )
        extras = [_read_json(directory / name) for name in ("summary.json", "audit.json")]
        return cls(samples, held_out, corpus, *extras)

    def judgements(self) -> tuple[Qrels, dict[str, str]]:
        """eval.parquet as qrels (query id -> passage id -> grade) and the held-out queries' texts."""
        qrels: Qrels = {}
        for qid, did, score in zip(self.eval["anchor_id"], self.eval["positive_id"], self.eval["score"]):
            qrels.setdefault(qid, {})[did] = float(score)
        return qrels, dict(zip(self.eval["anchor_id"], self.eval["anchor"]))

    def write(self, directory: Path, config_yaml: str) -> None:
        """The files of a prepared directory; the caller makes the directory swap atomic."""
        for attribute, name in TABLES.items():
            getattr(self, attribute).to_parquet(directory / name, index=False)
        (directory / "audit.json").write_text(json.dumps(self.audit, indent=2) + "\n", encoding="utf-8")
        (directory / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")
        (directory / "config.yaml").write_text(config_yaml, encoding="utf-8")
        if self.passages_stage is not None:
            (directory / PASSAGES_STAGE).mkdir()
            self.passages_stage.write(directory / PASSAGES_STAGE, config_yaml)

    def describe(self, directory: Path) -> str:
        """A few lines a person reads after `prepare`; the full record stays in summary.json and audit.json."""
        s, a = self.summary, self.audit
        without = a.get("pairs_without_negative", 0)
        lines = [
            f"prepared {directory}: {s['train_queries']:,} training queries ({s['input_kind']}), "
            f"{s['train_pairs']:,} pairs, {a.get('selected', 0):,} hard negatives ({without:,} pairs without one); "
            f"{s['eval_queries']:,} {held_out_label(s['eval_kind'])} queries ({s['eval_source']})"
        ]
        if "synthetic" in s:
            made = s["synthetic"]
            kept = ", ".join(f"{name} {count:,}" for name, count in made["kept"].items())
            lines.append(
                f"  synthetic queries from {made['passages_used']:,} of {made['passages']:,} passages: {kept}"
                + (f", titles {made['titles']:,}" if made.get("titles") else "")
            )
        if "teacher" in s:
            lines.append(f"  teacher: {s['teacher']['name']}")
        dropped = ", ".join(
            f"{count:,} {rule.removeprefix('dropped_').replace('_', ' ')}"
            for rule, count in a.items()
            if rule.startswith("dropped_") and count
        )
        lines.append(f"  mining: {a.get('candidates_seen', 0):,} candidates seen, dropped {dropped or 'none'}")
        if a.get("without_negative_by"):
            why = ", ".join(f"{n:,} {rule.replace('_', ' ')}" for rule, n in a["without_negative_by"].items())
            lines.append(f"  pairs without a negative, by the rule that removed their last candidate: {why}")
        lines.append(f"  details: {directory / 'summary.json'}, {directory / 'audit.json'}")
        if self.passages_stage is not None:
            lines.append("trains first, from the passages (then the labelled queries from its model):")
            lines.append(self.passages_stage.describe(directory / PASSAGES_STAGE))
        return "\n".join(lines)


def held_out_label(kind: str) -> str:
    """How every output names the held-out metric: synthetic queries are never passed off as real ones."""
    return "held-out synthetic" if kind == "synthetic" else "held-out"


def held_out_queries(kind: str) -> str:
    """What the held-out queries are, in words, for the report and the model card."""
    return "synthetic queries made from the passages" if kind == "synthetic" else "real queries"


def resolve(directory: Path) -> Path:
    """The prepared directory (also given as its train.parquet), checked to hold the three tables."""
    directory = Path(directory)
    if directory.is_file() and directory.suffix == ".parquet":
        directory = directory.parent
    missing = [name for name in TABLES.values() if not (directory / name).is_file()]
    if missing:
        raise UserError(f"{directory}: missing {', '.join(missing)}; pass the output of `ragtune prepare` to --data")
    return directory


def passages_stage(directory: Path) -> Path | None:
    """The prepared directory that trains first, if `directory` was prepared in two stages."""
    first = resolve(directory) / PASSAGES_STAGE
    return first if (first / "summary.json").is_file() else None


def data_fingerprint(directory: Path) -> dict[str, str]:
    """sha256 of each table: a checkpoint resumes only on the very data it was trained on."""
    directory = resolve(directory)
    digests = {}
    for name in TABLES.values():
        with (directory / name).open("rb") as handle:
            digests[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
