"""Teachers by name (synthetic.teacher): each scores (query, passage) pairs on the student's cosine scale,
vetoes false negatives and labels margins (protocol.Teacher says what a teacher provides).

A new teacher is one module in this package and one line in TEACHERS."""

from __future__ import annotations

import numpy as np

from ragtune.config import SyntheticConfig
from ragtune.errors import UserError
from ragtune.zero_label.teachers.cross_encoder import CrossEncoderTeacher
from ragtune.zero_label.teachers.fusion import FusionTeacher
from ragtune.zero_label.teachers.protocol import Evidence, Teacher

TEACHERS: dict[str, type[Teacher]] = {"fusion": FusionTeacher, "cross-encoder": CrossEncoderTeacher}
NO_TEACHER = "none"

__all__ = ["NO_TEACHER", "TEACHERS", "Evidence", "Teacher", "build_teacher", "check", "choose", "label"]


def check(settings: SyntheticConfig) -> None:
    """A known teacher whose settings hold, before any slow work."""
    if settings.teacher == NO_TEACHER:
        return
    if settings.teacher not in TEACHERS:
        raise UserError(f"synthetic.teacher {settings.teacher!r}: choose {', '.join([*TEACHERS, NO_TEACHER])}")
    TEACHERS[settings.teacher].check(settings)


def choose(settings: SyntheticConfig, evidence: Evidence) -> dict:
    """The teacher's record for summary.json, its kind included."""
    return {"kind": settings.teacher} | TEACHERS[settings.teacher].choose(settings, evidence)


def kind_of(record: dict) -> str:
    """The teacher a summary.json record names (records written before `kind` existed: by their fields)."""
    return record.get("kind") or ("cross-encoder" if "cross_encoder" in record else "fusion")


def build_teacher(record: dict, documents: list[str], corpus_embeddings: np.ndarray, device: str, batch_size: int):
    """The one place a teacher is built, in prepare and in evaluate alike, from the record prepare wrote."""
    return TEACHERS[kind_of(record)].from_record(record, documents, corpus_embeddings, device, batch_size)


def label(record: dict, model_name: str) -> str:
    return TEACHERS[kind_of(record)].label(record, model_name)
