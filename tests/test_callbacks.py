"""When the held-out split cannot decide: pure logic, no training."""

from ragtune.train.callbacks import undecidable


def test_a_split_that_cannot_show_a_gain_is_named_with_its_numbers():
    """Repro (#28): 4 real queries with the base model at nDCG@10 1.0 gave no warning."""
    assert "4 queries, base model nDCG@10 1.000: too few" in undecidable(4, {"ndcg@10": 1.0})
    assert "no room left" in undecidable(200, {"ndcg@10": 0.97})
    assert "--eval-data" in undecidable(10, {"ndcg@10": 0.5})
    assert undecidable(200, {"ndcg@10": 0.7}) is None
