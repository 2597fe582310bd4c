"""Run by torchrun in tests/test_distributed.py: ragtune's real train() with a callback that records
each rank's parameters and first loss, so the test can compare ranks."""

import json
import sys
from pathlib import Path

from conftest import train_config
from safetensors.torch import save_file
from transformers import TrainerCallback

from ragtune.train.distributed import current_world
from ragtune.train.run import train


class RecordRank(TrainerCallback):
    def __init__(self, out: Path):
        self.out, self.losses = out, []

    def _dump(self, model, name: str) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(self.out / f"{name}-rank{current_world().rank}.safetensors"))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._dump(model, "start")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._dump(model, "end")
        (self.out / f"losses-rank{current_world().rank}.json").write_text(json.dumps(self.losses))


if __name__ == "__main__":
    prepared, run_dir, out, gather = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
    out.mkdir(parents=True, exist_ok=True)
    config = train_config(
        prepared,
        run_dir,
        train__epochs=1,
        train__batch_size=4,
        train__warmup_ratio=0.0,
        train__hard_negative_update_frequency=0,
        train__checkpoint_steps=100,
        train__gather_across_devices=gather,
    )
    train(config, callbacks=(RecordRank(out),))
