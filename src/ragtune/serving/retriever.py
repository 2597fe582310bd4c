"""Search what a repo serves: the query encoded by the view's model, vector search through Feast's online store."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ragtune import console
from ragtune.errors import UserError
from ragtune.io.data import Dataset
from ragtune.retrieval.fusion import FusionChoice, fuse, mode_name
from ragtune.retrieval.metrics import CUTOFF, Rankings
from ragtune.serving.keywords import Keywords, keywords_dir
from ragtune.serving.repo import ENTITY, ID_FEATURE, TAG, connect_online, current_view, open_store, read_online


@dataclass
class Hit:
    id: str
    title: str
    text: str
    score: float  # cosine similarity (dense), or the fused score on the cosine scale (hybrid)


class Retriever:
    """Search through the repo's online store, with the query encoded by the view's model.

    `model` defaults to the one the view was built with; another model is refused (its vectors
    would not be comparable), checked by weights hash. `mode` "recorded" serves as the model's
    training run chose on evidence (dense, or fused with BM25 at a weight); "dense" and "hybrid"
    override it. Hybrid scores are exactly `retrieval.fusion`'s full-corpus fusion, so what is
    served is what `ragtune evaluate` measured.
    """

    def __init__(
        self,
        repo: str | Path,
        model: str | None = None,
        device: str = "auto",
        encode_batch_size: int = 64,
        mode: str = "recorded",
        bm25_weight: float = 0.0,
    ):
        from ragtune.retrieval.models import load_model

        self.repo = Path(repo)
        self.store = open_store(self.repo)
        self.view = current_view(self.store, self.repo)
        connect_online(self.store, self.repo)
        self.model_name = self._check_model(model)
        self.requested_weight = bm25_weight
        self.bm25_weight = self._serving_weight(mode, bm25_weight)
        self._keywords: Keywords | None = None
        self.model = load_model(self.model_name, device)
        self.encode_batch_size = encode_batch_size

    @property
    def mode(self) -> str:
        return mode_name(self.bm25_weight)

    @property
    def keywords(self) -> Keywords:
        """The view's keyword side, loaded on first hybrid search."""
        if self._keywords is None:
            self._keywords = Keywords.load(keywords_dir(self.repo, self.view.name))
        return self._keywords

    def weight_for(self, mode: str | None) -> float:
        """The BM25 weight one request serves with: None keeps this retriever's, else as `mode` asks."""
        if mode is None:
            return self.bm25_weight
        if mode == "dense":
            return 0.0
        if mode == "hybrid":
            return self._serving_weight("hybrid", self.requested_weight)
        if TAG + "keywords" not in self.view.tags:  # recorded, on a view that can only serve dense (warned at start)
            return 0.0
        return self._serving_weight("recorded", 0.0)

    def _check_model(self, model: str | None) -> str:
        from ragtune.retrieval.models import model_fingerprint, resolve_model

        tags = self.view.tags
        name = model or tags[TAG + "model"]
        try:
            weights = model_fingerprint(resolve_model(name))
        except UserError as exc:
            if model:
                raise
            raise UserError(f"{exc} ({self.view.name} was built with it; pass its new path as --model)") from None
        if weights != tags[TAG + "weights"]:
            raise UserError(
                f"model '{name}' (weights {weights}) is not the one {self.repo}:{self.view.name} was "
                f"built with ('{tags[TAG + 'model']}', weights {tags[TAG + 'weights']}); search with that model, "
                f"or `ragtune index --model {name}` first"
            )
        return name

    def _serving_weight(self, mode: str, bm25_weight: float) -> float:
        """The BM25 weight to serve with (0: dense) from the view's record and the caller's choice."""
        tags, where = self.view.tags, f"{self.repo}:{self.view.name}"
        recorded = FusionChoice.from_dict(json.loads(tags.get(TAG + "fusion", "{}"))).bm25_weight
        if TAG + "keywords" not in tags:  # indexed before ragtune served hybrid
            if mode == "hybrid":
                raise UserError(f"--mode hybrid: {where} has no keyword index; `ragtune index` again adds it")
            warnings.warn(f"{where} serves dense only (no keyword index); `ragtune index` again adds it", stacklevel=3)
            return 0.0
        if mode == "dense":
            return 0.0
        weight = bm25_weight or recorded
        if mode == "hybrid" and not weight:
            raise UserError(
                f"--mode hybrid: the model's run chose dense (no BM25 weight recorded in {where}); "
                "pass --bm25-weight W in (0, 1]"
            )
        return weight if mode == "hybrid" or bm25_weight else recorded

    def encode(self, questions: list[str]) -> np.ndarray:
        from ragtune.retrieval.embeddings import encode

        return encode(self.model, questions, self.encode_batch_size, "query", "encode queries")

    def search_vector(self, vector: np.ndarray, top_k: int) -> list[Hit]:
        """Dense, best first, with title and text."""
        ids, scores, rows = self.nearest(vector, top_k, [ID_FEATURE, "title", "text"])
        return [Hit(i, title, text, score) for i, title, text, score in zip(ids, rows["title"], rows["text"], scores)]

    def nearest(self, vector: np.ndarray, top_k: int, names: list[str]) -> tuple[list[str], list[float], dict]:
        """Ids and cosines of the top_k nearest passages, best first (ties by id), and the features `names` of each.

        Milvus returns them unsorted. Ids come from the id feature, never from the entity column
        (misaligned in Feast 0.67).
        """
        if top_k <= 0:
            raise UserError(f"--top-k {top_k}: must be a positive integer")
        response = read_online(
            self.store,
            lambda: self.store.retrieve_online_documents_v2(
                features=self.feature_refs(names), query=vector.tolist(), top_k=top_k, distance_metric="COSINE"
            ).to_dict(),
        )
        scores = [float(d) for d in response["distance"]]
        order = sorted(range(len(scores)), key=lambda r: (-scores[r], response[ID_FEATURE][r]))
        rows = {name: [response[name][r] for r in order] for name in names}
        return rows[ID_FEATURE], [scores[r] for r in order], rows

    def search_hybrid(self, question: str, vector: np.ndarray, top_k: int, weight: float) -> list[Hit]:
        """`fuse` of cosine and BM25 over dense and keyword candidates, deepened until no passage outside
        them could enter the top k (their scores are bounded by the last candidate of each list).

        Dense candidates bring their cosine from the vector search. A keyword-only candidate's cosine is
        at most the last dense one's, so only those that could still beat the dense candidates' k-th
        fused score are read back for their embedding, and only the final k for title and text.
        """
        lexical = self.keywords.bm25.corpus_scores(question)
        by_lexical = np.argsort(-lexical, kind="stable")
        depth, size = max(top_k, CUTOFF), self.keywords.size
        cosine: dict[str, float] = {}
        while True:
            depth = min(depth, size)
            dense, scores, _ = self.nearest(vector, depth, [ID_FEATURE])
            cosine.update(zip(dense, scores))
            refs, last_cosine = (cosine[dense[0]], float(lexical[by_lexical[0]])), cosine[dense[-1]]
            dense_scores = np.sort(self._fused(dense, [cosine[i] for i in dense], lexical, weight, refs))
            kth = dense_scores[-top_k] if len(dense) >= top_k else -np.inf
            seen = set(dense)
            keyword_only = [self.keywords.ids[r] for r in by_lexical[:depth] if lexical[r] > 0]
            keyword_only = [i for i in keyword_only if i not in seen]
            ceilings = self._fused(keyword_only, [last_cosine] * len(keyword_only), lexical, weight, refs)
            hopeful = [i for i, ceiling in zip(keyword_only, ceilings) if ceiling >= kth]
            embeddings = self.features_of([i for i in hopeful if i not in cosine], ["embedding"])["embedding"]
            cosine.update({i: float(vector @ embedding) for i, embedding in embeddings.items()})
            ids = dense + hopeful
            scores = self._fused(ids, [cosine[i] for i in ids], lexical, weight, refs)
            order = np.lexsort((ids, -scores))[:top_k]
            bound = fuse(last_cosine, lexical[by_lexical[depth - 1]], weight, *refs)
            if depth == size or (len(order) == top_k and scores[order[-1]] >= bound):
                top = [ids[i] for i in order]
                texts = self.features_of(top, ["title", "text"])
                return [Hit(i, texts["title"][i], texts["text"][i], float(scores[r])) for i, r in zip(top, order)]
            depth *= 4

    def _fused(self, ids: list[str], cosines: list[float], lexical: np.ndarray, weight: float, refs) -> np.ndarray:
        """`fuse` for passages by id, with the query's corpus-wide references (best cosine, best BM25)."""
        return fuse(np.asarray(cosines, dtype=np.float64), lexical[[self.keywords.row[i] for i in ids]], weight, *refs)

    def features_of(self, ids: list[str], names: list[str]) -> dict[str, dict]:
        """Features `names` of passages by id, read from the online store: {name: {id: value}}."""
        if not ids:
            return {name: {} for name in names}
        rows = read_online(
            self.store,
            lambda: self.store.get_online_features(
                features=self.feature_refs([ID_FEATURE, *names]), entity_rows=[{ENTITY: i} for i in ids]
            ).to_dict(),
        )
        found = {name: dict(zip(rows[ID_FEATURE], rows[name])) for name in names}
        if "embedding" in found:
            found["embedding"] = {i: np.asarray(e, dtype=np.float32) for i, e in found["embedding"].items()}
        return found

    def feature_refs(self, names: list[str]) -> list[str]:
        return [f"{self.view.name}:{name}" for name in names]

    def search(self, question: str, top_k: int = 10, mode: str | None = None) -> list[Hit]:
        """Best first; `mode` (recorded, dense, hybrid) overrides the retriever's for this search only."""
        weight = self.weight_for(mode)
        vector = self.encode([question])[0]
        if weight:
            return self.search_hybrid(question, vector, top_k, weight)
        return self.search_vector(vector, top_k)


