"""The image and the cluster path, run for real with Docker: scripts/docker-train.sh, and a two-node
TrainJob whose pods are containers started the way the Trainer starts them.

Each node container gets what its pod would: the command `ragtune submit` writes into the TrainJob,
the runtime's container settings (deploy/runtime.yaml: uid 1000, read-only root, /tmp, env), the
environment of the Trainer's torch plugin (ragtune.cluster.pods.pod_env), its own network namespace and
the DNS name of the JobSet's headless service, and the shared volume at /mnt/ragtune (the only shared
state). tests/trainjob_probe only observes: it records each rank's parameters.

Needs a Docker engine and a base image (`.ci/run` makes both); without an engine the tests skip, and
fail under CI=1. DOCKER picks the client, RAGTUNE_BASE_IMAGE the base of the image built here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ragtune import config as cfg
from ragtune.cluster.pods import node_host, pod_command, pod_env

REPO = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("DOCKER", "docker")
IMAGE = "ragtune:test"
JOB = "rtdocker"
SUBNET = "10.213.47.0/24"
UID = 1000


def docker(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done


def script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "scripts" / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER": DOCKER, **env},
        timeout=1800,
    )


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which(DOCKER) is None or docker("info", check=False, timeout=30).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"no Docker engine answers {DOCKER} in CI: .ci/run must install and start it")
        pytest.skip("no Docker engine (see .ci/run)")


@pytest.fixture(scope="session")
def image(engine) -> str:
    """Built from this tree with scripts/docker-build.sh; cached layers make it seconds when only src/ changed."""
    base = {"BASE_IMAGE": os.environ["RAGTUNE_BASE_IMAGE"]} if os.environ.get("RAGTUNE_BASE_IMAGE") else {}
    started = time.monotonic()
    built = script("docker-build.sh", IMAGE=IMAGE, **base)
    assert built.returncode == 0, built.stderr[-3000:]
    print(f"image {IMAGE} built in {time.monotonic() - started:.0f} s")
    return IMAGE


def owned_dir(path: Path) -> Path:
    """A host directory uid 1000 can use, as the runtime's fsGroup makes the volume."""
    path.mkdir(parents=True, exist_ok=True)
    for sub in [path, *path.rglob("*")]:
        os.chown(sub, UID, UID)
    return path


def fake_prepared(tmp_path: Path) -> Path:
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "train.parquet").touch()
    return prepared


def one_error_line(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert "error: " in done.stderr and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["docker-train.sh", "docker-build.sh", "setup-kind.sh"])
def test_no_docker_engine_is_one_line(tmp_path, name):
    args = {"docker-train.sh": [str(fake_prepared(tmp_path))], "setup-kind.sh": ["registry"]}.get(name, [])
    one_error_line(script(name, *args, DOCKER=str(tmp_path / "no-docker")), "no-docker not found; install")
    if shutil.which(DOCKER):
        gone = script(name, *args, DOCKER_HOST=f"unix://{tmp_path}/no.sock")
        one_error_line(gone, "no Docker engine answers")


def test_missing_image_is_one_line(engine, tmp_path):
    done = script("docker-train.sh", str(fake_prepared(tmp_path)), IMAGE="ragtune:does-not-exist")
    one_error_line(done, "image ragtune:does-not-exist not found; build it")


@pytest.mark.slow  # builds the image
def test_image_is_non_root_read_only_and_holds_no_secret(image):
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}" and config["Env"].count("HF_HUB_OFFLINE=1") == 1
    probe = "import ragtune.cluster.trainjob, ragtune.train.progress, kubeflow.trainer; open('/opt/venv/x', 'w')"
    done = docker("run", "--rm", "--read-only", "--network", "none", image, "python", "-c", probe, check=False)
    assert done.returncode == 1 and "Read-only file system" in done.stderr, done.stderr
    found = docker("run", "--rm", image, "sh", "-c", "ls -A /run/secrets 2>/dev/null; ls /opt/ragtune").stdout
    assert found.split() == ["README.md", "pyproject.toml"]  # no CA secret left, no sources beyond the package


