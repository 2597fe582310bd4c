import json

import pandas as pd
import pytest
from conftest import REPO, write_beir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.errors import UserError
from ragtune.io.data import load_dataset

DOCS = [
    {"_id": "d1", "title": "Alpha", "text": "alpha text"},
    {"_id": "d2", "title": "Beta", "text": "beta text"},
]
QUERIES = [{"_id": "q1", "text": "what is alpha"}, {"_id": "q2", "text": "what is beta"}]


def beir(tmp_path, docs=DOCS, queries=QUERIES, qrels=None):
    return write_beir(tmp_path / "beir", docs, queries, qrels or {"train": [["q1", "d1", 1], ["q2", "d2", 2]]})


def test_beir_directory_loads_with_graded_qrels(tmp_path):
    dataset = load_dataset(beir(tmp_path))
    assert dataset.kind == "beir"
    assert dataset.corpus["document"].tolist() == ["Alpha alpha text", "Beta beta text"]
    assert dataset.qrels["train"] == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_graded_float_scores_are_kept(tmp_path):
    """Repro: a score of 0.5 became 0 (int(float(score))) and the pair silently non-relevant."""
    dataset = load_dataset(beir(tmp_path, qrels={"train": [["q1", "d1", 0.5], ["q2", "d2", 0]]}))
    assert dataset.qrels["train"] == {"q1": {"d1": 0.5}, "q2": {"d2": 0.0}}
    assert dataset.positives("train") == {"q1": {"d1": 0.5}}


def test_empty_passages_are_skipped_with_one_warning(tmp_path):
    """Repro: 2 empty passages among many refused the whole corpus. Their judgements go with them."""
    docs = [*DOCS, {"_id": "d3", "title": "", "text": ""}, {"_id": "d4", "title": " ", "text": "\n"}]
    qrels = {"train": [["q1", "d1", 1], ["q2", "d2", 1], ["q2", "d3", 1]], "test": [["q1", "d4", 1]]}
    with pytest.warns(UserWarning) as caught:
        dataset = load_dataset(beir(tmp_path, docs=docs, qrels=qrels))
    messages = [str(w.message) for w in caught]
    assert any("skipped 2 empty passage(s)" in m for m in messages)
    assert dataset.corpus["id"].tolist() == ["d1", "d2"]
    assert dataset.qrels["train"] == {"q1": {"d1": 1.0}, "q2": {"d2": 1.0}} and dataset.qrels["test"] == {}
    passages = tmp_path / "p.jsonl"
    _write_lines(passages, [{"id": "a", "title": "A", "text": "x"}, {"id": "b", "title": "", "text": ""}])
    with pytest.warns(UserWarning, match="skipped 1 empty passage"):
        assert load_dataset(passages).corpus["id"].tolist() == ["a"]


def test_bundled_demo_data_loads_compressed():
    dataset = load_dataset(REPO / "data" / "scifact")
    assert len(dataset.corpus) == 5183 and len(dataset.queries) == 1109
    assert len(dataset.positives("train")) == 809 and len(dataset.positives("test")) == 300


def test_passages_share_a_source_by_title_or_source_id(tmp_path):
    rows = [
        {"id": "p1", "title": "Paris", "text": "Paris is the capital."},
        {"id": "p2", "title": "Paris", "text": "It lies on the Seine."},
        {"id": "p3", "title": "Lyon", "text": "Lyon is a city.", "source_id": "fr-cities"},
        {"id": "p4", "title": "Lyon (2)", "text": "More on Lyon.", "source_id": "fr-cities"},
    ]
    path = tmp_path / "passages.parquet"
    pd.DataFrame(rows).to_parquet(path)
    dataset = load_dataset(path)
    assert dataset.kind == "passages"
    assert dataset.qrels["train"] == {
        "source:paris": {"p1": 1, "p2": 1},
        "source:fr-cities": {"p3": 1, "p4": 1},
    }
    assert dataset.queries["source:paris"] == "Paris"
    assert (
        dataset.corpus["document"].tolist()[0] == "Paris is the capital."
    )  # the title is the query, not in the passage


