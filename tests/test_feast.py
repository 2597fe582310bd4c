"""Feast serving against the real SDK: a Milvus Lite file (server on loopback) and duckdb over parquet."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ragtune import api, cli
from ragtune import config as cfg
from ragtune.config import ModelConfig
from ragtune.errors import UserError
from ragtune.evaluate.run import evaluate
from ragtune.io.data import load_dataset
from ragtune.prepare.run import input_timestamp
from ragtune.retrieval.embeddings import encode, top_k
from ragtune.retrieval.models import resolve_model
from ragtune.serving.index import IndexResult, index
from ragtune.serving.offline import historical_corpus
from ragtune.serving.rag import RAG
from ragtune.serving.repo import TAG, current_view, init_repo, open_store, passage_views, repo_yaml
from ragtune.serving.retriever import Retriever, evaluate_via_feast

pytestmark = pytest.mark.slow

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def dataset(scifact_slice):
    return load_dataset(scifact_slice)


def build_repo(directory: Path, data: Path, corpus: pd.DataFrame, model: str = MODEL) -> IndexResult:
    if not (directory / "feature_store.yaml").exists():
        init_repo(directory, 384, "data/online_store.db")
    return index(directory, corpus, ModelConfig(name=model, device="cpu"), input_timestamp(data))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, scifact_slice, dataset) -> Path:
    directory = tmp_path_factory.mktemp("feast") / "repo"
    build_repo(directory, scifact_slice, dataset.corpus)
    return directory


@pytest.fixture(scope="module")
def retriever(repo):
    return Retriever(repo, device="cpu")


def test_init_writes_an_embedded_repo(repo):
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    online = config["online_store"]
    assert (config["provider"], online["type"], online["path"]) == ("local", "milvus", "data/online_store.db")
    assert (online["embedding_dim"], online["index_type"], online["metric_type"]) == (384, "FLAT", "COSINE")
    assert config["offline_store"]["type"] == "duckdb"
    store = open_store(repo)
    assert [e.name for e in store.list_entities()] == ["passage_id"]
    (view,) = store.list_feature_views()
    assert [f.name for f in view.features] == ["doc_id", "title", "text", "source_id", "embedding"]
    embedding = view.features[-1]
    assert embedding.vector_index and embedding.vector_search_metric == "COSINE"
    assert view.tags["ragtune.dim"] == "384" and view.tags["ragtune.state"] == "ready"
    assert view.tags["ragtune.weights"] and view.tags["ragtune.model"] == MODEL
    with pytest.raises(UserError, match="already exists"):
        init_repo(repo, 384, "data/online_store.db")


def test_search_returns_the_exact_top_k(retriever, model, dataset):
    corpus = dataset.corpus
    corpus_emb = encode(model, corpus["document"].tolist(), 64)
    query_ids = sorted(dataset.queries)[:20]
    query_emb = encode(model, [dataset.queries[q] for q in query_ids], 64, "query")
    scores, indices = top_k(query_emb, corpus_emb, 10)
    for vector, row_scores, row_idx in zip(query_emb, scores, indices):
        hits = retriever.search_vector(vector, 10)
        assert [h.id for h in hits] == corpus["id"].iloc[row_idx].tolist()
        np.testing.assert_allclose([h.score for h in hits], row_scores, atol=1e-5)


def test_ids_line_up_with_titles_and_texts(repo, retriever, dataset):
    """Each hit's id names the passage whose title and text it carries (the entity column would not)."""
    by_id = dataset.corpus.set_index("id")
    question = dataset.queries[sorted(dataset.queries)[0]]
    hits = retriever.search(question, top_k=25)
    assert len(hits) == 25 and len({h.id for h in hits}) == 25
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        assert (by_id.loc[hit.id, "title"], by_id.loc[hit.id, "text"]) == (hit.title, hit.text)
    # The raw Feast response: our id feature and the title sit in the same row.
    raw = retriever.store.retrieve_online_documents_v2(
        features=retriever.feature_refs(["doc_id", "title"]), query=retriever.encode([question])[0].tolist(), top_k=25
    ).to_df()
    assert (by_id.loc[raw["doc_id"], "title"].to_numpy() == raw["title"].to_numpy()).all()