@pytest.mark.slow
def test_docker_train_script_trains_with_outputs_on_the_host(image, prepared_dir, tmp_path):
    prepared = shutil.copytree(prepared_dir, tmp_path / "prepared")
    prepared.chmod(0o755)
    outputs = tmp_path / "outputs"
    flags = ["--epochs", "1", "--batch-size", "8", "--max-seq-length", "64", "--hard-negative-update-frequency", "0"]
    done = script("docker-train.sh", str(prepared), *flags, IMAGE=image, OUTPUTS=str(outputs))
    assert done.returncode == 0, done.stderr[-3000:]
    run = outputs / "runs" / "docker"
    assert (run / "model" / "model.safetensors").stat().st_uid == UID
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 5 and "ndcg@10" in metrics["tuned"]


# --- Two nodes, as a TrainJob's pods ------------------------------------------------------------------


def runtime_container() -> dict:
    runtime = next(d for d in yaml.safe_load_all((REPO / "deploy" / "runtime.yaml").read_text()) if d)
    return runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"
    ][0]


class Nodes:
    """The pods of one TrainJob as containers on a network this test creates."""

    def __init__(self, image: str, volume: Path, config: cfg.Config, extra_env: dict | None = None):
        self.image, self.volume, self.config = image, volume, config
        self.command = pod_command(config, config.kubeflow.workdir)
        self.extra_env = extra_env or {}
        self.network = f"{JOB}-net"
        docker("network", "rm", self.network, check=False)
        docker("network", "create", "--subnet", SUBNET, self.network)

    def name(self, rank: int) -> str:
        return f"{JOB}-node-0-{rank}"

    def start(self, rank: int) -> None:
        container = runtime_container()
        env = {e["name"]: e["value"] for e in container["env"]} | pod_env(self.config, JOB, rank) | self.extra_env
        env |= {"PYTHONPATH": "/probe", "RAGTUNE_PROBE_DIR": "/mnt/ragtune/probe"}
        mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "training-output")
        docker(
            "run",
            "-d",
            "--name",
            self.name(rank),
            "--hostname",
            self.name(rank),
            "--network",
            self.network,
            "--network-alias",
            node_host(JOB, rank),
            "--user",
            f"{UID}:{UID}",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--shm-size",
            "1g",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--cpus",
            "1",
            "--memory",
            "6g",
            "-w",
            container["workingDir"],
            "-v",
            f"{self.volume}:{mount}",
            "-v",
            f"{REPO / 'tests' / 'trainjob_probe'}:/probe:ro",
            *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")],
            self.image,
            *self.command,
        )

    def wait(self, rank: int, timeout: int) -> int:
        return int(docker("wait", self.name(rank), timeout=timeout).stdout.strip())

    def logs(self, rank: int) -> str:
        done = docker("logs", self.name(rank), check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        for rank in range(self.config.kubeflow.num_nodes):
            docker("rm", "-f", self.name(rank), check=False)
        docker("network", "rm", self.network, check=False)


def job_config(num_nodes: int, output: str, epochs: int) -> cfg.Config:
    return cfg.load(
        None,
        {
            "train.prepared": "prepared",
            "train.output": output,
            "train.epochs": epochs,
            "train.batch_size": 4,
            "train.max_seq_length": 64,
            "train.hard_negative_update_frequency": 0,
            "train.checkpoint_steps": 3,
            "train.logging_steps": 1,
            "mining.min_score": 0.1,
            "kubeflow.num_nodes": num_nodes,
            "kubeflow.cpu": "1",
        },
    )


@pytest.fixture
def volume(prepared_dir, tmp_path) -> Path:
    """The shared volume: the prepared data copied in, as a user would into the claim."""
    shutil.copytree(prepared_dir, tmp_path / "volume" / "prepared")
    return owned_dir(tmp_path / "volume")


@pytest.fixture
def nodes(image, volume):
    made = []

    def make(config: cfg.Config, extra_env: dict | None = None) -> Nodes:
        made.append(Nodes(image, volume, config, extra_env))
        return made[-1]

    yield make
    for group in made:
        group.remove()


def run_job(nodes: Nodes, timeout: int = 900) -> None:
    for rank in range(nodes.config.kubeflow.num_nodes):
        nodes.start(rank)
    for rank in range(nodes.config.kubeflow.num_nodes):
        code = nodes.wait(rank, timeout)
        assert code == 0, f"node {rank} exited {code}:\n{nodes.logs(rank)[-4000:]}"


def parameters(probe: Path, name: str, rank: int) -> dict:
    from safetensors.torch import load_file

    return load_file(str(probe / f"{name}-rank{rank}.safetensors"))


def assert_ranks_agree_and_moved(probe: Path) -> None:
    import torch

    end0, end1, start = parameters(probe, "end", 0), parameters(probe, "end", 1), parameters(probe, "start", 0)
    assert end0.keys() == end1.keys() == start.keys() and len(end0) > 100
    differing = [k for k in end0 if not torch.equal(end0[k], end1[k])]
    assert not differing, f"{len(differing)} tensors differ between the nodes, e.g. {differing[:3]}"
    moved = [k for k in end0 if k.endswith("weight") and not torch.equal(end0[k], start[k])]
    assert len(moved) > 0.9 * sum(k.endswith("weight") for k in end0), "training did not change the weights"


@pytest.mark.slow
def test_two_nodes_train_identical_parameters(nodes, volume):
    two = nodes(job_config(2, "runs/two", epochs=1))
    run_job(two)
    assert_ranks_agree_and_moved(volume / "probe")
    metrics = json.loads((volume / "runs" / "two" / "metrics.json").read_text())["train"]
    assert metrics["world_size"] == 2 and (volume / "runs" / "two" / "model" / "model.safetensors").is_file()
    print(f"samples/s: two nodes {metrics['samples_per_second']} ({metrics['seconds']} s; bench_ddp.py compares)")


def first_intact_checkpoint(run: Path, timeout: int) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted(run.glob("checkpoints/checkpoint-*/ragtune_checksums.json"))
        if done:
            return done[0].parent
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint in {run} within {timeout} s")


@pytest.mark.slow
def test_killed_node_restarts_in_place_and_the_job_resumes_to_the_same_step(nodes, volume):
    """Kubelet's OnFailure (JobSet's default restartPolicy): the killed container restarts in its pod; the
    other node's worker loses its peer, its torchrun exits non-zero and that container restarts too.
    Node 0 is the one killed: it hosts the rendezvous store and writes the checkpoints."""
    killed, other = 0, 1
    job = nodes(job_config(2, "runs/resumed", epochs=2))  # 10 steps, a checkpoint every 3
    for rank in range(2):
        job.start(rank)
    run = volume / "runs" / "resumed"
    checkpoint = first_intact_checkpoint(run, timeout=600)
    docker("kill", "-s", "KILL", job.name(killed))
    assert job.wait(killed, 60) == 137
    since = time.monotonic()
    code = job.wait(other, 300)
    assert code != 0, f"node {other} finished although its peer was killed"
    noticed = time.monotonic() - since
    assert not (run / "metrics.json").exists()
    for rank in range(2):
        docker("start", job.name(rank))
    for rank in range(2):
        restarted = job.wait(rank, 900)
        assert restarted == 0, f"node {rank} exited {restarted} after the restart:\n{job.logs(rank)[-4000:]}"

    probe = volume / "probe"
    attempts = [json.loads(line) for line in (probe / "attempts-rank1.jsonl").read_text().splitlines()]
    resumed_from = attempts[-1]["start_step"]
    assert len(attempts) == 2 and resumed_from >= int(checkpoint.name.split("-")[1]), attempts
    final = json.loads((run / "metrics.json").read_text())["train"]["steps"]
    assert final == attempts[0]["max_steps"] == json.loads((probe / "end-rank1.json").read_text())["step"]
    assert_ranks_agree_and_moved(probe)
    print(
        f"killed node {killed} after {checkpoint.name}; node {other} exited {code} {noticed:.0f} s later; "
        f"both restarted: resumed at step {resumed_from}, ended at step {final}"
    )


@pytest.mark.slow
def test_node_that_never_joins_fails_the_rendezvous(nodes):
    from ragtune.cluster.pods import rendezvous_failure

    alone = nodes(job_config(2, "runs/alone", epochs=1), {"PET_RDZV_CONF": "timeout=15"})
    alone.start(0)
    assert alone.wait(0, 120) != 0
    line = rendezvous_failure(alone.logs(0))
    assert line and line.startswith("only 1 of 2 nodes joined the rendezvous within 1"), alone.logs(0)[-2000:]
