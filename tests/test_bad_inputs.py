"""The bad-input contract, case by case: one line naming the file or field (and the fix), exit code 2,
no traceback, and whatever the output path held before is still there, even with --overwrite.

Each case builds its broken input in a fresh directory and runs the real CLI entry point in this
process (the loaders and checks are the same code the executable runs; test_cli.py covers the
executable itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ragtune import cli
from ragtune.io.outputs import mark

pytestmark = pytest.mark.slow
RAGTUNE = str(Path(sys.executable).with_name("ragtune"))
SENTINEL = "results the user already had\n"


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def beir_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_beir(file: str, content: str | bytes):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        root = beir_copy(slice_, w / "data")
        target = root / file
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        return root

    return make


def append_beir(file: str, line: str):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        root = beir_copy(slice_, w / "data")
        with open(root / file, "a", encoding="utf-8") as handle:
            handle.write(line)
        return root

    return make


def remove_beir(file: str):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        root = beir_copy(slice_, w / "data")
        (root / file).unlink()
        return root

    return make


def passages(rows: list[dict] | bytes, name: str = "passages.jsonl"):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        path = w / name
        if isinstance(rows, bytes):
            path.write_bytes(rows)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    return make


# passages that make synthetic queries, so prepare reaches the llm generator and the teacher
long_enough = passages(
    [{"id": f"p{i}", "title": f"t{i}", "text": f"Sentence number {i} has words. " * 6} for i in range(1000)]
)


def broken_prepared(drop: str):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        root = w / "prepared"
        shutil.copytree(prepared, root)
        (root / drop).unlink()
        return root

    return make


def config_file(text: str | bytes):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        path = w / "run.yaml"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        return path

    return make


def milvus_server(host: str, port: int):
    """A repo whose online store is a Milvus server that nothing serves."""

    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        root = feast_repo(384)(w, slice_, prepared)
        config = yaml.safe_load((root / "feature_store.yaml").read_text())
        config["online_store"] = {"type": "milvus", "host": f"http://{host}", "port": port, "embedding_dim": 384}
        (root / "feature_store.yaml").write_text(yaml.safe_dump(config))
        return root

    return make


def feast_repo(embedding_dim: int):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        from ragtune import api
        from ragtune import config as cfg

        repo = w / "repo"
        api.feast_init(cfg.load(None, {"feast.repo": str(repo), "feast.embedding_dim": embedding_dim}))
        return repo

    return make


def good_data(w: Path, slice_: Path, prepared: Path) -> Path:
    return slice_


def good_prepared(w: Path, slice_: Path, prepared: Path) -> Path:
    return prepared


def nothing(w: Path, slice_: Path, prepared: Path) -> Path:
    return w / "does-not-exist"


# (command, make input, extra flags, what the one line must say). {input} is the made path, {out} the output.
CASES = {
    # config
    "config-missing": ("prepare", nothing, ["--config", "{input}"], "config file not found"),
    "config-bad-yaml": ("prepare", config_file("mining: {range_max: [}\n"), ["--config", "{input}"], "not valid YAML"),
    "config-non-utf8": ("train", config_file(b"train:\n  output: caf\xe9\n"), ["--config", "{input}"], "not UTF-8"),
    "config-unknown-section": ("prepare", config_file("minning: {}\n"), ["--config", "{input}"], "unknown section"),
    "config-unknown-key": ("train", config_file("train: {epoch: 2}\n"), ["--config", "{input}"], "train.epoch"),
    "config-wrong-type": ("train", config_file("train: {epochs: two}\n"), ["--config", "{input}"], "train.epochs"),
    "config-not-a-mapping": ("prepare", config_file("- a\n- b\n"), ["--config", "{input}"], "mapping of sections"),
    "config-range": ("prepare", config_file("mining: {range_min: 60}\n"), ["--config", "{input}"], "range_min"),
    # prepare
    "prepare-missing-data": ("prepare", nothing, ["--data", "{input}"], "not found"),
    "prepare-no-corpus": ("prepare", remove_beir("corpus.jsonl"), ["--data", "{input}"], "corpus.jsonl"),
    "prepare-no-queries": ("prepare", remove_beir("queries.jsonl"), ["--data", "{input}"], "queries.jsonl"),
    "prepare-empty-corpus": ("prepare", edit_beir("corpus.jsonl", ""), ["--data", "{input}"], "corpus is empty"),
    "prepare-bad-json": ("prepare", edit_beir("corpus.jsonl", "{oops\n"), ["--data", "{input}"], "line 1"),
    "prepare-non-utf8": (
        "prepare",
        edit_beir("queries.jsonl", b'{"_id": "q", "text": "caf\xe9"}\n'),
        ["--data", "{input}"],
        "not UTF-8",
    ),
    "prepare-unknown-doc": (
        "prepare",
        append_beir("qrels/train.tsv", "1\tno-such-doc\t1\n"),
        ["--data", "{input}"],
        "no-such-doc",
    ),
    "prepare-qrels-header": (
        "prepare",
        edit_beir("qrels/train.tsv", "q\td\ts\n1\t2\t1\n"),
        ["--data", "{input}"],
        "header",
    ),
    "prepare-bad-score": (
        "prepare",
        append_beir("qrels/train.tsv", "1\t4983\thigh\n"),
        ["--data", "{input}"],
        "score 'high'",
    ),
    "prepare-passages-no-text": ("prepare", passages([{"id": "a", "title": "t"}]), ["--data", "{input}"], "text"),
    "prepare-passages-dup-id": (
        "prepare",
        passages([{"id": "a", "title": "t", "text": "x"}] * 2),
        ["--data", "{input}"],
        "duplicate id",
    ),
    "prepare-passages-unknown-format": (
        "prepare",
        passages(b"id,title,text\n", "p.csv"),
        ["--data", "{input}"],
        "unknown input",
    ),
    "prepare-passages-too-few": (
        "prepare",
        passages(
            [{"id": f"p{i}", "title": f"t{i}", "text": f"Sentence {i} here. And more words {i}."} for i in range(9)]
        ),
        ["--data", "{input}"],
        "gives 0 held-out synthetic queries (at most one per 5 of its 9 passages",
    ),
    "prepare-passages-too-short": (
        "prepare",
        passages(
            [{"id": f"p{i}", "title": f"t{i}", "text": f"Sentence number {i}. Another one {i}."} for i in range(60)]
        ),
        ["--data", "{input}"],
        "gives 0 held-out synthetic queries",
    ),
    "prepare-llm-unreachable": (
        "prepare",
        long_enough,
        "--data {input} --generator llm --llm-endpoint http://127.0.0.1:9/v1 --llm-model m --llm-retries 0".split(),
        "synthetic.llm_endpoint http://127.0.0.1:9/v1/chat/completions: unreachable (",
    ),
    "prepare-cross-encoder-not-one": (
        "prepare",
        long_enough,
        ["--data", "{input}", "--teacher", "cross-encoder", "--cross-encoder", "{slice}"],
        "no readable config.json; pass a local cross-encoder directory",
    ),
    "prepare-llm-no-model": (
        "prepare",
        long_enough,
        ["--data", "{input}", "--generator", "llm", "--llm-endpoint", "http://127.0.0.1:9/v1"],
        "synthetic.llm_endpoint and synthetic.llm_model: set them",
    ),
    "prepare-generator-unknown": (
        "prepare",
        long_enough,
        ["--data", "{input}", "--generator", "ict", "--generator", "oracle"],
        "synthetic.generators: unknown or empty ['oracle']; choose from ict, crop, terms, llm",
    ),
    "prepare-teacher-unknown": (
        "prepare",
        long_enough,
        ["--data", "{input}", "--teacher", "oracle"],
        "synthetic.teacher 'oracle': choose fusion, cross-encoder, none",
    ),
    "prepare-cross-encoder-unset": (
        "prepare",
        long_enough,
        ["--data", "{input}", "--teacher", "cross-encoder"],
        "synthetic.cross_encoder: set a local cross-encoder directory",
    ),
    "prepare-eval-fraction": (
        "prepare",
        good_data,
        ["--data", "{input}", "--eval-fraction", "1.5"],
        "data.eval_fraction",
    ),
    "prepare-eval-fraction-zero": (
        "prepare",
        good_data,
        ["--data", "{input}", "--eval-fraction", "0"],
        "data.eval_fraction",
    ),
    "prepare-unknown-model": ("prepare", good_data, ["--data", "{input}", "--model", "no/such-model"], "no/such-model"),
    # train
    "train-missing-prepared": ("train", nothing, ["--data", "{input}"], "train.parquet"),
    "train-no-corpus": ("train", broken_prepared("corpus.parquet"), ["--data", "{input}"], "corpus.parquet"),
    "train-bad-loss": ("train", good_prepared, ["--data", "{input}", "--loss", "triplet"], "train.loss"),
    "train-batch-of-one": ("train", good_prepared, ["--data", "{input}", "--batch-size", "1"], "train.batch_size"),
    "train-unknown-model": ("train", good_prepared, ["--data", "{input}", "--model", "/no/model"], "/no/model"),
    "train-resume-foreign-dir": ("train", good_prepared, ["--data", "{input}", "--resume"], "no intact checkpoint"),
    # evaluate
    "evaluate-missing-split": ("evaluate", good_data, ["--data", "{input}", "--split", "dev"], "dev"),
    "evaluate-unknown-model": ("evaluate", good_data, ["--data", "{input}", "--model", "no/such"], "no/such"),
    "evaluate-unknown-doc": (
        "evaluate",
        append_beir("qrels/test.tsv", "1\tghost\t1\n"),
        ["--data", "{input}"],
        "ghost",
    ),
    "evaluate-missing-data": ("evaluate", nothing, ["--data", "{input}"], "not found"),
    # submit and the job verbs
    "submit-no-kubeconfig": ("submit", nothing, ["--kubeconfig", "{input}"], "kubeconfig not found"),
    "submit-zero-nodes": ("submit", nothing, ["--kubeconfig", "{input}", "--num-nodes", "0"], "kubeflow.num_nodes"),
    "submit-backend": ("submit", nothing, ["--backend", "slurm"], "kubeflow.backend"),
    "submit-shell-chars": ("submit", nothing, ["--backend", "local", "--output", "runs/$USER"], "train.output"),
    "status-unknown-local-job": ("status", nothing, ["nope", "--backend", "local"], "no local job 'nope'"),
    # index and search (Feast)
    "index-no-repo": ("index", nothing, ["--repo", "{input}", "--data", "data/scifact"], "not a Feast repo"),
    "index-no-data": ("index", feast_repo(384), ["--repo", "{input}"], "pass --data"),
    "index-unreachable-milvus": (
        "index",
        milvus_server("127.0.0.1", 9),
        ["--repo", "{input}", "--data", "{slice}"],
        "the online store did not answer",
    ),
    "index-wrong-dimension": ("index", feast_repo(128), ["--repo", "{input}", "--data", "{slice}"], "128"),
    "search-no-repo": ("search", nothing, ["question", "--repo", "{input}"], "not a Feast repo"),
    "search-unindexed": ("search", feast_repo(384), ["question", "--repo", "{input}"], "no passages indexed yet"),
    "search-top-k": ("search", feast_repo(384), ["question", "--repo", "{input}", "--top-k", "0"], "top_k"),
    "feast-init-exists": ("feast", feast_repo(384), ["init", "{input}"], "already exists"),
    # report
    "report-missing-run": ("report", nothing, ["{input}"], "not found"),
}

OUTPUT_FLAG = {"prepare": "--output", "train": "--output", "evaluate": "--output"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_outputs_survive(case, tmp_path, scifact_slice, prepared_dir, capsys):
    command, make, flags, message = CASES[case]
    made = make(tmp_path, scifact_slice, prepared_dir)
    argv = [command, *(f.format(input=made, fresh=tmp_path / "fresh-run", slice=scifact_slice) for f in flags)]
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "metrics.json").write_text(SENTINEL)
    mark(existing, "evaluation")  # an output ragtune wrote: --overwrite may replace it, a bad input may not
    if command in OUTPUT_FLAG and "--output" not in flags:
        argv += [OUTPUT_FLAG[command], str(existing), "--overwrite"]
    before = snapshot(tmp_path)

    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("ragtune: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and message in err, err
    assert snapshot(tmp_path) == before, "a bad input changed files"


def parquet_passages(ids: list):
    def make(w: Path, slice_: Path, prepared: Path) -> Path:
        path = w / "passages.parquet"
        pd.DataFrame({"id": ids, "title": ["A"] * len(ids), "text": ["x"] * len(ids)}).to_parquet(path)
        return path

    return make


def untitled_passages_as_titles_only(w: Path, slice_: Path, prepared: Path) -> Path:
    """Passages without titles, and a config that makes titles the only queries."""
    pd.DataFrame({"id": ["a", "b"], "text": ["one passage", "another"]}).to_parquet(w / "passages.parquet")
    (w / "run.yaml").write_text("synthetic:\n  generators: []\n")
    return w


def unloadable_model(w: Path, slice_: Path, prepared: Path) -> Path:
    model = w / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "no-such-architecture"}')
    return model


def conflicting_qrels(w: Path, slice_: Path, prepared: Path) -> Path:
    root = beir_copy(slice_, w / "data")
    first = (root / "qrels" / "train.tsv").read_text().splitlines()[1].split("\t")
    with open(root / "qrels" / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write(f"{first[0]}\t{first[1]}\t2\n")
    return root


# Found trying ragtune as a new user (#28); each runs the real executable. {input}/{slice} as above.
EXECUTABLE_CASES = {
    "device-cuda-without-cuda": ("prepare", good_data, ["--data", "{input}", "--device", "cuda"], "no CUDA device"),
    "device-tpu": ("prepare", config_file("model: {device: tpu}\n"), ["--config", "{input}"], "model.device"),
    "max-seq-length-beyond-the-model": (
        "train",
        good_prepared,
        ["--data", "{input}", "--max-seq-length", "100000"],
        "reads at most 512 tokens",
    ),
    "unwritable-cache-dir": (
        "prepare",
        long_enough,
        ["--data", "{input}", "--cache-dir", "{input}/cache"],
        "not a writable directory",
    ),
    "model-not-loadable": (
        "prepare",
        unloadable_model,
        ["--data", "{slice}", "--model", "{input}"],
        "could not be loaded",
    ),
    "search-non-utf8": (
        "search",
        feast_repo(384),
        [b"caf\xe9".decode("utf-8", "surrogateescape"), "--repo", "{input}"],
        "not UTF-8",
    ),
    "search-empty": ("search", feast_repo(384), ["  ", "--repo", "{input}"], "the question is empty"),
    "qrels-conflicting-duplicate": ("prepare", conflicting_qrels, ["--data", "{input}"], "judged twice"),
    "qrels-negative": ("prepare", append_beir("qrels/train.tsv", "1\t4983\t-1\n"), ["--data", "{input}"], "'-1'"),
    "parquet-nan-id": ("prepare", parquet_passages(["a", None]), ["--data", "{input}"], "passage number(s) 2"),
    "parquet-float-id": ("prepare", parquet_passages([1.0, 2.0]), ["--data", "{input}"], "non-integer numeric id"),
    "titles-only-without-titles": (
        "prepare",
        untitled_passages_as_titles_only,
        ["--data", "{input}/passages.parquet", "--config", "{input}/run.yaml"],
        "no passage has a title",
    ),
}


@pytest.mark.parametrize("case", list(EXECUTABLE_CASES))
def test_the_executable_answers_bad_input_in_one_line(case, tmp_path, scifact_slice, prepared_dir):
    command, make, flags, message = EXECUTABLE_CASES[case]
    made = make(tmp_path, scifact_slice, prepared_dir)
    argv = [command, *(f.format(input=made, slice=scifact_slice) for f in flags)]
    if command in OUTPUT_FLAG:
        existing = tmp_path / "existing"
        existing.mkdir()
        (existing / "metrics.json").write_text(SENTINEL)
        mark(existing, "evaluation")
        argv += [OUTPUT_FLAG[command], str(existing), "--overwrite"]
    before = snapshot(tmp_path)
    result = subprocess.run([RAGTUNE, *argv], capture_output=True, text=True, errors="replace", env=os.environ)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("ragtune: error: "), result.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "a bad input changed files"


def test_the_suite_covers_every_stage():
    commands = {command for command, *_ in CASES.values()}
    assert {"prepare", "train", "evaluate", "index", "search", "submit", "report"} <= commands
    assert len(CASES) >= 30
