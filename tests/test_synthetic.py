"""Synthetic queries from passages: counts, caps, dedup, ICT removal, titles, short passages, determinism,
and text as users have it (tests/real_text.py: lowercase, spaced or no punctuation, hard wraps, bullets)."""

from __future__ import annotations

import functools
import random
import time

import pandas as pd
import pytest
from real_text import TRANSFORMS, corpus_frame, long_rows, read_corpus, transform, variant, yield_shares

from ragtune.config import SyntheticConfig
from ragtune.errors import UserError
from ragtune.zero_label.generators.llm import AnswerCache, LLMSpec, cache_key
from ragtune.zero_label.sentences import query_spans, sentence_spans
from ragtune.zero_label.synthetic import SyntheticSpec, generate_queries
from ragtune.zero_label.text import content_words, normalise, split_title

WORDS = (
    "protein kinase receptor mutation tumour insulin neuron cortex enzyme antibody vaccine pathway membrane "
    "plasma genome cell signal dose trial cohort mouse liver kidney lung heart brain bone blood virus"
).split()


def sentence(rng: random.Random, n: int = 10) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def corpus(passages: list[tuple[str, str]], title_in_document: bool = True) -> pd.DataFrame:
    """A frame shaped like ragtune.data's corpus: id, title, text, source_id, document."""
    frame = pd.DataFrame(
        {
            "id": [f"d{i}" for i in range(len(passages))],
            "title": [t for t, _ in passages],
            "text": [x for _, x in passages],
        }
    )
    frame["source_id"] = frame["id"]
    frame["document"] = (frame["title"] + " " + frame["text"]).str.strip() if title_in_document else frame["text"]
    return frame


