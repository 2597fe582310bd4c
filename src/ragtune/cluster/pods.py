"""What a TrainJob runs in each node's pod: the SDK's command for our function, and the torch plugin's env.

Kept apart from the SDK client so that a local job (local.py) and the Docker test run exactly the
command and environment a cluster's pods get.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ragtune import config as cfg
from ragtune.cluster.trainjob import train_job
from ragtune.errors import UserError
from ragtune.train.progress import import_sdk

# The SDK pastes func_args into an unquoted bash here-document; these characters would be expanded.
SHELL_EXPANDED = ("$", "`", "\\")
# The TrainJob's own env: no model hub; and transformers' KubeflowCallback off, which it would otherwise
# add by itself in a TrainJob (even with report_to="none"): ragtune.train.progress is the one reporter.
TRAINER_ENV = {"HF_HUB_OFFLINE": "1", "DISABLE_KUBEFLOW_INTEGRATION": "TRUE"}
# What Kubeflow Trainer v2.3's torch plugin (pkg/runtime/framework/plugins/torch/torch.go) gives the
# trainer container: torchrun reads PET_* as its flags. The master is node 0's pod, reached through
# the JobSet's headless service; node rank is the Indexed Job's completion index.
TRAINER_PORT = 29500  # constants.ContainerTrainerPort; also the container port the plugin opens


def node_host(job: str, rank: int) -> str:
    """Node `rank`'s DNS name: the JobSet pod `<job>-node-0-<rank>` in the subdomain `<job>`."""
    return f"{job}-node-0-{rank}.{job}"


def nproc_per_node(limits: dict | None) -> str:
    """The plugin's PET_NPROC_PER_NODE for a TrainJob without numProcPerNode (our runtime leaves it "auto"):
    with resourcesPerNode limits and no GPU, the CPU limit rounded up (at least 1); else "auto", where
    torchrun starts one process per accelerator or, on a CPU node, per CPU of the node (not of the pod)."""
    if limits is None or any("gpu" in name.lower() for name in limits):
        return "auto"
    cpu = str(limits.get("cpu", "0"))
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return str(max(1, math.ceil(cores)))


def node_env(job: str, num_nodes: int, rank: int, nproc: str, master: str = "", port: int = TRAINER_PORT) -> dict:
    """The environment node `rank` of TrainJob `job` gets from the torch plugin (PET_*), plus the completion
    index Kubernetes itself sets in an Indexed Job's pods. `master` overrides node 0's address (local runs)."""
    return {
        "PET_NNODES": str(num_nodes),
        "PET_NPROC_PER_NODE": nproc,
        "PET_NODE_RANK": str(rank),  # a fieldRef to the pod's batch.kubernetes.io/job-completion-index
        "PET_MASTER_ADDR": master or node_host(job, 0),
        "PET_MASTER_PORT": str(port),
        "JOB_COMPLETION_INDEX": str(rank),
    }


@dataclass
class JobInfo:
    name: str
    status: str
    runtime: str
    num_nodes: int
    created: str
    steps: list[str] = field(default_factory=list)


def job_args(config: cfg.Config, workdir: str) -> dict:
    """The TrainJob's func_args: the whole config, so the job trains exactly what `ragtune train` would."""
    settings = cfg.to_dict(config)
    for section, values in settings.items():
        for key, value in values.items():
            if any(char in str(value) for char in SHELL_EXPANDED):
                raise UserError(f"{section}.{key}: {value!r} contains $, ` or \\, which the job's shell would expand")
    return {"config": settings, "workdir": workdir}


def resources_per_node(settings: cfg.KubeflowConfig) -> dict | None:
    wanted = {"cpu": settings.cpu, "memory": settings.memory, "gpu": str(settings.gpu) if settings.gpu else ""}
    return {key: value for key, value in wanted.items() if value} or None


def custom_trainer(config: cfg.Config, workdir: str):
    import_sdk()
    from kubeflow.trainer import CustomTrainer

    k = config.kubeflow
    return CustomTrainer(
        func=train_job,
        func_args=job_args(config, workdir),
        num_nodes=k.num_nodes,
        resources_per_node=resources_per_node(k),
        image=k.image or None,
        env=dict(TRAINER_ENV),
    )


def pod_command(config: cfg.Config, workdir: str) -> list[str]:
    """The container command the SDK builds for a torch runtime: our function's source, run by torchrun."""
    from kubeflow.trainer import Runtime, RuntimeKind, RuntimeTrainer, TrainerType
    from kubeflow.trainer.backends.kubernetes.utils import get_command_using_train_func
    from kubeflow.trainer.constants import constants

    trainer = custom_trainer(config, workdir)
    runtime_trainer = RuntimeTrainer(trainer_type=TrainerType.CUSTOM_TRAINER, framework="torch", image="local")
    runtime_trainer.set_command(constants.TORCH_COMMAND)
    runtime = Runtime(name="local", trainer=runtime_trainer, kind=RuntimeKind.CLUSTER_TRAINING_RUNTIME)
    return get_command_using_train_func(runtime, trainer.func, trainer.func_args, trainer.pip_index_urls, None)


def pod_env(config: cfg.Config, job: str, rank: int) -> dict:
    """Node `rank`'s trainer environment from its TrainJob: the trainer's env, then the plugin's (the
    runtime's own container env, deploy/runtime.yaml, comes first and is not repeated here)."""
    k = config.kubeflow
    trainer = custom_trainer(config, k.workdir)
    return {**trainer.env, **node_env(job, k.num_nodes, rank, nproc_per_node(resources_per_node(k)))}


def rendezvous_failure(log: str) -> str | None:
    """One line for torchrun's static-rendezvous timeout in a node's log: some node never joined."""
    found = re.search(r"Timed out after (\d+) seconds waiting for clients\. (\d+)/(\d+) clients joined", log)
    if not found:
        return None
    seconds, joined, nodes = found.groups()
    return (
        f"only {joined} of {nodes} nodes joined the rendezvous within {seconds} s: a node's pod never "
        "started or cannot reach node 0"
    )
