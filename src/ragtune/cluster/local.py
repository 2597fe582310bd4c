"""The `local` backend: the very command a TrainJob's pod runs, under torchrun on this machine, detached.

A job can be tried here before a cluster exists: one process per node, its log in a file, its
exit code recorded, listed and deleted with the same verbs as a cluster's jobs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ragtune import config as cfg
from ragtune.cluster.pods import TRAINER_ENV, JobInfo, node_env, pod_command
from ragtune.errors import UserError
from ragtune.io.outputs import write_json


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