def feast_rankings(retriever: Retriever, queries: dict[str, str], query_ids: list[str]) -> Rankings:
    """Rankings as the serving path returns them, ready for `retrieval_metrics`."""
    vectors = retriever.encode([queries[q] for q in query_ids])
    rankings = {}
    with console.progress(len(query_ids), "search via feast", "query") as bar:
        for qid, vector in zip(query_ids, vectors):
            if retriever.bm25_weight:
                hits = retriever.search_hybrid(queries[qid], vector, CUTOFF, retriever.bm25_weight)
            else:
                hits = retriever.search_vector(vector, CUTOFF)
            rankings[qid] = [(hit.id, hit.score) for hit in hits]
            bar.update(1)
    return rankings


def evaluate_via_feast(
    dataset: Dataset, repo: Path, *, split: str, models: list[str], model_config, feast_config
) -> dict[str, dict[str, float]]:
    """The IR metrics of what the repo serves, on the dataset's queries and qrels."""
    from ragtune.io.data import evaluation_qrels
    from ragtune.retrieval.metrics import retrieval_metrics

    if len(models) > 1:
        raise UserError("--via-feast evaluates the repo's one indexed model; pass at most one --model")
    qrels = evaluation_qrels(dataset, split)
    m, f = model_config, feast_config
    retriever = Retriever(repo, models[0] if models else None, m.device, m.encode_batch_size, f.mode, f.bm25_weight)
    served = set(pd.read_parquet(retriever.view.batch_source.path, columns=[ID_FEATURE])[ID_FEATURE])
    missing = sorted({did for docs in qrels.values() for did in docs} - served)
    if missing:
        raise UserError(
            f"{repo}: passage '{missing[0]}' of the qrels is not indexed ({len(missing)} missing); "
            "index the same corpus with `ragtune index --data ...`"
        )
    rankings = feast_rankings(retriever, dataset.queries, sorted(qrels))
    label = f"{retriever.model_name} {retriever.mode} via feast ({retriever.view.name})"
    return {label: retrieval_metrics(rankings, qrels)}
