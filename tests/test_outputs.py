"""Never lose what the user had: the output rules, on real directories, and through the real `ragtune`
executable for the ways users lost data (an output equal to, above or inside an input; `.`; a symlink;
--overwrite on a folder ragtune did not write; two runs on one directory)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ragtune.errors import UserError
from ragtune.io.outputs import MARKER, atomic_dir, guard_file_output, guard_output, mark
from ragtune.train.checkpoints import run_lock

RAGTUNE = str(Path(sys.executable).with_name("ragtune"))


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def user_data(root: Path) -> Path:
    data = root / "mydata"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "the user\'s passage"}\n')
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "a question"}\n')
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return data


@pytest.mark.parametrize("output", ["mydata", "mydata/sub", "."])
def test_an_output_over_or_inside_an_input_is_refused(tmp_path, output, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = user_data(tmp_path)
    with pytest.raises(UserError, match="overlaps the input --data|working directory"):
        guard_output(output, {"--data": str(data)}, overwrite=True)


def test_an_output_holding_the_input_the_root_or_home_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = user_data(tmp_path / "project")
    with pytest.raises(UserError, match="overlaps the input --data"):
        guard_output(tmp_path / "project", {"--data": str(data)}, overwrite=True)
    for path, name in (("/", "root"), (Path.home(), "home"), ("..", "working")):
        with pytest.raises(UserError, match=f"would replace the {name} directory"):
            guard_output(path, {}, overwrite=True)


def test_names_that_are_not_paths_on_disk_are_not_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert guard_output("runs/a", {"--model": "all-MiniLM-L6-v2", "--eval-data": ""}, overwrite=False).name == "a"


def test_a_symlinked_output_is_refused_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UserError, match="is a symlink"):
        guard_output(tmp_path / "link", {}, overwrite=True)


def test_overwrite_replaces_only_what_ragtune_wrote(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        guard_output(foreign, {}, overwrite=False)
    with pytest.raises(UserError, match=f"not written by ragtune \\(no {MARKER} file\\)"):
        guard_output(foreign, {}, overwrite=True)
    with pytest.raises(UserError, match="not written by ragtune"):
        with atomic_dir(foreign, overwrite=True):
            pass
    assert (foreign / "notes.txt").read_text() == "mine"
    mark(foreign, "test")
    guard_output(foreign, {}, overwrite=True)
    with atomic_dir(foreign, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in foreign.iterdir()) == [MARKER, "new.txt"]


def test_a_failed_write_leaves_the_old_output_whole(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed midway")
    assert (out / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_file_outputs(tmp_path):
    existing = tmp_path / "corpus.jsonl"
    existing.write_text("the user's corpus")
    with pytest.raises(UserError, match="already exists; choose another file or pass --overwrite"):
        guard_file_output(existing, {}, overwrite=False)
    with pytest.raises(UserError, match="is a directory"):
        guard_file_output(tmp_path, {}, overwrite=True)
    assert guard_file_output(existing, {}, overwrite=True) == existing.resolve()


@pytest.mark.skipif(not os.access("/", os.W_OK) and os.getuid() != 0, reason="needs a read-only folder")
def test_an_unwritable_output_parent_fails_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere: chattr is not available on every filesystem
        pytest.skip("running as root: permissions do not stop this process")
    with pytest.raises(UserError, match="not a writable directory"):
        guard_output(locked / "out", {}, overwrite=False)


def test_the_run_lock_names_its_holder_and_a_killed_holder_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from ragtune.train.checkpoints import run_lock
        with run_lock({str(run)!r}):
            print("held", flush=True)
            time.sleep(600)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"in use by ragtune train \\(pid {holder.pid} on "):
            with run_lock(run):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / ".run.lock").exists()  # a killed holder leaves its file; the kernel freed the lock
    with run_lock(run):
        pass
    assert not (tmp_path / ".run.lock").exists()


# --- the real executable, as users ran it -----------------------------------------------------------------


def ragtune(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([RAGTUNE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=os.environ)


def assert_refused(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("ragtune: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert needle in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [
        (["prepare", "--data", "mydata", "--output", "mydata", "--overwrite"], "overlaps the input --data"),
        (["prepare", "--data", "mydata", "--output", ".", "--overwrite"], "the working directory"),
        (["prepare", "--data", "mydata", "--output", "..", "--overwrite"], "the working directory"),
        (["evaluate", "--data", "mydata", "--output", "mydata", "--overwrite"], "overlaps the input --data"),
        (["evaluate", "--data", "mydata", "--output", "mydata/qrels", "--overwrite"], "overlaps the input --data"),
        (["train", "--data", "mydata", "--output", "mydata", "--overwrite"], "overlaps the input --data"),
        (["train", "--data", "p", "--model", "mydata", "--output", "mydata", "--overwrite"], "the input --model"),
        (["prepare", "--data", "mydata", "--output", "mine", "--overwrite"], "not written by ragtune"),
        (["train", "--data", "p", "--output", "mine", "--overwrite"], "not written by ragtune"),
        (["prepare", "--data", "mydata", "--output", "link", "--overwrite"], "is a symlink"),
        (
            ["prepare", "--config", "mine/c.yaml", "--data", "mydata", "--output", "mine", "--overwrite"],
            "overlaps the input --config",
        ),
    ],
)
def test_the_executable_never_replaces_what_the_user_had(tmp_path, args, needle):
    user_data(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "c.yaml").write_text("model: {device: cpu}\n")
    (tmp_path / "mine" / "metrics.json").write_text("results the user already had\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    before = snapshot(tmp_path)
    assert_refused(ragtune(*args, cwd=tmp_path / "mydata" if ".." in args else tmp_path), needle)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_report_replaces_a_file_only_when_asked_and_never_an_input(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    (tmp_path / "corpus.jsonl").write_text("the user's corpus\n")
    (tmp_path / "pages").mkdir()
    before = snapshot(tmp_path)
    assert_refused(ragtune("report", run, "--output", "corpus.jsonl", cwd=tmp_path), "already exists")
    assert_refused(ragtune("report", run, "--output", "pages", cwd=tmp_path), "is a directory")
    assert_refused(ragtune("report", run, "--output", run / "metrics.json", "--overwrite", cwd=tmp_path), "RUN")
    assert snapshot(tmp_path) == before
