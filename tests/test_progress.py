"""TrainJob progress: the callback posts through the Kubeflow SDK to a real HTTPS server on 127.0.0.1
standing in for the Trainer's status endpoint; it records what arrives, so throttling, payload and
credentials are checked as the controller would see them."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import test_kubeflow

from ragtune.cluster.pods import TRAINER_ENV
from ragtune.train.distributed import World
from ragtune.train.progress import SERVER_URL, trainjob_progress_callback

cluster = test_kubeflow.cluster  # the fixture: the real kube-apiserver that .ci/run starts
STATUS_PATH = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/default/trainjobs/job/status"


@pytest.fixture
def status_server(tmp_path, monkeypatch):
    """HTTPS with a self-signed certificate for 127.0.0.1; the SDK trusts it through the CA-cert env var."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test server's certificate")
    cert, key, token = tmp_path / "ca.crt", tmp_path / "tls.key", tmp_path / "token"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    token.write_text("projected-token\n")
    posts: list[dict] = []

    class Status(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            posts.append({"at": time.monotonic(), "path": self.path, "auth": self.headers["Authorization"], **body})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    from kubeflow.trainer.backends.kubernetes import utils

    for name, fresh in [("_last_update_time", 0.0), ("_cached_token", None), ("_http_session", None)]:
        monkeypatch.setattr(utils, name, fresh)  # the SDK's per-process state: a fresh pod
    monkeypatch.setenv(SERVER_URL, f"https://127.0.0.1:{server.server_port}{STATUS_PATH}")
    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_CA_CERT", str(cert))
    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_TOKEN", str(token))
    for name, value in TRAINER_ENV.items():  # what the TrainJob's env gives the pod
        monkeypatch.setenv(name, value)
    yield posts
    server.shutdown()


def test_no_callback_outside_a_trainjob_or_off_rank_zero(monkeypatch):
    from kubeflow.trainer.backends.kubernetes.utils import update_trainjob_status

    monkeypatch.delenv(SERVER_URL, raising=False)
    assert trainjob_progress_callback(World()) is None
    assert update_trainjob_status(progress_percent=50) is False  # what the callback would call: a no-op here
    monkeypatch.setenv(SERVER_URL, "https://127.0.0.1:9/status")
    assert trainjob_progress_callback(World(rank=1, size=2)) is None


def test_posts_without_a_token_are_never_sent(status_server, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBEFLOW_TRAINER_SERVER_TOKEN", str(tmp_path / "missing"))
    from transformers import TrainerState

    callback = trainjob_progress_callback(World())
    callback.on_train_begin(None, TrainerState(max_steps=10), None)
    assert status_server == []


@pytest.mark.slow
def test_rank_zero_reports_progress_eta_and_ndcg_throttled(status_server, prepared_dir, tmp_path):
    """`ragtune train` inside a TrainJob (the server URL set) reports through its own callback."""
    from conftest import train_config
    from transformers import TrainerCallback

    from ragtune.train.run import train

    class OneSecondSteps(TrainerCallback):
        """A step as slow as a real one, so the run outlasts the SDK's 5 s throttle on any machine."""

        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(1.0)

    config = train_config(
        prepared_dir,
        tmp_path / "run",
        train__epochs=1,
        train__batch_size=4,
        train__warmup_ratio=0.0,
        train__hard_negative_update_frequency=0,
        train__checkpoint_steps=100,
    )
    train(config, callbacks=(OneSecondSteps(),))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    steps = metrics["train"]["steps"]
    assert len(status_server) >= 3, status_server
    gaps = [b["at"] - a["at"] for a, b in zip(status_server, status_server[1:])]
    assert min(gaps) >= 4.9, gaps  # one post per 5 s at most, the last one included
    for post in status_server:
        assert post["path"] == STATUS_PATH and post["auth"] == "Bearer projected-token"
        assert set(post) == {"at", "path", "auth", "trainerStatus"}
        status = post["trainerStatus"]
        assert datetime.fromisoformat(status["lastUpdatedTime"]).tzinfo is not None
        assert all(set(m) == {"name", "value"} and isinstance(m["value"], str) for m in status["metrics"])
    percents = [p["trainerStatus"]["progressPercentage"] for p in status_server]
    assert percents == sorted(percents) and percents[0] == 0 and max(percents[:-1]) <= 99
    last = status_server[-1]["trainerStatus"]
    reported = {m["name"]: m["value"] for m in last["metrics"]}
    assert last["progressPercentage"] == 100 and last["estimatedRemainingSeconds"] == 0
    assert reported["step"] == reported["total_steps"] == str(steps)
    assert float(reported["ndcg@10"]) == round(metrics["history"][-1]["ndcg@10"], 4)
    assert any("estimatedRemainingSeconds" in p["trainerStatus"] for p in status_server[1:-1]), status_server


def test_jobs_and_status_show_what_rank_zero_reported(cluster, capsys):
    """The Trainer writes trainerStatus through the status subresource; here the test does, on the real server."""
    from kubernetes.client import CustomObjectsApi

    kubeconfig = cluster["kubeconfig"]
    code, out, err = test_kubeflow.run_cli(capsys, "submit", "--kubeconfig", kubeconfig, "--num-nodes", "2")
    assert code == 0, err
    name = test_kubeflow.submitted_name(out)
    code, out, _ = test_kubeflow.run_cli(capsys, "status", name, "--kubeconfig", kubeconfig)
    assert code == 0 and "trainer:" not in out  # nothing reported yet
    reported = {
        "lastUpdatedTime": "2026-12-01T08:00:00Z",
        "progressPercentage": 42,
        "estimatedRemainingSeconds": 190,
        "metrics": [{"name": "ndcg@10", "value": "0.8123"}, {"name": "step", "value": "5"}],
    }
    api = CustomObjectsApi(cluster["api"])
    api.patch_namespaced_custom_object_status(
        test_kubeflow.GROUP,
        test_kubeflow.VERSION,
        "default",
        "trainjobs",
        name,
        {"status": {"trainerStatus": reported}},
    )
    try:
        code, out, _ = test_kubeflow.run_cli(capsys, "jobs", "--kubeconfig", kubeconfig)
        assert code == 0 and re.search(rf"^{name}\s+Created 42%\s+2\s+ragtune-torch-distributed", out, re.M), out
        code, out, _ = test_kubeflow.run_cli(capsys, "status", name, "--kubeconfig", kubeconfig)
        assert code == 0 and out.startswith(f"{name}: Created 42% (2 node(s)")
        assert "  trainer: 42% done, ETA 3m10s, ndcg@10=0.8123 step=5 (reported 2026-12-01T08:00:00Z)\n" in out, out
    finally:
        test_kubeflow.run_cli(capsys, "delete", name, "--kubeconfig", kubeconfig)


def test_the_modules_a_pod_imports_first_do_not_load_torch():
    """The image check imports these on a read-only root: torch (through dill) needs a writable /tmp."""
    code = "import sys, ragtune.cluster.trainjob, ragtune.train.progress; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
