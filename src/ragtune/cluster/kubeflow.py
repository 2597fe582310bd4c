"""Kubeflow Trainer v2: run `ragtune train` as a TrainJob, then list, watch, fetch logs and delete it.

One set of verbs, two backends. `kubernetes` goes through the Kubeflow SDK (TrainerClient and
CustomTrainer, our config as func_args; the pods' command and env: pods.py). `local` (local.py)
runs, under torchrun on this machine, the very command the SDK puts in the pod, so a job can be
tried before a cluster exists. Every cluster failure a user can cause becomes one UserError line
that says what to run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtune import config as cfg
from ragtune.cluster.local import LocalJobs
from ragtune.cluster.pods import JobInfo, custom_trainer, rendezvous_failure
from ragtune.errors import UserError
from ragtune.train.progress import import_sdk

SETUP_HINT = "scripts/setup-kind.sh"
RUNTIME_HINT = "kubectl apply -f deploy/runtime.yaml"
GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"
JOB_LABELS = {"app.kubernetes.io/name": "ragtune", "app.kubernetes.io/component": "training"}


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
