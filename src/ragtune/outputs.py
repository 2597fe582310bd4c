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


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse to replace existing results unless asked; checked before any heavy work starts."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory; choose another --output")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"{path}: already exists and is not empty; choose another --output or pass --overwrite")


@contextmanager
def atomic_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in; the old one goes only after the swap."""
    final = Path(final)
    check_output_dir(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(final)
    tmp, old = _scratch(final, "tmp"), _scratch(final, "old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
