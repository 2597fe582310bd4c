"""Zero-label preparation pieces on small hand-made corpora: the held-out split, the teacher's veto."""

import pandas as pd
import pytest
from test_mining_rules import corpus_at

from ragtune import config as cfg
from ragtune.data import Dataset, document_text
from ragtune.errors import UserError
from ragtune.teacher import FusionTeacher
from ragtune.zero_label import synthetic_dataset, teacher_vetoes

SENTENCES = [
    "Vitamin D supplements reduce the risk of hip fractures in older adults.",
    "The trial enrolled two thousand patients across twelve hospitals in Europe.",
    "Bone density improved after one year of daily supplementation with calcium.",
    "Adverse events were rare and did not differ between the study groups.",
]


def passages(n: int) -> Dataset:
    corpus = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "title": [f"Study {i}" for i in range(n)],
                           "text": [" ".join(f"In cohort {i}, {s.lower()}" for s in SENTENCES) for i in range(n)],
                           "source_id": [f"s{i}" for i in range(n)]})  # fmt: skip
    corpus["document"] = document_text(corpus["title"], corpus["text"], False)
    return Dataset("passages", corpus, {}, {})


def test_held_out_passages_never_give_training_queries():
    made = synthetic_dataset(passages(50), cfg.SyntheticConfig(evidence_queries=8), seed=0)
    held_out = {pid for docs in made.dataset.qrels["dev"].values() for pid in docs}
    trained = {pid for docs in made.dataset.qrels["train"].values() for pid in docs}
    assert len(held_out) == 8 and trained and not held_out & trained
    assert set(made.positive_text) == set(made.dataset.qrels["train"])
    assert made.dataset.kind == "synthetic" and sum(made.audit["kept"].values()) == len(made.positive_text)


def test_a_corpus_too_small_to_hold_out_queries_is_one_line():
    with pytest.raises(UserError, match="too few to hold out 5 synthetic queries"):
        synthetic_dataset(passages(20), cfg.SyntheticConfig(), seed=0)


def test_teacher_vetoes_candidates_scored_at_or_above_the_positive():
    """Dense-only teacher (weight 0): the candidate closer to the query than the positive is vetoed."""
    query, corpus = corpus_at([0.6, 0.9, 0.5, 0.4])
    teacher = FusionTeacher(["a", "b", "c", "d"], corpus, bm25_weight=0.0)
    kept, vetoed = teacher_vetoes(teacher, ["q"], query, ["a", "b", "c", "d"], corpus, [(0, 0)], [[1, 2, 3]], keep=1)
    assert kept == [[2]] and vetoed == 1
    kept, vetoed = teacher_vetoes(teacher, ["q"], query, ["a", "b", "c", "d"], corpus, [(0, 0)], [[]], keep=1)
    assert kept == [[]] and vetoed == 0