def _write_lines(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_corpus", "no corpus.jsonl"),
        ("no_queries", "no queries.jsonl"),
        ("no_qrels", "no qrels"),
        ("empty_corpus", "corpus is empty"),
        ("duplicate_ids", "duplicate id 'd1'"),
        ("missing_id", "line 2: missing field.*_id"),
        ("bad_json", "line 1: not valid JSON"),
        ("unknown_doc", "line 2: corpus-id 'd9' is not in corpus.jsonl"),
        ("unknown_query", "line 2: query-id 'q9' is not in queries.jsonl"),
        ("bad_header", "header must be"),
        ("bad_score", "score 'high' is not a number"),
        ("non_utf8", "not UTF-8"),
        ("only_empty_docs", "no passage with a title or text"),
        ("empty_query", "query 'q2' has empty text"),
    ],
)
def test_bad_beir_input_names_file_and_fix(tmp_path, case, message):
    root = beir(tmp_path)
    if case == "no_corpus":
        (root / "corpus.jsonl").unlink()
    elif case == "no_queries":
        (root / "queries.jsonl").unlink()
    elif case == "no_qrels":
        (root / "qrels" / "train.tsv").unlink()
    elif case == "empty_corpus":
        (root / "corpus.jsonl").write_text("")
    elif case == "duplicate_ids":
        _write_lines(root / "corpus.jsonl", DOCS + [DOCS[0]])
    elif case == "missing_id":
        _write_lines(root / "corpus.jsonl", [DOCS[0], {"title": "x", "text": "y"}])
    elif case == "bad_json":
        (root / "corpus.jsonl").write_text("{not json\n")
    elif case == "unknown_doc":
        (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td9\t1\n")
    elif case == "unknown_query":
        (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    elif case == "bad_header":
        (root / "qrels" / "train.tsv").write_text("q\td\ts\nq1\td1\t1\n")
    elif case == "bad_score":
        (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    elif case == "non_utf8":
        (root / "corpus.jsonl").write_bytes(b'{"_id": "d1", "title": "caf\xe9", "text": "x"}\n')
    elif case == "only_empty_docs":
        _write_lines(root / "corpus.jsonl", [{"_id": "d1", "title": "", "text": " "}, {"_id": "d2", "text": ""}])
    elif case == "empty_query":
        _write_lines(root / "queries.jsonl", [QUERIES[0], {"_id": "q2", "text": "  "}])
    with pytest.raises(UserError, match=message):
        load_dataset(root)


def test_passages_need_id_and_text_and_titles_are_optional(tmp_path):
    """Titles are one more query source, not a requirement (#31): untitled passages load, titled ones give queries."""
    path = tmp_path / "p.parquet"
    pd.DataFrame([{"id": "a", "title": "t"}]).to_parquet(path)
    with pytest.raises(UserError, match="missing column.*text"):
        load_dataset(path)
    pd.DataFrame([{"id": "a", "text": "t"}, {"id": "b", "title": "Bee", "text": "u"}]).to_parquet(path)
    dataset = load_dataset(path)
    assert dataset.corpus["title"].tolist() == ["", "Bee"] and list(dataset.queries.values()) == ["Bee"]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="not a readable parquet"):
        load_dataset(tmp_path / "broken.parquet")
    with pytest.raises(UserError, match="not found"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "p.csv").write_text("id,title,text\n")
    with pytest.raises(UserError, match="unknown input"):
        load_dataset(tmp_path / "p.csv")


def test_long_text_is_truncated_with_a_warning(tmp_path):
    docs = [DOCS[0], {"_id": "d2", "title": "Beta", "text": "x" * 5000}]
    with pytest.warns(UserWarning, match="1 'text' value"):
        dataset = load_dataset(beir(tmp_path, docs=docs), max_chars=1000)
    assert dataset.corpus["text"].str.len().max() == 1000


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text, text, text), min_size=1, max_size=8))
def test_passages_loader_either_loads_or_says_why(tmp_path, rows):
    """Any UTF-8 content: a Dataset whose ids match the input, or a UserError, never a crash."""
    path = tmp_path / "p.jsonl"
    _write_lines(path, [{"id": i, "title": title, "text": body} for i, title, body in rows])
    try:
        dataset = load_dataset(path)
    except UserError:
        return
    assert dataset.corpus["id"].tolist() == [i for i, title, body in rows if title.strip() or body.strip()]
    assert all(docs for docs in dataset.qrels["train"].values())


