"""Atomic writes: a crash never leaves a half-written file or directory where the user expects one."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ragtune.errors import UserError


def _scratch(final: Path, kind: str) -> Path:
    """`.NAME.KIND-HOST-PID`: this process's scratch copy of `final`; host and pid tell a dead writer's leftovers."""
    return final.with_name(f".{final.name}.{kind}-{socket.gethostname()}-{os.getpid()}")


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_scratch(final: Path) -> None:
    """Delete scratch copies of `final` left by writers on this host that died (kill -9, OOM) mid-write."""
    final = Path(final)
    for kind in ("tmp", "old"):
        prefix = f".{final.name}.{kind}-{socket.gethostname()}-"
        for path in final.parent.glob(glob.escape(prefix) + "*"):
            pid = path.name[len(prefix) :]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds."""
    final = Path(final)
    remove_stale_scratch(final)
    tmp = _scratch(final, "tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def default_cache_dir() -> Path:
    return Path(os.environ.get("RAGTUNE_CACHE", Path.home() / ".cache" / "ragtune"))


MARKER = ".ragtune-output"  # in every directory ragtune writes: --overwrite replaces nothing else


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: str | Path, flag: str) -> None:
    """Fail now, not after an hour of work, when `path` (or the folder that would hold it) cannot be written."""
    target = _nearest_existing(_resolved(path))
    if not target.is_dir() or not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{path}: {target} is not a writable directory; choose a writable {flag}")


def check_output_path(output: str | Path, inputs: dict[str, object], flag: str = "--output") -> Path:
    """The path rules every output obeys, checked before anything is read; returns the resolved path.

    Refused: a symlink; the root, the home directory, the working directory or a folder holding one of
    them; an output that equals, holds or lies inside an input (`inputs` maps each input's flag to a
    path or a list of paths; names that are not paths on disk are skipped); an unwritable location.
    """
    raw = Path(output)
    if raw.is_symlink():
        raise UserError(f"{flag} {output}: is a symlink; ragtune does not write through links: pass the real path")
    final = _resolved(raw)
    for name, keep in (
        ("the root directory", Path("/")),
        ("the home directory", _resolved("~")),
        ("the working directory", _resolved(".")),
    ):
        if _within(keep, final):
            raise UserError(f"{flag} {output}: would replace {name}; pass a new folder such as runs/NAME")
    for input_flag, given in inputs.items():
        for path in given if isinstance(given, (list, tuple)) else [given]:
            if not path or not Path(str(path)).expanduser().exists():
                continue
            source = _resolved(str(path))
            if _within(final, source) or _within(source, final):
                raise UserError(
                    f"{flag} {output}: overlaps the input {input_flag} {path}; ragtune never writes into or "
                    "over its inputs: choose an output outside it"
                )
    check_writable(final.parent if final.is_file() else final, flag)
    return final


def guard_output(output: str | Path, inputs: dict[str, object], overwrite: bool, flag: str = "--output") -> Path:
    """`check_output_path`, then: a non-empty directory only with `overwrite`, and only if ragtune wrote it."""
    final = check_output_path(output, inputs, flag)
    _check_replaceable(final, overwrite, f"{flag} {output}")
    return final


def guard_file_output(output: str | Path, inputs: dict[str, object], overwrite: bool, flag: str = "--output") -> Path:
    """The same rules for a single file: an existing file is replaced only with `overwrite`."""
    final = check_output_path(output, inputs, flag)
    if final.is_dir():
        raise UserError(f"{flag} {output}: is a directory; pass a file name such as {Path(output) / 'report.html'}")
    if final.exists() and not overwrite:
        raise UserError(f"{flag} {output}: already exists; choose another file or pass --overwrite")
    return final


def written_by_ragtune(directory: Path) -> bool:
    return (Path(directory) / MARKER).is_file()


def mark(directory: Path, what: str) -> None:
    """Sign a directory as ragtune's: only signed directories are ever replaced by --overwrite."""
    (Path(directory) / MARKER).write_text(json.dumps({"written_by": "ragtune", "what": what}) + "\n", encoding="utf-8")


def _check_replaceable(final: Path, overwrite: bool, shown: str | None = None) -> None:
    shown = shown or str(final)
    if final.exists() and not final.is_dir():
        raise UserError(f"{shown}: exists and is not a directory; choose another output")
    if final.is_dir() and any(final.iterdir()):
        if not overwrite:
            raise UserError(f"{shown}: already exists and is not empty; choose another output or pass --overwrite")
        if not written_by_ragtune(final):
            raise UserError(
                f"{shown}: was not written by ragtune (no {MARKER} file), so --overwrite will not replace it; "
                "choose another output or move it away yourself"
            )


@contextmanager
def atomic_dir(final: Path, overwrite: bool = False, what: str = "output") -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in; the old one goes only after the swap."""
    final = Path(final)
    _check_replaceable(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(final)
    tmp = _scratch(final, "tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        mark(tmp, what)
        swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def swap_in(new: Path, final: Path) -> None:
    """Put the finished directory `new` at `final`; the old `final` is removed only after the swap."""
    old = _scratch(final, "old")
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def directory_checksums(path: Path) -> dict[str, str]:
    """sha256 of every file under `path` by relative name, minus dot-named scratch files: a torn copy shows."""
    path = Path(path)
    checksums = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        with file.open("rb") as handle:
            checksums[file.relative_to(path).as_posix()] = hashlib.file_digest(handle, "sha256").hexdigest()
    return checksums


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")
