"""The losses `ragtune train` offers: name -> what the loss is, the columns it reads, how to build it.

One table drives config validation, `--help` and the training dataset, so a loss name that is
not here is an error everywhere. Factories import sentence-transformers inside, so the CLI can
validate a config without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TRIPLETS = ("anchor", "positive", "negative")  # the mined negative of each row
LABELLED_PAIRS = ("sentence1", "sentence2", "label")  # (anchor, positive, 1) and (anchor, negative, 0)


@dataclass(frozen=True)
class LossSpec:
    help: str
    columns: tuple[str, ...]
    build: Callable[[Any, Any], Any]  # (model, the train config section) -> loss


def _mnrl(model, train):
    from sentence_transformers.sentence_transformer import losses

    return losses.MultipleNegativesRankingLoss(model, gather_across_devices=train.gather_across_devices)


def _cached_mnrl(model, train):
    from sentence_transformers.sentence_transformer import losses

    return losses.CachedMultipleNegativesRankingLoss(
        model, mini_batch_size=train.mini_batch_size, gather_across_devices=train.gather_across_devices
    )


def _contrastive(model, train):
    from sentence_transformers.sentence_transformer import losses

    return losses.ContrastiveLoss(model)


LOSSES: dict[str, LossSpec] = {
    "mnrl": LossSpec("in-batch negatives plus the mined hard negative", TRIPLETS, _mnrl),
    "cached-mnrl": LossSpec("mnrl for large batches on small memory (train.mini_batch_size)", TRIPLETS, _cached_mnrl),
    "contrastive": LossSpec(
        "labelled pairs: (query, positive, 1) and (query, negative, 0)", LABELLED_PAIRS, _contrastive
    ),
}