def test_rag_hands_the_retrieved_passages_to_the_generator(retriever):
    rag = RAG(retriever, lambda question, passages: f"{question} -> {passages[0].title}", top_k=3)
    answer = rag("Does vitamin D prevent fractures?")
    assert len(answer.passages) == 3
    assert answer.answer == f"Does vitamin D prevent fractures? -> {answer.passages[0].title}"


def test_reindex_switches_over_to_one_view(tmp_path, scifact_slice, dataset):
    repo = tmp_path / "repo"
    first = build_repo(repo, scifact_slice, dataset.corpus)
    smaller = dataset.corpus.iloc[:150]
    second = build_repo(repo, scifact_slice, smaller)
    assert (first.view, second.view, second.removed) == ("passages_v1", "passages_v2", ["passages_v1"])
    store = open_store(repo)
    assert [v.name for v in store.list_feature_views()] == ["passages_v2"]
    assert sorted(p.name for p in (repo / "data" / "offline").iterdir()) == ["passages_v2.parquet"]
    from pymilvus import MilvusClient

    collections = MilvusClient(str(repo / "data" / "online_store.db")).list_collections()
    assert [c for c in collections if c.startswith("ragtune_")] == ["ragtune_passages_v2"]
    hits = Retriever(repo, device="cpu").search("cancer", top_k=200)
    assert len(hits) == 150 and {h.id for h in hits} == set(smaller["id"])  # the dropped 50 are gone


def test_wrong_dimension_and_wrong_model_are_user_errors(tmp_path, repo, scifact_slice, dataset):
    narrow = tmp_path / "narrow"
    (narrow / "data").mkdir(parents=True)
    (narrow / "feature_store.yaml").write_text(repo_yaml(128, "data/online_store.db"))
    with pytest.raises(UserError, match="embedding_dim is 128 but model .* makes 384-dim vectors"):
        build_repo(narrow, scifact_slice, dataset.corpus)
    other = tmp_path / "other-model"  # the same weights plus one file: another weights hash
    for file in resolve_model(MODEL).rglob("*"):
        if file.is_file():
            target = other / file.relative_to(resolve_model(MODEL))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(file, target)
    (other / "NOTE.txt").write_text("a different model\n")
    with pytest.raises(UserError, match="is not the one .* was built with"):
        Retriever(repo, model=str(other), device="cpu")


