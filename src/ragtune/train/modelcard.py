"""The tuned model's card: sentence-transformers' own card, plus what only ragtune knows.

The Trainer fills the model's card data as it trains (loss, hyperparameters, dataset sample,
evaluation log) and `save_pretrained` renders it, with metadata (base_model, library_name,
tags) and a usage snippet that loads the model. ragtune adds the data it trained on, the mining
audit and base vs tuned on the held-out queries, ahead of the library's own training section.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from ragtune import config as cfg
from ragtune.io.prepared import held_out_queries
from ragtune.io.runinfo import RunMetrics
from ragtune.retrieval.fusion import FusionChoice, mode_name
from ragtune.retrieval.metrics import METRICS, PRIMARY_METRIC
from ragtune.retrieval.models import BUNDLED_NAMES

HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INSERT_BEFORE = "## Training Details"


def fill_card_data(model, config: cfg.Config, model_path: str) -> None:
    """Card metadata the Trainer cannot know; never looks anything up on a hub."""
    card = model.model_card_data
    card.local_files_only = True
    card.base_model = HUB_NAME if config.model.name in BUNDLED_NAMES else Path(config.model.name).name
    card.model_id = model_path  # the usage snippet loads the model from where it was written
    card.model_name = f"{card.base_model} tuned by ragtune on {Path(config.train.prepared).name}"
    card.add_tags(["ragtune", "retrieval", "dense-retrieval"])


def quiet_widget_examples(model, dataset) -> None:
    """The card's widget examples, picked as sentence-transformers picks them, without the stray 'Computing
    widget examples' bar it prints (its Trainer callback skips the pick when the card already has them)."""
    with contextlib.redirect_stderr(io.StringIO()):
        model.model_card_data.set_widget_examples(dataset)


def ragtune_sections(metrics: RunMetrics, config: cfg.Config, audit: dict) -> str:
    base, tuned, train = metrics.base, metrics.tuned, metrics.train
    rows = "\n".join(f"| {m} | {base.get(m, float('nan')):.4f} | {tuned[m]:.4f} |" for m in METRICS)
    chosen = "the base model (no epoch beat it)" if metrics.best_step <= 0 else f"step {metrics.best_step}"
    held_out = metrics.heldout
    kind = held_out_queries(held_out.get("kind", "real"))
    return f"""## ragtune

Tuned from `{config.model.name}` with the `{train["loss"]}` loss, {train["epochs"]} epoch(s), {train["steps"]} steps,
global batch {train["global_batch_size"]} ({train["per_device_batch_size"]} x {train["world_size"]} process(es)).
These weights are {chosen}: the best held-out nDCG@10.

### Held-out retrieval: {held_out.get("queries")} {kind} ({held_out.get("source")}), full corpus, exact search

| metric | base | tuned |
|---|---|---|
{rows}

{fusion_section(metrics)}
### Data

```json
{json.dumps(metrics.data, indent=2)}
```

### Hard-negative mining audit (`ragtune prepare`)

```json
{json.dumps(audit, indent=2)}
```

### Config

```yaml
{cfg.to_yaml(config)}```

"""


def fusion_section(metrics: RunMetrics) -> str:
    """How these weights are served (dense, or fused with BM25) and the evidence that chose it."""
    choice = FusionChoice.from_dict(metrics.fusion)
    if not choice.rows:
        return ""
    rows = "\n".join(f"| {mode_name(r['bm25_weight'])} | {r[PRIMARY_METRIC]:.4f} |" for r in choice.rows)
    kind = held_out_queries(choice.kind)
    return f"""### Served as {choice.name}

Chosen on {choice.queries} held-out {kind} ({choice.source}), after training, for these weights: {choice.why}.

| retriever | nDCG@10 |
|---|---|
{rows}

"""


def write_model_card(readme: Path, metrics: RunMetrics, config: cfg.Config, audit: dict) -> None:
    """Insert ragtune's sections into the card `save_pretrained` wrote."""
    card = readme.read_text(encoding="utf-8")
    ours = ragtune_sections(metrics, config, audit)
    at = card.find(INSERT_BEFORE)
    readme.write_text(card[:at] + ours + card[at:] if at >= 0 else card + "\n" + ours, encoding="utf-8")