def random_corpus(n: int, sentences: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    return corpus([(f"Study {i}", " ".join(sentence(rng) for _ in range(sentences))) for i in range(n)])


def test_same_seed_same_queries_other_seed_other_queries():
    passages = random_corpus(30)
    first, _ = generate_queries(passages, SyntheticSpec(seed=7))
    again, _ = generate_queries(passages, SyntheticSpec(seed=7))
    other, _ = generate_queries(passages, SyntheticSpec(seed=8))
    pd.testing.assert_frame_equal(first, again)
    assert set(first["query"]) != set(other["query"])


def test_a_passage_keeps_its_queries_when_other_passages_are_added():
    small, _ = generate_queries(random_corpus(10), SyntheticSpec(generators=("ict", "crop")))
    large, _ = generate_queries(random_corpus(40), SyntheticSpec(generators=("ict", "crop")))
    assert set(small["query_id"] + small["query"]) <= set(large["query_id"] + large["query"])


def test_per_generator_counts_and_queries_per_passage():
    spec = SyntheticSpec(queries_per_passage=10)
    queries, audit = generate_queries(random_corpus(20, sentences=8), spec)
    assert [spec.share(g) for g in ("ict", "crop", "terms")] == [4, 3, 3]
    assert audit.kept == queries["generator"].value_counts().to_dict()
    assert audit.kept == {"ict": 80, "crop": 60, "terms": 60}
    assert queries.groupby("passage_id").size().max() == 10
    assert audit.passages == audit.passages_used == 20


def test_fewer_queries_than_generators_leaves_the_last_ones_out_without_counting_a_drop():
    queries, audit = generate_queries(random_corpus(5), SyntheticSpec(queries_per_passage=2))
    assert audit.kept == {"ict": 5, "crop": 5, "terms": 0}
    assert audit.candidates["terms"] == 0 and not any(k.startswith("terms") for k in audit.dropped)


def test_queries_are_length_capped_and_spans_are_long_enough():
    rng = random.Random(1)
    long_sentences = " ".join(sentence(rng, 60) for _ in range(4))
    spec = SyntheticSpec(max_query_words=12, min_query_words=5, terms_per_query=(2, 4))
    queries, _ = generate_queries(corpus([("T", long_sentences)] * 1 + [("U", long_sentences + " Extra.")]), spec)
    lengths = queries["query"].str.split().str.len()
    assert lengths.max() <= 12
    spans = queries[queries["generator"] != "terms"]
    assert spans["query"].str.split().str.len().min() >= 5
    terms = queries[queries["generator"] == "terms"]
    assert terms["query"].str.split().str.len().between(2, 4).all()


def test_no_duplicates_within_a_passage_and_shared_text_points_nowhere():
    rng = random.Random(2)
    shared = "This boilerplate sentence appears in every single abstract of the collection."
    passages = [(f"Paper {i}", f"{sentence(rng)} {shared} {sentence(rng)} {sentence(rng)}") for i in range(12)]
    queries, audit = generate_queries(corpus(passages), SyntheticSpec(generators=("ict",), queries_per_passage=4))
    keys = queries["query"].map(normalise)
    assert not keys.duplicated().any()
    assert normalise(shared) not in set(keys)
    assert audit.dropped["duplicate_across_passages"] == 12


def test_ict_removes_the_sentence_at_the_configured_rate():
    passages = random_corpus(400, sentences=6, seed=3)
    spec = SyntheticSpec(generators=("ict",), queries_per_passage=5, ict_remove_probability=0.9, seed=11)
    queries, audit = generate_queries(passages, spec)
    document = dict(zip(passages["id"], passages["document"]))
    rate = queries["query_removed"].mean()
    assert len(queries) == 2000
    assert 0.88 <= rate <= 0.92, rate
    assert audit.ict_removed == queries["query_removed"].sum()
    for row in queries.itertuples():
        if row.query_removed:
            assert normalise(row.query) not in normalise(row.positive)
            assert row.positive.startswith(row.passage_id.replace("d", "Study "))  # the title stays
        else:
            assert row.positive == document[row.passage_id]


def test_crop_query_and_positive_are_spans_of_the_passage():
    passages = random_corpus(10, sentences=8, seed=4)
    queries, _ = generate_queries(passages, SyntheticSpec(generators=("crop",), queries_per_passage=5))
    text = dict(zip(passages["id"], passages["text"]))
    for row in queries.itertuples():
        assert row.query in text[row.passage_id]
        assert row.positive in text[row.passage_id]
        n = len(text[row.passage_id].split())
        assert len(row.positive.split()) <= round(0.5 * n)


def test_terms_prefers_rare_words_in_passage_order():
    rng = random.Random(5)
    passages = [("P", f"{sentence(rng, 30)} Zeolite catalysis with ruthenium nanowires. {sentence(rng, 30)}")]
    passages += [(f"Q{i}", f"{sentence(rng, 30)} {sentence(rng, 30)}") for i in range(30)]
    spec = SyntheticSpec(generators=("terms",), queries_per_passage=10, terms_per_query=(3, 3))
    queries, _ = generate_queries(corpus(passages), spec)
    first = queries[queries["passage_id"] == "d0"]["query"].tolist()
    rare = ["Zeolite", "catalysis", "ruthenium", "nanowires"]
    words = [w for query in first for w in query.split()]
    assert len(first) == 10
    assert set(words) <= set(passages[0][1].replace(".", "").split())
    # 4 of the passage's ~25 distinct words, yet the bulk of every draw: tf-idf salience at work
    assert sum(w in rare for w in words) / len(words) > 0.45  # uniform draws would give about 0.16
    for query in first:
        kept = [w for w in query.split() if w in rare]
        assert kept == sorted(kept, key=rare.index)


def test_title_prefixed_passages_never_give_title_queries():
    rng = random.Random(6)
    titles = [f"Battle of Place{i}" for i in range(20)]
    passages = [(t, f"{t}. {t}. {sentence(rng)} {sentence(rng)} {sentence(rng)}") for t in titles]
    frame = corpus(passages, title_in_document=False)  # wiki chunks: the text itself starts with the title
    assert split_title(frame["document"][0], titles[0]) == ("Battle of Place0. ", frame["text"][0][18:])
    queries, audit = generate_queries(frame, SyntheticSpec(min_query_words=2, queries_per_passage=12))
    title_of = dict(zip(frame["id"], frame["title"]))
    assert len(queries) > 100
    for row in queries.itertuples():
        assert not content_words(row.query) <= content_words(title_of[row.passage_id]), row.query
    assert audit.dropped["only_title_words"] > 0  # the sentence "Battle of Place0." is one


def test_short_and_empty_passages_are_skipped_and_counted():
    rng = random.Random(7)
    passages = [("Only a title", ""), ("Tiny", "Two words."), ("Fine", " ".join(sentence(rng) for _ in range(4)))]
    queries, audit = generate_queries(corpus(passages), SyntheticSpec())
    assert set(queries["passage_id"]) == {"d2"}
    assert audit.dropped["passage_too_short"] == 2
    assert audit.passages_used == 1
    nothing, audit = generate_queries(corpus(passages[:2]), SyntheticSpec())
    assert nothing.empty and audit.kept == {"ict": 0, "crop": 0, "terms": 0}


def test_llm_queries_pass_the_same_filters_and_are_counted(tmp_path):
    """The llm generator's answers come from its on-disk cache here: the endpoint is never asked."""
    rng = random.Random(9)
    frame = random_corpus(3, seed=9)
    long_query = " ".join(rng.choice(WORDS) for _ in range(50))
    written = {
        "d0": ["Which kinase binds insulin?", "which kinase binds insulin", long_query],
        "d1": ["Study 1", "Shared question?"],
        "d2": ["Shared question?"],
    }
    options = SyntheticConfig(generators=["ict", "llm"], llm_endpoint="http://127.0.0.1:9/v1", llm_model="m")
    spec = SyntheticSpec(generators=("ict", "llm"), queries_per_passage=6, options=options, cache_dir=tmp_path)
    asked = LLMSpec(options.llm_endpoint, "m", options.llm_prompt, spec.share("llm"))
    cache = AnswerCache(tmp_path / "llm" / "m.jsonl")
    for pid, document in zip(frame["id"], frame["document"]):
        for sample in range(asked.queries_per_passage):
            answers = written.get(pid, [])
            cache.add(cache_key(asked, document, sample), answers[sample] if sample < len(answers) else "")
    queries, audit = generate_queries(frame, spec)
    llm = queries[queries["generator"] == "llm"]
    assert llm["query"].tolist() == ["Which kinase binds insulin?", " ".join(long_query.split()[:32])]
    assert set(llm["positive"]) == {frame["document"][0]}  # the whole passage is the positive
    assert audit.kept["llm"] == 2 and audit.kept["ict"] == 9
    assert audit.dropped["duplicate"] == 1 and audit.dropped["only_title_words"] == 1
    assert audit.dropped["duplicate_across_passages"] == 2


def test_a_passage_without_two_sentences_gives_ict_word_windows():
    rng = random.Random(8)
    text = sentence(rng, 40)
    queries, audit = generate_queries(corpus([("T", text)]), SyntheticSpec(queries_per_passage=6))
    ict = queries[queries["generator"] == "ict"]
    assert len(ict) == 2 and "ict_passage_yielded_none" not in audit.dropped
    words = text.split()
    assert sorted(ict["query"]) == sorted([" ".join(words[:20]), " ".join(words[20:])])  # two windows of 20
    assert {"crop", "terms"} <= set(queries["generator"])
    spec = SyntheticSpec(min_query_words=10, queries_per_passage=6)  # 16 words: too short for two windows of 10
    queries, audit = generate_queries(corpus([("T", sentence(rng, 16))]), spec)
    assert "ict" not in set(queries["generator"]) and audit.dropped["ict_passage_yielded_none"] == 1


def test_sentence_spans_split_on_sentence_ends_only():
    body = "Levels rose by 3.5 mg. Then (in mice) they fell! Why? 4 trials agree."
    assert [body[s:e].strip() for s, e in sentence_spans(body)] == [
        "Levels rose by 3.5 mg.",
        "Then (in mice) they fell!",
        "Why?",
        "4 trials agree.",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (  # lowercase, punctuation spaced off: a sentence end is . ! ? before any next word
            "levels rose by 3.5 mg . then (in mice) they fell ! why ? trials agree",
            ["levels rose by 3.5 mg .", "then (in mice) they fell !", "why ?", "trials agree"],
        ),
        (  # abbreviations, decimals and initials end nothing
            "Cells (e.g. neurons) grew as Smith et al. showed in Fig. 2 (p < 0.05) for E. coli vs. S. aureus. "
            "it held in the U.S. too",
            [
                "Cells (e.g. neurons) grew as Smith et al. showed in Fig. 2 (p < 0.05) for E. coli vs. S. aureus.",
                "it held in the U.S. too",
            ],
        ),
        (  # a hard wrap is a space; a blank line, a line after a sentence end and each bullet line break
            "the first line wraps\nat the margin. a second one\nwraps too\n\nA paragraph without a stop\n"
            "then:\n- one item\n* another\n\u2022 a third\n12. a numbered one\n2) and more",
            [
                "the first line wraps at the margin.",
                "a second one wraps too",
                "A paragraph without a stop then:",
                "one item",
                "another",
                "a third",
                "a numbered one",
                "and more",
            ],
        ),
    ],
)
def test_sentence_spans_on_text_as_users_have_it(body, expected):
    assert [" ".join(body[s:e].split()) for s, e in sentence_spans(body)] == expected