ids = st.sampled_from(["d1", "d2", "q1", "q2", "x", "", " ", "d1\t"])
scores = st.sampled_from(["0", "1", "2", "-1", "1.5", "high", ""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(ids, ids, scores), min_size=0, max_size=6))
def test_beir_loader_either_loads_or_says_why(tmp_path, rows):
    """Any qrels rows (unknown ids, odd scores, tabs in ids): judgements only between known ids, or a UserError."""
    root = beir(tmp_path)
    with open(root / "qrels" / "train.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows))
    try:
        dataset = load_dataset(root)
    except UserError:
        return
    known_docs, known_queries = set(dataset.corpus["id"]), set(dataset.queries)
    for qid, docs in dataset.qrels["train"].items():
        assert qid in known_queries and set(docs) <= known_docs
    for docs in dataset.positives("train").values():
        assert docs and all(score > 0 for score in docs.values())


def test_qrels_repeated_judgements_conflicting_scores_and_negative_grades(tmp_path):
    """Repro (#28): a conflicting duplicate silently let the last row win; a negative grade was accepted."""
    with pytest.raises(UserError, match=r"lines 2 and 4: query 'q1' and passage 'd1' are judged twice"):
        load_dataset(beir(tmp_path / "a", qrels={"train": [["q1", "d1", 1], ["q2", "d2", 1], ["q1", "d1", 2]]}))
    with pytest.raises(UserError, match=r"line 3: score '-1' is not a grade"):
        load_dataset(beir(tmp_path / "b", qrels={"train": [["q1", "d1", 1], ["q2", "d2", -1]]}))
    with pytest.warns(UserWarning, match=r"1 repeated judgement\(s\) read once \(line 4 first\)"):
        repeated = {"train": [["q1", "d1", 1], ["q2", "d2", 1], ["q1", "d1", 1]]}
        dataset = load_dataset(beir(tmp_path / "c", qrels=repeated))
    assert dataset.qrels["train"] == {"q1": {"d1": 1.0}, "q2": {"d2": 1.0}}


def test_a_byte_order_mark_and_beir_ids_in_a_passages_file_are_read(tmp_path):
    """Repro (#28): a UTF-8 file with a BOM was refused; a BEIR corpus.jsonl as a passages file failed on `_id`."""
    root = beir(tmp_path)
    corpus = root / "corpus.jsonl"
    corpus.write_bytes(b"\xef\xbb\xbf" + corpus.read_bytes())
    (root / "qrels" / "train.tsv").write_bytes(b"\xef\xbb\xbf" + (root / "qrels" / "train.tsv").read_bytes())
    assert load_dataset(root).corpus["id"].tolist() == ["d1", "d2"]
    assert load_dataset(corpus).corpus["id"].tolist() == ["d1", "d2"]
    table = tmp_path / "p.parquet"
    pd.DataFrame({"_id": ["a", "b"], "title": ["A", "B"], "text": ["x", "y"]}).to_parquet(table)
    assert load_dataset(table).corpus["id"].tolist() == ["a", "b"]


@pytest.mark.parametrize("ids", [[1.0, 2.0], ["a", None], [1.5, float("nan")]])
def test_missing_or_fractional_passage_ids_are_refused(tmp_path, ids):
    """Repro (#28): NaN or float ids in parquet became 'nan' or '0.0'."""
    table = tmp_path / "p.parquet"
    pd.DataFrame({"id": ids, "title": ["A", "B"], "text": ["x", "y"]}).to_parquet(table)
    with pytest.raises(UserError, match=r"missing or non-integer numeric id \(passage number"):
        load_dataset(table)


def test_a_directory_holding_only_a_corpus_is_passages_only_input(tmp_path):
    """Repro (#31): a directory with only corpus.jsonl was refused even with --zero-label."""
    root = beir(tmp_path)
    (root / "queries.jsonl").unlink()
    for split in (root / "qrels").iterdir():
        split.unlink()
    with pytest.raises(UserError, match="no queries.jsonl.*ragtune prepare --zero-label"):
        load_dataset(root)
    dataset = load_dataset(root, zero_label=True)
    assert dataset.kind == "passages" and dataset.queries == {} and dataset.qrels == {}
    assert dataset.corpus["document"].tolist() == ["Alpha alpha text", "Beta beta text"]
