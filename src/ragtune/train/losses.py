"""The losses `ragtune train` offers: name -> what the loss is, the columns it reads, how to build it.

One table drives config validation, `--help` and the training dataset, so a loss name that is
not here is an error everywhere. Factories import sentence-transformers inside, so the CLI can
validate a config without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragtune.errors import UserError

TRIPLETS = ("anchor", "positive", "negative")  # the mined negative of each row
LABELLED_PAIRS = ("sentence1", "sentence2", "label")  # (anchor, positive, 1) and (anchor, negative, 0)
MARGINS = (*TRIPLETS, "label")  # label: the teacher's score of the positive minus its score of the negative
AUTO = "auto"  # margin-mse when prepare wrote teacher margins (zero-label), else mnrl


@dataclass(frozen=True)
class LossSpec:
    help: str
    columns: tuple[str, ...]
    build: Callable[[Any, Any], Any]  # (model, the train config section) -> loss


def _mnrl(model, train):
    from sentence_transformers.sentence_transformer import losses

    return losses.MultipleNegativesRankingLoss(
        model, scale=train.scale, gather_across_devices=train.gather_across_devices
    )


def _cached_mnrl(model, train):
    from sentence_transformers.sentence_transformer import losses

    return losses.CachedMultipleNegativesRankingLoss(
        model,
        scale=train.scale,
        mini_batch_size=train.mini_batch_size,
        gather_across_devices=train.gather_across_devices,
    )


def _gist(model, train):
    """The guide is the model as training starts (the base, a copy of the weights already in memory): an
    in-batch candidate the guide scores above the positive is an unlabelled positive and is masked."""
    import copy

    from sentence_transformers.sentence_transformer import losses

    guide = copy.deepcopy(model).eval()
    return losses.GISTEmbedLoss(
        model, guide, temperature=1 / train.scale, gather_across_devices=train.gather_across_devices
    )


def _margin_mse(model, train):
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.util import pairwise_cos_sim

    # the default is the dot product; the teacher's margins are on the cosine scale (ragtune.teacher.fuse)
    return losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim)


def _contrastive(model, train):
    from sentence_transformers.sentence_transformer import losses

    return losses.ContrastiveLoss(model)


LOSSES: dict[str, LossSpec] = {
    "mnrl": LossSpec("in-batch negatives plus the mined hard negative", TRIPLETS, _mnrl),
    "cached-mnrl": LossSpec("mnrl for large batches on small memory (train.mini_batch_size)", TRIPLETS, _cached_mnrl),
    "gist": LossSpec("mnrl that masks in-batch negatives the base model scores above the positive", TRIPLETS, _gist),
    "margin-mse": LossSpec(
        "GPL-style: the student's cosine margin matches the teacher's (zero-label)", MARGINS, _margin_mse
    ),
    "contrastive": LossSpec(
        "labelled pairs: (query, positive, 1) and (query, negative, 0)", LABELLED_PAIRS, _contrastive
    ),
}


def resolve_loss(name: str, has_margins: bool) -> str:
    """The loss a run trains with: `auto` follows the prepared data, margin-mse needs its margins."""
    if name == AUTO:
        return "margin-mse" if has_margins else "mnrl"
    if LOSSES[name].columns == MARGINS and not has_margins:
        raise UserError(
            f"train.loss {name} needs the teacher margins that `ragtune prepare` writes for zero-label data "
            "(synthetic.teacher fusion); pick another loss or re-run prepare on the passages"
        )
    return name
