"""`ragtune report`: one self-contained HTML page per run, to read offline or attach to a review.

Everything is inline (CSS, SVG charts drawn here), so the page needs no network, no JavaScript
and no TensorBoard server. `collect` reads a run into a plain dict, `render` turns that dict into
HTML; only the API writes a file.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import yaml

from ragtune.errors import UserError
from ragtune.io.files import read_json_object
from ragtune.io.prepared import held_out_queries
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.fusion import FusionChoice, mode_name
from ragtune.retrieval.metrics import PRIMARY_METRIC

CURVES = {
    "train/loss": "Training loss",
    "eval/ndcg@10": "Held-out nDCG@10",
    "train/learning_rate": "Learning rate",
    "Evaluation/Positive_Pair_Similarity": "Positive pair similarity",
}
NOT_METRICS = {"step", "epoch", "bm25_weight"}  # history and fusion rows carry these beside the metrics
PASS_KEYS = {"step", "epoch", "seconds"}  # re-mining records: shown in the column header, not as rows


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard scalars by tag; a resumed run's repeated steps keep their last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not logdir.is_dir():
        return {}
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    curves = {}
    for tag in events.Tags()["scalars"]:
        by_step = {event.step: event.value for event in events.Scalars(tag)}
        curves[tag] = sorted(by_step.items())
    return curves


def _prepared_dir(run_dir: Path, config: dict) -> Path | None:
    """config.yaml's train.prepared (relative to where training ran), else a sibling prepared/ as the demo writes."""
    named = (config.get("train") or {}).get("prepared")
    candidates = [Path(named), run_dir.parent / Path(named).name] if named else []
    return next((p for p in [*candidates, run_dir.parent / "prepared"] if (p / "audit.json").is_file()), None)


