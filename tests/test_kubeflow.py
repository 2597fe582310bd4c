"""Kubeflow Trainer v2 jobs: manifests and TrainJobs against a real kube-apiserver, a real local job.

The cluster tests need the API server of ../shared/k8s (`.ci/run` starts it and exports
KUBECONFIG). It stores and validates TrainJobs; no controller runs them, so what runs for real
here is the local backend, which executes the very command the SDK puts in the pod.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from ragtune import cli
from ragtune import config as cfg
from ragtune.cluster.pods import job_args, pod_command
from ragtune.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def submitted_name(out: str) -> str:
    return re.search(r"submitted (\S+)", out).group(1)


def manifests(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def apply(api_client, body: dict) -> None:
    """kubectl apply's effect for our manifests: create, or replace what a previous run left."""
    from kubernetes.client import ApiException
    from kubernetes.dynamic import DynamicClient

    resource = DynamicClient(api_client).resources.get(api_version=body["apiVersion"], kind=body["kind"])
    namespace = body["metadata"].get("namespace")
    try:
        resource.create(body=body, namespace=namespace)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = resource.get(name=body["metadata"]["name"], namespace=namespace)
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": current.metadata.resourceVersion}}
        resource.replace(body=body, namespace=namespace)


@pytest.fixture(scope="module")
def cluster():
    """The harness's kubeconfig, with deploy/training-storage.yaml and deploy/runtime.yaml applied."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        if os.environ.get("CI"):
            pytest.fail("KUBECONFIG is unset in CI: .ci/run must start ../shared/k8s")
        pytest.skip("no KUBECONFIG: start ../shared/k8s (see .ci/run)")
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    for name in ("training-storage.yaml", "runtime.yaml"):
        for body in manifests(name):
            apply(api_client, body)
    return {"kubeconfig": kubeconfig, "api": api_client}


def stored_trainjob(cluster, name: str) -> dict:
    from kubernetes.client import CustomObjectsApi

    return CustomObjectsApi(cluster["api"]).get_namespaced_custom_object(GROUP, VERSION, "default", "trainjobs", name)


def trainjob_names(cluster) -> set[str]:
    from kubernetes.client import CustomObjectsApi

    listed = CustomObjectsApi(cluster["api"]).list_namespaced_custom_object(GROUP, VERSION, "default", "trainjobs")
    return {item["metadata"]["name"] for item in listed["items"]}


def test_runtime_and_storage_manifests_are_accepted(cluster):
    from kubeflow.trainer import KubernetesBackendConfig, TrainerClient
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    client = TrainerClient(
        backend_config=KubernetesBackendConfig(config_file=cluster["kubeconfig"], namespace="default")
    )
    runtime = client.get_runtime("ragtune-torch-distributed")
    assert runtime.trainer.framework == "torch"
    assert runtime.trainer.image == "localhost:5001/ragtune:latest"

    stored = CustomObjectsApi(cluster["api"]).get_cluster_custom_object(
        GROUP, VERSION, "clustertrainingruntimes", "ragtune-torch-distributed"
    )
    pod = stored["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] and container["resources"]["requests"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["training-output"] == cfg.KubeflowConfig().workdir  # where jobs write by default
    claim = next(v for v in pod["volumes"] if v["name"] == "training-output")["persistentVolumeClaim"]["claimName"]
    pvc = CoreV1Api(cluster["api"]).read_namespaced_persistent_volume_claim(claim, "default")
    assert pvc.spec.access_modes == ["ReadWriteMany"]
    assert not any("secret" in str(v).lower() for v in pod["volumes"] + container.get("env", []))


def test_server_refuses_a_broken_runtime_manifest(cluster):
    from kubernetes.client import ApiException

    body = manifests("runtime.yaml")[0]
    body["metadata"]["name"] = "ragtune-broken"
    body["spec"]["mlPolicy"]["numNodes"] = "two"
    with pytest.raises(ApiException) as refused:
        apply(cluster["api"], body)
    assert refused.value.status == 422


def test_submit_creates_the_trainjob_the_config_describes(cluster, capsys, tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(
        yaml.safe_dump(
            {
                "train": {"prepared": "prepared", "output": "runs/k8s", "epochs": 4},
                "kubeflow": {"num_nodes": 2, "cpu": "2", "memory": "4Gi", "gpu": 1, "image": "registry.example/rt:v1"},
            }
        )
    )
    code, out, err = run_cli(capsys, "submit", "--config", str(run_yaml), "--kubeconfig", cluster["kubeconfig"])
    assert code == 0, err
    name = submitted_name(out)
    job = stored_trainjob(cluster, name)
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"]["name"] == "ragtune-torch-distributed"
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "ragtune"
    assert trainer["numNodes"] == 2
    assert trainer["resourcesPerNode"]["limits"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert trainer["image"] == "registry.example/rt:v1"
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in trainer["env"]
    config = cfg.load(run_yaml, {"kubeflow.kubeconfig": cluster["kubeconfig"]})
    assert trainer["command"] == pod_command(config, "/mnt/ragtune")  # the command the local backend runs
    assert "def train_job(" in trainer["command"][2] and "'epochs': 4" in trainer["command"][2]

    code, out, _ = run_cli(capsys, "jobs", "--kubeconfig", cluster["kubeconfig"])
    assert code == 0 and re.search(rf"^{name}\s+Created\s+2\s+ragtune-torch-distributed", out, re.M)
    code, out, _ = run_cli(capsys, "status", name, "--kubeconfig", cluster["kubeconfig"])
    assert code == 0 and out.startswith(f"{name}: Created (2 node(s)")
    code, out, err = run_cli(capsys, "logs", name, "--kubeconfig", cluster["kubeconfig"])
    assert code == 0 and out == "" and "no logs yet" in err and "node-0" in err
    code, _, err = run_cli(capsys, "wait", name, "--timeout", "2", "--kubeconfig", cluster["kubeconfig"])
    assert code == 2 and "did not complete within 2 s (status Created)" in err
    code, out, _ = run_cli(capsys, "delete", name, "--kubeconfig", cluster["kubeconfig"])
    assert code == 0 and name not in trainjob_names(cluster)
    code, _, err = run_cli(capsys, "status", name, "--kubeconfig", cluster["kubeconfig"])
    assert code == 2 and err == f"ragtune: error: no TrainJob '{name}' in namespace 'default' (see: ragtune jobs)\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory", "8Gigs"], "the API server refused the TrainJob"),  # by the server's schema (HTTP 422)
        (["--cpu", "two"], "the API server refused the TrainJob"),
        (["--num-nodes", "0"], "kubeflow.num_nodes must be at least 1"),  # what only the webhook would refuse
        (["--num-nodes", "-1"], "kubeflow.num_nodes must be at least 1"),
        (["--runtime", "nope"], "runtime 'nope' not found"),
        (["--output", "runs/$HOME"], "train.output: 'runs/$HOME' contains $"),
    ],
)
def test_invalid_submissions_are_refused_with_one_line(cluster, capsys, flags, message):
    before = trainjob_names(cluster)
    code, out, err = run_cli(capsys, "submit", "--kubeconfig", cluster["kubeconfig"], *flags)
    assert code == 2 and out == ""
    assert err.startswith("ragtune: error: ") and err.count("\n") == 1 and message in err, err
    assert trainjob_names(cluster) == before


def test_unknown_runtime_error_lists_what_is_installed(cluster, capsys):
    _, _, err = run_cli(capsys, "submit", "--kubeconfig", cluster["kubeconfig"], "--runtime", "nope")
    assert "ragtune-torch-distributed" in err and "kubectl apply -f deploy/runtime.yaml" in err


def test_unreachable_server_and_missing_kubeconfig(capsys, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "gone", "user": {"token": "x"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}],
            }
        )
    )
    code, _, err = run_cli(capsys, "jobs", "--kubeconfig", str(kubeconfig))
    assert code == 2 and err.count("\n") == 1
    assert "cannot reach the API server at https://127.0.0.1:9" in err and "scripts/setup-kind.sh" in err
    code, _, err = run_cli(capsys, "submit", "--kubeconfig", str(tmp_path / "none"))
    assert (
        code == 2
        and err
        == f"ragtune: error: {tmp_path / 'none'}: kubeconfig not found; "
        "create a cluster with scripts/setup-kind.sh or pass --kubeconfig\n"
    )
    kubeconfig.write_text("clusters: [not a kubeconfig")
    code, _, err = run_cli(capsys, "jobs", "--kubeconfig", str(kubeconfig))
    assert code == 2 and err.count("\n") == 1 and "not a usable kubeconfig" in err


def test_job_args_refuse_what_the_pod_shell_would_expand():
    config = cfg.load(None, {"train.output": "runs/`id`"})
    with pytest.raises(UserError, match=r"train.output: 'runs/`id`' contains"):
        job_args(config, "/mnt/ragtune")


@pytest.mark.slow
def test_local_backend_runs_the_pod_command_and_trains(prepared_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve where the user submitted, as on the cluster's volume
    flags = [
        "--backend",
        "local",
        "--data",
        str(prepared_dir),
        "--output",
        "runs/local",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-seq-length",
        "64",
        "--hard-negative-update-frequency",
        "0",
        "--min-score",
        "0.1",
    ]
    code, out, err = run_cli(capsys, "submit", *flags)
    assert code == 0, err
    name = submitted_name(out)
    code, out, err = run_cli(capsys, "wait", name, "--backend", "local", "--timeout", "900")
    logs = run_cli(capsys, "logs", name, "--backend", "local")[1]
    assert code == 0 and out == f"{name}: Complete\n", err + logs
    run_dir = tmp_path / "runs" / "local"
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert "trained" in logs and "held-out nDCG@10" in logs
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["kubeflow"]["backend"] == "local"
    code, out, _ = run_cli(capsys, "jobs", "--backend", "local")
    assert re.search(rf"^{name}\s+Complete\s+1\s+local", out, re.M)
    code, out, _ = run_cli(capsys, "delete", name, "--backend", "local")
    code, _, err = run_cli(capsys, "status", name, "--backend", "local")
    assert code == 2 and f"no local job '{name}'" in err
