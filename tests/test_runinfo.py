"""The typed record of a run's metrics: what train writes is what report, index and the card read back,
and a metrics.json from an older ragtune still loads."""

import json

import pytest

from ragtune.errors import UserError
from ragtune.io.runinfo import RunMetrics


def test_a_record_round_trips_through_metrics_json(tmp_path):
    record = RunMetrics(
        heldout={"kind": "real", "source": "dev", "queries": 12},
        base={"ndcg@10": 0.5},
        tuned={"ndcg@10": 0.6},
        best_step=5,
        best_tuned={"step": 5, "ndcg@10": 0.6},
        history=[{"step": 0}, {"step": 5}],
        train={"steps": 5},
        eval_set="abc",
        base_weights="def",
    )
    record.write(tmp_path)
    assert "wise" not in json.loads((tmp_path / "metrics.json").read_text())  # only when averages were tried
    assert RunMetrics.load(tmp_path) == record
    record.wise = {"chosen_alpha": 0.5}
    assert RunMetrics.from_dict(record.to_dict()) == record


def test_an_older_metrics_json_loads_with_defaults_and_ignores_unknown_keys(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"tuned": {"ndcg@10": 0.7}, "base": {}, "retired_key": 1}))
    old = RunMetrics.load(tmp_path / "metrics.json")
    assert old.tuned == {"ndcg@10": 0.7} and old.eval_set == "" and old.wise is None and old.history == []


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "not found"),
        ("{oops", "not valid JSON"),
        ('{"base": {}}', "no 'tuned' metrics"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_a_missing_or_damaged_file_is_one_line(tmp_path, text, message):
    if text is not None:
        (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(UserError, match=message):
        RunMetrics.load(tmp_path)
