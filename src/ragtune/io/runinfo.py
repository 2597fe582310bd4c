"""The typed record of what a training run measured: metrics.json is written and read only through it.

`ragtune train` writes it, and `report`, `index` (the never-serve-worse gate), the model card and
the closing summary read it. A metrics.json written by an older ragtune still loads: keys it lacks
take their defaults, keys this version no longer knows are ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import UserError
from ragtune.io.files import read_json_object
from ragtune.io.outputs import write_json

FILE = "metrics.json"
FIX = "pass a finished run directory written by `ragtune train` (finish an interrupted one with --resume)"


@dataclass
class RunMetrics:
    heldout: dict[str, Any] = field(default_factory=dict)  # kind (real or synthetic), source, queries
    base: dict[str, float] = field(default_factory=dict)  # the base model on the held-out queries
    tuned: dict[str, float] = field(default_factory=dict)  # what model/ holds (the base's scores if it shipped)
    best_step: int = 0  # 0: no tuned epoch beat the base model
    shipped: str = "tuned"  # "tuned" or "base"
    best_tuned: dict[str, float] | None = None  # the best tuned epoch, shipped or not
    history: list[dict] = field(default_factory=list)  # every held-out evaluation, step 0 (the base) first
    remining: list[dict] = field(default_factory=list)  # the audit of each re-mining pass
    train: dict[str, Any] = field(default_factory=dict)  # steps, epochs, loss, batch sizes, seconds
    data: dict[str, Any] = field(default_factory=dict)  # the prepared directory's summary
    eval_set: str = ""  # hash of the held-out set: `index` compares models measured on the same one
    base_weights: str = ""  # fingerprint of the base model's weights
    wise: dict | None = None  # the WiSE-FT averages tried, when train.wise_alphas is set
    fusion: dict = field(default_factory=dict)  # retrieval.fusion.FusionChoice: what the model serves by ({}: dense)

    @classmethod
    def from_dict(cls, data: dict) -> RunMetrics:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def load(cls, path: Path) -> RunMetrics:
        """RUN/metrics.json (or the file itself); a damaged file is one line naming it."""
        path = Path(path)
        path = path / FILE if path.is_dir() else path
        data = read_json_object(path, FIX)
        if not isinstance(data.get("tuned"), dict):
            raise UserError(f"{path}: no 'tuned' metrics; {FIX}")
        return cls.from_dict(data)

    @classmethod
    def of_model(cls, model_path: Path) -> RunMetrics | None:
        """The metrics of the run that wrote this model (RUN/model beside RUN/metrics.json), if any."""
        model_path = Path(model_path)
        if model_path.name != "model" or not (model_path.parent / FILE).is_file():
            return None
        try:
            metrics = cls.load(model_path.parent)
        except UserError:  # not a training run's metrics (an evaluate output, a damaged file): nothing is known
            return None
        return metrics if metrics.eval_set else None

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        if record["wise"] is None:  # written only when averages were tried, as before
            del record["wise"]
        return record

    def write(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / FILE, self.to_dict())
