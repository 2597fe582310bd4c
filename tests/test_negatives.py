"""The negative store on synthetic corpora: slots per pair, re-mining with fewer candidates than slots, state."""

import numpy as np
import pandas as pd
from test_mining_rules import corpus_at

from ragtune.negatives.mining import MiningParams
from ragtune.negatives.store import NegativeStore

GUARD = MiningParams(range_min=0, range_max=10, min_score=0.0, relative_margin=1.0, num_negatives=99)


def tables(negatives_of_pair: dict[tuple[str, str], list[str | None]], n_docs: int = 8):
    corpus = pd.DataFrame({"id": [f"d{i}" for i in range(n_docs)], "source_id": [f"s{i}" for i in range(n_docs)]})
    corpus["document"] = "text of " + corpus["id"]
    rows = [
        {
            "kind": "hard_negative" if neg else "positive",
            "anchor_id": q,
            "anchor": f"query {q}",
            "positive_id": p,
            "negative_id": neg,
        }
        for (q, p), negs in negatives_of_pair.items()
        for neg in negs
    ]
    return pd.DataFrame(rows), corpus


def test_pairs_keep_their_slot_count_when_remining_finds_fewer_or_more():
    """Repro of the k >= 2 crash: pair A has 3 slots, pair B 1; mining finds 2 for A and 2 for B."""
    samples, corpus = tables({("qa", "d0"): ["d5", "d6", "d7"], ("qb", "d1"): ["d5"]})
    store = NegativeStore(samples, corpus, seed=0)
    assert store.negatives_per_pair == 3
    query, vectors = corpus_at([0.9, 0.9, 0.8, 0.7, 0.6, 0.05, 0.04, 0.03])
    queries = np.repeat(query, 2, axis=0)
    added, audit = store.remine(queries, vectors, MiningParams(0, 10, 0.75, 1.0, 1))  # above 0.75: d0, d1, d2
    a_slots, b_slots = store.slots_of_pair
    assert len(a_slots) == 3 and len(b_slots) == 1
    a, b = store.negative[a_slots].tolist(), store.negative[b_slots].tolist()
    assert a[:2] == [1, 2] and a[2] != 0  # hardest first, the slot left over gets a guarded random negative
    assert b == [0]  # one slot: only its hardest
    assert audit.pairs == 2 and audit.selected == 4 and added == 3


def test_slots_without_a_mined_negative_get_guarded_random_ones():
    samples, corpus = tables({("qa", "d0"): ["d3", "d4"], ("qa", "d1"): [None]}, n_docs=6)
    corpus.loc[1, "source_id"] = "s0"  # d1 is d0's sibling
    store = NegativeStore(samples, corpus, seed=0)
    assert (store.negative >= 0).all()
    query, vectors = corpus_at([0.9, 0.85, 0.1, 0.1, 0.1, 0.1])
    store.remine(query, vectors, MiningParams(0, 10, 0.5, 1.0, 1))  # floor 0.5: nothing survives
    assert len(store.negative) == 3
    assert not set(store.negative.tolist()) & {0, 1}  # never a positive or a sibling


def test_state_round_trips():
    samples, corpus = tables({("qa", "d0"): ["d5", "d6"], ("qb", "d1"): ["d7"]})
    store = NegativeStore(samples, corpus, seed=0)
    saved = store.state()
    assert saved == ["d5", "d6", "d7"]
    other = NegativeStore(samples, corpus, seed=1)
    other.negative[:] = 2
    other.restore(saved)
    assert other.state() == saved and other.text(0) == "text of d5"
