"""The function a Kubeflow TrainJob runs on every node.

The Kubeflow SDK ships this function's source (not its module) into the pod, writes it to a
file named after this module and starts it with torchrun, so it imports everything it needs
inside its body. The SDK embeds that source in an unquoted bash here-document: the body must
not contain a dollar sign or a backquote.
"""


def train_job(config: dict, workdir: str = "") -> None:
    """Same code as `ragtune train --resume`: a pod (re)started on a run directory resumes it from its last
    intact checkpoint, starts fresh where none exists yet, and leaves a finished run as it is."""
    import os
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)

    from ragtune import config as cfg
    from ragtune.errors import UserError
    from ragtune.train.run import print_summary, train

    try:
        settings = cfg.from_dict(config, "job config")
        print_summary(train(settings, resume=True), settings)
    except UserError as exc:
        print(f"ragtune: error: {exc}", file=sys.stderr)
        sys.exit(2)
