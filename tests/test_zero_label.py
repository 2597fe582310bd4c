"""Zero-label preparation pieces on small hand-made corpora: the held-out split, the teacher's veto."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from test_mining_rules import corpus_at

from ragtune import config as cfg
from ragtune.errors import UserError
from ragtune.io.data import Dataset, document_text
from ragtune.zero_label.pipeline import MAX_TITLE_PASSAGES, TeacherCheck, synthetic_dataset, title_queries
from ragtune.zero_label.teachers.fusion import FusionTeacher

SENTENCES = [
    "Vitamin D supplements reduce the risk of hip fractures in older adults.",
    "The trial enrolled two thousand patients across twelve hospitals in Europe.",
    "Bone density improved after one year of daily supplementation with calcium.",
    "Adverse events were rare and did not differ between the study groups.",
]


def passages(n: int) -> Dataset:
    corpus = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "title": [f"Study {i}" for i in range(n)],
            "text": [" ".join(f"In cohort {i}, {s.lower()}" for s in SENTENCES) for i in range(n)],
            "source_id": [f"s{i}" for i in range(n)],
        }
    )
    corpus["document"] = document_text(corpus["title"], corpus["text"], False)
    return Dataset("passages", corpus, {}, {})


def test_held_out_passages_never_give_training_queries():
    made = synthetic_dataset(passages(50), cfg.SyntheticConfig(evidence_queries=8, titles=False), seed=0)
    held_out = {pid for docs in made.dataset.qrels["dev"].values() for pid in docs}
    trained = {pid for docs in made.dataset.qrels["train"].values() for pid in docs}
    assert len(held_out) == 8 and trained and not held_out & trained
    assert set(made.positive_text) == set(made.dataset.qrels["train"]) | set(made.dataset.qrels["dev"])
    assert made.dataset.kind == "synthetic" and sum(made.audit["kept"].values()) == len(made.dataset.qrels["train"])
    documents = dict(zip(made.dataset.corpus["id"], made.dataset.corpus["document"]))
    for qid, docs in made.dataset.qrels["dev"].items():  # judged with the query sentence cut out of its passage
        (pid,) = docs
        assert made.dataset.queries[qid] in documents[pid] and made.dataset.queries[qid] not in made.positive_text[qid]


def test_real_titles_are_one_more_query_per_source_with_the_title_cut_off_its_positive():
    dataset = passages(50)
    corpus = dataset.corpus
    corpus.loc[40:, "title"] = ""  # untitled passages give no title query
    corpus.loc[30:39, ["title", "source_id"]] = ["Untitled", "untitled"]  # one title naming 10 passages: kept
    corpus["document"] = document_text(corpus["title"], corpus["text"], False)
    made = synthetic_dataset(Dataset("passages", corpus, {}, {}), cfg.SyntheticConfig(evidence_queries=8), seed=0)
    held_out = {pid for docs in made.dataset.qrels["dev"].values() for pid in docs}
    titles = {qid: docs for qid, docs in made.dataset.qrels["train"].items() if qid.startswith("title:")}
    expected = {f"title:s{i}" for i in range(30) if f"p{i}" not in held_out} | {"title:untitled"}
    assert set(titles) == expected and made.audit["titles"] == len(expected)
    assert titles["title:untitled"] == {f"p{i}": 1.0 for i in range(30, 40) if f"p{i}" not in held_out}
    single = sorted(expected - {"title:untitled"})[0]
    assert made.dataset.queries[single] == f"Study {single[len('title:s') :]}"
    assert not made.positive_text[single].startswith("Study") and "title:untitled" not in made.positive_text
    without = synthetic_dataset(
        Dataset("passages", corpus, {}, {}), cfg.SyntheticConfig(evidence_queries=8, titles=False), seed=0
    )
    assert not any(qid.startswith("title:") for qid in without.dataset.qrels["train"])


def test_a_title_that_names_too_many_passages_is_no_query():
    corpus = passages(MAX_TITLE_PASSAGES + 2).corpus
    corpus["title"], corpus["source_id"] = "Untitled", "untitled"
    assert title_queries(corpus)[0] == {}
    assert title_queries(corpus.iloc[:MAX_TITLE_PASSAGES])[0] == {"title:untitled": "Untitled"}


def test_held_out_queries_adapt_to_the_corpus_down_to_a_floor_that_decides():
    """Fewer than evidence_queries, with a warning, down to DECIDING_QUERIES (or fewer if the user asks for fewer)."""
    with pytest.warns(UserWarning, match=r"holding out 32 synthetic queries, not 200 .*30 or more still decide"):
        made = synthetic_dataset(passages(160), cfg.SyntheticConfig(), seed=0)
    assert len(made.dataset.qrels["dev"]) == 32
    with pytest.raises(UserError, match=r"gives 20 held-out .* 30 or more .*evidence_queries to 20 to decide"):
        synthetic_dataset(passages(100), cfg.SyntheticConfig(), seed=0)
    assert len(synthetic_dataset(passages(100), cfg.SyntheticConfig(evidence_queries=20), seed=0).evidence) == 20
    with pytest.raises(UserError, match=r"gives 4 held-out .*\(--eval-data\)$"):
        synthetic_dataset(passages(20), cfg.SyntheticConfig(evidence_queries=5), seed=0)


def check_at(scores: list[float], positive: str = "a") -> TeacherCheck:
    """A dense-only teacher (weight 0) over passages a, b, c, d at the given cosines to query e0; pair (0, a)."""
    query, corpus = corpus_at(scores)
    documents = ["a", "b", "c", "d"]
    teacher = FusionTeacher(documents, corpus, bm25_weight=0.0)
    return TeacherCheck(teacher, ["q"], query, [(0, 0)], [positive], corpus[:1], documents, corpus)


def test_teacher_vetoes_candidates_scored_at_or_above_the_positive():
    """The candidate closer to the query than the positive is vetoed; the next one is kept."""
    kept, vetoed = check_at([0.6, 0.9, 0.5, 0.4]).vetoes([[1, 2, 3]], keep=1)
    assert kept == [[2]] and vetoed == 1
    kept, vetoed = check_at([0.6, 0.9, 0.5, 0.4]).vetoes([[]], keep=1)
    assert kept == [[]] and vetoed == 0


def test_the_teacher_scores_the_positive_as_it_trains():
    """ICT cut the positive's sentence out: the veto compares with the cut text's embedding, not the full passage."""
    check = check_at([0.9, 0.7, 0.5, 0.4], positive="a, its sentence cut out")
    kept, vetoed = check.vetoes([[1, 2]], keep=2)
    assert kept == [[1, 2]] and vetoed == 0
    _, cut = corpus_at([0.6, 0.7, 0.5, 0.4])
    check = dataclasses.replace(check, positive_embeddings=cut[:1])  # the cut positive sits at 0.6
    kept, vetoed = check.vetoes([[1, 2]], keep=2)
    assert kept == [[2]] and vetoed == 1


def test_margins_are_the_teachers_positive_minus_negative_score():
    check = check_at([0.8, 0.7, 0.5, 0.2])
    margins = check.margins(np.array([0, 0, 0]), np.array([1, 3, -1]))
    assert np.allclose(margins[:2], [0.1, 0.6], atol=1e-6) and np.isnan(margins[2])


def test_margins_after_the_vetoes_reuse_their_scores_and_agree_with_a_fresh_pass():
    check = check_at([0.8, 0.7, 0.5, 0.2])
    check.vetoes([[1, 2]], keep=2)
    assert set(check.scored) == {(0, 1), (0, 2)}
    reused = check.margins(np.array([0, 0, 0]), np.array([1, 2, 3]))
    assert np.allclose(reused, check_at([0.8, 0.7, 0.5, 0.2]).margins(np.array([0, 0, 0]), np.array([1, 2, 3])))