def test_query_spans_fall_back_to_even_word_windows_without_two_sentences():
    words = [f"w{i}" for i in range(45)]
    transcript = " ".join(words)
    windows = [transcript[s:e].split() for s, e in query_spans(transcript, 4, 32)]
    assert windows == [words[:15], words[15:30], words[30:]]  # three of 15: at most 20 words each
    assert sorted(len(transcript[s:e].split()) for s, e in query_spans(transcript, 4, 8)) == [7, 7, 7, 8, 8, 8]
    two = "A first sentence of a few words. A second sentence of some words."
    assert query_spans(two, 4, 32) == sentence_spans(two)
    one_long = "Short one. " + transcript  # one sentence of query length is not enough
    assert len(query_spans(one_long, 4, 32)) == 3


REAL_TEXT_PASSAGES = 300  # the first SciFact abstracts of 40 words or more
SENTENCES_KEPT = ["lowercase", "detach", "wrap60", "join", "bullets", "lower+detach", "lower+detach+wrap60"]
UNPUNCTUATED = ["strip", "transcript", "transcript+wrap60"]


@functools.cache
def scifact_long() -> list[dict]:
    return long_rows(read_corpus(), 40, REAL_TEXT_PASSAGES)


@functools.cache
def ict_queries(name: str) -> pd.DataFrame:
    """One ict query or two for each of the SciFact passages, their text (and title) through TRANSFORMS[name]."""
    frame = corpus_frame(variant(scifact_long(), name))
    return generate_queries(frame, SyntheticSpec(generators=("ict",), queries_per_passage=2))[0]


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_ict_yields_a_query_for_nine_in_ten_passages_of_real_text(name):
    ids = [row["_id"] for row in scifact_long()]
    clean = yield_shares(ict_queries("clean"), ids, ("ict",))["ict"]
    real = yield_shares(ict_queries(name), ids, ("ict",))["ict"]
    assert real >= 0.9 and abs(real - clean) <= 0.03, (name, real, clean)


