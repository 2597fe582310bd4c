"""The negatives the training set reads, held outside the dataset so re-mining can swap them in place.

Every training row is a slot holding one negative (a corpus row). `prepare` wrote k rows per
(query, positive) pair, one per mined negative, or one row when it found none; re-mining with
the model being trained rewrites the slots of each pair with its hardest admissible negatives
and fills slots it found nothing for with guarded random negatives, so every row keeps the same
columns for the loss. Rows prepared as `random_negative` keep their negative.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ragtune.errors import UserError
from ragtune.negatives.mining import MiningAudit, MiningParams, draw_random_negative, mine


class NegativeStore:
    def __init__(self, samples: pd.DataFrame, corpus: pd.DataFrame, seed: int):
        self.doc_ids = corpus["id"].tolist()
        self.documents = corpus["document"].tolist()
        self.row_of = {did: i for i, did in enumerate(self.doc_ids)}
        self.sources = pd.factorize(corpus["source_id"])[0]
        self.rng = np.random.default_rng(seed)
        self.anchor_ids = sorted(samples["anchor_id"].unique())
        self.anchor_text = dict(zip(samples["anchor_id"], samples["anchor"]))
        query_of = {qid: i for i, qid in enumerate(self.anchor_ids)}
        self.positives = {
            query_of[qid]: {self.row_of[d] for d in group} for qid, group in samples.groupby("anchor_id")["positive_id"]
        }
        minable = (samples["kind"] != "random_negative").to_numpy()
        keys = list(zip(samples["anchor_id"], samples["positive_id"]))
        pairs = sorted({keys[i] for i in np.flatnonzero(minable)})
        pair_index = {key: i for i, key in enumerate(pairs)}
        self.pair_rows = [(query_of[q], self.row_of[p]) for q, p in pairs]
        self.slots_of_pair: list[list[int]] = [[] for _ in pairs]
        for slot in np.flatnonzero(minable):
            self.slots_of_pair[pair_index[keys[slot]]].append(int(slot))
        self.negative = np.array([self.row_of.get(n, -1) if n else -1 for n in samples["negative_id"].fillna("")])
        for pair, slots in enumerate(self.slots_of_pair):
            for slot in slots:
                if self.negative[slot] < 0:
                    self.negative[slot] = self._random_for(pair)

    def _random_for(self, pair: int) -> int:
        query = self.pair_rows[pair][0]
        negative = draw_random_negative(self.positives[query], self.sources, self.rng)
        if negative is None:
            raise UserError("the corpus has no passage outside the positives' sources to use as a negative")
        return negative

    @property
    def negatives_per_pair(self) -> int:
        return max((len(slots) for slots in self.slots_of_pair), default=0)

    def remine(
        self, query_embeddings: np.ndarray, corpus_embeddings: np.ndarray, params: MiningParams
    ) -> tuple[int, MiningAudit]:
        """Mine with fresh embeddings and fill each pair's slots, hardest first; returns how many mined ones are new.

        `query_embeddings` rows follow `anchor_ids`; `params.num_negatives` is ignored: a pair keeps
        the number of slots `prepare` gave it.
        """
        wanted = dataclasses.replace(params, num_negatives=self.negatives_per_pair)
        mined, audit = mine(query_embeddings, corpus_embeddings, self.pair_rows, self.positives, self.sources, wanted)
        added = 0
        for pair, slots in enumerate(self.slots_of_pair):
            hardest = mined[pair][: len(slots)]
            added += len(set(hardest) - {int(self.negative[slot]) for slot in slots})
            self.negative[slots] = hardest + [self._random_for(pair) for _ in range(len(slots) - len(hardest))]
        return added, audit

    def text(self, slot: int) -> str:
        return self.documents[self.negative[slot]]

    def state(self) -> list[str]:
        return [self.doc_ids[n] for n in self.negative]

    def restore(self, negative_ids: list[str]) -> None:
        self.negative = np.array([self.row_of[n] for n in negative_ids])
