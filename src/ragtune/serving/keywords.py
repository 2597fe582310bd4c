"""The keyword side of a passages view: the one BM25 (retrieval/bm25.py) over the view's passages.

`ragtune index` writes it beside the view it belongs to (data/keywords/<view>/, swapped in whole)
and drops it with the view, so a view and its keywords never disagree. Served hybrid search scores
BM25 over the whole corpus with it, exactly as `ragtune evaluate` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.errors import UserError
from ragtune.retrieval.bm25 import Bm25

IDS = "ids.json"


def keywords_dir(repo: Path, view_name: str) -> Path:
    return Path(repo) / "data" / "keywords" / view_name


@dataclass
class Keywords:
    bm25: Bm25
    ids: list[str]  # the passage id of each BM25 row
    row: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.row = {passage: i for i, passage in enumerate(self.ids)}

    @property
    def size(self) -> int:
        return len(self.ids)

    def save(self, directory: Path) -> None:
        self.bm25.save(directory)
        (Path(directory) / IDS).write_text(json.dumps(self.ids), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Keywords:
        bm25 = Bm25.load(directory)
        try:
            ids = json.loads((Path(directory) / IDS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{directory}: the keyword index is damaged ({exc}); run `ragtune index` again") from None
        if len(ids) != bm25.size:
            raise UserError(f"{directory}: {len(ids)} ids for {bm25.size} BM25 rows; run `ragtune index` again")
        return cls(bm25, ids)
