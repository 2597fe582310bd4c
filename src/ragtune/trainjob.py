"""The function a Kubeflow TrainJob runs on every node.

The Kubeflow SDK ships this function's source (not its module) into the pod, writes it to a
file named after this module and starts it with torchrun, so it imports everything it needs
inside its body. The SDK embeds that source in an unquoted bash here-document: the body must
not contain a dollar sign or a backquote.
"""


def train_job(config: dict, workdir: str = "") -> None:
    """Same code as ragtune train; a restarted pod finds checkpoints in its run directory and resumes from them."""
    import os
    import sys
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)

    from ragtune import api
    from ragtune import config as cfg
    from ragtune.errors import UserError

    try:
        settings = cfg.from_dict(config, "job config")
        restarted = any((Path(settings.train.output) / "checkpoints").glob("checkpoint-*"))
        api.train(settings, resume=restarted)
    except UserError as exc:
        print(f"ragtune: error: {exc}", file=sys.stderr)
        sys.exit(2)
