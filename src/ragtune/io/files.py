"""Text files as users have them: UTF-8 with or without a BOM, gzipped or not, JSON lines with a line number
in every complaint."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from ragtune.errors import UserError


def open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")  # a BOM is read, not refused


def find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_json_object(path: Path, fix: str) -> dict:
    """A JSON object file ragtune wrote, or one line naming the file, what is wrong and `fix`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; {fix}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; {fix}")
    return data


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Read JSON lines, naming the file and line of the first problem; BEIR's `_id` serves as `id`."""
    rows = []
    line_no = 0
    try:
        with open_text(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(
                        f"{path} line {line_no}: not valid JSON ({exc.msg}); fix or remove the line"
                    ) from None
                if not isinstance(row, dict):
                    raise UserError(f"{path} line {line_no}: expected a JSON object per line")
                if "id" in required and "id" not in row and "_id" in row:
                    row["id"] = row["_id"]
                missing = [key for key in required if key not in row]
                if missing:
                    raise UserError(
                        f"{path} line {line_no}: missing field(s) {', '.join(missing)}; "
                        f"each line needs {', '.join(required)}"
                    )
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} line {line_no + 1}: bytes that are not UTF-8 ({exc.reason} at byte {exc.start}); "
            "re-encode the file as UTF-8"
        ) from None
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read ({exc}); check the file") from None
    return rows
