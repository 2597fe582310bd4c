from datetime import UTC, datetime

import pandas as pd
import pytest
from conftest import write_beir

from ragtune import config as cfg
from ragtune.errors import UserError
from ragtune.io.data import load_dataset
from ragtune.prepare.run import SAMPLE_COLUMNS, prepare, split_queries

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = cfg.load(
    None,
    {
        "model.device": "cpu",
        "mining.range_min": 0,
        "mining.range_max": 30,
        "mining.min_score": 0.2,
        "mining.hard_negatives_per_query": 2,
        "mining.random_negative_ratio": 0.5,
    },
)


def run_prepare(dataset):
    return prepare(dataset, CONFIG.data, CONFIG.model, CONFIG.mining, CONFIG.synthetic, NOW)


@pytest.fixture(scope="module")
def slice_dataset(scifact_slice):
    return load_dataset(scifact_slice)


@pytest.fixture(scope="module")
def prepared(slice_dataset):
    return run_prepare(slice_dataset)


@pytest.mark.slow
def test_output_schema_and_kinds(prepared):
    samples = prepared.samples
    assert list(samples.columns) == SAMPLE_COLUMNS
    assert set(samples["kind"]) <= {"positive", "hard_negative", "random_negative"}
    assert samples["training_sample_id"].is_unique
    assert (samples["event_timestamp"] == NOW).all()
    assert samples.loc[samples["kind"] == "positive", "negative"].isna().all()
    assert samples.loc[samples["kind"] != "positive", "negative"].notna().all()
    assert (samples["kind"] == "hard_negative").sum() == prepared.audit["selected"]
    assert (samples["kind"] == "random_negative").sum() == round(0.5 * prepared.summary["train_pairs"])


@pytest.mark.slow
def test_no_test_or_held_out_query_enters_training(prepared, slice_dataset):
    train_queries = set(prepared.samples["anchor_id"])
    assert not train_queries & set(slice_dataset.qrels["test"])
    assert not train_queries & set(prepared.eval["anchor_id"])
    assert len(set(prepared.eval["anchor_id"])) == prepared.summary["eval_queries"] > 0


@pytest.mark.slow
def test_negatives_are_never_positives_of_their_query(prepared, slice_dataset):
    train = slice_dataset.positives("train")
    for row in prepared.samples.dropna(subset=["negative_id"]).itertuples():
        assert row.negative_id not in train[row.anchor_id]


@pytest.mark.slow
def test_same_inputs_give_identical_samples(slice_dataset, prepared):
    again = run_prepare(slice_dataset)
    pd.testing.assert_frame_equal(again.samples, prepared.samples)


def test_dev_qrels_become_the_eval_split_and_test_overlap_is_dropped(tmp_path):
    docs = [{"_id": f"d{i}", "title": f"t{i}", "text": "x"} for i in range(4)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(4)]
    root = write_beir(
        tmp_path / "b",
        docs,
        queries,
        {
            "train": [["q0", "d0", 1], ["q1", "d1", 1], ["q3", "d3", 1]],
            "dev": [["q1", "d1", 1]],
            "test": [["q3", "d3", 1]],
        },
    )
    splits = split_queries(load_dataset(root), 0.5, 0)
    assert set(splits.train) == {"q0"} and set(splits.eval) == {"q1"} and splits.eval_source == "dev"


def test_no_training_positives_is_a_user_error(tmp_path):
    docs = [{"_id": "d0", "title": "t", "text": "x"}]
    root = write_beir(tmp_path / "b", docs, [{"_id": "q0", "text": "q"}], {"train": [["q0", "d0", 0]]})
    with pytest.raises(UserError, match="no training positives"):
        split_queries(load_dataset(root), 0.1, 0)


def test_eval_data_drives_the_held_out_split_and_never_trains(tmp_path):
    """--eval-data: its queries are the held-out set (real), and a training query with the same text is dropped."""
    docs = [{"_id": f"d{i}", "title": f"t{i}", "text": "x"} for i in range(4)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(4)]
    data = load_dataset(
        write_beir(tmp_path / "b", docs, queries, {"train": [["q0", "d0", 1], ["q1", "d1", 1], ["q2", "d2", 1]]})
    )
    real = load_dataset(
        write_beir(tmp_path / "e", docs, [{"_id": "r1", "text": "query 1"}], {"test": [["r1", "d1", 1]]})
    )
    splits = split_queries(data, 0.5, 0, real, "test")
    assert set(splits.train) == {"q0", "q2"} and splits.eval == {"r1": {"d1": 1.0}}
    assert splits.eval_kind == "real" and "eval-data" in splits.eval_source


def test_passages_only_held_out_queries_are_labelled_synthetic(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(f'{{"id": "p{i}", "title": "title {i}", "text": "text {i}"}}\n' for i in range(10)))
    assert split_queries(load_dataset(path), 0.2, 0).eval_kind == "synthetic"


def test_eval_data_must_judge_the_same_corpus(tmp_path):
    from ragtune.prepare.run import load_eval_data

    docs = [{"_id": "d0", "title": "t", "text": "x"}]
    root = write_beir(
        tmp_path / "e",
        docs + [{"_id": "other", "text": "y"}],
        [{"_id": "r", "text": "q"}],
        {"test": [["r", "other", 1]]},
    )
    corpus = load_dataset(write_beir(tmp_path / "b", docs, [{"_id": "q", "text": "q"}], {"train": [["q", "d0", 1]]}))
    config = cfg.load(None, {"data.eval_data": str(root)})
    with pytest.raises(UserError, match="passage 'other' that the training corpus does not hold"):
        load_eval_data(config.data, corpus.corpus)


@pytest.mark.slow
def test_labels_plus_synthetic_queries_prepare_two_stages_that_the_labels_judge(slice_dataset, prepared):
    """synthetic.add_to_labels (#31, few labels): the labelled stage is what it is without the flag; a
    passages stage (synthetic queries, teacher margins) trains first, judged by the same real queries."""
    import dataclasses

    synthetic = dataclasses.replace(CONFIG.synthetic, add_to_labels=True, passages=60, evidence_queries=30)
    both = prepare(slice_dataset, CONFIG.data, CONFIG.model, CONFIG.mining, synthetic, NOW)
    pd.testing.assert_frame_equal(both.samples, prepared.samples)  # the labelled stage is unchanged
    first = both.passages_stage
    anchors = set(first.samples["anchor_id"])
    assert {a.split(":")[0] for a in anchors} >= {"ict", "crop", "terms"}, anchors
    assert not anchors & (set(slice_dataset.qrels["train"]) | set(slice_dataset.qrels["test"]))
    assert set(first.eval["anchor_id"]) == set(prepared.eval["anchor_id"])  # the same real judges
    assert set(first.eval["positive_id"]) == set(prepared.eval["positive_id"])
    assert first.summary["eval_kind"] == "real" and first.summary["eval_source"] == prepared.summary["eval_source"]
    assert first.summary["teacher"]["kind"] == "fusion" and first.samples["label"].notna().any()
    assert prepared.passages_stage is None
