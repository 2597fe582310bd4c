"""Kubeflow Trainer v2: run `ragtune train` as a TrainJob, then list, watch, fetch logs and delete it.

One set of verbs, two backends. `kubernetes` goes through the Kubeflow SDK (TrainerClient and
CustomTrainer, our config as func_args). `local` runs, under torchrun on this machine, the very
command the SDK puts in the pod, so a job can be tried before a cluster exists. Every cluster
failure a user can cause becomes one UserError line that says what to run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ragtune import config as cfg
from ragtune.cluster.trainjob import train_job
from ragtune.errors import UserError
from ragtune.io.outputs import write_json
from ragtune.train.progress import import_sdk

SETUP_HINT = "scripts/setup-kind.sh"
RUNTIME_HINT = "kubectl apply -f deploy/runtime.yaml"
GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"
JOB_LABELS = {"app.kubernetes.io/name": "ragtune", "app.kubernetes.io/component": "training"}
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


def backend_for(settings: cfg.KubeflowConfig) -> ClusterJobs | LocalJobs:
    import_sdk()
    if settings.backend == "local":
        from ragtune.io.outputs import default_cache_dir

        return LocalJobs(default_cache_dir() / "jobs")
    return ClusterJobs(settings)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _api_error(exc: BaseException):
    from kubernetes.client import ApiException

    return next((e for e in _chain(exc) if isinstance(e, ApiException)), None)


def _api_message(error) -> str:
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


class ClusterJobs:
    """TrainJobs on a Kubernetes cluster with Kubeflow Trainer v2, through the Kubeflow SDK."""

    def __init__(self, settings: cfg.KubeflowConfig):
        from kubeflow.trainer import KubernetesBackendConfig, TrainerClient

        for noisy in ("kubeflow", "urllib3"):  # their retries and warnings would bury our one line
            logging.getLogger(noisy).setLevel(logging.ERROR)
        path = Path(settings.kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
        if not path.is_file():
            raise UserError(f"{path}: kubeconfig not found; create a cluster with {SETUP_HINT} or pass --kubeconfig")
        self.kubeconfig, self.namespace, self.host = path, settings.namespace, "the API server"
        with self._explained("read the kubeconfig"):
            backend = KubernetesBackendConfig(namespace=settings.namespace, config_file=str(path))
            self.client = TrainerClient(backend_config=backend)
        self.host = self.client.backend.custom_api.api_client.configuration.host

    def _explain(self, exc: Exception, action: str, job: str | None) -> str:
        import yaml
        from kubernetes.config import ConfigException
        from urllib3.exceptions import HTTPError

        if isinstance(exc, ConfigException | yaml.YAMLError):
            reason = " ".join(str(exc).split())
            return f"{self.kubeconfig}: not a usable kubeconfig ({reason}); fix it or pass --kubeconfig"
        error = _api_error(exc)
        if error is None and any(isinstance(e, HTTPError | OSError) for e in _chain(exc)):
            return f"cannot reach the API server at {self.host}; start the cluster ({SETUP_HINT}) or check --kubeconfig"
        if error is None:
            return f"could not {action}: {' '.join(str(exc).split())}"
        if error.status == 422:
            return f"the API server refused the TrainJob: {_api_message(error)}; fix that field (e.g. --memory 8Gi)"
        if error.status in (401, 403):
            return f"{self.host} refused the credentials in {self.kubeconfig} (HTTP {error.status}); check --kubeconfig"
        if error.status == 404 and job:
            return f"no TrainJob '{job}' in namespace '{self.namespace}' (see: ragtune jobs)"
        if error.status == 404:
            return f"the Kubeflow Trainer CRDs are not installed at {self.host}; install them: {SETUP_HINT} trainer"
        return f"could not {action}: HTTP {error.status} {_api_message(error)}"

    @contextmanager
    def _explained(self, action: str, job: str | None = None):
        try:
            yield
        except UserError:
            raise
        except Exception as exc:
            raise UserError(self._explain(exc, action, job)) from None

    def runtime(self, name: str):
        """Our own check of what only the Trainer webhook would refuse: a runtime that does not exist."""
        try:
            return self.client.get_runtime(name)
        except Exception as exc:
            error = _api_error(exc)
            if error is None or error.status != 404:
                raise UserError(self._explain(exc, f"get runtime {name}", None)) from None
        with self._explained("list runtimes"):
            available = ", ".join(r.name for r in self.client.list_runtimes()) or "none"
        raise UserError(
            f"runtime '{name}' not found at {self.host} (available: {available}); install ours: {RUNTIME_HINT}"
        )

    def submit(self, config: cfg.Config) -> str:
        from kubeflow.trainer.options import Labels

        runtime = self.runtime(config.kubeflow.runtime)
        trainer = custom_trainer(config, config.kubeflow.workdir)
        with self._explained("submit the TrainJob"):
            return self.client.train(runtime=runtime, trainer=trainer, options=[Labels(dict(JOB_LABELS))])

    def _trainer_status(self, name: str | None = None) -> dict[str, dict]:
        """status.trainerStatus by TrainJob name, which the SDK's TrainJob type leaves out."""
        api, args = self.client.backend.custom_api, (GROUP, VERSION, self.namespace, "trainjobs")
        if name:
            items = [api.get_namespaced_custom_object(*args, name)]
        else:
            items = api.list_namespaced_custom_object(*args)["items"]
        return {item["metadata"]["name"]: item.get("status", {}).get("trainerStatus") for item in items}

    def list(self) -> list[JobInfo]:
        with self._explained("list TrainJobs"):
            reported = self._trainer_status()
            return [_info(job, reported.get(job.name)) for job in self.client.list_jobs()]

    def get(self, name: str) -> JobInfo:
        with self._explained(f"get TrainJob {name}", name):
            return _info(self.client.get_job(name), self._trainer_status(name)[name])

    def logs(self, name: str, follow: bool, rank: int) -> Iterator[str]:
        """Node `rank`'s log; rank 0 carries the evaluation lines."""
        status = self.get(name).status
        with self._explained(f"read the logs of {name}", name):
            lines = self.client.get_job_logs(name, follow=follow, step=f"node-{rank}")
            first = next(lines, None)
            if first is None:
                print(f"no logs yet: TrainJob {name} has no started pod node-{rank} (status {status})", file=sys.stderr)
                return
            yield first
            yield from lines

    def wait(self, name: str, timeout: int) -> JobInfo:
        self.get(name)
        try:
            job = self.client.wait_for_job_status(name, timeout=timeout, polling_interval=min(5, max(1, timeout // 2)))
        except TimeoutError:
            raise UserError(
                f"TrainJob {name} did not complete within {timeout} s (status {self.get(name).status})"
            ) from None
        except RuntimeError as exc:
            if "Failed" in str(exc):
                try:  # node 0's log only refines the message
                    reason = rendezvous_failure("\n".join(self.client.get_job_logs(name, step="node-0")))
                except Exception:
                    reason = None
                why = f": {reason}" if reason else ""
                raise UserError(f"TrainJob {name} failed{why}; see: ragtune logs {name}") from None
            raise UserError(self._explain(exc, f"wait for {name}", name)) from None
        return _info(job)

    def delete(self, name: str) -> None:
        with self._explained(f"delete TrainJob {name}", name):
            self.client.delete_job(name)


def _info(job, trainer_status: dict | None = None) -> JobInfo:
    """The SDK's TrainJob, with what rank 0 last reported (ragtune.train.progress) in the status and one line more."""
    info = JobInfo(
        name=job.name,
        status=job.status,
        runtime=job.runtime.name,
        num_nodes=job.num_nodes,
        created=job.creation_timestamp.isoformat(timespec="seconds"),
        steps=[f"{step.name}: {step.status}" for step in job.steps],
    )
    if trainer_status:
        percent = trainer_status.get("progressPercentage")
        if percent is not None:
            info.status = f"{info.status} {percent}%"
        info.steps.append(f"trainer: {progress_line(trainer_status)}")
    return info


def progress_line(trainer_status: dict) -> str:
    """`42% done, ETA 3m10s, ndcg@10=0.8123 step=5 total_steps=12 (reported 2026-12-01T07:58:51+00:00)`"""
    parts = []
    if (percent := trainer_status.get("progressPercentage")) is not None:
        parts.append(f"{percent}% done")
    if (eta := trainer_status.get("estimatedRemainingSeconds")) is not None:
        parts.append(f"ETA {eta // 60}m{eta % 60:02d}s")
    if metrics := " ".join(f"{m['name']}={m['value']}" for m in trainer_status.get("metrics", [])):
        parts.append(metrics)
    return ", ".join(parts) + f" (reported {trainer_status['lastUpdatedTime']})"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalJobs:
    """Jobs on this machine: the pod's command under torchrun, one process per node, detached, logged to a file."""

    def __init__(self, root: Path):
        self.root = root

    def _dir(self, name: str) -> Path:
        job_dir = self.root / name
        if not (job_dir / "job.json").is_file():
            raise UserError(f"no local job '{name}' in {self.root} (see: ragtune jobs --backend local)")
        return job_dir

    def _meta(self, name: str) -> tuple[Path, dict]:
        job_dir = self._dir(name)
        return job_dir, json.loads((job_dir / "job.json").read_text())

    def submit(self, config: cfg.Config) -> str:
        command = pod_command(config, workdir=os.getcwd())
        name = "r" + secrets.token_hex(6)
        job_dir = self.root / name
        job_dir.mkdir(parents=True)
        k = config.kubeflow
        # One node holding every process: the plugin's environment for a one-node job, master on loopback.
        pod = node_env(name, 1, 0, str(k.num_nodes), master="127.0.0.1", port=free_port())
        env = dict(
            os.environ,
            **TRAINER_ENV,
            **pod,
            RAGTUNE_JOB_SCRIPT=command[2],
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        wrapper = 'bash -c "$RAGTUNE_JOB_SCRIPT" > log 2>&1; echo $? > exit_code.tmp && mv exit_code.tmp exit_code'
        quiet = subprocess.DEVNULL
        process = subprocess.Popen(
            ["bash", "-c", wrapper],
            cwd=job_dir,
            env=env,
            start_new_session=True,
            stdin=quiet,
            stdout=quiet,
            stderr=quiet,
        )
        created = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(
            job_dir / "job.json",
            {"name": name, "pid": process.pid, "num_nodes": k.num_nodes, "created": created, "workdir": os.getcwd()},
        )
        return name

    def _status(self, job_dir: Path, pid: int) -> str:
        exit_file = job_dir / "exit_code"
        if exit_file.is_file():
            return "Complete" if exit_file.read_text().strip() == "0" else "Failed"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "Failed"  # killed before it could record an exit code
        return "Running"

    def get(self, name: str) -> JobInfo:
        job_dir, meta = self._meta(name)
        return JobInfo(name, self._status(job_dir, meta["pid"]), "local", meta["num_nodes"], meta["created"])

    def list(self) -> list[JobInfo]:
        names = sorted(p.parent.name for p in self.root.glob("*/job.json")) if self.root.is_dir() else []
        return [self.get(name) for name in names]

    def logs(self, name: str, follow: bool, rank: int) -> Iterator[str]:
        """The combined torchrun log (all local ranks; lines of ranks above 0 carry their rank)."""
        log = self._dir(name) / "log"
        while not log.exists() and follow and self.get(name).status == "Running":
            time.sleep(0.5)
        if not log.exists():
            return
        with open(log, encoding="utf-8", errors="replace") as handle:
            while True:
                line = handle.readline()
                if line:
                    yield line.rstrip("\n")
                elif follow and self.get(name).status == "Running":
                    time.sleep(0.5)
                else:
                    return

    def wait(self, name: str, timeout: int) -> JobInfo:
        deadline = time.monotonic() + timeout
        while (info := self.get(name)).status == "Running":
            if time.monotonic() > deadline:
                raise UserError(f"job {name} did not complete within {timeout} s (still running)")
            time.sleep(1)
        if info.status == "Failed":
            raise UserError(f"job {name} failed; see: ragtune logs {name} --backend local")
        return info

    def delete(self, name: str) -> None:
        import shutil

        job_dir, meta = self._meta(name)
        if self._status(job_dir, meta["pid"]) == "Running":
            try:
                os.killpg(meta["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(job_dir)