def _sibling_eval(run_dir: Path) -> Path | None:
    """runs/X/eval beside runs/X/run, used only if it evaluated this run's model."""
    path = run_dir.parent / "eval"
    try:
        systems = json.loads((path / "metrics.json").read_text(encoding="utf-8"))["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if any(Path(name).parts[-2:] == (run_dir.name, "model") for name in systems) else None


def held_out_name(metrics: RunMetrics) -> str:
    kind = (metrics.heldout or {}).get("kind", "real")
    return f"Held-out ({held_out_queries(kind)})" if kind == "synthetic" else "Held-out"


def collect(run_dir: Path, eval_dir: Path | None = None) -> dict:
    """Everything the page shows, read from a run directory (and an evaluate output, if any)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not found; pass a run directory written by `ragtune train`")
    metrics = RunMetrics.load(run_dir)
    config_path = run_dir / "config.yaml"
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError:
        config = {}
    config = config if isinstance(config, dict) else {}
    prepared = _prepared_dir(run_dir, config)
    audits = [("prepare", read_json_object(prepared / "audit.json", "re-run `ragtune prepare`"))] if prepared else []
    for record in metrics.remining or []:
        audits.append(
            (f"re-mine, epoch {record.get('epoch')}", {k: v for k, v in record.items() if k not in PASS_KEYS})
        )
    evaluation = None
    eval_dir = Path(eval_dir) if eval_dir else _sibling_eval(run_dir)
    if eval_dir:
        evaluation = read_json_object(
            eval_dir / "metrics.json", "pass an output directory of `ragtune evaluate` to --eval"
        )
        if not isinstance(evaluation.get("results"), dict):
            raise UserError(f"{eval_dir / 'metrics.json'}: no 'results'; pass an output of `ragtune evaluate`")
        evaluation["dir"] = str(eval_dir)
    return {
        "run_dir": str(run_dir),
        "base_model": (config.get("model") or {}).get("name", ""),
        "metrics": metrics,
        "config": config_text,
        "prepared": str(prepared) if prepared else None,
        "audits": audits,
        "evaluation": evaluation,
        "curves": {tag: points for tag, points in read_scalars(run_dir / "tensorboard").items() if tag in CURVES},
    }


def _e(value) -> str:
    return html.escape(str(value))


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_number(v)}" for k, v in value.items())
    return str(value)


def metrics_table(rows: dict[str, dict], extra: dict[str, dict] | None = None) -> str:
    """Systems x metrics at 4 decimals, the best of each column in bold; `extra` rows (deltas) are signed."""
    columns = list(dict.fromkeys(k for values in rows.values() for k in values if k not in NOT_METRICS))
    best = {c: max((v[c] for v in rows.values() if isinstance(v.get(c), int | float)), default=None) for c in columns}
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for name, values in rows.items():
        cells = []
        for c in columns:
            value = values.get(c)
            text = f"{value:.4f}" if isinstance(value, int | float) else "–"
            cells.append(f"<td><b>{text}</b></td>" if value is not None and value == best[c] else f"<td>{text}</td>")
        body.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    for name, values in (extra or {}).items():
        cells = "".join(f"<td>{values[c]:+.4f}</td>" if c in values else "<td>–</td>" for c in columns)
        body.append(f'<tr class="delta"><th>{_e(name)}</th>{cells}</tr>')
    return f"<table><tr><th>system</th>{head}</tr>{''.join(body)}</table>"


def key_value_table(items: dict) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_number(v))}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def audit_table(audits: list[tuple[str, dict]]) -> str:
    """One column per mining pass (prepare, then each re-mining), one row per guard counter."""
    keys = list(dict.fromkeys(k for _, counts in audits for k in counts))
    head = "".join(f"<th>{_e(label)}</th>" for label, _ in audits)
    rows = "".join(
        f"<tr><th>{_e(k)}</th>" + "".join(f"<td>{_e(_number(c.get(k, '–')))}</td>" for _, c in audits) + "</tr>"
        for k in keys
    )
    return f"<table><tr><th>counter</th>{head}</tr>{rows}</table>"


def line_chart(title: str, points: list[tuple[int, float]], width: int = 520, height: int = 220) -> str:
    """An inline SVG line chart of (step, value) points, with min/max ticks on both axes."""
    left, right, top, bottom = 64, 16, 28, 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or abs(y1) * 0.08 or 1.0
    low, high, span = y0 - pad, y1 + pad, (x1 - x0) or 1

    def px(x: float) -> float:
        return left + (x - x0) / span * (width - left - right)

    def py(y: float) -> float:
        return top + (high - y) / (high - low) * (height - top - bottom)

    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3"/>' for x, y in points) if len(points) <= 40 else ""
    y_ticks = "".join(
        f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>'
        f'<line x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" class="grid"/>'
        for v in sorted({y0, y1})
    )
    x_ticks = "".join(
        f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x}</text>' for x in sorted({x0, x1})
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f"<title>{_e(title)}</title>"
        f'<text x="{left}" y="18" class="title">{_e(title)}</text>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="axis"/>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="axis"/>'
        f"{y_ticks}{x_ticks}"
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" text-anchor="middle">step</text>'
        f'<polyline points="{line}"/>{dots}</svg>'
    )


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.sub { color: #666; } .headline { font-size: 16px; margin: 12px 0; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; }
td { text-align: right; font-variant-numeric: tabular-nums; } th { text-align: left; font-weight: 600; }
tr.delta td { color: #555; font-style: italic; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { border: 1px solid #eee; background: #fff; font-size: 11px; }
svg.chart polyline { fill: none; stroke: #1f77b4; stroke-width: 2; } svg.chart circle { fill: #1f77b4; }
svg.chart .axis { stroke: #888; } svg.chart .grid { stroke: #eee; }
svg.chart .title { font-size: 13px; font-weight: 600; }
"""


def render(data: dict) -> str:
    """The page: headline, metric tables, curves, training facts, mining audit, config; all text escaped."""
    metrics, run = data["metrics"], Path(data["run_dir"])
    base, tuned = metrics.base or {}, metrics.tuned
    sections = []
    if PRIMARY_METRIC in base and PRIMARY_METRIC in tuned:
        before, after = base[PRIMARY_METRIC], tuned[PRIMARY_METRIC]
        sections.append(
            f'<p class="headline">{_e(held_out_name(metrics))} nDCG@10: base <b>{before:.4f}</b> → tuned '
            f"<b>{after:.4f}</b> ({after - before:+.4f})</p>"
        )
    evaluation = data["evaluation"]
    if evaluation:
        sections.append(
            f"<h2>Retrieval: split {_e(evaluation.get('split', '?'))}</h2>"
            f'<p class="sub">from {_e(evaluation["dir"])} (ragtune evaluate: full corpus, exact search)</p>'
            + metrics_table(evaluation["results"])
        )
    held_out = {"base": base, f"tuned (step {metrics.best_step})": tuned}
    deltas = {"tuned − base": {k: tuned[k] - base[k] for k in tuned if k in base and k not in NOT_METRICS}}
    sections.append(
        f"<h2>{_e(held_out_name(metrics))} split (measured during training)</h2>"
        + metrics_table(held_out, deltas if base else None)
    )
    choice = FusionChoice.from_dict(metrics.fusion)
    if choice.rows:
        evidence = {mode_name(row["bm25_weight"]): row for row in choice.rows}
        sections.append(
            f"<h2>Served as {_e(choice.name)}</h2>"
            f'<p class="sub">chosen on {choice.queries} held-out {_e(held_out_queries(choice.kind))} '
            f"({_e(choice.source)}): {_e(choice.why)}</p>" + metrics_table(evidence)
        )
    charts = [line_chart(title, data["curves"][tag]) for tag, title in CURVES.items() if data["curves"].get(tag)]
    sections.append(
        "<h2>Training curves</h2>"
        + (f'<div class="charts">{"".join(charts)}</div>' if charts else "<p>No TensorBoard scalars found.</p>")
    )
    facts = {**(metrics.train or {}), "best_step": metrics.best_step}
    sections.append("<h2>Training</h2>" + key_value_table(facts))
    if metrics.data:
        sections.append("<h2>Data</h2>" + key_value_table(metrics.data))
    source = f'<p class="sub">prepare: {_e(data["prepared"])}/audit.json</p>' if data["prepared"] else ""
    sections.append(
        "<h2>Mining audit</h2>"
        + (source + audit_table(data["audits"]) if data["audits"] else "<p>No mining audit found.</p>")
    )
    sections.append(f"<h2>Config</h2><pre>{_e(data['config'] or '(no config.yaml)')}</pre>")
    title = f"ragtune report: {run.name}"
    model = f" · base model {_e(data['base_model'])}" if data["base_model"] else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="sub">{_e(run)}{model}</p>{"".join(sections)}</body></html>\n'
    )
