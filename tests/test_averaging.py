"""WiSE-FT weight averaging: the arithmetic on plain tensors (milliseconds)."""

import torch

from ragtune.averaging import averaged_state


def test_floating_tensors_are_interpolated_and_others_stay_tuned():
    tuned = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([7, 8])}
    base = {"w": torch.tensor([3.0, 1.0]), "ids": torch.tensor([0, 0])}
    averaged = averaged_state(tuned, base, 0.25)
    assert torch.equal(averaged["w"], torch.tensor([2.5, 1.5]))
    assert torch.equal(averaged["ids"], tuned["ids"])
    assert torch.equal(averaged_state(tuned, base, 1.0)["w"], tuned["w"])
