"""The evaluation table as markdown (one row per system, the metrics at 4 decimals), and which row is served."""

from __future__ import annotations

from pathlib import Path

from ragtune.retrieval.metrics import METRICS


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for system, metrics in results.items():
        lines.append(f"| {system} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def served_line(results: dict[str, dict[str, float]], base: str, model: Path) -> str:
    """Which row of the table `index` and `search` serve for `model`: dense, or the fusion its run chose."""
    from ragtune.io.runinfo import RunMetrics
    from ragtune.retrieval.fusion import FusionChoice
    from ragtune.retrieval.metrics import PRIMARY_METRIC

    fusion = FusionChoice.from_dict(getattr(RunMetrics.of_model(model), "fusion", None))
    row = f"{model} {fusion.name}" if fusion.mode == "hybrid" else str(model)
    served, before = results[row][PRIMARY_METRIC], results[base][PRIMARY_METRIC]
    return (
        f"served: {row} ({fusion.why or 'dense'}): {PRIMARY_METRIC} {served:.4f}, "
        f"base {before:.4f} ({served - before:+.4f})"
    )
