"""The cheap check of a Feast repo path, answered before Feast and torch are imported (seconds)."""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import UserError


def check_repo(directory: Path) -> Path:
    """`directory` if it holds a feature_store.yaml; else one line naming the command that makes one."""
    directory = Path(directory)
    if not (directory / "feature_store.yaml").is_file():
        raise UserError(f"{directory}: not a Feast repo (no feature_store.yaml); create one with `ragtune feast init`")
    return directory
