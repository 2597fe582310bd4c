"""The evaluation bar chart (metrics.png); matplotlib is imported only when a chart is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ragtune.retrieval.metrics import METRICS


def bar_chart(results: dict[str, dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(results), 1)
    positions = np.arange(len(METRICS))
    for i, (system, metrics) in enumerate(results.items()):
        bars = ax.bar(
            positions + i * width, [metrics[m] for m in METRICS], width, label="/".join(Path(system).parts[-2:])
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(positions + width * (len(results) - 1) / 2, METRICS)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
