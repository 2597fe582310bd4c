import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune import config as cfg
from ragtune.errors import UserError


def test_defaults_yaml_and_flags_layer_in_order(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("mining:\n  range_max: 80\n  min_score: 0\ndata:\n  seed: 7\n")
    config = cfg.load(path, {"mining.range_max": 60})
    assert config.mining.range_max == 60  # flag beats file
    assert config.mining.min_score == 0.0 and isinstance(config.mining.min_score, float)
    assert config.data.seed == 7
    assert config.mining.relative_margin == 0.95  # default kept


def test_written_config_reloads_identically(tmp_path):
    config = cfg.load(None, {"eval.models": ["a", "b"], "mining.hard_negatives_per_query": 3})
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml(config))
    assert cfg.load(path) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mining:\n  rang_max: 5\n", "unknown key 'mining.rang_max'"),
        ("minning:\n  range_max: 5\n", "unknown section 'minning'"),
        ("mining:\n  range_max: fifty\n", "mining.range_max: expected int"),
        ("mining:\n  range_max: true\n", "mining.range_max: expected int"),
        ("mining: [1, 2]\n", "section 'mining' must be a mapping"),
        ("train:\n  activation_checkpointing_every_n_layers: -1\n", "every_n_layers must be 0 or more"),
        ("mining:\n  range_min: 60\n", "range_min < range_max"),
        ("data:\n  eval_fraction: 1.5\n", "data.eval_fraction"),
        ("data:\n  eval_fraction: 0\n", "data.eval_fraction must be a number in \\(0, 1\\)"),
        (
            "train:\n  loss: triplet\n",
            "train.loss must be one of auto, mnrl, cached-mnrl, gist, margin-mse, contrastive",
        ),
        ("mining:\n  range_max: [5\n", "is not valid YAML"),
        ("train:\n  wise_alphas: [0.5, 1]\n", "train.wise_alphas must be numbers in \\(0, 1\\)"),
        ("train:\n  wise_prefer: true\n", "train.wise_prefer must be set together with train.wise_alphas"),
        ("- a\n- b\n", "expected a mapping of sections"),
        ("synthetic:\n  llm_prompt: no placeholder\n", "synthetic.llm_prompt must be a template containing"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[")) as info:
        cfg.load(path)
    assert str(path) in str(info.value)


def test_missing_and_non_utf8_config(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        cfg.load(tmp_path / "nope.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  path: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        cfg.load(path)


def test_config_yaml_is_plain_yaml():
    assert yaml.safe_load(cfg.to_yaml(cfg.Config()))["mining"]["min_score"] == 0.3


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(-2, 2), st.text(max_size=8))
sections = st.sampled_from([*cfg.SECTIONS, "nope"])
keys = st.sampled_from(sorted({f.name for kind in cfg.SECTIONS.values() for f in dataclasses.fields(kind)}))


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(sections, st.one_of(scalars, st.dictionaries(keys, st.one_of(scalars, st.lists(scalars))))))
def test_config_loader_either_validates_or_names_the_problem(data):
    """Any mapping a YAML file could hold: a valid Config that round-trips, or one UserError."""
    try:
        config = cfg.from_dict(data, "run.yaml")
    except UserError as exc:
        assert str(exc).startswith("run.yaml") and "\n" not in str(exc)
        return
    assert cfg.from_dict(cfg.to_dict(config)) == config


def test_empty_section_plus_a_flag_of_it(tmp_path):
    """Repro: `mining:` with nothing under it and --range-min raised TypeError from config.load."""
    path = tmp_path / "run.yaml"
    path.write_text("mining:\ntrain:\n")
    config = cfg.load(path, {"mining.range_min": 5, "train.epochs": 3})
    assert config.mining.range_min == 5 and config.train.epochs == 3 and config.mining.range_max == 50


def test_sections_are_frozen_and_replace_validates():
    config = cfg.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.epochs = 3
    assert cfg.replace(config, **{"train.epochs": 4}).train.epochs == 4 and config.train.epochs == 3
    with pytest.raises(UserError, match="train.epochs"):
        cfg.replace(config, **{"train.epochs": 0})


def test_train_flags_are_what_training_reads():
    from ragtune.cli import build_parser

    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--range-min" in train_help and "--loss" in train_help and "cached-mnrl" in train_help
    assert "--hard-negatives-per-query" not in train_help and "--random-negative-ratio" not in train_help
    settings = cfg.training_settings(cfg.Config())
    assert "train.epochs" in settings and "mining.min_score" in settings
    assert "train.output" not in settings and "model.encode_batch_size" not in settings


def test_repeated_float_flag_reaches_the_config():
    from ragtune.cli import _overrides, build_parser

    args = build_parser().parse_args(["train", "--wise-alpha", "0.3", "--wise-alpha", "0.6"])
    assert cfg.load(None, _overrides(args)).train.wise_alphas == [0.3, 0.6]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    """The profiles README tells users to pass to --config: each loads, and every key it sets is a real field."""
    config = cfg.load(path)
    for section, values in yaml.safe_load(path.read_text()).items():
        for key, value in values.items():
            assert getattr(getattr(config, section), key) == value, f"{section}.{key}"


def test_an_unquoted_yaml_exponent_is_a_number_and_a_bad_device_is_named(tmp_path):
    """Repro (#28): PyYAML reads `1e-4` as a string, and `device: tpu` crashed after the imports."""
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n")
    assert cfg.load(path).train.learning_rate == 1e-4
    path.write_text("train:\n  learning_rate: fast\n")
    with pytest.raises(UserError, match="train.learning_rate: expected a number, got 'fast'"):
        cfg.load(path)
    path.write_text("model:\n  device: tpu\n")
    with pytest.raises(UserError, match="model.device must be auto, cpu, cuda, cuda:N or mps"):
        cfg.load(path)


def test_a_renamed_key_still_loads_with_one_warning(tmp_path):
    """data.corpus_only became data.zero_label: one name for the mode; an older config keeps working."""
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  corpus_only: true\n")
    with pytest.warns(UserWarning, match="data.corpus_only is now data.zero_label"):
        assert cfg.load(path).data.zero_label is True


def test_zero_label_input_gets_the_measured_recipe_unless_the_user_sets_it(tmp_path):
    """Passages alone (data.zero_label, a passages file, a prepared directory of synthetic queries) train with
    ZERO_LABEL_RECIPE; labelled input keeps the plain defaults; YAML and flags override the recipe."""
    recipe = (1, [0.5], True)

    def train_of(config: cfg.Config) -> tuple:
        return config.train.epochs, config.train.wise_alphas, config.train.wise_prefer

    assert train_of(cfg.load(None, {"data.path": "data/scifact"})) == (3, [], False)
    assert train_of(cfg.load(None, {"data.path": "data/scifact", "data.zero_label": True})) == recipe
    assert train_of(cfg.load(None, {"data.path": "passages.jsonl"})) == recipe
    assert train_of(cfg.load(None, {"data.path": "passages.parquet", "synthetic.generators": []})) == (3, [], False)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "summary.json").write_text(json.dumps({"input_kind": "synthetic"}))
    assert train_of(cfg.load(None, {"train.prepared": str(prepared)})) == recipe
    (prepared / "summary.json").write_text(json.dumps({"input_kind": "beir"}))
    assert train_of(cfg.load(None, {"train.prepared": str(prepared)})) == (3, [], False)
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  zero_label: true\ntrain:\n  epochs: 2\n")
    assert train_of(cfg.load(path, {"train.wise_alphas": [0.25]})) == (2, [0.25], True)
