"""Weight averaging of the tuned model with its base (WiSE-FT, Wortsman et al. 2022).

alpha * tuned + (1 - alpha) * base keeps part of what the base model knew that a short fine-tune
forgets. Whether it helps depends on the run, so it is a candidate, not a rule: each alpha is
measured on the same held-out queries as the epochs, and it ships only if it beats the best epoch
(or, preferred, the base model: for synthetic held-out queries, which cannot see the forgetting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ragtune.retrieval.metrics import PRIMARY_METRIC


def averaged_state(tuned: dict, base: dict, alpha: float) -> dict:
    """alpha * tuned + (1 - alpha) * base for every floating tensor; other tensors (ids, counters) stay tuned."""
    return {k: alpha * v + (1 - alpha) * base[k] if v.is_floating_point() else v for k, v in tuned.items()}


@dataclass
class AverageChoice:
    alpha: float | None  # None: the best epoch itself beat every average
    candidates: list[dict]  # {"alpha", held-out metrics...} per alpha tried
    metrics: dict | None = None  # held-out metrics of the chosen average
    corpus_embeddings: np.ndarray | None = None  # of the chosen average: the embedding cache reuses them

    def as_dict(self) -> dict:
        return {"chosen_alpha": self.alpha, "candidates": self.candidates}


def choose_average(
    model, base_state: dict, evaluator, alphas: list[float], best_score: float, prefer_over: float | None = None
) -> AverageChoice:
    """Try each alpha on the held-out queries; leave `model` holding the winner (the tuned weights if none wins).

    An average wins by beating the best score so far; with `prefer_over` (the base model's score) the
    first average above it wins outright, however the epoch scored: held-out synthetic queries favour
    the fully tuned weights even where averaging measured better on real queries (docs/benchmarks.md).
    """
    tuned = {k: v.clone() for k, v in model.state_dict().items()}
    choice = AverageChoice(None, [])
    for alpha in alphas:
        model.load_state_dict(averaged_state(tuned, base_state, alpha))
        scores = evaluator.measure(model, steps=1)  # steps > 0: new weights, nothing cached
        choice.candidates.append({"alpha": alpha, **scores})
        if scores[PRIMARY_METRIC] > (best_score if prefer_over is None else prefer_over):
            best_score = scores[PRIMARY_METRIC]
            choice.alpha, choice.metrics, choice.corpus_embeddings = alpha, scores, evaluator.corpus_embeddings
            if prefer_over is not None:
                break  # the first average above the base ships: encoding the others could not change that
    model.load_state_dict(averaged_state(tuned, base_state, choice.alpha) if choice.alpha is not None else tuned)
    return choice
