"""Training progress on the cluster: the TrainJob's status.trainerStatus, seen by `ragtune status`.

Kubeflow Trainer (>= 2.2, TrainJobStatus feature gate) gives every pod KUBEFLOW_TRAINER_SERVER_URL
with a CA and a token; the SDK's update_trainjob_status posts there, at most once per 5 s. Rank 0
alone reports, as the other ranks would only repeat it. transformers has its own KubeflowCallback,
but ragtune trains with report_to="none" and that one does not know our held-out nDCG@10.
"""

from __future__ import annotations

import os
import time
import warnings

SERVER_URL = "KUBEFLOW_TRAINER_SERVER_URL"
MIN_INTERVAL = 5.0  # the SDK drops calls sooner than this after its last successful one


def import_sdk() -> None:
    """Import the Kubeflow SDK once, without the pydantic deprecation warnings its models print on import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Support for class-based `config` is deprecated")
        import kubeflow.trainer  # noqa: F401


def trainjob_progress_callback(world):
    """The callback for rank 0 of a TrainJob that reports status; None for other ranks and outside one."""
    if not world.is_main or not os.environ.get(SERVER_URL):
        return None
    from transformers import TrainerCallback

    from ragtune.retrieval.metrics import PRIMARY_METRIC  # here: importing this module stays free of torch

    import_sdk()
    from kubeflow.trainer.backends.kubernetes.utils import update_trainjob_status

    class TrainJobProgress(TrainerCallback):
        """Percent done and ETA at every step the SDK lets through; nDCG@10 once an evaluation has one."""

        def __init__(self):
            self.metrics: dict[str, float | int] = {}
            self.started = self.sent = 0.0
            self.first_step = 0

        def report(self, state, percent: int, eta: int | None) -> None:
            metrics = {**self.metrics, "step": state.global_step, "total_steps": state.max_steps}
            if update_trainjob_status(progress_percent=percent, estimated_remaining_seconds=eta, metrics=metrics):
                self.sent = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.first_step = time.monotonic(), state.global_step  # a resumed run counts from here
            self.report(state, self.percent(state), None)

        def on_step_end(self, args, state, control, **kwargs):
            done = state.global_step - self.first_step
            eta = None
            if done > 0:
                eta = round((time.monotonic() - self.started) / done * (state.max_steps - state.global_step))
            self.report(state, self.percent(state), eta)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and f"eval_{PRIMARY_METRIC}" in metrics:
                self.metrics[PRIMARY_METRIC] = round(metrics[f"eval_{PRIMARY_METRIC}"], 4)

        def on_train_end(self, args, state, control, **kwargs):
            """The last report must land: wait out the SDK's throttle once."""
            time.sleep(max(0.0, self.sent + MIN_INTERVAL - time.monotonic()))
            self.report(state, 100, 0)

        @staticmethod
        def percent(state) -> int:
            return min(99, 100 * state.global_step // state.max_steps) if state.max_steps else 0

    return TrainJobProgress()
