"""The evaluation table as markdown: one row per system, the metrics at 4 decimals."""

from __future__ import annotations

from ragtune.retrieval.metrics import METRICS


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for system, metrics in results.items():
        lines.append(f"| {system} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"
