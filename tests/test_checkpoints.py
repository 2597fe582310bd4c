"""The one resume policy, case by case, on run directories built by hand (no training needed)."""

import pytest

from ragtune.errors import UserError
from ragtune.io.outputs import MARKER, mark
from ragtune.train.checkpoints import plan_start, replacement_dir, seal

PRINT = {"data": {"train.parquet": "aa"}, "settings": {"train.epochs": 2}}


def checkpoint(run, step: int, fingerprint=PRINT, intact: bool = True):
    path = run / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    seal(path, {"run": {}, "negatives": [], "fingerprint": fingerprint})
    if not intact:
        (path / "model.safetensors").write_bytes(b"torn")
    return path


@pytest.mark.parametrize("continuing", [True, False])
def test_nothing_there_starts_fresh(tmp_path, continuing):
    assert plan_start(tmp_path / "run", PRINT, continuing=continuing, overwrite=False).action == "fresh"
    assert (tmp_path / "run").is_dir()


def test_newest_intact_checkpoint_resumes_and_torn_ones_are_skipped(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 3)
    checkpoint(run, 6, intact=False)
    with pytest.warns(UserWarning, match="checkpoint-6: incomplete"):
        start = plan_start(run, PRINT, continuing=True, overwrite=False)
    assert start.action == "resume" and start.checkpoint.name == "checkpoint-3"


def test_leftovers_of_a_run_that_died_before_its_first_checkpoint_are_cleared(tmp_path):
    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    checkpoint(run, 2, intact=False)
    with pytest.warns(UserWarning):
        assert plan_start(run, PRINT, continuing=True, overwrite=False).action == "fresh"
    assert [p.name for p in run.iterdir()] == [MARKER]


def test_finished_run_is_complete_and_untouched(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 4)
    (run / "model").mkdir()
    (run / "metrics.json").write_text("{}")
    assert plan_start(run, {"other": 1}, continuing=True, overwrite=False).action == "complete"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.json", "model"]


def test_other_data_or_settings_name_what_differs(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 3)
    with pytest.raises(UserError, match=r"other settings \(train.epochs: 2 then, 3 now\)"):
        plan_start(run, {**PRINT, "settings": {"train.epochs": 3}}, continuing=True, overwrite=False)
    with pytest.raises(UserError, match=r"other data \(train.parquet: "):
        plan_start(run, {**PRINT, "data": {"train.parquet": "bb"}}, continuing=True, overwrite=False)


def test_files_that_are_not_a_run_are_never_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="holds thesis.tex but no intact checkpoint"):
        plan_start(run, PRINT, continuing=True, overwrite=False)
    with pytest.raises(UserError, match="already exists; pass --resume"):
        plan_start(run, PRINT, continuing=False, overwrite=False)
    assert (run / "thesis.tex").read_text() == "years of work"


def test_overwrite_trains_beside_the_old_run_which_stays_whole_until_the_new_one_ends(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 3)
    mark(run, "training run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    start = plan_start(run, PRINT, continuing=False, overwrite=True)
    assert start.action == "fresh" and start.work_dir == replacement_dir(run)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    checkpoint(start.work_dir, 2, {**PRINT, "settings": {"train.epochs": 5}})
    # a stopped --overwrite run: --resume continues the replacement, not the old run
    resumed = plan_start(run, {**PRINT, "settings": {"train.epochs": 5}}, continuing=True, overwrite=True)
    assert resumed.action == "resume" and resumed.checkpoint.parent.parent == replacement_dir(run)
    # a second --overwrite starts the replacement again, and the old run is still whole
    assert plan_start(run, PRINT, continuing=False, overwrite=True).work_dir == replacement_dir(run)
    assert [p.name for p in replacement_dir(run).iterdir()] == [MARKER]
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_overwrite_never_removes_a_directory_ragtune_did_not_write(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 3)
    with pytest.raises(UserError, match="not written by ragtune"):
        plan_start(run, PRINT, continuing=False, overwrite=True)
    assert (run / "checkpoints" / "checkpoint-3" / "model.safetensors").is_file()


def test_a_file_in_place_of_the_run_directory(tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(UserError, match="not a directory"):
        plan_start(tmp_path / "run", PRINT, continuing=True, overwrite=False)
