"""The evaluation table as markdown (one row per system, the metrics at 4 decimals), and which row is served."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragtune.retrieval.metrics import METRICS

if TYPE_CHECKING:
    from ragtune.retrieval.fusion import FusionChoice


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for system, metrics in results.items():
        lines.append(f"| {system} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def served_row(model: Path) -> tuple[str, FusionChoice]:
    """The row of the evaluation table that `index` and `search` serve for `model` (dense, or the fusion its
    run chose), and that choice."""
    from ragtune.io.runinfo import RunMetrics
    from ragtune.retrieval.fusion import FusionChoice

    fusion = FusionChoice.from_dict(getattr(RunMetrics.of_model(model), "fusion", None))
    return (f"{model} {fusion.name}" if fusion.mode == "hybrid" else str(model)), fusion


def served_line(results: dict[str, dict[str, float]], base: str, model: Path) -> str:
    """Which row of the table `index` and `search` serve for `model`, against the base."""
    from ragtune.retrieval.metrics import PRIMARY_METRIC

    row, fusion = served_row(model)
    served, before = results[row][PRIMARY_METRIC], results[base][PRIMARY_METRIC]
    why = fusion.why or "dense"
    return f"served: {row} ({why}): {PRIMARY_METRIC} {served:.4f}, base {before:.4f} ({served - before:+.4f})"