def test_bad_repo_path_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="not a Feast repo"):
        Retriever(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "feature_store.yaml").write_text(repo_yaml(384, "data/online_store.db"))
    with pytest.raises(UserError, match="no passages indexed yet"):
        Retriever(empty)
    (empty / "feature_store.yaml").write_text("project: x\nonline_store: {type: milvus, embedding_dim: abc}\n")
    with pytest.raises(UserError, match="not a valid Feast config .*embedding_dim"):
        Retriever(empty)
    assert cli.main(["search", "a question", "--repo", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ragtune: error:") and "not a Feast repo" in err and "ragtune feast init" in err


def test_cli_search_prints_top_k(repo, capsys):
    assert (
        cli.main(["search", "folic acid and homocysteine", "--repo", str(repo), "--top-k", "3", "--device", "cpu"]) == 0
    )
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == f"{repo}:passages_v1, dense"
    assert [line.split()[0] for line in lines[::2]] == ["1", "2", "3"] and len(lines) == 6


def test_historical_features_round_trip(repo, scifact_slice, dataset):
    corpus, valid_from, view = historical_corpus(repo)
    expected = dataset.corpus.sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(corpus[expected.columns], expected)
    assert valid_from == input_timestamp(scifact_slice) and view == "passages_v1"
    with pytest.raises(UserError, match="pick a later time"):
        historical_corpus(repo, pd.Timestamp("2000-01-01", tz="UTC").to_pydatetime())


def test_prepare_from_feast_matches_prepare_from_files(tmp_path, repo, scifact_slice):
    def run(out: Path, **extra) -> Path:
        overrides = {"data.path": str(scifact_slice), "data.output": str(out), **extra}
        return api.prepare(cfg.load(None, overrides))

    files = run(tmp_path / "files")
    via = run(tmp_path / "feast", **{"data.from_feast": str(repo)})
    for name in ("train.parquet", "eval.parquet"):
        a, b = (pd.read_parquet(d / name).sort_values("training_sample_id", ignore_index=True) for d in (files, via))
        pd.testing.assert_frame_equal(a, b)


def test_evaluate_via_feast_equals_exact_in_memory(repo, dataset):
    exact = evaluate(
        dataset, cfg.EvalConfig(split="test", models=[MODEL], baselines=["none"]), ModelConfig(device="cpu")
    )[MODEL]
    (served,) = evaluate_via_feast(
        dataset, repo, split="test", models=[], model_config=ModelConfig(device="cpu"), feast_config=cfg.FeastConfig()
    ).values()
    assert served == pytest.approx(exact, abs=1e-6)
    assert exact["ndcg@10"] > 0.3  # a real ranking, not two empty ones


def test_index_refuses_a_model_measured_worse_than_the_one_it_serves(prepared_dir, scifact_slice, tmp_path, capsys):
    """The repo serves the base model; a run tuned worse than that base (kept with --keep-worse) on its held-out
    queries is refused, in one line, and the base stays served; --force indexes it."""
    from conftest import train_config

    worse = api.train(
        train_config(
            prepared_dir,
            tmp_path / "worse",
            train__epochs=1,
            train__learning_rate=3e-2,
            train__keep_worse=True,
            train__hard_negative_update_frequency=0,
        )
    )
    assert worse.metrics.tuned["ndcg@10"] < worse.metrics.base["ndcg@10"]
    repo = tmp_path / "repo"
    build_repo(repo, scifact_slice, pd.read_parquet(prepared_dir / "corpus.parquet"))
    index = [
        "index",
        "--repo",
        str(repo),
        "--data",
        str(prepared_dir),
        "--model",
        str(worse.model_dir),
        "--device",
        "cpu",
    ]
    capsys.readouterr()
    assert cli.main(index) == 2
    err = capsys.readouterr().err
    assert "scored held-out nDCG@10" in err and "passages_v1 stays" in err and err.count("\n") == 1
    assert [v.name for v in passage_views(open_store(repo))] == ["passages_v1"]
    assert cli.main([*index, "--force"]) == 0
    view = current_view(open_store(repo), repo)
    assert view.name == "passages_v2" and worse.metrics.eval_set in view.tags[TAG + "scores"]


def in_memory_hybrid(dataset, weight: float) -> tuple[dict, dict]:
    """`retrieval.fusion`'s exact full-corpus fusion of the base model and BM25 on the test queries."""
    from ragtune.io.data import evaluation_qrels
    from ragtune.retrieval.bm25 import Bm25
    from ragtune.retrieval.fusion import hybrid_rankings
    from ragtune.retrieval.metrics import retrieval_metrics
    from ragtune.retrieval.models import load_model

    qrels = evaluation_qrels(dataset, "test")
    query_ids = sorted(qrels)
    texts = [dataset.queries[q] for q in query_ids]
    model = load_model(MODEL, "cpu", "torch")
    documents = dataset.corpus["document"].tolist()
    corpus = encode(model, documents, 64, "document", progress=False)
    queries = encode(model, texts, 64, "query", progress=False)
    rankings = hybrid_rankings(
        texts, queries, corpus, Bm25(documents), (weight,), query_ids, dataset.corpus["id"].tolist()
    )[weight]
    return rankings, retrieval_metrics(rankings, qrels)


def test_hybrid_search_serves_exactly_the_evaluated_fusion(repo, dataset):
    """The served fusion is the one `evaluate` measures: same top 10 for every test query, metrics to 1e-4."""
    rankings, exact = in_memory_hybrid(dataset, 0.3)
    hybrid = cfg.FeastConfig(mode="hybrid", bm25_weight=0.3)
    model = ModelConfig(device="cpu")
    ((label, served),) = evaluate_via_feast(
        dataset, repo, split="test", models=[], model_config=model, feast_config=hybrid
    ).items()
    assert "dense+bm25 (w=0.3) via feast" in label
    assert served == pytest.approx(exact, abs=1e-4)
    retriever = Retriever(repo, device="cpu", mode="hybrid", bm25_weight=0.3)
    for qid in sorted(rankings)[:20]:
        hits = retriever.search(dataset.queries[qid], top_k=10)
        assert [hit.id for hit in hits] == [d for d, _ in rankings[qid][:10]]
        np.testing.assert_allclose([hit.score for hit in hits], [s for _, s in rankings[qid][:10]], atol=1e-5)
    dense = Retriever(repo, device="cpu", mode="dense")
    assert dense.bm25_weight == 0 and dense._keywords is None  # a dense retriever never loads the keyword side


def test_a_view_without_keywords_serves_dense_with_one_warning(tmp_path, scifact_slice, dataset):
    """A view indexed before the keyword side existed: dense with a warning naming `ragtune index`; hybrid refused."""
    from ragtune.serving.repo import passage_entity, passages_view

    repo = tmp_path / "repo"
    build_repo(repo, scifact_slice, dataset.corpus)
    store = open_store(repo)
    view = current_view(store, repo)
    old_tags = {k: v for k, v in view.tags.items() if k not in (TAG + "keywords", TAG + "fusion")}
    store.apply([passage_entity(), passages_view(view.name, Path(view.batch_source.path), 384, old_tags)])
    with pytest.warns(UserWarning, match="serves dense only.*ragtune index"):
        assert Retriever(repo, device="cpu").bm25_weight == 0
    with pytest.raises(UserError, match="--mode hybrid: .* has no keyword index; `ragtune index` again"):
        Retriever(repo, device="cpu", mode="hybrid", bm25_weight=0.3)


def test_index_serves_the_fusion_the_run_recorded_and_drops_stale_keywords(tmp_path, scifact_slice, dataset):
    """A run directory whose metrics.json chose hybrid: index records it on the view, search serves it; a new
    index run removes the old view's keyword files with its parquet."""
    import json
    import shutil

    from ragtune.io.runinfo import RunMetrics
    from ragtune.serving.keywords import keywords_dir

    run = tmp_path / "run"
    shutil.copytree(resolve_model(MODEL), run / "model")
    choice = {"mode": "hybrid", "bm25_weight": 0.2, "queries": 40, "kind": "real", "why": "measured", "rows": []}
    RunMetrics(tuned={"ndcg@10": 0.5}, eval_set="abc", fusion=choice).write(run)
    repo = tmp_path / "repo"
    build_repo(repo, scifact_slice, dataset.corpus, model=str(run / "model"))
    view = current_view(open_store(repo), repo)
    assert json.loads(view.tags[TAG + "fusion"])["bm25_weight"] == 0.2
    retriever = Retriever(repo, device="cpu")
    assert retriever.bm25_weight == 0.2 and retriever.mode == "dense+bm25 (w=0.2)"
    assert Retriever(repo, device="cpu", mode="dense").bm25_weight == 0
    assert keywords_dir(repo, view.name).is_dir()
    build_repo(repo, scifact_slice, dataset.corpus, model=str(run / "model"))
    assert not keywords_dir(repo, view.name).exists()
    assert keywords_dir(repo, current_view(open_store(repo), repo).name).is_dir()


def test_feasts_own_vector_store_reads_a_ragtune_repo(repo, retriever):
    """Feast code can use a ragtune repo as it is: FeastVectorStore returns the same top 10 as ragtune's
    dense search, in its own order (Feast does not sort by score), and its apply() of the view changes nothing."""
    from feast.vector_store import FeastVectorStore

    from ragtune.serving.repo import ID_FEATURE

    view = current_view(open_store(repo), repo)
    features = [f"{view.name}:{name}" for name in (ID_FEATURE, "title", "text")]
    store = FeastVectorStore(str(repo), rag_view=view, features=features)
    for question in ("folic acid and homocysteine", "insulin resistance in muscle", "p53 mutations in tumours"):
        found = store.query(query_vector=retriever.encode([question])[0], top_k=10).to_dict()[ID_FEATURE]
        assert sorted(found) == sorted(hit.id for hit in retriever.search(question, 10, "dense"))
    after = current_view(open_store(repo), repo)
    assert after.name == view.name and after.tags == view.tags