@pytest.mark.parametrize("name", SENTENCES_KEPT)
def test_real_text_keeps_the_sentences_of_the_clean_text(name):
    """Where the sentence ends survive (in any case, spaced off, wrapped, as bullets), ict finds the same sentences."""

    def units(text: str) -> list[str]:
        return [normalise(text[s:e]) for s, e in query_spans(text, 4, 32)]

    same = [units(transform(row["text"], name)) == units(row["text"]) for row in scifact_long()]
    assert sum(same) / len(same) >= 0.95, (name, sum(same))


@pytest.mark.parametrize("name", UNPUNCTUATED)
def test_unpunctuated_text_gives_ict_word_windows(name):
    queries = ict_queries(name)
    lengths = queries["query"].str.split().str.len()
    assert lengths.between(10, 20).all(), lengths.describe()  # windows of 10-20 words: passages of 40 or more
    assert queries["query_removed"].mean() > 0.8  # cut from the positive, as ict sentences are


@pytest.mark.parametrize(
    "spec",
    [
        SyntheticSpec(generators=("ict", "t5")),
        SyntheticSpec(generators=()),
        SyntheticSpec(queries_per_passage=0),
        SyntheticSpec(min_query_words=10, max_query_words=5),
        SyntheticSpec(ict_remove_probability=1.5),
        SyntheticSpec(terms_per_query=(4, 2)),
    ],
)
def test_bad_spec_is_a_user_error(spec):
    with pytest.raises(UserError, match="synthetic"):
        generate_queries(random_corpus(2), spec)


@pytest.mark.slow
def test_twenty_thousand_passages_in_seconds():
    passages = random_corpus(20_000, sentences=8, seed=9)
    start = time.perf_counter()
    queries, _ = generate_queries(passages, SyntheticSpec(queries_per_passage=10))
    assert len(queries) > 190_000
    assert time.perf_counter() - start < 60


def test_the_spec_defaults_are_the_config_defaults():
    """SyntheticSpec is what generate_queries reads; a default it shares with the `synthetic:` section is the same."""
    import dataclasses

    from ragtune.config import SyntheticConfig

    config = SyntheticConfig()
    shared = {f.name for f in dataclasses.fields(SyntheticSpec)} & {f.name for f in dataclasses.fields(config)}
    spec = SyntheticSpec()
    assert shared >= {"generators", "queries_per_passage", "max_query_words", "ict_remove_probability"}
    assert {
        name: tuple(getattr(config, name)) if name == "generators" else getattr(config, name) for name in shared
    } == {name: getattr(spec, name) for name in shared}
