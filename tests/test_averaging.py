"""WiSE-FT weight averaging: the arithmetic on plain tensors and the rule that picks an average (milliseconds)."""

import torch

from ragtune.train.averaging import averaged_state, choose_average


def test_floating_tensors_are_interpolated_and_others_stay_tuned():
    tuned = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([7, 8])}
    base = {"w": torch.tensor([3.0, 1.0]), "ids": torch.tensor([0, 0])}
    averaged = averaged_state(tuned, base, 0.25)
    assert torch.equal(averaged["w"], torch.tensor([2.5, 1.5]))
    assert torch.equal(averaged["ids"], tuned["ids"])
    assert torch.equal(averaged_state(tuned, base, 1.0)["w"], tuned["w"])


class ScoreByWeight:
    """Held-out nDCG@10 as a function of a one-weight model's weight: the choice rule in isolation."""

    def __init__(self, table: dict[float, float]):
        self.table, self.corpus_embeddings = table, None

    def measure(self, model, steps: int) -> dict:
        return {"ndcg@10": self.table[round(model.weight.item(), 4)]}


def one_weight_model(value: float) -> torch.nn.Linear:
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(value)
    return model


# tuned weight 1.0 (held-out 0.80), base 0.0 (0.70): alpha is the averaged weight itself
SCORES = {0.75: 0.78, 0.5: 0.76, 0.25: 0.72}


def test_an_average_ships_only_when_it_beats_the_best_epoch():
    model = one_weight_model(1.0)
    choice = choose_average(model, {"weight": torch.zeros(1, 1)}, ScoreByWeight(SCORES), [0.5, 0.75], 0.80)
    assert choice.alpha is None and [c["alpha"] for c in choice.candidates] == [0.5, 0.75]
    assert model.weight.item() == 1.0  # the tuned weights are back


def test_preferred_the_first_average_above_the_base_ships_over_a_better_epoch():
    model = one_weight_model(1.0)
    base = {"weight": torch.zeros(1, 1)}
    choice = choose_average(model, base, ScoreByWeight(SCORES), [0.5, 0.75], 0.80, prefer_over=0.70)
    assert choice.alpha == 0.5 and choice.metrics == {"ndcg@10": 0.76} and model.weight.item() == 0.5
    below = choose_average(one_weight_model(1.0), base, ScoreByWeight(SCORES), [0.25], 0.80, prefer_over=0.73)
    assert below.alpha is None  # an average no better than the base never ships
