"""Mounted into the node containers of tests/test_docker.py (PYTHONPATH): in each torchrun worker, adds a
callback to ragtune's real train() that writes this rank's parameters at the start and end of training,
and the step each attempt started from, into RAGTUNE_PROBE_DIR on the shared volume. The pod's command
itself stays the one `ragtune submit` writes; only rank 0 saves a model, so this is how rank 1 is seen."""

import os

if "LOCAL_RANK" in os.environ and os.environ.get("RAGTUNE_PROBE_DIR"):
    import json
    from pathlib import Path

    from safetensors.torch import save_file
    from transformers import TrainerCallback

    import ragtune.train.run as stage

    out = Path(os.environ["RAGTUNE_PROBE_DIR"])
    rank = int(os.environ["RANK"])

    def dump(model, name: str) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / f"{name}-rank{rank}.safetensors"))

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            out.mkdir(parents=True, exist_ok=True)
            with open(out / f"attempts-rank{rank}.jsonl", "a") as handle:
                handle.write(json.dumps({"start_step": state.global_step, "max_steps": state.max_steps}) + "\n")
            if not (out / f"start-rank{rank}.safetensors").exists():
                dump(model, "start")

        def on_train_end(self, args, state, control, model=None, **kwargs):
            dump(model, "end")
            (out / f"end-rank{rank}.json").write_text(json.dumps({"step": state.global_step}))

    train = stage.train

    def probed(*args, callbacks=(), **kwargs):
        return train(*args, callbacks=(*callbacks, Probe()), **kwargs)

    stage.train = probed
